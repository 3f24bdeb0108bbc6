"""The per-user SQLite index ("metacache"): schema v1 and every query the obox driver makes.

One file per user, ``<index dir>/columba-index.db`` (WAL, busy timeout), shared by every
process of a backend. Durability follows ``mail_fsync`` as in Dovecot: ``always`` commits with
``synchronous=FULL`` (every commit fsyncs the WAL); ``optimized`` (the default) with
``synchronous=NORMAL`` — a commit is in the OS page cache (it survives a killed process, not a
power loss) and the WAL is fsynced at checkpoints; ``never`` with ``synchronous=OFF``. That is
safe because the index is not the record of what was delivered: the object and its dictmap row
are, and both are durable before a delivery is acknowledged. After a power loss or kernel crash
(the boot id in ``meta`` differs from the running kernel's, see :meth:`MailIndex.needs_boot_check`)
the obox driver reconciles the index with the dictmap listing before first use, which restores
appends and expunges the index lost (flag changes since the last checkpoint are lost, as with
Dovecot's own indexes under ``mail_fsync = optimized``).

:class:`MailIndex` is synchronous and used by one thread at a time (the obox driver runs a
user's index jobs one after another on its shared index threads); every method is one transaction,
so several processes can write the same user: writes run under ``BEGIN IMMEDIATE`` (UID
allocation and MODSEQ bumps are read-check-write steps that must not interleave), reads under a
deferred ``BEGIN`` so they see one consistent snapshot.

Tables:

* ``mailboxes`` — name, guid, uidvalidity, uidnext, highestmodseq, special_use, selectable
  (0 = ``\\Noselect`` placeholder), first_recent_uid (RFC 3501 ``\\Recent`` ownership boundary).
* ``messages`` — one row per message in a mailbox: uid, guid, object path, modseq, flags (text:
  system flags then keywords as stored, space separated) plus ``sysflags`` (bit mask for fast
  counts), internaldate (ISO 8601 with offset), savedate, size.
* ``message_cache`` — the parse made once at save (``storage.mime`` JSON) and the header bytes,
  keyed like ``messages`` but kept apart so scans of ``messages`` stay narrow.
* ``sort_keys`` — per message (keyed like ``messages``), the SORT/THREAD keys computed at save
  (:mod:`columba.storage.sort_keys`: base subject, addresses, display names, sent date,
  Message-ID and References, internal date, size) and the version of their computation.
  Messages saved before the table existed get their row on first use (:meth:`fill_sort_keys`).
* ``expunged`` — (mailbox, uid, modseq) of every expunge, for QRESYNC and for views to sync.
* ``subscriptions`` — subscribed names (they need not exist).
* ``keywords`` — per mailbox, every keyword ever used, unique case-insensitively, spelled as
  first sent.
* ``meta`` — ``change_counter`` (bumped by every write transaction) and ``last_uidvalidity``.
* ``metadata`` — IMAP METADATA (RFC 5464) entries: (mailbox id, 0 for server entries;
  lower-case entry name such as ``/private/comment``; value bytes). Keyed by mailbox id, so
  entries follow RENAME; DELETE drops them with the mailbox's other rows.

No migrations: ``PRAGMA user_version`` is 1; another version is refused. Tables added later
(``metadata``, ``sort_keys`` ...) are created with ``IF NOT EXISTS`` whenever an index is
opened, so older files gain them.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from columba.storage.api import (
    SPECIAL_USE_FLAGS,
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MetadataTooMany,
    StorageError,
    StoreMode,
)
from columba.storage.header_search import HeaderNeedle, match_many
from columba.storage.names import INBOX, SEPARATOR, is_descendant, parents
from columba.storage.sort_keys import COLUMNS as SORT_KEY_COLUMNS
from columba.storage.sort_keys import STORED_COLUMNS as SORT_KEY_STORED
from columba.storage.sort_keys import VERSION as SORT_KEY_VERSION
from columba.storage.sort_keys import StoredKeys, decode_columns, stored_keys

INDEX_FILENAME = "columba-index.db"
SCHEMA_VERSION = 1

SYSTEM_FLAG_BITS: dict[str, int] = {
    "\\Seen": 1,
    "\\Answered": 2,
    "\\Flagged": 4,
    "\\Deleted": 8,
    "\\Draft": 16,
}
SEEN = SYSTEM_FLAG_BITS["\\Seen"]
DELETED = SYSTEM_FLAG_BITS["\\Deleted"]
_SYSTEM_BY_LOWER = {name.lower(): name for name in SYSTEM_FLAG_BITS}
_KEYWORD_FORBIDDEN = frozenset('(){ %*"\\]')
_RANGES_PER_QUERY = 200
EAGER_DETAILS = 2000
"""Mailboxes up to this many messages get every message's details at SELECT
(:meth:`MailIndex.load_view_light`); bigger ones read them when needed."""

METADATA_SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (
    mailbox_id INTEGER NOT NULL,
    entry TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (mailbox_id, entry)
) WITHOUT ROWID
"""
"""Added after v1 shipped: run on every open (older index files gain it)."""
MAILBOX_INFO_SCHEMA = """
CREATE TABLE IF NOT EXISTS mailbox_info (
    guid TEXT PRIMARY KEY,
    info TEXT NOT NULL
) WITHOUT ROWID
"""
"""What was last written as each mailbox's ``idx/mailbox-info`` object (storage.rebuild)."""
URLAUTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS urlauth_keys (
    mailbox_id INTEGER PRIMARY KEY,
    key BLOB NOT NULL
)
"""
"""URLAUTH (RFC 4467) mailbox access keys; added after v1 shipped, run on every open."""
SORT_KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sort_keys (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    version INTEGER NOT NULL,
    subject TEXT NOT NULL,
    reply INTEGER NOT NULL,
    sent INTEGER,
    arrival INTEGER NOT NULL,
    size INTEGER NOT NULL,
    addr_from TEXT NOT NULL,
    addr_to TEXT NOT NULL,
    addr_cc TEXT NOT NULL,
    display_from TEXT NOT NULL,
    display_to TEXT NOT NULL,
    message_id TEXT,
    refs TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID
"""
"""SORT/THREAD keys per message (:mod:`columba.storage.sort_keys`); added after v1 shipped, run
on every open (older index files gain it; their messages get rows on first use)."""
_SORT_KEYS_INSERT = (
    f"INSERT OR REPLACE INTO sort_keys (mailbox_id, uid, {', '.join(SORT_KEY_STORED)}) "
    f"VALUES ({', '.join('?' * (len(SORT_KEY_STORED) + 2))})"
)
_SORT_KEYS_COPY = (
    f"INSERT OR REPLACE INTO sort_keys (mailbox_id, uid, {', '.join(SORT_KEY_STORED)}) "
    f"SELECT ?, ?, {', '.join(SORT_KEY_STORED)} FROM sort_keys WHERE mailbox_id = ? AND uid = ?"
)
_STORED_POS = {name: i + 2 for i, name in enumerate(SORT_KEY_STORED)}
"""Positions of the stored columns in a full row (after mailbox_id, uid)."""
SERVER_METADATA = 0
"""``metadata.mailbox_id`` of server entries (mailbox ids start at 1)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    guid TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT NOT NULL DEFAULT '',
    selectable INTEGER NOT NULL DEFAULT 1,
    first_recent_uid INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    guid TEXT NOT NULL,
    object_path TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    sysflags INTEGER NOT NULL,
    flags TEXT NOT NULL,
    internaldate TEXT NOT NULL,
    savedate TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS message_cache (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    parsed TEXT NOT NULL,
    header BLOB NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE TABLE IF NOT EXISTS expunged (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keywords (
    mailbox_id INTEGER NOT NULL,
    keyword_key TEXT NOT NULL,
    keyword TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, keyword_key)
) WITHOUT ROWID;
"""

