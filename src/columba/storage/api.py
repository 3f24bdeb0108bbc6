"""The storage API: everything protocol code (IMAP, POP3, LMTP, admin) may ask of mail storage.

Protocol code never touches fs, dict or index files directly; it calls these classes. One
:class:`MailStorage` per process is built from the configuration; it opens a
:class:`MailUser` per authenticated user, and a user opens :class:`MailboxView`\\ s (a selected
mailbox as one session sees it).

Semantics every implementation keeps (tests/contract/test_storage_contract.py checks them):

* Mailbox names are Python ``str`` (already decoded from modified UTF-7), hierarchy separator
  ``/``. ``INBOX`` in any case is INBOX and is reported as ``"INBOX"``. Names never reach a
  file path: a name like ``../x`` or ``/etc`` is just a name (or an :class:`InvalidMailboxName`).
* UIDs are assigned in a transaction, strictly increasing per mailbox, never reused for a
  UIDVALIDITY. Every change (save, flag change, expunge) gets a new MODSEQ (CONDSTORE); the
  mailbox's HIGHESTMODSEQ is the largest; expunges are remembered with their modseq (QRESYNC).
* Saving (append, deliver, copy) returns only when the message object and its index entry are
  durable. A failure raises :class:`StorageTemporaryError` (retryable), :class:`OverQuota`
  or another :class:`StorageError`; nothing half-written becomes visible.
* Several processes may open the same user at once. A change made by one (delivery, flags,
  expunge) becomes visible to the others' :meth:`MailboxView.sync` and wakes their
  :meth:`MailboxView.wait_for_changes` within a second.
* A :class:`MailboxView` is a snapshot: its UID list changes only in :meth:`MailboxView.sync`,
  so the IMAP layer decides when EXISTS/EXPUNGE/FETCH are announced (never during FETCH,
  STORE or SEARCH; DESIGN.md §9).
* ``\\Recent`` (IMAP4rev1): the first session that syncs a mailbox read-write after new
  messages arrive owns them as recent; other sessions see them as not recent.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from columba.storage.mime import ParsedMessage

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
"""Flags stored per message; keywords are any other atom (stored as sent, matched
case-insensitively)."""

SPECIAL_USE_FLAGS = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important"}
)


# ---------------------------------------------------------------------- errors


class StorageError(Exception):
    """A storage request failed. ``imap_code`` is the IMAP response code to answer with."""

    imap_code: str | None = None


class StorageTemporaryError(StorageError):
    """Retryable: IMAP ``NO [UNAVAILABLE]``, LMTP ``451 4.3.0``."""

    imap_code = "UNAVAILABLE"


class StorageCorrupted(StorageError):  # noqa: N818 - reads as the condition
    """Stored data can't be used: a message object whose bytes can't be read back (broken
    encryption or compression, truncated), a cached parse that can't be decoded, a damaged
    index. IMAP ``NO [CORRUPTION]`` (RFC 9051 §7.1)."""

    imap_code = "CORRUPTION"


class OverQuota(StorageError):  # noqa: N818 - the name IMAP uses
    """IMAP ``NO [OVERQUOTA]``, LMTP ``552 5.2.2``."""

    imap_code = "OVERQUOTA"


class MailboxNotFound(StorageError):  # noqa: N818 - reads as the condition
    """IMAP ``NO [NONEXISTENT]``."""

    imap_code = "NONEXISTENT"


class MailboxExists(StorageError):  # noqa: N818 - reads as the condition
    """IMAP ``NO [ALREADYEXISTS]``."""

    imap_code = "ALREADYEXISTS"


class InvalidMailboxName(StorageError):  # noqa: N818 - reads as the condition
    """IMAP ``NO [CANNOT]`` (bad name, or an operation not allowed on it such as DELETE INBOX)."""

    imap_code = "CANNOT"


class MailboxHasChildren(StorageError):  # noqa: N818 - reads as the condition
    """DELETE of a mailbox that has children and is already \\Noselect: ``NO [INUSE]``-like."""

    imap_code = "INUSE"


class MessageTooBig(StorageError):  # noqa: N818 - reads as the condition
    """Over APPENDLIMIT / ``mail_save_max_size``: IMAP ``NO [TOOBIG]``, LMTP ``552 5.3.4``."""

    imap_code = "TOOBIG"


class MessageExpunged(StorageError):  # noqa: N818 - reads as the condition
    """The message is gone (expunged by another session) before its body could be read."""

    imap_code = "EXPUNGEISSUED"


class MetadataTooMany(StorageError):  # noqa: N818 - the name RFC 5464 uses
    """SETMETADATA would add entries past the per-mailbox limit: ``NO [METADATA TOOMANY]``."""

    imap_code = "METADATA TOOMANY"


# ---------------------------------------------------------------------- values


@dataclass(frozen=True)
class UserInfo:
    """Who is opened: what the userdb said (home is where the per-user index lives)."""

    username: str
    home: str
    fields: Mapping[str, str] = field(default_factory=dict)
    """Every userdb field (uid, gid, quota_storage_size overrides, ...)."""


@dataclass(frozen=True)
class MailboxInfo:
    """One LIST entry."""

    name: str
    guid: str
    special_use: frozenset[str] = frozenset()
    subscribed: bool = False
    selectable: bool = True
    """False for a ``\\Noselect`` parent (e.g. left behind by DELETE of a parent with children)."""
    exists: bool = True
    """False for an entry that is only subscribed (LIST-EXTENDED ``\\NonExistent``)."""
    has_children: bool = False


@dataclass(frozen=True)
class MailboxStatus:
    """STATUS items of one mailbox."""

    messages: int
    recent: int
    uidnext: int
    uidvalidity: int
    unseen: int
    size: int
    deleted: int
    highestmodseq: int
    mailboxid: str
    deleted_storage: int = 0


@dataclass(frozen=True)
class MessageRecord:
    """What the index knows of one message without reading its object."""

    uid: int
    guid: str
    """Also the OBJECTID EMAILID."""
    modseq: int
    flags: frozenset[str]
    """System flags (``\\Seen`` ...) and keywords together, as stored."""
    internaldate: datetime
    """Timezone-aware."""
    savedate: datetime
    size: int
    """RFC822.SIZE: octets of the message with CRLF line ends."""
    threadid: str | None = None


@dataclass(frozen=True)
class AppendRequest:
    """One message to save (APPEND, MULTIAPPEND, LMTP delivery)."""

    data: bytes
    flags: frozenset[str] = frozenset()
    internaldate: datetime | None = None


@dataclass(frozen=True)
class AppendResult:
    uidvalidity: int
    uid: int
    guid: str


@dataclass(frozen=True)
class CopyResult:
    """COPYUID/MOVE answer: source UIDs and destination UIDs in the same order."""

    uidvalidity: int
    source_uids: tuple[int, ...]
    dest_uids: tuple[int, ...]


class StoreMode(Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True)
class StoreResult:
    """``updated``: records whose flags changed (new modseq); ``failed``: UIDs modified since
    UNCHANGEDSINCE (CONDSTORE ``[MODIFIED ...]``)."""

    updated: tuple[MessageRecord, ...]
    failed: tuple[int, ...] = ()
    unchanged: tuple[MessageRecord, ...] = ()
    """Records that matched but whose flags were already as asked (still reported by FETCH
    responses of a non-SILENT STORE)."""


@dataclass(frozen=True)
class SyncChanges:
    """What :meth:`MailboxView.sync` brought into the view, in UID order."""

    expunged: tuple[int, ...] = ()
    """UIDs removed from the view; the IMAP layer turns them into EXPUNGE seqs or VANISHED."""
    added: tuple[int, ...] = ()
    """UIDs appended to the view (EXISTS grows by this many)."""
    flags_changed: tuple[MessageRecord, ...] = ()
    """Records of messages still in the view whose flags changed elsewhere."""


@dataclass(frozen=True)
class DeliveryResult:
    mailbox: str
    uid: int
    guid: str


# ---------------------------------------------------------------------- interfaces


class MailboxView(ABC):
    """A mailbox selected (or examined) by one session."""

    name: str
    readonly: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    guid: str

    @abstractmethod
    def uids(self) -> Sequence[int]:
        """The view's UIDs in ascending order (sequence number n is ``uids()[n-1]``)."""

    @abstractmethod
    def records(self, uids: Iterable[int]) -> list[MessageRecord]:
        """Records of the given UIDs that are in the view, in ascending UID order."""

    def flag_rows(self, uids: Iterable[int]) -> list[tuple[int, frozenset[str], int]]:
        """``(uid, flags, modseq)`` of the given UIDs that are in the view, ascending: what
        FETCH FLAGS, SELECT and CONDSTORE need, without building whole records."""
        return [(r.uid, r.flags, r.modseq) for r in self.records(uids)]

    async def preload(self, uids: Iterable[int]) -> None:
        """Make :meth:`records` of these UIDs cheap: a driver that reads the rest of a
        message's row lazily reads them now without blocking the event loop (call it before
        asking :meth:`records` for many messages). This default has nothing to read."""
        return

    async def header_matches(
        self, uids: Iterable[int], field: str, value: str
    ) -> tuple[list[int], list[int]]:
        """SEARCH ``HEADER field value`` over many messages at once: (UIDs that match, UIDs
        the driver couldn't decide, to be answered from :meth:`parsed`), both ascending.
        This default decides nothing."""
        return [], sorted(set(uids))

    @abstractmethod
    def recent_uids(self) -> frozenset[int]:
        """UIDs this session owns as ``\\Recent``."""

    @abstractmethod
    def keywords(self) -> list[str]:
        """Every keyword defined in the mailbox (for FLAGS/PERMANENTFLAGS)."""

    @abstractmethod
    async def sync(self) -> SyncChanges:
        """Bring the view up to date with changes made by anyone (this session included)."""

    @abstractmethod
    async def wait_for_changes(self, timeout: float) -> bool:
        """Return True as soon as the mailbox changed after the last sync, False on timeout."""

    @abstractmethod
    async def read_message(self, uid: int) -> bytes:
        """The whole message (CRLF line ends); MessageExpunged if its object is gone."""

    @abstractmethod
    async def parsed(self, uid: int) -> ParsedMessage:
        """The message's cached parse (envelope, bodystructure, part offsets, headers)."""

    @abstractmethod
    async def header_bytes(self, uid: int) -> bytes:
        """The message's header block (cached in the index; no object read)."""

    async def parsed_many(self, uids: Iterable[int]) -> dict[int, ParsedMessage]:
        """:meth:`parsed` for many UIDs in one index query (FETCH over a set); UIDs no longer
        in the index are left out."""
        out: dict[int, ParsedMessage] = {}
        for uid in uids:
            try:
                out[uid] = await self.parsed(uid)
            except MessageExpunged:
                pass
        return out

    async def header_bytes_many(self, uids: Iterable[int]) -> dict[int, bytes]:
        """:meth:`header_bytes` for many UIDs in one index query; expunged UIDs are left out."""
        out: dict[int, bytes] = {}
        for uid in uids:
            try:
                out[uid] = await self.header_bytes(uid)
            except MessageExpunged:
                pass
        return out

    async def sort_keys_many(
        self, uids: Iterable[int], fields: Sequence[str]
    ) -> dict[str, dict[int, object]]:
        """SORT/THREAD keys of many UIDs: *fields* are names from
        :data:`columba.storage.sort_keys.KEY_FIELDS` (the header keys, ``arrival``, ``size``);
        the answer maps field → uid → value (the forms
        :func:`columba.storage.sort_keys.compute_fields` gives; ``arrival`` in UTC seconds).
        UIDs no longer in the mailbox are left out. Drivers keep the keys computed at save
        and answer with one query; this default computes them from the header blocks."""
        from columba.storage.sort_keys import compute_fields

        names = tuple(fields)
        out: dict[str, dict[int, object]] = {f: {} for f in names}
        wanted = list(uids)
        headers = [f for f in names if f not in ("arrival", "size")]
        if headers:
            blocks = await self.header_bytes_many(wanted)
            for uid, block in blocks.items():
                for name, value in zip(headers, compute_fields(block, headers), strict=True):
                    out[name][uid] = value
        if "arrival" in out or "size" in out:
            for record in self.records(wanted):
                if "arrival" in out:
                    out["arrival"][record.uid] = int(record.internaldate.timestamp())
                if "size" in out:
                    out["size"][record.uid] = record.size
        return out

    @abstractmethod
    async def vanished_since(self, modseq: int) -> list[int]:
        """UIDs expunged with a MODSEQ above `modseq` that are no longer in this view, ascending
        (QRESYNC ``VANISHED (EARLIER)``)."""

    @abstractmethod
    async def store_flags(
        self,
        uids: Iterable[int],
        mode: StoreMode,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        """Change flags; raises StorageError when the view is read-only."""

    @abstractmethod
    async def expunge(self, uids: Iterable[int] | None = None) -> tuple[int, ...]:
        """Expunge messages with ``\\Deleted`` (only among ``uids`` when given). Returns the
        expunged UIDs; they leave this view only at the next :meth:`sync`."""

    @abstractmethod
    async def copy(self, uids: Iterable[int], dest: str) -> CopyResult:
        """Copy to mailbox ``dest`` (flags kept, \\Recent set there); MailboxNotFound if absent."""

    @abstractmethod
    async def move(self, uids: Iterable[int], dest: str) -> CopyResult:
        """Copy then expunge the originals atomically as seen by other sessions."""

    @abstractmethod
    async def close(self) -> None:
        """Release the view (UNSELECT/CLOSE/logout)."""


class ChangeWatch(Protocol):
    """A handle on a user's change counter that outlives the :class:`MailUser` it came from
    (:meth:`MailUser.change_watch`); closed by its taker."""

    @property
    def generation(self) -> int:
        """Moves when anything of the user's may have changed (as
        :meth:`MailUser.change_generation`)."""

    async def wait(self, generation: int, timeout: float) -> bool:
        """True once :attr:`generation` moved past ``generation``; False after ``timeout``."""

    def close(self) -> None:
        """Stop watching."""


class MailUser(ABC):
    """One authenticated user's mail."""

    info: UserInfo
    separator: str = "/"

    @abstractmethod
    async def list_mailboxes(self) -> list[MailboxInfo]:
        """Every mailbox, plus ``\\Noselect`` placeholders and subscribed-only entries, sorted
        by name with INBOX first. Pattern matching (``*``, ``%``) is the IMAP layer's."""

    @abstractmethod
    async def create_mailbox(self, name: str, special_use: frozenset[str] = frozenset()) -> None:
        """Create (parents are implied, not created). MailboxExists, InvalidMailboxName."""

    @abstractmethod
    async def delete_mailbox(self, name: str) -> None:
        """Delete a mailbox and its messages. INBOX can't be deleted (InvalidMailboxName);
        a mailbox with children becomes ``\\Noselect`` (RFC 3501) and loses its messages;
        a ``\\Noselect`` one with children raises MailboxHasChildren."""

    @abstractmethod
    async def rename_mailbox(self, old: str, new: str) -> None:
        """Rename with its children; renaming INBOX moves its messages to ``new`` and leaves
        INBOX empty."""

    @abstractmethod
    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        """SUBSCRIBE/UNSUBSCRIBE (a name need not exist to be subscribed)."""

    @abstractmethod
    async def status(self, name: str) -> MailboxStatus:
        """STATUS; MailboxNotFound if absent or not selectable."""

    @abstractmethod
    async def open_mailbox(self, name: str, *, readonly: bool) -> MailboxView:
        """SELECT/EXAMINE; MailboxNotFound if absent or not selectable."""

    @abstractmethod
    async def append(self, name: str, messages: Sequence[AppendRequest]) -> list[AppendResult]:
        """Save one or more messages atomically (MULTIAPPEND): all or none. Durable on return.
        MailboxNotFound ("[TRYCREATE]" in IMAP) if the mailbox does not exist."""

    async def get_metadata(
        self, mailbox: str, entries: Sequence[str], *, descendants: bool = False
    ) -> dict[str, bytes]:
        """Stored METADATA values (RFC 5464) of ``mailbox``, ``""`` meaning the server entries:
        those of ``entries`` that have a value and, with ``descendants``, every entry below
        them. Entry names are lower-case paths (``/private/comment``, ``/shared/vendor/x``)
        the caller validated. MailboxNotFound if the mailbox is absent or ``\\Noselect``.
        A mailbox's entries follow it through RENAME and go with DELETE."""
        raise StorageError("METADATA isn't supported by this storage")

    async def set_metadata(
        self,
        mailbox: str,
        changes: Sequence[tuple[str, bytes | None]],
        *,
        max_entries: int = 0,
    ) -> None:
        """Set (bytes, possibly empty) or remove (None) entries of ``mailbox`` (``""``: the
        server) in one transaction; the last change of an entry wins. MetadataTooMany (and
        nothing changed) when the mailbox would hold more than ``max_entries`` entries
        (0: no limit) and more than before."""
        raise StorageError("METADATA isn't supported by this storage")

    async def urlauth_key(self, mailbox: str, *, create: bool = False) -> bytes | None:
        """The URLAUTH (RFC 4467) mailbox access key of ``mailbox``: None when it has none,
        unless ``create`` (a new random key is then stored and returned). Keys follow RENAME
        and go with DELETE. MailboxNotFound if the mailbox is absent or ``\\Noselect``."""
        raise StorageError("URLAUTH isn't supported by this storage")

    async def reset_urlauth_keys(self, mailbox: str | None = None) -> None:
        """RESETKEY: give ``mailbox`` a new access key, or (None) remove every key of the
        user, so URLs authorised with the old keys stop working."""
        raise StorageError("URLAUTH isn't supported by this storage")

    def change_generation(self) -> int:
        """A counter that moves when anything of this user's may have changed, in this
        process or another (mailboxes, subscriptions, messages, flags). Take it *before*
        looking at the state, then :meth:`wait_for_change` with it (IMAP NOTIFY)."""
        return 0

    async def wait_for_change(self, generation: int, timeout: float) -> bool:
        """Return True once :meth:`change_generation` moved past ``generation`` (a hint:
        re-check the state), False after ``timeout`` seconds without a change. This default
        polls: it wakes every second and says something may have changed."""
        await asyncio.sleep(max(0.0, min(timeout, 1.0)))
        return timeout > 0

    def change_watch(self) -> ChangeWatch | None:
        """A watch on this user's changes that stays valid after :meth:`close`, or None when
        the storage has none. IMAP hibernation closes an idle session's user and view and
        waits on it, so the process can let the user's index go until something changes."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Flush and release the user."""


class MailStorage(ABC):
    """Process-wide mail storage, built from the configuration."""

    @abstractmethod
    async def open_user(self, user: UserInfo) -> MailUser:
        """Open a user (creating ``auto = create|subscribe`` mailboxes on first use)."""

    @abstractmethod
    async def deliver(
        self,
        user: UserInfo,
        data: bytes,
        mailbox: str = "INBOX",
        flags: frozenset[str] = frozenset(),
    ) -> DeliveryResult:
        """Save a delivered message, durable on return. A missing ``mailbox`` other than INBOX
        falls back to INBOX unless ``lda_mailbox_autocreate`` is set."""

    @abstractmethod
    async def close(self) -> None:
        """Release everything."""
