"""One IMAP connection: the state machine, the selected mailbox's seq<->uid map, untagged
responses queued until they may be sent, literal flow control with the codec, output batching.

The loop reads bytes, feeds :class:`~columba.proto.imap.parser.ImapParser` and handles its
events one at a time; a command runs to completion (its handler may pull further events, as
AUTHENTICATE and IDLE do) before the next one starts, so pipelined commands are answered in
order. Output is collected in a buffer and written once per batch (before the session waits
for input, or when the buffer passes :data:`FLUSH_AT`).

Untagged EXPUNGE timing (RFC 3501 §7.4.1, DESIGN.md §9): after every command in the selected
state the view is synced; new messages are announced at once (EXISTS/RECENT), flag changes
made elsewhere as FETCH FLAGS, but expunges are only announced after a command that allows
them (not FETCH, STORE, SEARCH or COPY by sequence number). Until then the expunged UIDs keep
their sequence numbers in :attr:`SelectedMailbox.uids`.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import ssl
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from columba.auth.cleartext import is_secured, plaintext_allowed
from columba.config.resolve import SettingsView
from columba.imap.capability import capability_code
from columba.net.connection import ConnectionInfo
from columba.proto.imap import commands as c
from columba.proto.imap.events import (
    AuthenticateLine,
    ConnectionClose,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
    NeedContinuation,
    ParserEvent,
    ProtocolError,
)
from columba.proto.imap.parser import ImapParser
from columba.proto.imap.response import (
    ResponseCode,
    bye,
    continuation,
    encode_flags,
    literal_header,
    tagged,
    untagged_status,
)
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import (
    SYSTEM_FLAGS,
    MailboxView,
    MailStorage,
    MailUser,
    MessageRecord,
    StorageError,
    SyncChanges,
)

if TYPE_CHECKING:
    from columba.auth.service import Authenticator

__all__ = [
    "ALREADY_SENT",
    "FLUSH_AT",
    "CommandError",
    "CommandSpec",
    "ConnectionDone",
    "ImapSession",
    "Reply",
    "SelectedMailbox",
    "State",
    "install_commands",
    "log_event",
]

FLUSH_AT = 64 * 1024
"""Write the output buffer once it holds this much."""
LITERAL_SLICE = 256 * 1024
"""Big literals are written in slices of this size, draining in between."""
MAX_BAD_COMMANDS = 20
SHUTDOWN_TEXT = "Server shutting down."
SHUTDOWN_FLUSH_TIMEOUT = 1.0
"""Seconds the shutdown BYE may take to reach a client before the connection is dropped."""
SERVERBUG_TEXT = "Internal error occurred. Refer to server log for more information."
SYSTEM_FLAG_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_logger = logging.getLogger("columba.imap")


def log_event(name: str, /, **fields: str | int) -> None:
    """One log line (an instantaneous event); never pass secrets."""
    try:
        from columba.events.runtime_log import log_line

        log_line(name, **fields)
    except Exception:  # logging must never break a session
        _logger.info("%s %s", name, " ".join(f"{k}={v}" for k, v in fields.items()))


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True)
class Reply:
    """The tagged answer of a command."""

    status: str = "OK"
    text: str = ""
    code: ResponseCode | str | None = None

    @property
    def sent(self) -> bool:
        """The handler wrote the tagged line itself (STARTTLS)."""
        return self.status == ""


ALREADY_SENT = Reply("")


class CommandError(Exception):
    """Raised by a handler to answer ``tag NO|BAD [code] text``."""

    def __init__(self, status: str, text: str, code: ResponseCode | str | None = None) -> None:
        super().__init__(text)
        self.reply = Reply(status, text, code)


Handler = Callable[["ImapSession", Any], Awaitable[Reply]]


@dataclass(frozen=True)
class CommandSpec:
    """How a command runs: its handler, the states it is valid in, whether the selected
    mailbox is synced (changes announced) after it, and which commands must not get
    EXPUNGE responses (RFC 3501 §7.4.1: FETCH, STORE, SEARCH and COPY by sequence number)."""

    handler: Handler
    states: frozenset[State]
    sync_after: bool = True
    no_expunges_by_seq: bool = False

    def allows_expunges(self, cmd: c.Command) -> bool:
        return cmd.uid or not self.no_expunges_by_seq


CommandLookup = Callable[[c.Command], "CommandSpec | None"]
_command_lookup: list[CommandLookup] = []


def install_commands(lookup: CommandLookup) -> None:
    """Set the command table (:mod:`columba.imap.dispatch` does it when imported)."""
    _command_lookup[:] = [lookup]


class ConnectionDone(Exception):  # noqa: N818 - control flow, not an error
    """End the session now (BYE already written)."""


@dataclass
class SelectedMailbox:
    """The selected mailbox as this session announced it to the client."""

    view: MailboxView
    readonly: bool
    uids: list[int] = field(default_factory=list)
    """Sequence number n is ``uids[n-1]``; includes expunged UIDs not yet announced."""
    pending_expunges: set[int] = field(default_factory=set)
    """UIDs the storage expunged that still hold sequence numbers here."""
    announced_modseq: int = 0
    """The HIGHESTMODSEQ the client was last told (CONDSTORE/QRESYNC, :mod:`.condstore`)."""
    fetched_modseq: int = 0
    """The largest MODSEQ sent in FETCH responses since then."""

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    @property
    def exists(self) -> int:
        return len(self.uids)


def format_flags(flags: Iterable[str], recent: bool = False) -> bytes:
    """``(\\Answered \\Seen \\Recent $kw)``: system flags in Dovecot's order, then keywords."""
    flag_set = set(flags)
    out = [f for f in SYSTEM_FLAG_ORDER if f in flag_set]
    if recent:
        out.append("\\Recent")
    out.extend(sorted(f for f in flag_set if f not in SYSTEM_FLAGS and f != "\\Recent"))
    return encode_flags(out)