_MAILBOX_COLS = (
    "id, name, guid, uidvalidity, uidnext, highestmodseq, special_use, selectable, first_recent_uid"
)
_MESSAGE_COLS = "uid, guid, object_path, modseq, flags, internaldate, savedate, size"


# ---------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class MailboxRow:
    id: int
    name: str
    guid: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: frozenset[str]
    selectable: bool
    first_recent_uid: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    uid: int
    guid: str
    object_path: str
    modseq: int
    flags: frozenset[str]
    internaldate: str
    """ISO 8601 with UTC offset."""
    savedate: str
    size: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message whose object is already durable, to be indexed."""

    guid: str
    object_path: str
    flags: Sequence[str]
    internaldate: str
    savedate: str
    size: int
    parsed: str
    header: bytes
    sort_keys: StoredKeys | None = None
    """The ``sort_keys`` row (:func:`columba.storage.sort_keys.stored_keys`), when computed."""


@dataclass(frozen=True, slots=True)
class StatusCounts:
    messages: int
    recent: int
    unseen: int
    size: int
    deleted: int
    deleted_size: int


@dataclass(frozen=True, slots=True)
class ViewSnapshot:
    mailbox: MailboxRow
    messages: list[MessageRow]
    keywords: list[str]


@dataclass(frozen=True, slots=True)
class LightSnapshot:
    """A mailbox's messages as columns, only what SELECT and FETCH FLAGS need: UIDs
    (ascending), and for each its modseq and flags (shared frozensets, one per distinct
    flag text). The rest of a row (:data:`Details`) is read when first needed."""

    mailbox: MailboxRow
    uids: list[int]
    modseqs: list[int]
    flags: list[frozenset[str]]
    keywords: list[str]
    details: dict[int, Details]
    """Every message's :data:`Details` when the mailbox is small (up to
    :data:`EAGER_DETAILS` messages: one more query now is cheaper than any later), else
    empty."""


Details = tuple[str, str, str, str, int]
"""The fields of a message row that never change: guid, object path, internaldate, savedate
(ISO 8601 text) and size."""


@dataclass(frozen=True, slots=True)
class SyncDelta:
    mailbox: MailboxRow
    changed: list[MessageRow]
    """Rows below the previous UIDNEXT whose modseq is newer than the previous HIGHESTMODSEQ."""
    added: list[MessageRow]
    """Rows at or above the previous UIDNEXT."""
    expunged: list[int]
    """UIDs expunged with a modseq newer than the previous HIGHESTMODSEQ."""
    keywords: list[str]


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    updated: list[MessageRow]
    failed: list[int]
    unchanged: list[MessageRow]
    keywords: list[str]


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    uidvalidity: int
    source_uids: list[int]
    dest_uids: list[int]
    unused_paths: list[str]
    """New object paths whose source row vanished before the commit (delete them)."""
    removed_paths: list[str]
    """Object paths of source rows a move removed (delete them)."""


class CommitUncertain(StorageError):  # noqa: N818 - reads as the condition
    """COMMIT failed after the transaction ended: it may or may not have been applied."""

    imap_code = "UNAVAILABLE"


# ---------------------------------------------------------------------- helpers


def uid_ranges(uids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges covering `uids`."""
    ranges: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], uid)
        else:
            ranges.append((uid, uid))
    return ranges


def _range_chunks(ranges: list[tuple[int, int]]) -> Iterator[tuple[str, list[int]]]:
    """``(uid BETWEEN ? AND ? OR ...)`` clauses with their parameters, a bounded number each."""
    for start in range(0, len(ranges), _RANGES_PER_QUERY):
        chunk = ranges[start : start + _RANGES_PER_QUERY]
        clause = " OR ".join("uid BETWEEN ? AND ?" for _ in chunk)
        params = [n for pair in chunk for n in pair]
        yield f"({clause})", params


def _select_details(
    conn: sqlite3.Connection, mailbox_id: int, queries: Iterable[tuple[str, list[int]]]
) -> dict[int, Details]:
    """:data:`Details` by UID of the mailbox's messages matching each ``(clause, params)``."""
    out: dict[int, Details] = {}
    for clause, params in queries:
        cur = conn.execute(
            "SELECT uid, guid, object_path, internaldate, savedate, size FROM messages "
            f"WHERE mailbox_id = ? AND {clause}",
            [mailbox_id, *params],
        )
        for uid, guid, path, internal, saved, size in cur:
            out[int(uid)] = (str(guid), str(path), str(internal), str(saved), int(size))
    return out


def _check_keyword(flag: str) -> None:
    if not flag or any(ord(c) <= 0x20 or ord(c) == 0x7F or c in _KEYWORD_FORBIDDEN for c in flag):
        raise StorageError(f"Invalid keyword {flag!r}")


def split_flags(flags: Iterable[str]) -> tuple[int, list[str]]:
    """System flag bits and keywords (deduplicated case-insensitively, in order).

    ``\\Recent`` is dropped (nobody can set it); another unknown ``\\`` flag is an error.
    """
    bits = 0
    keywords: list[str] = []
    seen: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            lower = flag.lower()
            if lower == "\\recent":
                continue
            system = _SYSTEM_BY_LOWER.get(lower)
            if system is None:
                raise StorageError(f"Invalid system flag {flag}")
            bits |= SYSTEM_FLAG_BITS[system]
            continue
        _check_keyword(flag)
        key = flag.casefold()
        if key not in seen:
            seen.add(key)
            keywords.append(flag)
    return bits, keywords


def flags_text(bits: int, keywords: Iterable[str]) -> str:
    parts = [name for name, bit in SYSTEM_FLAG_BITS.items() if bits & bit]
    parts.extend(keywords)
    return " ".join(parts)


def _text_keywords(text: str) -> list[str]:
    return [f for f in text.split() if not f.startswith("\\")]


def new_guid() -> str:
    return uuid.uuid4().hex


_KEY_SEPARATOR = "\x1f"
_INT_KEY_COLUMNS = frozenset({"reply", "sent", "arrival", "size"})


def _key_aggregate(col: str) -> str:
    if col in _INT_KEY_COLUMNS:
        return f"group_concat(ifnull({col}, ''), ',')"
    return f"group_concat(ifnull({col}, ''), char(31))"


def _split_keys(col: str, text: str | None, n: int) -> list[Any] | None:
    """A ``group_concat`` of *n* values of column *col* as a list (None when the count is
    off: a value held the separator)."""
    if n == 0 or text is None:
        return [] if n == 0 else None
    parts = text.split("," if col in _INT_KEY_COLUMNS else _KEY_SEPARATOR)
    if len(parts) != n:
        return None
    if col == "sent":
        return [int(x) if x else None for x in parts]
    if col in _INT_KEY_COLUMNS:
        return list(map(int, parts))
    if col == "message_id":
        return [x or None for x in parts]
    return parts


