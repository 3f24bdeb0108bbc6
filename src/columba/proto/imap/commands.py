"""Typed IMAP commands: one frozen dataclass per command, all deriving from :class:`Command`.

``name`` is the upper-case command name (``SELECT`` and ``EXAMINE`` share
:class:`SelectCommand`); commands that take a ``UID`` prefix have ``uid=True`` then, and
:attr:`Command.display_name` gives ``UID FETCH`` for logs and events.

Mailbox names are Unicode (mUTF-7 decoded, or UTF-8 once UTF8=ACCEPT is enabled) with
``INBOX`` in any case normalised to ``INBOX``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from columba.proto.imap.events import ParserEvent
from columba.proto.imap.fetch import FetchAttribute
from columba.proto.imap.search import SearchKey
from columba.proto.imap.sequence import SequenceSet

__all__ = [
    "AppendCommand",
    "AppendMessage",
    "AuthenticateCommand",
    "CapabilityCommand",
    "CatenatePart",
    "CheckCommand",
    "CloseCommand",
    "Command",
    "CompressCommand",
    "CopyCommand",
    "CreateCommand",
    "DeleteCommand",
    "EnableCommand",
    "EsearchCommand",
    "ExpungeCommand",
    "FetchCommand",
    "GenUrlAuthCommand",
    "GetMetadataCommand",
    "GetQuotaCommand",
    "GetQuotaRootCommand",
    "IdCommand",
    "IdleCommand",
    "ListCommand",
    "LoginCommand",
    "LogoutCommand",
    "LsubCommand",
    "MoveCommand",
    "NamespaceCommand",
    "NoopCommand",
    "NotifyCommand",
    "NotifyEvent",
    "NotifyEventGroup",
    "QResyncParams",
    "RenameCommand",
    "ResetKeyCommand",
    "SearchCommand",
    "SelectCommand",
    "SetMetadataCommand",
    "SetQuotaCommand",
    "SortCommand",
    "SortCriterion",
    "StartTlsCommand",
    "StatusCommand",
    "StoreCommand",
    "SubscribeCommand",
    "ThreadCommand",
    "UnselectCommand",
    "UnsubscribeCommand",
    "UrlFetchCommand",
]


@dataclass(frozen=True, kw_only=True)
class Command(ParserEvent):
    tag: str
    name: str
    uid: bool = False

    @property
    def display_name(self) -> str:
        return f"UID {self.name}" if self.uid else self.name


# -- any state ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CapabilityCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class NoopCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class LogoutCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class IdCommand(Command):
    """RFC 2971. ``params`` is None for ``ID NIL``; keys keep their case."""

    params: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True, kw_only=True)
class EnableCommand(Command):
    """RFC 5161. Capability names upper-cased."""

    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CompressCommand(Command):
    """RFC 4978. ``algorithm`` upper-cased (``DEFLATE``)."""

    algorithm: str = ""


# -- not authenticated -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StartTlsCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class AuthenticateCommand(Command):
    """``mechanism`` upper-cased. ``initial_response`` (SASL-IR, RFC 4959) is the decoded
    bytes, ``b""`` for ``=``, None when absent."""

    mechanism: str = ""
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class LoginCommand(Command):
    """Non-UTF-8 octets in the credentials survive as surrogate escapes
    (``.encode("utf-8", "surrogateescape")`` gives the bytes back)."""

    username: str = ""
    password: str = field(default="", repr=False)


# -- authenticated -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QResyncParams:
    """RFC 7162 ``QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])``."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_set: SequenceSet | None = None
    known_uid_set: SequenceSet | None = None


@dataclass(frozen=True, kw_only=True)
class SelectCommand(Command):
    """SELECT, or EXAMINE (``readonly=True``), with RFC 7162 CONDSTORE / QRESYNC."""

    mailbox: str = ""
    readonly: bool = False
    condstore: bool = False
    qresync: QResyncParams | None = None