class ImapSession:
    """One client connection, from greeting to BYE."""

    preauth_timeout: float = 180.0
    """Seconds of silence before a client that has not logged in is disconnected."""
    auth_timeout: float = 30 * 60.0
    """Autologout of an authenticated client (RFC 3501: at least 30 minutes)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: ConnectionInfo,
        *,
        settings: SettingsView,
        authenticator: Authenticator | None,
        storage: MailStorage | None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.info = info
        self.settings = settings
        self.authenticator = authenticator
        self.storage = storage
        self.tls_context = tls_context
        self.tls = False
        self.state = State.NOT_AUTHENTICATED
        self.user: MailUser | None = None
        self.username = ""
        self.selected: SelectedMailbox | None = None
        self.enabled: set[str] = set()
        self.searchres: list[int] = []
        """UIDs saved by ``SEARCH RETURN (SAVE)`` (``$``)."""
        self.bad_count = 0
        self.client_id: dict[str, str | None] = {}
        limit = settings.get_int("mail_save_max_size")
        self.append_limit: int | None = limit if limit > 0 else None
        self.literal_minus = settings.get_bool("imap_literal_minus")
        self.parser = ImapParser(
            max_line_length=max(settings.get_int("imap_max_line_length"), 1024),
            append_limit=self.append_limit,
            literal_plus=not self.literal_minus,
        )
        self.idle_notify_interval = float(max(settings.get_int("imap_idle_notify_interval"), 1))
        self.hibernate_timeout = float(max(settings.get_int("imap_hibernate_timeout"), 0))
        """Seconds of IDLE after which the session lets its mailbox and user go until
        something changes or the client speaks (0: never; :mod:`.cmd_idle`)."""
        self.hibernated = False
        """In IDLE with the user and mailbox closed (see :mod:`.cmd_idle`)."""
        self.announce_new = True
        """Announce new messages of the selected mailbox (EXISTS/RECENT); NOTIFY (RFC 5465,
        :mod:`.cmd_notify`) turns it off when the client didn't ask for MessageNew."""
        self.announce_flags = True
        """Announce flag changes made elsewhere (FETCH FLAGS); off per NOTIFY likewise."""
        self.between_commands: Callable[[ImapSession], Awaitable[ParserEvent | None]] | None = None
        """While set (NOTIFY), the loop waits for the next command through it, so changes
        can be announced while the client is quiet; it returns what :meth:`next_event`
        would."""
        self._events: collections.deque[ParserEvent] = collections.deque()
        self._out = bytearray()
        self._streams: dict[tuple[str, int], bytearray] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = time.monotonic()
        self.counters: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ properties

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        """CONDSTORE (RFC 7162) enabled: FETCH responses carry MODSEQ."""
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        """QRESYNC (RFC 7162) enabled: VANISHED instead of EXPUNGE, UID in FETCH responses."""
        return "QRESYNC" in self.enabled

    @property
    def rev2(self) -> bool:
        """``ENABLE IMAP4rev2`` (RFC 9051) given: no \\Recent, ESEARCH answers, ..."""
        return "IMAP4REV2" in self.enabled

    @property
    def logged_in(self) -> bool:
        return self.state in (State.AUTHENTICATED, State.SELECTED)

    @property
    def secured(self) -> bool:
        return is_secured(
            self.settings, tls=self.tls, remote_ip=self.info.remote_ip, local_ip=self.info.local_ip
        )

    @property
    def plaintext_allowed(self) -> bool:
        return plaintext_allowed(
            self.settings, tls=self.tls, remote_ip=self.info.remote_ip, local_ip=self.info.local_ip
        )

    @property
    def starttls_offered(self) -> bool:
        return self.tls_context is not None and not self.tls

    # ------------------------------------------------------------------ output

    def write(self, data: bytes) -> None:
        """Queue bytes for the client (sent at the next flush)."""
        self._out += data

    async def send(self, data: bytes) -> None:
        """Queue bytes and write the batch when it is big enough."""
        self._out += data
        if len(self._out) >= FLUSH_AT:
            await self.flush()

    async def send_literal(self, data: bytes) -> None:
        """``{n}`` and the data, streamed in slices when large (NUL becomes 0x80)."""
        if b"\x00" in data:
            data = data.replace(b"\x00", b"\x80")
        self._out += literal_header(len(data))
        if len(data) < FLUSH_AT:
            await self.send(data)
            return
        await self.flush()
        with memoryview(data) as view:
            for start in range(0, len(data), LITERAL_SLICE):
                self.writer.write(view[start : start + LITERAL_SLICE])
                self.bytes_out += min(LITERAL_SLICE, len(data) - start)
                await self.writer.drain()

    async def flush(self) -> None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            self.bytes_out += len(data)
            self.writer.write(data)
            await self.writer.drain()

    def tagged(
        self, tag: str, status: str, text: str, code: ResponseCode | str | None = None
    ) -> None:
        self.write(tagged(tag, status, text, code=code, utf8=self.utf8))

    def untagged_ok(self, text: str, code: ResponseCode | str | None = None) -> None:
        self.write(untagged_status("OK", text, code=code, utf8=self.utf8))

    def alert(self, text: str) -> None:
        """``* OK [ALERT] text``: RFC 9051 §7.1, text the client MUST show its user."""
        self.untagged_ok(text, "ALERT")

    def mailbox_arg(self, name: str) -> str:
        """A mailbox name as the client gave it, as the server means it: with UTF-8 names
        (UTF8=ACCEPT, IMAP4rev2) a denormalised name means its NFC form (RFC 9051 §5.1:
        Net-Unicode, the only form CREATE and RENAME store); mUTF-7 names are left alone."""
        return unicodedata.normalize("NFC", name) if self.utf8 else name

    # ------------------------------------------------------------------ input

    def _timeout(self) -> float:
        return self.preauth_timeout if self.state is State.NOT_AUTHENTICATED else self.auth_timeout

    async def read_more(self, timeout: float | None) -> bool:
        """Flush, read from the client and feed the parser; False at EOF."""
        await self.flush()
        if timeout is None:
            data = await self.reader.read(65536)
        else:
            try:
                async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
                    data = await self.reader.read(65536)
            except TimeoutError:
                self.write(bye("Disconnected for inactivity."))
                await self.flush()
                log_event("imap_disconnect", reason="inactivity", **self._log_fields())
                raise ConnectionDone from None
        if not data:
            return False
        self.bytes_in += len(data)
        self._events.extend(self.parser.feed(data))
        return True

    async def next_event(self, timeout: float | None = -1.0) -> ParserEvent | None:
        """The next parser event, reading as needed; None when the client went away."""
        while not self._events:
            if not await self.read_more(self._timeout() if timeout == -1.0 else timeout):
                return None
        return self._events.popleft()

    def push_events(self, events: Sequence[ParserEvent]) -> None:
        """Events produced by a parser call made after a pause (they go first)."""
        self._events.extendleft(reversed(events))

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        try:
            if self.info.ssl:
                if self.tls_context is None:
                    return
                await self.start_tls()
            self.greet()
            while self.state is not State.LOGOUT:
                listen = self.between_commands
                if listen is not None and not self._events and not self.parser.paused:
                    event = await listen(self)
                else:
                    event = await self.next_event()
                if event is None:
                    log_event("imap_disconnect", reason="connection closed", **self._log_fields())
                    break
                await self.handle_event(event)
            await self.flush()
        except ConnectionDone:
            with contextlib.suppress(Exception):
                await self.flush()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log_event("imap_disconnect", reason=f"connection error: {exc}", **self._log_fields())
        except asyncio.CancelledError:
            # the server is going away (shutdown, or a worker draining past its grace time):
            # the client is told, as an alert its user sees (RFC 9051 §7.1 ALERT, §7.1.5)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                self.write(bye(SHUTDOWN_TEXT, code="ALERT"))
                await asyncio.wait_for(self.flush(), SHUTDOWN_FLUSH_TIMEOUT)
            log_event("imap_disconnect", reason="server shutting down", **self._log_fields())
            raise
        finally:
            await self.cleanup()

    def greet(self) -> None:
        greeting = self.settings.get_str("login_greeting") or "Columba ready."
        self.untagged_ok(greeting, capability_code(self))

    async def start_tls(self) -> None:
        """Wrap the connection in TLS (implicit TLS, or after STARTTLS's OK was flushed)."""
        if self.tls_context is None:
            raise CommandError("BAD", "TLS support isn't enabled.")
        await self.flush()
        early = _take_stream_buffer(self.reader)
        if early:
            # The client's first TLS record reached the StreamReader before the transport
            # was switched to TLS; hand it to the TLS protocol once start_tls() installed it
            # (two loop turns: start_tls schedules connection_made with call_soon).
            loop = asyncio.get_running_loop()
            transport = self.writer.transport
            loop.call_soon(loop.call_soon, _feed_protocol, transport, early)
        await self.writer.start_tls(self.tls_context)
        self.tls = True

    def switch_streams(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Go on over streams layered on the current ones (COMPRESS=DEFLATE, see
        :mod:`columba.imap.compress`): call with the output flushed and the parser's held
        input taken."""
        self.reader = reader
        self.writer = writer

    async def cleanup(self) -> None:
        await self.close_mailbox()
        if self.user is not None:
            user, self.user = self.user, None
            try:
                await user.close()
            except Exception:
                _logger.exception("closing user %s", self.username)
            log_event(
                "imap_logout",
                user=self.username,
                session=self.info.session_id,
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
                **{k: v for k, v in self.counters.items()},
            )

    def _log_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {
            "rip": self.info.remote_ip,
            "lip": self.info.local_ip,
            "session": self.info.session_id,
        }
        if self.username:
            fields["user"] = self.username
        return fields

    async def handle_event(self, event: ParserEvent) -> None:
        if isinstance(event, c.Command):
            await self.run_command(event)
        elif isinstance(event, NeedContinuation):
            await self.literal_requested(event)
        elif isinstance(event, LiteralStart):
            # kept only for a user who may append (a pre-auth client's data is dropped)
            if self.user is not None:
                self._streams[(event.tag, event.index)] = bytearray()
        elif isinstance(event, LiteralChunk):
            buf = self._streams.get((event.tag, event.index))
            if buf is not None:
                buf += event.data
        elif isinstance(event, LiteralEnd):
            pass
        elif isinstance(event, ConnectionClose):
            if event.tag:
                self.tagged(event.tag, event.status, event.message, event.code)
            self.write(bye(event.message))
            await self.flush()
            raise ConnectionDone
        elif isinstance(event, ProtocolError):
            self._drop_streams(event.tag)
            if event.tag:
                self.tagged(event.tag, event.status, event.message, event.code)
            else:
                self.write(untagged_status(event.status, event.message, code=event.code))
            if event.status == "BAD":
                await self.count_bad()
        elif isinstance(event, AuthenticateLine | IdleDone):
            # out of place (the handlers that expect them consume them): ignore
            pass

    async def count_bad(self) -> None:
        self.bad_count += 1
        if self.bad_count >= MAX_BAD_COMMANDS:
            self.write(bye("Too many invalid IMAP commands."))
            await self.flush()
            log_event("imap_disconnect", reason="too many invalid commands", **self._log_fields())
            raise ConnectionDone

    def take_stream(self, tag: str, index: int) -> bytes | None:
        data = self._streams.pop((tag, index), None)
        return bytes(data) if data is not None else None

    def _drop_streams(self, tag: str | None) -> None:
        for key in [k for k in self._streams if k[0] == tag]:
            del self._streams[key]

    async def literal_requested(self, event: NeedContinuation) -> None:
        """A synchronising literal: ``+ OK`` or a tagged refusal."""
        refusal: Reply | None = None
        if event.append:
            if self.state not in (State.AUTHENTICATED, State.SELECTED) or self.user is None:
                refusal = Reply("BAD", "Please authenticate first.")
            elif event.mailbox is not None:
                refusal = await self._append_target_refusal(self.mailbox_arg(event.mailbox))
        if refusal is not None and event.tag:
            self.push_events(self.parser.reject_literal())
            self._drop_streams(event.tag)
            self.tagged(event.tag, refusal.status, refusal.text, refusal.code)
            if refusal.status == "BAD":
                await self.count_bad()
            return
        self.write(continuation("OK"))
        await self.flush()
        self.push_events(self.parser.accept_literal())

    async def _append_target_refusal(self, mailbox: str) -> Reply | None:
        assert self.user is not None
        try:
            await self.user.status(mailbox)
        except StorageError as exc:
            if exc.imap_code == "NONEXISTENT":
                return Reply("NO", f"Mailbox doesn't exist: {mailbox}", "TRYCREATE")
            return None
        except Exception:
            return None
        return None

    async def run_command(self, cmd: c.Command) -> None:
        spec = _command_lookup[0](cmd) if _command_lookup else None
        reply: Reply
        bye_text = ""
        if spec is None:
            reply = Reply("BAD", f"Unknown command {cmd.display_name}.")
        elif self.state not in spec.states:
            reply = self._state_refusal(cmd)
        else:
            try:
                reply = await spec.handler(self, cmd)
            except CommandError as exc:
                reply = exc.reply
            except StorageError as exc:
                reply = storage_error_reply(exc)
            except (ConnectionDone, ConnectionError, asyncio.CancelledError, ssl.SSLError):
                raise
            except Exception:
                _logger.exception("IMAP command %s failed", cmd.display_name)
                log_event(
                    "imap_command_failed",
                    command=cmd.display_name,
                    error="internal error",
                    **self._log_fields(),
                )
                reply = Reply("NO", SERVERBUG_TEXT, "SERVERBUG")
            if self.selected is not None and spec.sync_after and self.state is State.SELECTED:
                try:
                    await self.notify_changes(allow_expunges=spec.allows_expunges(cmd))
                except StorageError as exc:
                    log_event("imap_sync_failed", error=str(exc), **self._log_fields())
                    if exc.imap_code == "NONEXISTENT":
                        bye_text = "Selected mailbox was deleted, have to disconnect."
            if self.qresync and self.selected is not None and not bye_text:
                from columba.imap.condstore import with_highestmodseq

                reply = with_highestmodseq(self, reply)
        if self.parser.paused:
            # a pausing command that did not take over the input (refused, or done)
            self.push_events(self.parser.resume())
        self._drop_streams(cmd.tag)
        self.counters[cmd.name.lower()] += 1
        if reply.sent:
            self.bad_count = 0
            return
        self.tagged(cmd.tag, reply.status, reply.text, reply.code)
        if bye_text:
            self.write(bye(bye_text))
            await self.flush()
            raise ConnectionDone
        if reply.status == "BAD":
            await self.count_bad()
        else:
            self.bad_count = 0

    def _state_refusal(self, cmd: c.Command) -> Reply:
        if self.state is State.NOT_AUTHENTICATED:
            return Reply("BAD", "Please authenticate first.")
        if isinstance(cmd, c.LoginCommand | c.AuthenticateCommand):
            return Reply("BAD", "Already logged in.")
        if isinstance(cmd, c.StartTlsCommand):
            return Reply("BAD", "TLS is already active." if self.tls else "Already logged in.")
        if self.state is State.AUTHENTICATED:
            return Reply("BAD", "No mailbox selected.")
        return Reply("BAD", f"Command {cmd.display_name} not allowed in this state.")

    # ------------------------------------------------------------------ selected mailbox

    def require_selected(self) -> SelectedMailbox:
        if self.selected is None:
            raise CommandError("BAD", "No mailbox selected.")
        return self.selected

    def require_user(self) -> MailUser:
        if self.user is None:
            raise CommandError("BAD", "Please authenticate first.")
        return self.user

    async def close_mailbox(self) -> None:
        sel, self.selected = self.selected, None
        self.searchres = []
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED
        if sel is not None:
            try:
                await sel.view.close()
            except Exception:
                _logger.exception("closing mailbox")

    def flags_of(self, record: MessageRecord) -> bytes:
        sel = self.selected
        recent = sel is not None and not self.rev2 and record.uid in sel.view.recent_uids()
        return format_flags(record.flags, recent)

    def resolve(self, seqset: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """``(seq, uid)`` pairs a sequence set names, ascending. A sequence number past the
        message count is a BAD; UIDs that don't exist are left out."""
        sel = self.require_selected()
        uids = sel.uids
        if seqset.saved:
            saved = set(self.searchres)
            return [(i + 1, u) for i, u in enumerate(uids) if u in saved]
        if not uid:
            count = len(uids)
            ranges = seqset.resolve(count)
            # RFC 3501 seq-number: a sequence number past the message count is a BAD,
            # "*" included when the mailbox is empty.
            if count == 0 or (ranges and ranges[-1][1] > count):
                raise CommandError("BAD", "Invalid messageset")
            return [(s, uids[s - 1]) for lo, hi in ranges for s in range(lo, hi + 1)]
        largest = uids[-1] if uids else 0
        out: list[tuple[int, int]] = []
        for lo, hi in seqset.resolve(largest):
            i = bisect.bisect_left(uids, lo)
            j = bisect.bisect_right(uids, hi)
            out.extend((k + 1, uids[k]) for k in range(i, j))
        return out

    async def notify_changes(self, *, allow_expunges: bool) -> None:
        """Sync the view and announce what changed (expunges only when allowed)."""
        sel = self.selected
        if sel is None:
            return
        self.announce_changes(await sel.view.sync(), allow_expunges=allow_expunges)

    def announce_changes(self, changes: SyncChanges, *, allow_expunges: bool) -> None:
        """Queue the responses for what a sync of the selected mailbox brought (expunges only
        when allowed; the others stay pending with their sequence numbers)."""
        sel = self.selected
        if sel is None:
            return
        sel.pending_expunges.update(changes.expunged)
        if allow_expunges and sel.pending_expunges:
            gone = sel.pending_expunges
            sel.pending_expunges = set()
            out = bytearray()
            vanished: list[int] = []
            for uid in sorted(gone):
                seq = sel.seq_of(uid)
                if seq is None:
                    continue
                del sel.uids[seq - 1]
                if self.qresync:
                    vanished.append(uid)  # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE
                else:
                    out += b"* %d EXPUNGE\r\n" % seq
            if vanished:
                from columba.imap.condstore import vanished_line

                out += vanished_line(vanished)
            self.write(bytes(out))
            saved = set(self.searchres)
            if saved & gone:
                self.searchres = [u for u in self.searchres if u not in gone]
        if changes.added:
            last = sel.uids[-1] if sel.uids else 0
            sel.uids.extend(u for u in changes.added if u > last)
            if self.announce_new:
                self.write(b"* %d EXISTS\r\n" % len(sel.uids))
                if not self.rev2:
                    self.write(b"* %d RECENT\r\n" % len(sel.view.recent_uids()))
        for record in changes.flags_changed:
            if record.uid in sel.pending_expunges or not self.announce_flags:
                continue
            seq = sel.seq_of(record.uid)
            if seq is not None:
                self.write(
                    b"* %d FETCH (%sFLAGS %s)\r\n"
                    % (seq, self.fetch_ids(record), self.flags_of(record))
                )

    def fetch_ids(self, record: MessageRecord, *, uid: bool = False) -> bytes:
        """``UID n MODSEQ (m) `` for an untagged FETCH about a flag change: UID with QRESYNC
        (or *uid*), MODSEQ with CONDSTORE (RFC 7162 §3.1, §3.2); Dovecot's order."""
        out = b""
        if uid or self.qresync:
            out += b"UID %d " % record.uid
        if self.condstore:
            from columba.imap.condstore import note_modseq

            note_modseq(self.selected, record.modseq)
            out += b"MODSEQ (%d) " % record.modseq
        return out


def _take_stream_buffer(reader: asyncio.StreamReader) -> bytes:
    """Bytes the StreamReader already holds (asyncio keeps them in ``_buffer``)."""
    buf = getattr(reader, "_buffer", None)
    if not isinstance(buf, bytearray) or not buf:
        return b""
    data = bytes(buf)
    buf.clear()
    return data


def _feed_protocol(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Deliver *data* to the transport's current protocol as if it had just arrived."""
    protocol = transport.get_protocol()
    get_buffer = getattr(protocol, "get_buffer", None)
    buffer_updated = getattr(protocol, "buffer_updated", None)
    if callable(get_buffer) and callable(buffer_updated):  # asyncio's and uvloop's TLS
        view = memoryview(data)
        while view:
            target = get_buffer(len(view))
            n = min(len(target), len(view))
            if n <= 0:
                break
            target[:n] = view[:n]
            buffer_updated(n)
            view = view[n:]
    elif isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)


def storage_error_reply(exc: StorageError) -> Reply:
    """``NO [code] text`` for a storage failure (Dovecot's wording: a period unless the text
    ends with a name)."""
    text = str(exc) or "Operation failed."
    if not text.endswith(".") and ": " not in text:
        text += "."
    return Reply("NO", text, exc.imap_code)