def _key_columns(
    conn: sqlite3.Connection, mailbox_id: int, clause: str, params: list[int], cols: list[str]
) -> tuple[list[int], list[list[Any]]]:
    """The UIDs of the current ``sort_keys`` rows matching *clause* and their *cols*, one
    aggregated query (a plain SELECT if a value holds a separator)."""
    where = f"FROM sort_keys WHERE mailbox_id = ? AND {clause} AND version = ?"
    aggregates = ", ".join(["count(*)", "group_concat(uid, ',')", *map(_key_aggregate, cols)])
    row = conn.execute(
        f"SELECT {aggregates} {where}", [mailbox_id, *params, SORT_KEY_VERSION]
    ).fetchone()
    n = int(row[0])
    uids = _split_keys("size", row[1], n)
    columns = [_split_keys(c, text, n) for c, text in zip(cols, row[2:], strict=True)]
    if uids is not None and all(c is not None for c in columns):
        return uids, columns  # type: ignore[return-value]
    rows = conn.execute(
        f"SELECT uid, {', '.join(cols)} {where}", [mailbox_id, *params, SORT_KEY_VERSION]
    ).fetchall()
    if not rows:
        return [], [[] for _ in cols]
    transposed = [list(c) for c in zip(*rows, strict=True)]
    return transposed[0], transposed[1:]


def _int_list(text: str) -> list[int]:
    """A ``group_concat(integer column, ',')`` as ints (parsed as a JSON array: C speed)."""
    values: list[int] = json.loads(f"[{text}]")
    return values