@dataclass(frozen=True, kw_only=True)
class CreateCommand(Command):
    """``special_use``: RFC 6154 ``(USE (\\Drafts ...))``."""

    mailbox: str = ""
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DeleteCommand(Command):
    mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class RenameCommand(Command):
    mailbox: str = ""
    new_mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class SubscribeCommand(Command):
    mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class UnsubscribeCommand(Command):
    mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class ListCommand(Command):
    """LIST with RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS and RFC 6154 SPECIAL-USE.

    ``selection``: upper-cased selection options (SUBSCRIBED, REMOTE, RECURSIVEMATCH,
    SPECIAL-USE). ``return_options``: upper-cased return options other than STATUS
    (SUBSCRIBED, CHILDREN, SPECIAL-USE, MYRIGHTS); ``return_status``: the STATUS items
    asked for, or None. ``extended`` tells whether any extended syntax was used (the answer
    then follows RFC 5258). Patterns are decoded like mailbox names; wildcards stay.
    """

    reference: str = ""
    patterns: tuple[str, ...] = ()
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    return_status: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, kw_only=True)
class LsubCommand(Command):
    reference: str = ""
    pattern: str = ""


@dataclass(frozen=True, kw_only=True)
class NamespaceCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class StatusCommand(Command):
    """``items`` upper-cased: MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE
    HIGHESTMODSEQ APPENDLIMIT MAILBOXID DELETED-STORAGE."""

    mailbox: str = ""
    items: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AppendMessage:
    """One message of an APPEND (several with MULTIAPPEND, RFC 3502).

    ``data`` holds the message when it was small enough to keep; a streamed message has
    ``data=None, streamed=True`` and came as LiteralStart/LiteralChunk/LiteralEnd events
    with the same ``index``. ``binary``: sent as literal8 (RFC 3516); ``utf8``: sent as
    ``UTF8 (~{n})`` (RFC 6855)."""

    index: int
    flags: tuple[str, ...] = ()
    internal_date: _dt.datetime | None = None
    size: int = 0
    data: bytes | None = field(default=None, repr=False)
    streamed: bool = False
    binary: bool = False
    utf8: bool = False
    catenate: tuple[CatenatePart, ...] | None = None
    """RFC 4469 ``CATENATE (...)``: the parts, in order (``data`` and ``size`` unused then)."""


