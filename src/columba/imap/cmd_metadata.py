"""GETMETADATA and SETMETADATA (RFC 5464 METADATA, which includes METADATA-SERVER: the
mailbox ``""`` names the server's entries). Enabled by ``imap_metadata = yes`` (Dovecot's
switch); without it the commands are unknown and the capability isn't advertised.

Entries are stored in the user's index (:meth:`MailUser.get_metadata` /
:meth:`MailUser.set_metadata`), ``/private`` and ``/shared`` apart, values as bytes. Entry
names are case-insensitive (stored and answered lower-case, as Dovecot does) and checked as
Dovecot checks them: a leading ``/``, no ``*``, ``%``, control characters, ``//`` or trailing
``/``, below ``/private`` or ``/shared`` (each a ``BAD``).

Values configured rather than stored:

* a mailbox's ``/private/comment`` and ``/shared/comment`` default to ``mailbox_comment`` of
  its ``mailbox NAME { }`` block; a stored value overrides it, removing it brings it back;
* the server's ``/shared/comment`` and ``/shared/admin`` are ``mail_server_comment`` and
  ``mail_server_admin``, read-only (``NO [CANNOT]``).

GETMETADATA answers one ``* METADATA mailbox (entry value ...)`` line. With ``DEPTH 0`` (the
default) every asked entry is listed, ``NIL`` when it has no value (as Dovecot does); with
``DEPTH 1``/``infinity`` only entries that have values, the asked one and those below it.
``MAXSIZE n`` leaves out longer values and answers ``OK [METADATA LONGENTRIES m]`` with the
longest left out. Values are quoted strings when short and plain, else literals, ``~{n}``
(literal8, allowed by RFC 5464's grammar) when they hold NUL.

SETMETADATA is all or nothing (``NIL`` removes, ``""`` stores an empty value); its limits are
``imap_metadata_max_value_size`` (``NO [METADATA MAXSIZE n]``), ``imap_metadata_max_entries``
per mailbox and for the server (``NO [METADATA TOOMANY]``, checked in the index transaction)
and ``imap_metadata_private = no`` (``NO [METADATA NOPRIVATE]``).
"""

from __future__ import annotations

from collections.abc import Iterable

from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.lexer import normalize_mailbox
from columba.proto.imap.response import (
    Atom,
    ResponseCode,
    encode_astring,
    encode_literal,
    encode_mailbox,
    encode_string,
)
from columba.storage.api import MailUser

__all__ = [
    "READONLY_SERVER_ENTRIES",
    "check_entry",
    "getmetadata",
    "metadata_enabled",
    "setmetadata",
]

PRIVATE = "/private"
SHARED = "/shared"
COMMENT = "/comment"
READONLY_SERVER_ENTRIES: dict[str, str] = {
    "/shared/comment": "mail_server_comment",
    "/shared/admin": "mail_server_admin",
}
"""Server entries that come from settings and can't be set."""


def metadata_enabled(session: ImapSession) -> bool:
    return session.settings.get_bool("imap_metadata")


def _ascii_lower(text: str) -> str:
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def check_entry(entry: str, command: str) -> str:
    """The entry name lower-cased; ``CommandError(BAD)`` when it isn't a valid one."""

    def bad(why: str) -> CommandError:
        return CommandError("BAD", f"Error in IMAP command {command}: {why}")

    if not entry.startswith("/"):
        raise bad("Entry name must begin with '/'")
    for i, ch in enumerate(entry):
        if ch in "*%":
            raise bad(f"Entry name can't contain '{ch}'")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise bad("Entry name can't contain control characters")
        if 0xD800 <= ord(ch) <= 0xDFFF:  # a non-UTF-8 octet (surrogate escape)
            raise bad("Entry name isn't valid UTF-8")
        if ch == "/" and i > 0 and entry[i - 1] == "/":
            raise bad("Entry name can't contain consecutive '/'")
    if entry.endswith("/"):
        raise bad("Entry name can't end with '/'")
    lower = _ascii_lower(entry)
    if not any(lower == top or lower.startswith(top + "/") for top in (PRIVATE, SHARED)):
        raise bad("Entry name must begin with /private or /shared")
    return lower


def _mailbox_comment(session: ImapSession, mailbox: str) -> str:
    """``mailbox_comment`` of the INBOX namespace's ``mailbox NAME { }`` block."""
    for namespace in session.settings.filters("namespace"):
        if not namespace.get_bool("namespace_inbox"):
            continue
        for box in namespace.filters("mailbox"):
            if normalize_mailbox(box.name, "/") == mailbox:
                return box.get_str("mailbox_comment")
    return ""