def _is_busy(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return True
    return "locked" in str(err) or "busy" in str(err)


# ---------------------------------------------------------------------- durability

FsyncMode = Literal["optimized", "always", "never"]
_SYNCHRONOUS: dict[str, str] = {"always": "FULL", "optimized": "NORMAL", "never": "OFF"}
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@functools.cache
def current_boot_id() -> str | None:
    """The running kernel's boot id (Linux), None where there is none."""
    try:
        with open(_BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------------- the index


class MailIndex:
    """One user's index file. Not thread-safe: use it from one thread at a time."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 30.0, fsync: FsyncMode = "always"
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.fsync: FsyncMode = fsync if current_boot_id() is not None else "always"
        """``always`` where no boot id can tell a power loss (see :func:`current_boot_id`)."""
        self._conn: sqlite3.Connection | None = None
        self._flag_cache: dict[str, frozenset[str]] = {}

    # ------------------------------------------------------------------ connection

    def open(self) -> None:
        if self._conn is not None:
            return
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            os.close(fd)
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.fsync]}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StorageError(f"{self.path}: unsupported index version {version}")
            if version == 0:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            conn.execute(METADATA_SCHEMA)
            conn.execute(MAILBOX_INFO_SCHEMA)
            conn.execute(URLAUTH_SCHEMA)
            conn.execute(SORT_KEYS_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def needs_boot_check(self) -> bool:
        """Were commits made without a full fsync under another boot (a power loss or kernel
        crash may have dropped them)? Then reconcile, and :meth:`mark_boot`."""
        boot = current_boot_id()
        if boot is None:
            return False
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchone()
        return row is None or row[0] != boot

    def mark_boot(self) -> None:
        """Record that the index is in line with the storage under the running kernel (fully
        synced, so that a crash right after does not hide the need for another check)."""
        boot = current_boot_id()
        if boot is None:
            return
        with self._write(count=False) as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('boot_id', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (boot,),
            )
        self.conn.execute("PRAGMA wal_checkpoint(FULL)")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def _write(self, *, count: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; *count*: bump ``change_counter`` (False only for derived data
        that changes nothing a reader or a bundle must see at once, e.g. backfilled keys)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            if count:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('change_counter', 1) "
                    "ON CONFLICT (key) DO UPDATE SET value = value + 1"
                )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
                raise
            raise CommitUncertain(f"index commit outcome unknown: {err}") from err

    # ------------------------------------------------------------------ row helpers

    def _flags(self, text: str) -> frozenset[str]:
        cached = self._flag_cache.get(text)
        if cached is None:
            cached = frozenset(text.split())
            if len(self._flag_cache) < 10000:
                self._flag_cache[text] = cached
        return cached

    def _message(self, row: tuple[object, ...]) -> MessageRow:
        uid, guid, path, modseq, flags, internaldate, savedate, size = row
        return MessageRow(
            uid=int(uid),  # type: ignore[call-overload]
            guid=str(guid),
            object_path=str(path),
            modseq=int(modseq),  # type: ignore[call-overload]
            flags=self._flags(str(flags)),
            internaldate=str(internaldate),
            savedate=str(savedate),
            size=int(size),  # type: ignore[call-overload]
        )

    @staticmethod
    def _mailbox(row: tuple[object, ...]) -> MailboxRow:
        mid, name, guid, uidvalidity, uidnext, hms, special, selectable, first_recent = row
        return MailboxRow(
            id=int(mid),  # type: ignore[call-overload]
            name=str(name),
            guid=str(guid),
            uidvalidity=int(uidvalidity),  # type: ignore[call-overload]
            uidnext=int(uidnext),  # type: ignore[call-overload]
            highestmodseq=int(hms),  # type: ignore[call-overload]
            special_use=frozenset(str(special).split()),
            selectable=bool(selectable),
            first_recent_uid=int(first_recent),  # type: ignore[call-overload]
        )

    def _get_mailbox(self, conn: sqlite3.Connection, name: str) -> MailboxRow | None:
        row = conn.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE name = ?", (name,))
        found = row.fetchone()
        return None if found is None else self._mailbox(found)

    def _mailbox_by_id(self, conn: sqlite3.Connection, mailbox_id: int, guid: str) -> MailboxRow:
        row = conn.execute(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ? AND guid = ?", (mailbox_id, guid)
        ).fetchone()
        if row is None or not row[7]:
            raise MailboxNotFound("Mailbox was deleted")
        return self._mailbox(row)

    def _select_messages(
        self, conn: sqlite3.Connection, mailbox_id: int, uids: Iterable[int]
    ) -> list[MessageRow]:
        out: list[MessageRow] = []
        for clause, params in _range_chunks(uid_ranges(uids)):
            cur = conn.execute(
                f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id = ? AND {clause} "
                "ORDER BY uid",
                [mailbox_id, *params],
            )
            out.extend(self._message(r) for r in cur)
        return out

    def _next_uidvalidity(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'last_uidvalidity'").fetchone()
        last = int(row[0]) if row else 0
        value = max(int(time.time()), last + 1) & 0xFFFFFFFF or 1
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (value,),
        )
        return value

    def _keywords(self, conn: sqlite3.Connection, mailbox_id: int) -> list[str]:
        cur = conn.execute(
            "SELECT keyword FROM keywords WHERE mailbox_id = ? ORDER BY keyword_key",
            (mailbox_id,),
        )
        return [str(r[0]) for r in cur]

    def _canon_keywords(
        self, conn: sqlite3.Connection, mailbox_id: int, keywords: Sequence[str]
    ) -> list[str]:
        """The mailbox's spelling of each keyword; new ones are added to the mailbox."""
        out: list[str] = []
        for kw in keywords:
            key = kw.casefold()
            row = conn.execute(
                "SELECT keyword FROM keywords WHERE mailbox_id = ? AND keyword_key = ?",
                (mailbox_id, key),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO keywords (mailbox_id, keyword_key, keyword) VALUES (?, ?, ?)",
                    (mailbox_id, key, kw),
                )
                out.append(kw)
            else:
                out.append(str(row[0]))
        return out

    def _bump_modseq(self, conn: sqlite3.Connection, mailbox_id: int) -> int:
        row = conn.execute(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? "
            "RETURNING highestmodseq",
            (mailbox_id,),
        ).fetchone()
        return int(row[0])

    def _has_children(self, conn: sqlite3.Connection, name: str) -> bool:
        prefix = name + SEPARATOR
        row = conn.execute(
            "SELECT 1 FROM mailboxes WHERE name > ? AND substr(name, 1, ?) = ? LIMIT 1",
            (prefix, len(prefix), prefix),
        ).fetchone()
        return row is not None

    def _drop_mailbox_rows(self, conn: sqlite3.Connection, mailbox_id: int) -> list[str]:
        paths = [
            str(r[0])
            for r in conn.execute(
                "SELECT object_path FROM messages WHERE mailbox_id = ?", (mailbox_id,)
            )
        ]
        for table in (
            "messages",
            "message_cache",
            "sort_keys",
            "expunged",
            "keywords",
            "metadata",
            "urlauth_keys",
        ):
            conn.execute(f"DELETE FROM {table} WHERE mailbox_id = ?", (mailbox_id,))
        return paths

    def _cleanup_placeholders(self, conn: sqlite3.Connection, names: Iterable[str]) -> None:
        """Remove ``\\Noselect`` placeholders among `names` (and up) left without children."""
        for name in sorted(set(names), key=len, reverse=True):
            row = self._get_mailbox(conn, name)
            if row is not None and not row.selectable and not self._has_children(conn, name):
                self._drop_mailbox_rows(conn, row.id)
                conn.execute("DELETE FROM mailboxes WHERE id = ?", (row.id,))

    def _insert_mailbox(
        self, conn: sqlite3.Connection, name: str, special_use: frozenset[str]
    ) -> MailboxRow:
        conn.execute(
            "INSERT INTO mailboxes (name, guid, uidvalidity, special_use, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, new_guid(), self._next_uidvalidity(conn), " ".join(sorted(special_use)),
             time.time()),
        )  # fmt: skip
        row = self._get_mailbox(conn, name)
        assert row is not None
        return row

    # ------------------------------------------------------------------ mailboxes

    def get_mailbox(self, name: str) -> MailboxRow | None:
        with self._read() as conn:
            return self._get_mailbox(conn, name)

    def list_mailboxes(self) -> tuple[list[MailboxRow], list[str]]:
        """Every mailbox row (placeholders included) and every subscribed name."""
        with self._read() as conn:
            rows = [
                self._mailbox(r)
                for r in conn.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes ORDER BY name")
            ]
            subs = [str(r[0]) for r in conn.execute("SELECT name FROM subscriptions")]
        return rows, subs

    def create_mailbox(self, name: str, special_use: frozenset[str]) -> MailboxRow:
        bad = special_use - SPECIAL_USE_FLAGS
        if bad:
            err = StorageError(f"Invalid special-use flag {sorted(bad)[0]}")
            err.imap_code = "USEATTR"
            raise err
        with self._write() as conn:
            existing = self._get_mailbox(conn, name)
            if existing is not None:
                if existing.selectable:
                    raise MailboxExists("Mailbox already exists")
                conn.execute(
                    "UPDATE mailboxes SET selectable = 1, guid = ?, uidvalidity = ?, "
                    "special_use = ? WHERE id = ?",
                    (new_guid(), self._next_uidvalidity(conn), " ".join(sorted(special_use)),
                     existing.id),
                )  # fmt: skip
                row = self._get_mailbox(conn, name)
                assert row is not None
                return row
            return self._insert_mailbox(conn, name, special_use)

    def ensure_mailboxes(self, wanted: Sequence[tuple[str, frozenset[str], bool]]) -> None:
        """Create the missing ones of ``(name, special_use, subscribe)`` (INBOX always)."""
        with self._read() as conn:
            missing = [
                w
                for w in wanted
                if (r := self._get_mailbox(conn, w[0])) is None or not r.selectable
            ]
            inbox = self._get_mailbox(conn, INBOX)
            subs = {str(r[0]) for r in conn.execute("SELECT name FROM subscriptions")}
        need_subs = [w[0] for w in wanted if w[2] and w[0] not in subs]
        if not missing and not need_subs and inbox is not None:
            return
        with self._write() as conn:
            if self._get_mailbox(conn, INBOX) is None:
                self._insert_mailbox(conn, INBOX, frozenset())
            for name, special_use, _sub in missing:
                existing = self._get_mailbox(conn, name)
                if existing is None:
                    self._insert_mailbox(conn, name, special_use)
                elif not existing.selectable:
                    conn.execute(
                        "UPDATE mailboxes SET selectable = 1, guid = ?, uidvalidity = ? "
                        "WHERE id = ?",
                        (new_guid(), self._next_uidvalidity(conn), existing.id),
                    )
            for name in need_subs:
                conn.execute(
                    "INSERT INTO subscriptions (name) VALUES (?) ON CONFLICT DO NOTHING", (name,)
                )

    def delete_mailbox(self, name: str) -> list[str]:
        """Delete per RFC 3501; returns the object paths to delete after the commit."""
        if name == INBOX:
            raise InvalidMailboxName("INBOX can't be deleted")
        with self._write() as conn:
            row = self._get_mailbox(conn, name)
            if row is None:
                raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
            if self._has_children(conn, name):
                if not row.selectable:
                    raise MailboxHasChildren(f"Mailbox has children, delete them first: {name}")
                paths = self._drop_mailbox_rows(conn, row.id)
                conn.execute(
                    "UPDATE mailboxes SET selectable = 0, special_use = '', "
                    "highestmodseq = highestmodseq + 1, first_recent_uid = uidnext WHERE id = ?",
                    (row.id,),
                )
                return paths
            paths = self._drop_mailbox_rows(conn, row.id)
            conn.execute("DELETE FROM mailboxes WHERE id = ?", (row.id,))
            self._cleanup_placeholders(conn, parents(name))
            return paths

    def rename_mailbox(self, old: str, new: str) -> None:
        """Rename a mailbox and its children (not INBOX: see the driver)."""
        if new == old:
            raise MailboxExists("Mailbox already exists")
        if is_descendant(new, old):
            raise InvalidMailboxName("Can't rename a mailbox under itself")
        with self._write() as conn:
            row = self._get_mailbox(conn, old)
            if row is None:
                raise MailboxNotFound(f"Mailbox doesn't exist: {old}")
            prefix = old + SEPARATOR
            children = [
                (int(r[0]), str(r[1]))
                for r in conn.execute(
                    "SELECT id, name FROM mailboxes WHERE substr(name, 1, ?) = ?",
                    (len(prefix), prefix),
                )
            ]
            moves = [(row.id, old, new)] + [
                (cid, cname, new + cname[len(old) :]) for cid, cname in children
            ]
            for _mid, _src, dst in moves:
                if dst == INBOX or self._get_mailbox(conn, dst) is not None:
                    raise MailboxExists(f"Mailbox already exists: {dst}")
            # Two steps so a name swap inside the set can't hit the UNIQUE constraint.
            for mid, _src, _dst in moves:
                conn.execute(
                    "UPDATE mailboxes SET name = ? WHERE id = ?", (f"\0rename\0{mid}", mid)
                )
            for mid, _src, dst in moves:
                conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (dst, mid))
            for _mid, src, dst in moves:
                if conn.execute("SELECT 1 FROM subscriptions WHERE name = ?", (src,)).fetchone():
                    conn.execute("DELETE FROM subscriptions WHERE name = ?", (src,))
                    conn.execute(
                        "INSERT INTO subscriptions (name) VALUES (?) ON CONFLICT DO NOTHING",
                        (dst,),
                    )
            self._cleanup_placeholders(conn, parents(old))

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        with self._write() as conn:
            if subscribed:
                conn.execute(
                    "INSERT INTO subscriptions (name) VALUES (?) ON CONFLICT DO NOTHING", (name,)
                )
            else:
                conn.execute("DELETE FROM subscriptions WHERE name = ?", (name,))

    def status(self, name: str) -> tuple[MailboxRow, StatusCounts]:
        with self._read() as conn:
            row = self._get_mailbox(conn, name)
            if row is None or not row.selectable:
                raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
            agg = conn.execute(
                "SELECT count(*), "
                "coalesce(sum(uid >= ?), 0), "
                "coalesce(sum((sysflags & ?) = 0), 0), "
                "coalesce(sum(size), 0), "
                "coalesce(sum((sysflags & ?) != 0), 0), "
                "coalesce(sum(CASE WHEN (sysflags & ?) != 0 THEN size ELSE 0 END), 0) "
                "FROM messages WHERE mailbox_id = ?",
                (row.first_recent_uid, SEEN, DELETED, DELETED, row.id),
            ).fetchone()
        return row, StatusCounts(*(int(v) for v in agg))

    # ------------------------------------------------------------------ messages

    def append(
        self,
        mailbox_id: int,
        mailbox_guid: str,
        msgs: Sequence[NewMessage],
        uids: Sequence[int] | None = None,
    ) -> tuple[int, list[int]]:
        """Index messages whose objects are durable; returns (uidvalidity, uids).

        `uids` (ascending, from the mailbox's UIDNEXT) are the UIDs the caller already wrote
        into the objects' metadata under the storage's UID lock."""
        with self._write() as conn:
            box = self._mailbox_by_id(conn, mailbox_id, mailbox_guid)
            if uids is not None and (len(uids) != len(msgs) or (uids and uids[0] < box.uidnext)):
                raise StorageError("UIDs were allocated concurrently; try again")
            modseq = self._bump_modseq(conn, mailbox_id)
            if uids is None:
                uids = list(range(box.uidnext, box.uidnext + len(msgs)))
            uids = list(uids)
            rows = []
            caches = []
            keys = []
            for uid, msg in zip(uids, msgs, strict=True):
                bits, kws = split_flags(msg.flags)
                kws = self._canon_keywords(conn, mailbox_id, kws)
                rows.append(
                    (mailbox_id, uid, msg.guid, msg.object_path, modseq, bits,
                     flags_text(bits, kws), msg.internaldate, msg.savedate, msg.size)
                )  # fmt: skip
                caches.append((mailbox_id, uid, msg.parsed, msg.header))
                if msg.sort_keys is not None:
                    keys.append((mailbox_id, uid, *msg.sort_keys))
            conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO message_cache VALUES (?, ?, ?, ?)", caches)
            if keys:
                conn.executemany(_SORT_KEYS_INSERT, keys)
            if uids:
                conn.execute(
                    "UPDATE mailboxes SET uidnext = ? WHERE id = ?",
                    (max(box.uidnext, uids[-1] + 1), box.id),
                )
            return box.uidvalidity, uids

    def copy_rows(
        self,
        src_id: int,
        src_guid: str,
        pairs: Sequence[tuple[int, str]],
        dst_id: int,
        dst_guid: str,
        *,
        move: bool,
    ) -> CopyOutcome:
        """Index copies: ``pairs`` are (source uid, new object path already written)."""
        savedate = _now_iso()
        with self._write() as conn:
            if move:
                self._mailbox_by_id(conn, src_id, src_guid)
            dst = self._mailbox_by_id(conn, dst_id, dst_guid)
            new_path = dict(pairs)
            src_rows = self._select_messages(conn, src_id, new_path)
            present = {r.uid for r in src_rows}
            unused = [p for u, p in pairs if u not in present]
            if not src_rows:
                return CopyOutcome(dst.uidvalidity, [], [], unused, [])
            modseq = self._bump_modseq(conn, dst_id)
            uid = dst.uidnext
            src_uids: list[int] = []
            dst_uids: list[int] = []
            rows = []
            caches = []
            for r in src_rows:
                bits, kws = split_flags(r.flags)
                if src_id != dst_id:
                    kws = self._canon_keywords(conn, dst_id, kws)
                rows.append(
                    (dst_id, uid, r.guid, new_path[r.uid], modseq, bits, flags_text(bits, kws),
                     r.internaldate, savedate, r.size)
                )  # fmt: skip
                caches.append((dst_id, uid, src_id, r.uid))
                src_uids.append(r.uid)
                dst_uids.append(uid)
                uid += 1
            conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany(
                "INSERT INTO message_cache (mailbox_id, uid, parsed, header) "
                "SELECT ?, ?, parsed, header FROM message_cache WHERE mailbox_id = ? AND uid = ?",
                caches,
            )
            conn.executemany(_SORT_KEYS_COPY, caches)  # the keys of a copy are the same
            conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (uid, dst_id))
            removed: list[str] = []
            if move:
                removed = self._remove(conn, src_id, src_rows)
            return CopyOutcome(dst.uidvalidity, src_uids, dst_uids, unused, removed)

    def _remove(
        self, conn: sqlite3.Connection, mailbox_id: int, rows: list[MessageRow]
    ) -> list[str]:
        """Delete rows and log them as expunged under one new modseq; returns object paths."""
        if not rows:
            return []
        modseq = self._bump_modseq(conn, mailbox_id)
        keys = [(mailbox_id, r.uid) for r in rows]
        conn.executemany("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", keys)
        conn.executemany("DELETE FROM message_cache WHERE mailbox_id = ? AND uid = ?", keys)
        conn.executemany("DELETE FROM sort_keys WHERE mailbox_id = ? AND uid = ?", keys)
        conn.executemany(
            "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?) "
            "ON CONFLICT DO UPDATE SET modseq = excluded.modseq",
            [(mailbox_id, r.uid, modseq) for r in rows],
        )
        return [r.object_path for r in rows]

    def expunge(
        self, mailbox_id: int, mailbox_guid: str, uids: Iterable[int]
    ) -> tuple[list[int], list[str]]:
        """Expunge the messages among `uids` that have ``\\Deleted``: (uids, object paths)."""
        wanted = list(uids)
        with self._write() as conn:
            self._mailbox_by_id(conn, mailbox_id, mailbox_guid)
            rows = [
                r for r in self._select_messages(conn, mailbox_id, wanted) if "\\Deleted" in r.flags
            ]
            paths = self._remove(conn, mailbox_id, rows)
            return [r.uid for r in rows], paths

    def store_flags(
        self,
        mailbox_id: int,
        mailbox_guid: str,
        uids: Iterable[int],
        mode: StoreMode,
        flags: Iterable[str],
        *,
        unchanged_since: int | None,
    ) -> StoreOutcome:
        bits, kws = split_flags(flags)
        with self._write() as conn:
            self._mailbox_by_id(conn, mailbox_id, mailbox_guid)
            kws = self._canon_keywords(conn, mailbox_id, kws)
            kw_keys = {k.casefold() for k in kws}
            rows = self._select_messages(conn, mailbox_id, uids)
            updates: list[tuple[MessageRow, int, str]] = []
            failed: list[int] = []
            unchanged: list[MessageRow] = []
            for r in rows:
                if unchanged_since is not None and r.modseq > unchanged_since:
                    failed.append(r.uid)
                    continue
                old_bits, old_kws = split_flags(r.flags)
                if mode is StoreMode.ADD:
                    have = {k.casefold() for k in old_kws}
                    new_bits = old_bits | bits
                    new_kws = old_kws + [k for k in kws if k.casefold() not in have]
                elif mode is StoreMode.REMOVE:
                    new_bits = old_bits & ~bits
                    new_kws = [k for k in old_kws if k.casefold() not in kw_keys]
                else:
                    new_bits, new_kws = bits, list(kws)
                if new_bits == old_bits and {k.casefold() for k in new_kws} == {
                    k.casefold() for k in old_kws
                }:
                    unchanged.append(r)
                    continue
                updates.append((r, new_bits, flags_text(new_bits, new_kws)))
            updated: list[MessageRow] = []
            if updates:
                modseq = self._bump_modseq(conn, mailbox_id)
                conn.executemany(
                    "UPDATE messages SET sysflags = ?, flags = ?, modseq = ? "
                    "WHERE mailbox_id = ? AND uid = ?",
                    [(b, t, modseq, mailbox_id, r.uid) for r, b, t in updates],
                )
                updated = [
                    MessageRow(
                        r.uid,
                        r.guid,
                        r.object_path,
                        modseq,
                        self._flags(t),
                        r.internaldate,
                        r.savedate,
                        r.size,
                    )
                    for r, _b, t in updates
                ]
            return StoreOutcome(updated, failed, unchanged, self._keywords(conn, mailbox_id))

    # ------------------------------------------------------------------ views

    def load_view(self, name: str) -> ViewSnapshot:
        with self._read() as conn:
            row = self._get_mailbox(conn, name)
            if row is None or not row.selectable:
                raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
            msgs = [
                self._message(r)
                for r in conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
                    (row.id,),
                )
            ]
            return ViewSnapshot(row, msgs, self._keywords(conn, row.id))

    def load_view_light(self, name: str) -> LightSnapshot:
        """:class:`LightSnapshot` of a mailbox: one aggregated query over the primary key
        (``group_concat`` per column, split here: no Python object per row comes out of
        SQLite), a plain SELECT if the aggregate can't be split back."""
        with self._read() as conn:
            row = self._get_mailbox(conn, name)
            if row is None or not row.selectable:
                raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
            got = conn.execute(
                "SELECT count(*), group_concat(uid, ','), group_concat(modseq, ','), "
                "group_concat(flags, char(31)) FROM "
                "(SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ? ORDER BY uid)",
                (row.id,),
            ).fetchone()
            count = int(got[0])
            uids: list[int] = []
            modseqs: list[int] = []
            texts: list[str] = []
            if count:
                uids = _int_list(str(got[1]))
                modseqs = _int_list(str(got[2]))
                texts = str(got[3]).split(_KEY_SEPARATOR)
            in_order = uids == sorted(uids)  # (unique: the primary key)
            if len(texts) != count or len(uids) != count or not in_order:
                rows = conn.execute(
                    "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ? ORDER BY uid",
                    (row.id,),
                ).fetchall()
                uids = [int(r[0]) for r in rows]
                modseqs = [int(r[1]) for r in rows]
                texts = [str(r[2]) for r in rows]
            keywords = self._keywords(conn, row.id)
            details: dict[int, Details] = {}
            if len(uids) <= EAGER_DETAILS:
                details = _select_details(conn, row.id, [("uid >= ?", [0])])
        distinct = {text: self._flags(text) for text in set(texts)}
        flags = list(map(distinct.__getitem__, texts))
        return LightSnapshot(row, uids, modseqs, flags, keywords, details)

    def message_details(self, mailbox_id: int, uids: Sequence[int] | None) -> dict[int, Details]:
        """:data:`Details` of the given UIDs (ascending; None: every message of the mailbox)
        that still exist. The whole mailbox is read as aggregated columns."""
        with self._read() as conn:
            if uids is None:
                got = conn.execute(
                    "SELECT count(*), group_concat(uid, ','), group_concat(guid, ','), "
                    "group_concat(object_path, char(31)), group_concat(internaldate, ','), "
                    "group_concat(savedate, ','), group_concat(size, ',') FROM "
                    "(SELECT uid, guid, object_path, internaldate, savedate, size "
                    "FROM messages WHERE mailbox_id = ? ORDER BY uid)",
                    (mailbox_id,),
                ).fetchone()
                count = int(got[0])
                if count == 0:
                    return {}
                seps = [",", ",", _KEY_SEPARATOR, ",", ",", ","]
                columns = [str(v).split(sep) for v, sep in zip(got[1:], seps, strict=True)]
                if all(len(c) == count for c in columns):
                    sizes = map(int, columns[5])
                    rows = zip(columns[1], columns[2], columns[3], columns[4], sizes, strict=True)
                    return dict(zip(map(int, columns[0]), rows, strict=True))
                return _select_details(conn, mailbox_id, [("uid >= ?", [0])])
            return _select_details(conn, mailbox_id, _range_chunks(uid_ranges(uids)))

    def header_matches(
        self, mailbox_id: int, uids: Sequence[int], needle: HeaderNeedle
    ) -> tuple[list[int], list[int]]:
        """Which of *uids* (ascending) match a SEARCH header key, decided from the header
        blocks (:func:`columba.storage.header_search.header_match`): (matching, undecided:
        answer these from the cached parse). UIDs no longer indexed are in neither."""
        matched: list[int] = []
        unsure: list[int] = []
        if not uids:
            return matched, unsure
        wanted = set(uids)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT uid, header FROM message_cache WHERE mailbox_id = ? "
                "AND uid BETWEEN ? AND ? ORDER BY uid",
                (mailbox_id, uids[0], uids[-1]),
            ).fetchall()
        if len(rows) != len(wanted):
            rows = [r for r in rows if r[0] in wanted]
        got, undecided = match_many([bytes(r[1]) for r in rows], needle)
        matched = [int(rows[i][0]) for i in got]
        unsure = [int(rows[i][0]) for i in undecided]
        return matched, unsure

    def sync(
        self, mailbox_id: int, mailbox_guid: str, since_modseq: int, since_uidnext: int
    ) -> SyncDelta:
        with self._read() as conn:
            box = self._mailbox_by_id(conn, mailbox_id, mailbox_guid)
            if box.highestmodseq == since_modseq and box.uidnext == since_uidnext:
                return SyncDelta(box, [], [], [], self._keywords(conn, mailbox_id))
            changed = [
                self._message(r)
                for r in conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages "
                    "WHERE mailbox_id = ? AND modseq > ? AND uid < ? ORDER BY uid",
                    (mailbox_id, since_modseq, since_uidnext),
                )
            ]
            added = [
                self._message(r)
                for r in conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages "
                    "WHERE mailbox_id = ? AND uid >= ? ORDER BY uid",
                    (mailbox_id, since_uidnext),
                )
            ]
            expunged = [
                int(r[0])
                for r in conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, since_modseq),
                )
            ]
            return SyncDelta(box, changed, added, expunged, self._keywords(conn, mailbox_id))

    def mailbox_state(self, mailbox_id: int, mailbox_guid: str) -> tuple[int, int] | None:
        """(highestmodseq, uidnext), or None if the mailbox is gone."""
        row = self.conn.execute(
            "SELECT highestmodseq, uidnext, selectable FROM mailboxes WHERE id = ? AND guid = ?",
            (mailbox_id, mailbox_guid),
        ).fetchone()
        if row is None or not row[2]:
            return None
        return int(row[0]), int(row[1])

    def claim_recent(self, mailbox_id: int, upto_uidnext: int) -> int | None:
        """Move first_recent_uid up to `upto_uidnext`; returns the boundary this caller claimed
        from (UIDs in ``[result, upto_uidnext)`` are its \\Recent), or None if nothing is left."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT first_recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None or int(row[0]) >= upto_uidnext:
                return None
            conn.execute(
                "UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?",
                (upto_uidnext, mailbox_id),
            )
            return int(row[0])

    def vanished_since(self, mailbox_id: int, modseq: int) -> list[int]:
        cur = self.conn.execute(
            "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, modseq),
        )
        return [int(r[0]) for r in cur]

    def cached(self, mailbox_id: int, uids: Iterable[int]) -> dict[int, tuple[str, bytes]]:
        """uid → (parsed JSON, header bytes) for the given UIDs that still exist."""
        out: dict[int, tuple[str, bytes]] = {}
        with self._read() as conn:
            for clause, params in _range_chunks(uid_ranges(uids)):
                cur = conn.execute(
                    f"SELECT uid, parsed, header FROM message_cache WHERE mailbox_id = ? AND "
                    f"{clause}",
                    [mailbox_id, *params],
                )
                for uid, parsed, header in cur:
                    out[int(uid)] = (str(parsed), bytes(header))
        return out

    # ------------------------------------------------------------------ sort keys

    def sort_keys(
        self, mailbox_id: int, uids: Sequence[int], fields: Sequence[str]
    ) -> tuple[dict[str, dict[int, object]], list[int]]:
        """The stored SORT/THREAD keys of *fields* (:data:`sort_keys.KEY_FIELDS`) for *uids*
        (ascending): field → uid → value, and the UIDs without a current row (saved before
        the table existed, or expunged), ascending.

        One query over the primary key (a range scan of the mailbox's span when *uids* are
        many ranges) that aggregates each column into one string (``group_concat``), split
        again here: no Python object per row and column comes out of SQLite, which makes
        100 000 messages a matter of milliseconds. (A value holding the separator, which
        the split would notice, sends that query's rows through a plain SELECT.)"""
        cols = [c for f in fields for c in SORT_KEY_COLUMNS[f]]
        if uids and uids[-1] - uids[0] + 1 == len(uids) and len(set(uids)) == len(uids):
            ranges = [(uids[0], uids[-1])]  # every UID of a span (SORT ... ALL, mostly)
        else:
            ranges = uid_ranges(uids)
        found: list[int] = []
        columns: list[list[Any]] = [[] for _ in cols]
        with self._read() as conn:
            if len(ranges) > _RANGES_PER_QUERY:
                queries = [("uid BETWEEN ? AND ?", [ranges[0][0], ranges[-1][1]])]
            else:
                queries = list(_range_chunks(ranges))
            for clause, params in queries:
                got_uids, got = _key_columns(conn, mailbox_id, clause, params, cols)
                found.extend(got_uids)
                for into, values in zip(columns, got, strict=True):
                    into.extend(values)
        if len(ranges) > _RANGES_PER_QUERY:  # the span held other messages too
            wanted = set(uids)
            keep = [i for i, u in enumerate(found) if u in wanted]
            if len(keep) != len(found):
                found = [found[i] for i in keep]
                columns = [[values[i] for i in keep] for values in columns]
        missing: list[int] = []
        if len(found) != len(uids):
            have = set(found)
            missing = [u for u in uids if u not in have]
        return decode_columns(found, columns, fields), missing

    def fill_sort_keys(
        self, mailbox_id: int, uids: Sequence[int], fields: Sequence[str]
    ) -> dict[str, dict[int, object]]:
        """Compute and store the ``sort_keys`` rows of *uids* from their cached header blocks
        (messages indexed before the table existed); returns their *fields* like
        :meth:`sort_keys`. Expunged UIDs are left out. The write doesn't count as a change
        (``change_counter``): the rows are derived data."""
        computed: list[tuple[Any, ...]] = []
        with self._read() as conn:
            for clause, params in _range_chunks(uid_ranges(uids)):
                cur = conn.execute(
                    "SELECT m.uid, m.internaldate, m.size, c.header FROM messages AS m "
                    "JOIN message_cache AS c ON c.mailbox_id = m.mailbox_id AND c.uid = m.uid "
                    f"WHERE m.mailbox_id = ? AND ({clause.replace('uid', 'm.uid')})",
                    [mailbox_id, *params],
                )
                for uid, internaldate, size, header in cur:
                    arrival = int(datetime.fromisoformat(str(internaldate)).timestamp())
                    computed.append(
                        (mailbox_id, int(uid), *stored_keys(bytes(header), arrival, int(size)))
                    )
        if not computed:
            return {f: {} for f in fields}
        low, high = computed[0][1], computed[-1][1]
        with self._write(count=False) as conn:
            conn.executemany(_SORT_KEYS_INSERT, computed)
            # a message expunged between the read and this write keeps no row
            conn.execute(
                "DELETE FROM sort_keys WHERE mailbox_id = ? AND uid BETWEEN ? AND ? AND uid NOT IN "
                "(SELECT uid FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?)",
                (mailbox_id, low, high, mailbox_id, low, high),
            )
        picks = [_STORED_POS[c] for f in fields for c in SORT_KEY_COLUMNS[f]]
        return decode_columns(
            [row[1] for row in computed], [[row[i] for row in computed] for i in picks], fields
        )

    # ------------------------------------------------------------------ METADATA (RFC 5464)

    def _metadata_owner(self, conn: sqlite3.Connection, mailbox: str) -> int:
        if mailbox == "":
            return SERVER_METADATA
        row = self._get_mailbox(conn, mailbox)
        if row is None or not row.selectable:
            raise MailboxNotFound(f"Mailbox doesn't exist: {mailbox}")
        return row.id

    def get_metadata(
        self, mailbox: str, entries: Sequence[str], descendants: bool
    ) -> dict[str, bytes]:
        """Values of ``entries`` of ``mailbox`` ("" = server) that exist, with every entry
        below them when ``descendants``; each subtree in entry order."""
        out: dict[str, bytes] = {}
        with self._read() as conn:
            owner = self._metadata_owner(conn, mailbox)
            for entry in entries:
                row = conn.execute(
                    "SELECT value FROM metadata WHERE mailbox_id = ? AND entry = ?",
                    (owner, entry),
                ).fetchone()
                if row is not None:
                    out[entry] = bytes(row[0])
                if descendants:
                    prefix = entry + "/"
                    for name, value in conn.execute(
                        "SELECT entry, value FROM metadata WHERE mailbox_id = ? AND entry > ? "
                        "AND substr(entry, 1, ?) = ? ORDER BY entry",
                        (owner, prefix, len(prefix), prefix),
                    ):
                        out[str(name)] = bytes(value)
        return out

    def set_metadata(
        self, mailbox: str, changes: Sequence[tuple[str, bytes | None]], max_entries: int
    ) -> None:
        """Apply ``(entry, value or None)`` in one transaction; MetadataTooMany (rolled back)
        if the mailbox ends with more than ``max_entries`` (> 0) entries and more than before."""
        with self._write() as conn:
            owner = self._metadata_owner(conn, mailbox)
            count = "SELECT count(*) FROM metadata WHERE mailbox_id = ?"
            before = int(conn.execute(count, (owner,)).fetchone()[0])
            for entry, value in changes:
                if value is None:
                    conn.execute(
                        "DELETE FROM metadata WHERE mailbox_id = ? AND entry = ?", (owner, entry)
                    )
                else:
                    conn.execute(
                        "INSERT INTO metadata (mailbox_id, entry, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (mailbox_id, entry) DO UPDATE SET value = excluded.value",
                        (owner, entry, bytes(value)),
                    )
            if max_entries > 0:
                after = int(conn.execute(count, (owner,)).fetchone()[0])
                if after > max_entries and after > before:
                    raise MetadataTooMany("Too many metadata entries.")

    # ------------------------------------------------------------------ URLAUTH (RFC 4467)

    def urlauth_key(self, mailbox: str, create: bool) -> bytes | None:
        """The mailbox's URLAUTH access key; a new random one when absent and ``create``.
        MailboxNotFound if the mailbox is absent or ``\\Noselect``."""
        with self._write() if create else self._read() as conn:
            owner = self._metadata_owner(conn, mailbox)
            row = conn.execute(
                "SELECT key FROM urlauth_keys WHERE mailbox_id = ?", (owner,)
            ).fetchone()
            if row is not None:
                return bytes(row[0])
            if not create:
                return None
            key = os.urandom(32)
            conn.execute("INSERT INTO urlauth_keys (mailbox_id, key) VALUES (?, ?)", (owner, key))
            return key

    def reset_urlauth_keys(self, mailbox: str | None) -> None:
        """RESETKEY: a new key for ``mailbox``, or every key removed (None)."""
        with self._write() as conn:
            if mailbox is None:
                conn.execute("DELETE FROM urlauth_keys")
                return
            owner = self._metadata_owner(conn, mailbox)
            conn.execute(
                "INSERT INTO urlauth_keys (mailbox_id, key) VALUES (?, ?) "
                "ON CONFLICT (mailbox_id) DO UPDATE SET key = excluded.key",
                (owner, os.urandom(32)),
            )

    # ------------------------------------------------------------------ recovery (rebuild.py)

    def mailbox_info_changes(self) -> tuple[list[tuple[str, str]], list[str]]:
        """Mailbox-info objects to (re)write as (guid, JSON) and the guids whose to delete."""
        with self._read() as conn:
            written = {
                str(g): str(i) for g, i in conn.execute("SELECT guid, info FROM mailbox_info")
            }
            subs = {str(r[0]) for r in conn.execute("SELECT name FROM subscriptions")}
            current: dict[str, str] = {}
            for r in conn.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE selectable = 1"):
                box = self._mailbox(r)
                current[box.guid] = json.dumps(
                    {
                        "name": box.name,
                        "guid": box.guid,
                        "uidvalidity": box.uidvalidity,
                        "special_use": sorted(box.special_use),
                        "subscribed": box.name in subs,
                    },
                    sort_keys=True,
                )
        writes = [(g, i) for g, i in current.items() if written.get(g) != i]
        deletes = [g for g in written if g not in current]
        return writes, deletes

    def mailbox_info_done(self, guid: str, info: str | None) -> None:
        with self._write() as conn:
            if info is None:
                conn.execute("DELETE FROM mailbox_info WHERE guid = ?", (guid,))
            else:
                conn.execute(
                    "INSERT INTO mailbox_info (guid, info) VALUES (?, ?) "
                    "ON CONFLICT (guid) DO UPDATE SET info = excluded.info",
                    (guid, info),
                )

    def mailboxes_with_paths(self) -> list[tuple[MailboxRow, set[str], set[int]]]:
        """Every selectable mailbox with its messages' object paths and its expunged UIDs."""
        with self._read() as conn:
            rows = [
                self._mailbox(r)
                for r in conn.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE selectable = 1")
            ]
            out = []
            for box in rows:
                paths = {
                    str(r[0])
                    for r in conn.execute(
                        "SELECT object_path FROM messages WHERE mailbox_id = ?", (box.id,)
                    )
                }
                gone = {
                    int(r[0])
                    for r in conn.execute(
                        "SELECT uid FROM expunged WHERE mailbox_id = ?", (box.id,)
                    )
                }
                out.append((box, paths, gone))
        return out

    def import_mailbox(
        self,
        name: str,
        guid: str,
        uidvalidity: int,
        special_use: frozenset[str],
        subscribed: bool,
    ) -> MailboxRow:
        """Recreate a mailbox with its original GUID and UIDVALIDITY (recovery).

        An existing empty mailbox of that name takes them over; a non-empty one keeps its name
        and the recovered mailbox is named ``NAME-<guid prefix>``."""
        special_use = special_use & SPECIAL_USE_FLAGS
        with self._write() as conn:
            existing = self._get_mailbox(conn, name)
            if existing is not None:
                count = conn.execute(
                    "SELECT count(*) FROM messages WHERE mailbox_id = ?", (existing.id,)
                ).fetchone()[0]
                if int(count) == 0:
                    conn.execute(
                        "UPDATE mailboxes SET guid = ?, uidvalidity = ?, selectable = 1, "
                        "special_use = ? WHERE id = ?",
                        (guid, uidvalidity, " ".join(sorted(special_use)), existing.id),
                    )
                else:
                    name = f"{name}-{guid[:8]}"
                    existing = None
            if existing is None:
                conn.execute(
                    "INSERT INTO mailboxes (name, guid, uidvalidity, special_use, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, guid, uidvalidity, " ".join(sorted(special_use)), time.time()),
                )
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (uidvalidity,),
            )
            if subscribed:
                conn.execute(
                    "INSERT INTO subscriptions (name) VALUES (?) ON CONFLICT DO NOTHING", (name,)
                )
            row = self._get_mailbox(conn, name)
            assert row is not None
            return row

    def import_messages(
        self, mailbox_id: int, mailbox_guid: str, msgs: Sequence[tuple[int, NewMessage]]
    ) -> None:
        """Index recovered messages under the given UIDs (at or above UIDNEXT)."""
        if not msgs:
            return
        with self._write() as conn:
            box = self._mailbox_by_id(conn, mailbox_id, mailbox_guid)
            modseq = self._bump_modseq(conn, mailbox_id)
            top = box.uidnext - 1
            for uid, msg in msgs:
                bits, kws = split_flags(msg.flags)
                kws = self._canon_keywords(conn, mailbox_id, kws)
                conn.execute(
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (mailbox_id, uid, msg.guid, msg.object_path, modseq, bits,
                     flags_text(bits, kws), msg.internaldate, msg.savedate, msg.size),
                )  # fmt: skip
                conn.execute(
                    "INSERT OR REPLACE INTO message_cache VALUES (?, ?, ?, ?)",
                    (mailbox_id, uid, msg.parsed, msg.header),
                )
                if msg.sort_keys is not None:
                    conn.execute(_SORT_KEYS_INSERT, (mailbox_id, uid, *msg.sort_keys))
                else:  # a row left by an earlier message of this UID is stale
                    conn.execute(
                        "DELETE FROM sort_keys WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid)
                    )
                top = max(top, uid)
            conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (top + 1, mailbox_id))

    def drop_paths(self, mailbox_id: int, mailbox_guid: str, paths: Iterable[str]) -> list[int]:
        """Expunge the messages whose objects are gone from storage (recovery)."""
        wanted = set(paths)
        with self._write() as conn:
            self._mailbox_by_id(conn, mailbox_id, mailbox_guid)
            rows = [
                self._message(r)
                for r in conn.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id = ?", (mailbox_id,)
                )
            ]
            gone = [r for r in rows if r.object_path in wanted]
            self._remove(conn, mailbox_id, gone)
            return [r.uid for r in gone]

    def all_object_paths(self) -> list[str]:
        return [str(r[0]) for r in self.conn.execute("SELECT object_path FROM messages")]

    def change_counter(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'change_counter'").fetchone()
        return 0 if row is None else int(row[0])


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def read_details(path: Path, mailbox_id: int, uids: Sequence[int]) -> dict[int, Details]:
    """:meth:`MailIndex.message_details` of some UIDs over a short-lived read-only connection
    of its own (for a caller that can't wait for the index's own connection)."""
    uri = f"{Path(path).absolute().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
    try:
        return _select_details(conn, mailbox_id, _range_chunks(uid_ranges(uids)))
    finally:
        conn.close()


def index_path(directory: Path) -> Path:
    return directory / INDEX_FILENAME


def is_corruption(err: sqlite3.Error) -> bool:
    """A damaged database file (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``): no retry helps."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(err).lower()
    return "malformed" in text or "not a database" in text


def is_temporary(err: sqlite3.Error) -> bool:
    """Busy, locked, I/O, full disk: worth retrying."""
    if _is_busy(err):
        return True
    text = str(err).lower()
    return isinstance(err, sqlite3.OperationalError) and (
        "disk" in text or "i/o" in text or "full" in text or "unable to open" in text
    )