@dataclass(frozen=True, kw_only=True)
class CatenatePart:
    """One part of a CATENATE message: ``URL url`` (``url`` set) or ``TEXT literal``.
    A streamed TEXT part came as LiteralStart/Chunk/End events with ``stream_index``."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    size: int = 0
    streamed: bool = False
    stream_index: int = 0
    binary: bool = False


@dataclass(frozen=True, kw_only=True)
class AppendCommand(Command):
    mailbox: str = ""
    messages: tuple[AppendMessage, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GetQuotaCommand(Command):
    root: str = ""


@dataclass(frozen=True, kw_only=True)
class GetQuotaRootCommand(Command):
    mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class SetQuotaCommand(Command):
    """RFC 9208 ``SETQUOTA root (resource limit ...)``; resource names upper-cased."""

    root: str = ""
    limits: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, kw_only=True)
class GetMetadataCommand(Command):
    """RFC 5464. ``mailbox`` is ``""`` for server metadata; ``depth`` is ``"0"``, ``"1"``
    or ``"infinity"``."""

    mailbox: str = ""
    entries: tuple[str, ...] = ()
    maxsize: int | None = None
    depth: str = "0"


@dataclass(frozen=True, kw_only=True)
class SetMetadataCommand(Command):
    """``entries``: ``(entry, value)`` with None (NIL) to remove."""

    mailbox: str = ""
    entries: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, kw_only=True)
class IdleCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class ResetKeyCommand(Command):
    """RFC 4467 ``RESETKEY [mailbox *(SP mechanism)]``; mechanisms upper-cased."""

    mailbox: str | None = None
    mechanisms: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GenUrlAuthCommand(Command):
    """RFC 4467 ``GENURLAUTH 1*(SP url-rump SP mechanism)``: ``(rump, mechanism)`` pairs,
    mechanisms upper-cased."""

    requests: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class UrlFetchCommand(Command):
    """RFC 4467 ``URLFETCH 1*(SP url)``, with RFC 5524 ``(url ext...)`` parameters:
    ``(url, options)`` pairs, options upper-cased (BODYPARTSTRUCTURE, BINARY, BODY)."""

    urls: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, kw_only=True)
class NotifyEvent:
    """One RFC 5465 event: ``name`` in the RFC's spelling for the known events
    (``MessageNew`` ...), as sent (upper-cased) for others; ``fetch_attributes`` only with
    ``MessageNew``."""

    name: str
    fetch_attributes: tuple[FetchAttribute, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NotifyEventGroup:
    """``(filter-mailboxes events)``: ``filter`` lower-cased (selected, selected-delayed,
    inboxes, personal, subscribed, subtree, mailboxes), ``mailboxes`` for subtree/mailboxes,
    ``events`` None for ``NONE``."""

    filter: str
    mailboxes: tuple[str, ...] = ()
    events: tuple[NotifyEvent, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class NotifyCommand(Command):
    """RFC 5465 ``NOTIFY NONE`` (``groups`` empty, ``none``) or ``NOTIFY SET [STATUS] ...``."""

    none: bool = False
    status: bool = False
    groups: tuple[NotifyEventGroup, ...] = ()


# -- selected ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CheckCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class CloseCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class UnselectCommand(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class ExpungeCommand(Command):
    """EXPUNGE, or UID EXPUNGE (RFC 4315) with ``sequence_set`` (UIDs)."""

    sequence_set: SequenceSet | None = None


@dataclass(frozen=True, kw_only=True)
class SearchCommand(Command):
    """``charset`` as sent (None when absent). ``return_options`` is None for a classic
    SEARCH and a tuple of upper-cased options (MIN MAX ALL COUNT SAVE; empty means ALL)
    for ESEARCH-style answers (RFC 4731, RFC 5182)."""

    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None
    """RFC 9394 PARTIAL range (``(1, 100)`` or ``(-1, -100)``) when RETURN has PARTIAL."""


@dataclass(frozen=True, kw_only=True)
class FetchCommand(Command):
    """``attributes`` with macros expanded (``macro`` keeps ALL/FAST/FULL);
    ``changedsince``/``vanished`` are the RFC 7162 modifiers, ``partial`` the RFC 9394 one
    (UID FETCH only: ``(1, 100)`` or ``(-1, -100)``, as for SEARCH)."""

    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...] = ()
    macro: str | None = None
    changedsince: int | None = None
    vanished: bool = False
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class StoreCommand(Command):
    """``action``: ``"set"`` (FLAGS), ``"add"`` (+FLAGS), ``"remove"`` (-FLAGS)."""

    sequence_set: SequenceSet
    action: str = "set"
    silent: bool = False
    flags: tuple[str, ...] = ()
    unchangedsince: int | None = None


@dataclass(frozen=True, kw_only=True)
class CopyCommand(Command):
    sequence_set: SequenceSet
    mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class MoveCommand(Command):
    """RFC 6851."""

    sequence_set: SequenceSet
    mailbox: str = ""


@dataclass(frozen=True, kw_only=True)
class SortCriterion:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True, kw_only=True)
class SortCommand(Command):
    """RFC 5256 SORT (RFC 5267 ESORT ``RETURN`` options, RFC 5957 DISPLAY keys)."""

    criteria: tuple[SortCriterion, ...]
    charset: str
    search: SearchKey
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class ThreadCommand(Command):
    """RFC 5256 THREAD; ``algorithm`` upper-cased."""

    algorithm: str
    charset: str
    search: SearchKey


@dataclass(frozen=True, kw_only=True)
class EsearchCommand(Command):
    """RFC 7377 multi-mailbox ESEARCH. ``sources``: ``(filter, mailboxes)`` pairs, filter
    lower-cased (selected, selected-delayed, inboxes, personal, subscribed, subtree,
    subtree-one, mailboxes)."""

    criteria: SearchKey
    sources: tuple[tuple[str, tuple[str, ...]], ...] = ()
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class CancelUpdateCommand(Command):
    """RFC 5267 CANCELUPDATE: the tags of the searching commands whose updates stop.
    (Not in ``__all__`` until the codec's golden table has a CANCELUPDATE example.)"""

    tags: tuple[str, ...] = ()