def _configured(session: ImapSession, mailbox: str) -> dict[str, bytes]:
    """Values that come from settings (see the module docstring)."""
    out: dict[str, bytes] = {}
    if mailbox == "":
        for entry, setting in READONLY_SERVER_ENTRIES.items():
            value = session.settings.get_str(setting)
            if value:
                out[entry] = value.encode("utf-8")
    else:
        comment = _mailbox_comment(session, mailbox)
        if comment:
            out[PRIVATE + COMMENT] = out[SHARED + COMMENT] = comment.encode("utf-8")
    return out


def _in_depth(name: str, base: str, depth: str) -> bool:
    """``name`` is ``base`` or lies below it within ``depth``."""
    if name == base:
        return True
    if not name.startswith(base + "/"):
        return False
    return depth == "infinity" or (depth == "1" and "/" not in name[len(base) + 1 :])


def _target(user: MailUser, mailbox: str) -> str:
    return "" if mailbox == "" else normalize_mailbox(mailbox, user.separator)


def _encode_value(value: bytes | None, utf8: bool) -> bytes:
    if value is None:
        return b"NIL"
    if b"\x00" in value:
        return encode_literal(value, binary=True)
    return encode_string(value, utf8=utf8)


async def getmetadata(session: ImapSession, cmd: c.GetMetadataCommand) -> Reply:
    if not metadata_enabled(session):
        return Reply("BAD", f"Unknown command {cmd.display_name}.")
    user = session.require_user()
    entries = list(dict.fromkeys(check_entry(e, cmd.name) for e in cmd.entries))
    mailbox = _target(user, session.mailbox_arg(cmd.mailbox))
    depth = cmd.depth
    stored = await user.get_metadata(mailbox, entries, descendants=depth != "0")
    values = {**_configured(session, mailbox), **stored}

    found: dict[str, bytes | None] = {}
    for base in entries:
        if depth == "0":
            found.setdefault(base, values.get(base))
            continue
        for name in sorted(n for n in values if _in_depth(n, base, depth)):
            found.setdefault(name, values[name])

    longest = 0
    shown: list[tuple[str, bytes | None]] = []
    for name, value in found.items():
        if cmd.maxsize is not None and value is not None and len(value) > cmd.maxsize:
            longest = max(longest, len(value))
            continue
        shown.append((name, value))
    if shown:
        await _send_metadata(session, mailbox, shown)
    code = ResponseCode("METADATA", Atom("LONGENTRIES"), longest) if longest else None
    return Reply("OK", "Getmetadata completed.", code)


async def _send_metadata(
    session: ImapSession, mailbox: str, items: Iterable[tuple[str, bytes | None]]
) -> None:
    utf8 = session.utf8
    out = b"* METADATA " + encode_mailbox(mailbox, utf8=utf8) + b" ("
    first = True
    for name, value in items:
        out += (b"" if first else b" ") + encode_astring(name, utf8=utf8) + b" "
        first = False
        await session.send(out)
        out = _encode_value(value, utf8)
    await session.send(out + b")\r\n")


async def setmetadata(session: ImapSession, cmd: c.SetMetadataCommand) -> Reply:
    if not metadata_enabled(session):
        return Reply("BAD", f"Unknown command {cmd.display_name}.")
    user = session.require_user()
    changes = [(check_entry(e, cmd.name), v) for e, v in cmd.entries]
    for entry, _value in changes:
        if entry in (PRIVATE, SHARED):
            raise CommandError(
                "BAD", f"Error in IMAP command {cmd.name}: Entry name needs a name after {entry}"
            )
    mailbox = _target(user, session.mailbox_arg(cmd.mailbox))
    if mailbox == "":
        for entry, _value in changes:
            if entry in READONLY_SERVER_ENTRIES:
                return Reply("NO", f"The {entry} entry can't be changed.", "CANNOT")
    if not session.settings.get_bool("imap_metadata_private") and any(
        e.startswith(PRIVATE + "/") for e, _v in changes
    ):
        return Reply(
            "NO",
            "Private metadata entries aren't supported.",
            ResponseCode("METADATA", Atom("NOPRIVATE")),
        )
    max_size = session.settings.get_int("imap_metadata_max_value_size")
    if max_size > 0 and any(v is not None and len(v) > max_size for _e, v in changes):
        return Reply(
            "NO",
            "Metadata entry value is too large.",
            ResponseCode("METADATA", Atom("MAXSIZE"), max_size),
        )
    max_entries = session.settings.get_int("imap_metadata_max_entries")
    await user.set_metadata(mailbox, changes, max_entries=max_entries)
    return Reply("OK", "Setmetadata completed.")
