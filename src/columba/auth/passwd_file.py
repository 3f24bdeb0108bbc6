"""Dovecot's passwd-file format: ``user:password:uid:gid:gecos:home:shell:extra_fields``.

Extra fields are space separated ``key=value`` (a bare ``key`` means ``key=yes``); those named
``userdb_*`` belong to the userdb. A file is re-read when its modification time or size
changes; bad lines are skipped with a note naming ``file:line``, never the password.

Lookups from the event loop use :meth:`PasswdFile.cached_lookup` first: one ``stat`` (as
Dovecot's passwd-file driver does per lookup) and a dict lookup, no thread hop; only when the
file changed is it re-read, in a thread. Every driver naming the same path shares one
:class:`PasswdFile` (:func:`shared_passwd_file`), so passdb and userdb parse it once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field

MAX_FILE_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class PasswdEntry:
    user: str
    password: str
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def passdb_fields(self) -> dict[str, str]:
        return {k: v for k, v in self.extra.items() if not k.startswith("userdb_")}

    def userdb_fields(self) -> dict[str, str]:
        fields = {"uid": self.uid, "gid": self.gid, "home": self.home}
        fields = {k: v for k, v in fields.items() if v}
        for key, value in self.extra.items():
            if key.startswith("userdb_"):
                fields[key[len("userdb_") :]] = value
        return fields


def parse_extra_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if key:
            fields[key] = value if sep else "yes"
    return fields


def parse_passwd_file(
    text: str, filename: str = "passwd-file"
) -> tuple[dict[str, PasswdEntry], list[str]]:
    """Entries by user name and the notes about skipped lines."""
    entries: dict[str, PasswdEntry] = {}
    notes: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 7)
        if len(parts) < 2 or not parts[0]:
            notes.append(f"{filename}:{number}: invalid line (expecting user:password:...)")
            continue
        parts += [""] * (8 - len(parts))
        user, password, uid, gid, gecos, home, shell, extra = parts
        entries[user] = PasswdEntry(
            user, password, uid, gid, gecos, home, shell, parse_extra_fields(extra)
        )
    return entries, notes


class PasswdFile:
    """A passwd-file, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, PasswdEntry] = {}
        self.notes: list[str] = []

    def lookup(self, user: str) -> PasswdEntry | None:
        """The entry of ``user``; OSError when the file can't be read."""
        self._refresh()
        return self._entries.get(user)

    def cached_lookup(self, user: str) -> tuple[bool, PasswdEntry | None]:
        """``(True, entry or None)`` when the loaded entries are current (the file's mtime and
        size are unchanged: one ``stat``, cheap enough for the event loop); ``(False, None)``
        when the file must be (re)read first: call :meth:`lookup` in a thread then. OSError
        when the file can't be stat'ed."""
        stat = os.stat(self.path)
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            return False, None
        return True, self._entries.get(user)

    def users(self) -> list[str]:
        self._refresh()
        return sorted(self._entries)

    def _refresh(self) -> None:
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp == self._stamp:
                return
            if stat.st_size > MAX_FILE_SIZE:
                raise OSError(f"{self.path} is larger than {MAX_FILE_SIZE} bytes")
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            self._entries, self.notes = parse_passwd_file(text, self.path)
            self._stamp = stamp


_shared: dict[str, PasswdFile] = {}
_shared_lock = threading.Lock()


def shared_passwd_file(path: str) -> PasswdFile:
    """The process's :class:`PasswdFile` for ``path`` (one per path, shared by every driver)."""
    found = _shared.get(path)
    if found is None:
        with _shared_lock:
            found = _shared.get(path)
            if found is None:
                if len(_shared) >= 1024:  # per-user file templates: don't grow without bound
                    _shared.clear()
                found = _shared[path] = PasswdFile(path)
    return found


async def lookup_entry(path: str, user: str) -> PasswdEntry | None:
    """``user``'s entry in the passwd-file at ``path``, read in a thread only when the file
    changed since it was last read (OSError when it can't be read)."""
    passwd = shared_passwd_file(path)
    current, entry = passwd.cached_lookup(user)
    if current:
        return entry
    return await asyncio.to_thread(passwd.lookup, user)
