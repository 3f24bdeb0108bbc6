"""Sans-IO IMAP server-side command parser: bytes in, typed events out.

Hand-written on purpose: no library does a bounded, streaming, server-side IMAP codec right.
The Python IMAP libraries are clients (imaplib, imapclient) or parse whole commands from
memory; none streams a 50 MB APPEND literal without holding it, decides a literal's fate
(``+``, ``NO [TOOBIG]``, close) from its context *before* reading its data, honours LITERAL+
and LITERAL- limits, and stays usable after a bad command. This module does, and it never does
I/O: the network layer feeds bytes and acts on events.

Use::

    parser = ImapParser(append_limit=50 << 20)
    for event in parser.feed(data):
        ...

The events (see :mod:`.events` for how to answer each) are commands
(:class:`~.commands.Command` subclasses), :class:`~.events.NeedContinuation`,
APPEND streaming (:class:`~.events.LiteralStart`, :class:`~.events.LiteralChunk`,
:class:`~.events.LiteralEnd`), :class:`~.events.ProtocolError` (incl.
:class:`~.events.LiteralTooBig`), :class:`~.events.ConnectionClose`,
:class:`~.events.AuthenticateLine` and :class:`~.events.IdleDone`.

**Pauses.** Some events change how the following bytes must be read, so the parser stops
after them and holds further input until told how to go on. Such an event is always the last
of the list that ``feed()`` returns, and :attr:`ImapParser.paused` is true:

- :class:`~.events.NeedContinuation` -> :meth:`accept_literal` (after sending ``+ OK``) or
  :meth:`reject_literal` (after a tagged NO/BAD);
- ``IDLE`` -> :meth:`expect_idle_done` once ``+ idling`` is sent (or :meth:`resume` if IDLE
  was refused);
- ``AUTHENTICATE`` -> :meth:`expect_raw_line` for each ``+ challenge`` sent; after each
  :class:`~.events.AuthenticateLine` the parser pauses again; :meth:`resume` when the exchange
  is over;
- ``STARTTLS`` and ``COMPRESS`` -> :meth:`take_buffered` returns the bytes that arrived behind
  the command (discard them for STARTTLS, inflate them for COMPRESS), then :meth:`resume`;
- ``ENABLE`` naming UTF8=ACCEPT or IMAP4rev2 -> set :attr:`utf8` if enabled, then
  :meth:`resume`.

Each of those methods returns the events the held input produces. Input that keeps arriving
while paused is held up to ``max_line_length`` bytes; past that the parser gives up with
:class:`~.events.ConnectionClose`.

**Bounds** (constructor arguments): ``max_line_length`` for the text of a command summed over
its lines (literal data excluded) and for SASL/IDLE lines; ``max_literal_size`` for each
literal outside APPEND messages and ``max_inline_total`` for all literals kept in memory for
one command; ``append_limit`` (APPENDLIMIT) for each APPEND message; ``max_nesting`` for
parenthesised lists; ``max_args`` for arguments (and MULTIAPPEND messages); ``max_literals``
for literals in a non-APPEND command; ``max_search_depth`` for NOT/OR/FUZZY/paren nesting in
SEARCH. APPEND messages larger than ``append_inline_threshold`` (or that would take the inline
total past its bound) are streamed, never held.

Literal rules: a synchronising ``{n}`` over its limit gets :class:`~.events.LiteralTooBig`
(APPEND, ``NO [TOOBIG]``) or :class:`~.events.ProtocolError` (``BAD``) and no data is read;
a non-synchronising ``{n+}`` over its limit, or over 4096 octets when only LITERAL- is offered
(``literal_plus=False``, RFC 7888 §4), is :class:`~.events.ConnectionClose`. After a syntax
error the rest of the command is skipped, including the data of its non-synchronising
literals, so literal data is never run as commands. A ``{n}`` at the end of an unterminated
quoted string is not a literal.

Chunk boundaries of :class:`~.events.LiteralChunk` follow the input; everything else is
independent of how the input is split.
"""

from __future__ import annotations

import re
from typing import Final

from columba.proto.imap import commands as c
from columba.proto.imap.events import (
    AuthenticateLine,
    ConnectionClose,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
    LiteralTooBig,
    NeedContinuation,
    ParserEvent,
    ProtocolError,
)
from columba.proto.imap.grammar import command_name_of, parse_append_continuation, parse_command
from columba.proto.imap.lexer import (
    INT63_MAX,
    Cursor,
    CursorOptions,
    ImapSyntaxError,
    LiteralArg,
    LiteralContext,
    PendingLiteral,
)

__all__ = ["LITERAL_MINUS_MAX", "ImapParser"]

LITERAL_MINUS_MAX: Final = 4096

_TAG_GUESS_RE = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+)(?: |\Z)')
_SKIP_TAIL = 32

# modes
_COMMAND = "command"
_RAW_LINE = "raw-line"
_IDLE = "idle"

# what a literal's data is for
_INLINE = "inline"
_STREAM = "stream"
_DISCARD = "discard"

_PAUSING = frozenset({"IDLE", "AUTHENTICATE", "STARTTLS", "COMPRESS"})


class ImapParser:
    """Incremental parser for the client side of one IMAP connection (see module doc)."""

    # Tests set this to see internal bugs instead of a generic BAD.
    _raise_internal_errors = False

    def __init__(
        self,
        *,
        max_line_length: int = 65536,
        max_literal_size: int = 65536,
        append_limit: int | None = None,
        append_inline_threshold: int = 65536,
        max_inline_total: int = 1 << 20,
        max_nesting: int = 32,
        max_args: int = 4096,
        max_literals: int = 256,
        max_search_depth: int = 100,
        literal_plus: bool = True,
        utf8: bool = False,
        charsets: tuple[str, ...] = ("UTF-8", "US-ASCII"),
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.append_limit = append_limit
        self.append_inline_threshold = append_inline_threshold
        self.max_inline_total = max_inline_total
        self.max_literals = max_literals
        self.literal_plus = literal_plus
        self._options = CursorOptions(
            max_nesting=max_nesting,
            max_args=max_args,
            max_search_depth=max_search_depth,
            utf8=utf8,
            charsets=charsets,
        )
        self._buf = bytearray()
        self._scan = 0  # bytes at the front of _buf known to hold no LF
        self._mode = _COMMAND
        self._pause: str | None = None
        self._closed = False
        # the command frame being assembled
        self._texts: list[bytes] = []
        self._lits: list[LiteralArg] = []
        self._text_len = 0
        self._inline_total = 0
        self._last_ctx: LiteralContext | None = None
        # the literal being read
        self._lit: LiteralArg | None = None
        self._lit_ctx: LiteralContext | None = None
        self._lit_how = _INLINE
        self._lit_left = 0
        self._lit_data = bytearray()
        self._lit_tag = ""
        # skipping the rest of a bad command ("frame") or of one long line ("line")
        self._skip: str | None = None
        self._skip_tail = b""

    # -- public API --------------------------------------------------------------------------

    @property
    def utf8(self) -> bool:
        """UTF8=ACCEPT / IMAP4rev2 in force: mailbox names are UTF-8, not mUTF-7."""
        return self._options.utf8

    @utf8.setter
    def utf8(self, value: bool) -> None:
        o = self._options
        self._options = CursorOptions(
            max_nesting=o.max_nesting,
            max_args=o.max_args,
            max_search_depth=o.max_search_depth,
            utf8=value,
            charsets=o.charsets,
        )

    @property
    def paused(self) -> bool:
        return self._pause is not None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered_bytes(self) -> int:
        """Bytes the parser holds: unread input, command text and in-memory literals."""
        return len(self._buf) + self._text_len + self._inline_total + len(self._skip_tail)

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Take bytes from the client; return the events they complete."""
        if self._closed:
            return []
        if self._pause is not None:
            self._buf += data
            if len(self._buf) > self.max_line_length:
                return self._close(None, "Too much input while waiting for the server", None, [])
            return []
        events: list[ParserEvent] = []
        if self._lit is not None and not self._buf:
            # fast path: literal data straight from the caller's buffer
            with memoryview(data) as view:
                used = self._literal_bytes(view, events)
            data = data[used:]
        self._buf += data
        self._run(events)
        return events

    def accept_literal(self) -> list[ParserEvent]:
        """The server sent ``+``: read the announced literal."""
        if self._pause != "literal":
            return []
        self._pause = None
        events: list[ParserEvent] = []
        self._start_literal(events)
        self._run(events)
        return events

    def reject_literal(self) -> list[ParserEvent]:
        """The server refused the literal (tagged NO/BAD sent): drop the command."""
        if self._pause != "literal":
            return []
        self._pause = None
        self._lit = None
        self._reset_frame()
        return self._run([])

    def resume(self) -> list[ParserEvent]:
        """Go on reading commands after a pause (accepts a pending literal)."""
        if self._pause == "literal":
            return self.accept_literal()
        self._pause = None
        self._mode = _COMMAND
        return self._run([])

    def expect_raw_line(self) -> list[ParserEvent]:
        """Read the next line as a SASL response (:class:`AuthenticateLine`)."""
        self._pause = None
        self._mode = _RAW_LINE
        return self._run([])

    def expect_idle_done(self) -> list[ParserEvent]:
        """IDLE is running: the next line should be ``DONE`` (:class:`IdleDone`)."""
        self._pause = None
        self._mode = _IDLE
        return self._run([])

    def take_buffered(self) -> bytes:
        """Remove and return the input not yet parsed (after STARTTLS or COMPRESS)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

    # -- main loop ---------------------------------------------------------------------------

    def _run(self, events: list[ParserEvent]) -> list[ParserEvent]:
        while self._pause is None and not self._closed:
            if self._lit is not None:
                if not self._buf:
                    break
                with memoryview(self._buf) as view:
                    used = self._literal_bytes(view, events)
                del self._buf[:used]
                continue
            if self._skip is not None:
                if not self._skip_line(events):
                    break
                continue
            line = self._take_line(events)
            if line is None:
                if self._skip is not None:
                    continue  # overflow: now skipping
                break
            if self._mode == _RAW_LINE:
                self._mode = _COMMAND
                self._pause = "raw-line"
                events.append(AuthenticateLine(line=line))
            elif self._mode == _IDLE:
                self._mode = _COMMAND
                events.append(IdleDone(ok=line.strip().upper() == b"DONE"))
            else:
                self._command_line(line, events)
        return events

    def _take_line(self, events: list[ParserEvent]) -> bytes | None:
        """A whole line without CRLF, or None (more data needed, or it was too long)."""
        budget = self.max_line_length - (self._text_len if self._mode == _COMMAND else 0)
        budget = max(budget, 0)
        idx = self._buf.find(b"\n", self._scan, budget + 2)
        if idx >= 0:
            end = idx - 1 if idx > 0 and self._buf[idx - 1] == 0x0D else idx
            if end <= budget:
                line = bytes(self._buf[:end])
                del self._buf[: idx + 1]
                self._scan = 0
                return line
        elif len(self._buf) < budget + 2:
            self._scan = len(self._buf)
            return None
        # the line is longer than allowed
        self._scan = 0
        self._line_too_long(events)
        return None

    def _line_too_long(self, events: list[ParserEvent]) -> None:
        bound = f"line too long (imap_max_line_length={self.max_line_length})"
        if self._mode == _RAW_LINE:
            self._mode = _COMMAND
            self._pause = "raw-line"
            self._skip = "line"
            events.append(ProtocolError(tag=None, message=f"SASL response {bound}"))
            return
        if self._mode == _IDLE:
            self._mode = _COMMAND
            self._skip = "line"
            events.append(IdleDone(ok=False))
            return
        head = self._texts[0] if self._texts else bytes(self._buf[: self.max_line_length + 2])
        tag = _guess_tag(head)
        name = command_name_of(head)
        self._reset_frame()
        self._skip = "frame"
        events.append(ProtocolError(tag=tag, message=f"Command {bound}", command=name))

    def _skip_line(self, events: list[ParserEvent]) -> bool:
        """Discard up to the end of a line; honour literal markers when skipping a frame.
        Returns False when more data is needed."""
        idx = self._buf.find(b"\n")
        if idx < 0:
            self._skip_tail = (self._skip_tail + bytes(self._buf[-_SKIP_TAIL:]))[-_SKIP_TAIL:]
            self._buf.clear()
            return False
        start = max(0, idx - _SKIP_TAIL)
        tail = (self._skip_tail + bytes(self._buf[start:idx]))[-_SKIP_TAIL:]
        del self._buf[: idx + 1]
        self._scan = 0
        self._skip_tail = b""
        kind, self._skip = self._skip, None
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        if kind == "frame":
            marker = _literal_marker(tail)
            if marker is not None and marker[3]:
                self._skip = "frame"
                if marker[0] < 0:
                    # digits fill the whole tail: a size we can't know, data we can't skip
                    self._close(None, "Literal size out of range", None, events)
                else:
                    self._discard_literal(marker[2], None, events)
        return True

    # -- command frames ----------------------------------------------------------------------

    def _command_line(self, line: bytes, events: list[ParserEvent]) -> None:
        if not self._texts and not line:
            events.append(ProtocolError(tag=None, message="Empty command line"))
            return
        self._text_len += len(line)
        marker = _literal_marker(line)
        if marker is None or marker[0] < 0:
            self._texts.append(line)
            self._finish_frame(events)
            return
        start, binary, digits, nonsync = marker
        self._texts.append(line[:start])
        tag = _guess_tag(self._texts[0])
        name = command_name_of(self._texts[0])
        if len(digits) > 19 or int(digits) > INT63_MAX:
            self._literal_failed(
                tag=tag,
                name=name,
                message="Literal size out of range",
                nonsync=nonsync,
                digits=digits,
                events=events,
            )
            return
        size = int(digits)
        pending = LiteralArg(size, binary=binary, nonsync=nonsync, pending=True)
        try:
            ctx = self._check_prefix(pending, name)
        except ImapSyntaxError as exc:
            if exc.quoted_eol:
                # "{n}" inside an unterminated quoted string: not a literal at all.
                self._texts[-1] = line
                self._finish_frame(events)
                return
            err = ProtocolError(
                tag=tag, message=exc.message, code=exc.code, status=exc.status, command=name
            )
            events.append(err)
            self._literal_failed(
                tag=tag, name=name, message=None, nonsync=nonsync, digits=digits, events=events
            )
            return
        except Exception:
            if self._raise_internal_errors:
                raise
            events.append(ProtocolError(tag=tag, message="Error in IMAP command", command=name))
            self._literal_failed(
                tag=tag, name=name, message=None, nonsync=nonsync, digits=digits, events=events
            )
            return
        append = ctx.append
        if append is not None:
            limit = INT63_MAX if self.append_limit is None else self.append_limit
            too_big = size > limit
            what = f"Message too large (APPENDLIMIT={limit})"
        else:
            limit = self.max_literal_size
            too_big = size > limit or self._inline_total + size > self.max_inline_total
            if size <= limit:
                limit = self.max_inline_total
            what = f"Literal too large (max {limit} octets)"
        if nonsync and not self.literal_plus and size > LITERAL_MINUS_MAX:
            self._close(
                tag, f"Non-synchronizing literal over {LITERAL_MINUS_MAX} octets", "TOOBIG", events
            )
            return
        if too_big:
            if nonsync:
                self._close(tag, what, "TOOBIG", events)
                return
            self._reset_frame()
            if append is not None:
                events.append(
                    LiteralTooBig(
                        tag=tag,
                        message=what,
                        code="TOOBIG",
                        status="NO",
                        command=name,
                        size=size,
                        limit=limit,
                    )
                )
            else:
                events.append(ProtocolError(tag=tag, message=what, code="TOOBIG", command=name))
            return
        if append is not None and (
            size > self.append_inline_threshold or self._inline_total + size > self.max_inline_total
        ):
            self._lit_how = _STREAM
        else:
            self._lit_how = _INLINE
            self._inline_total += size
        self._lits.append(pending)
        self._lit = pending
        self._lit_ctx = ctx
        self._lit_left = size
        self._lit_tag = tag or ""
        self._last_ctx = ctx
        if nonsync:
            self._start_literal(events)
        else:
            self._pause = "literal"
            events.append(
                NeedContinuation(
                    tag=tag or "",
                    size=size,
                    command=ctx.command or (name or ""),
                    binary=binary,
                    append=append is not None,
                    mailbox=append.mailbox if append is not None else None,
                )
            )

    def _check_prefix(self, pending: LiteralArg, name: str | None) -> LiteralContext:
        """Run the grammar up to the pending literal; its context or ImapSyntaxError."""
        prev = self._last_ctx
        if name == "APPEND":
            if len(self._lits) >= self._options.max_args:
                raise ImapSyntaxError("Too many messages in APPEND")
        elif len(self._lits) >= self.max_literals:
            raise ImapSyntaxError(f"Too many literals (more than {self.max_literals})")
        try:
            if prev is not None and prev.append is not None:
                cur = Cursor([self._texts[-1]], [pending], self._options, command="APPEND")
                parse_append_continuation(cur, prev.append)
            else:
                cur = Cursor(self._texts, [*self._lits, pending], self._options)
                parse_command(cur)
        except PendingLiteral as p:
            return p.context
        raise ImapSyntaxError("Unexpected literal")

    def _start_literal(self, events: list[ParserEvent]) -> None:
        lit, ctx = self._lit, self._lit_ctx
        if lit is None:
            return
        if self._lit_how == _STREAM and ctx is not None and ctx.append is not None:
            a = ctx.append
            events.append(
                LiteralStart(
                    tag=self._lit_tag,
                    command=ctx.command,
                    index=a.stream_index,
                    size=lit.size,
                    mailbox=a.mailbox,
                    flags=a.flags,
                    internal_date=a.internal_date,
                    binary=lit.binary,
                    utf8=a.utf8,
                )
            )
        self._lit_data = bytearray()
        if self._lit_left == 0:
            self._end_literal(events)

    def _literal_bytes(self, data: memoryview, events: list[ParserEvent]) -> int:
        """Consume literal data from *data*; returns how many bytes were used."""
        take = min(self._lit_left, len(data))
        if take:
            if self._lit_how == _STREAM:
                ctx = self._lit_ctx
                index = ctx.append.stream_index if ctx is not None and ctx.append is not None else 0
                events.append(LiteralChunk(tag=self._lit_tag, index=index, data=bytes(data[:take])))
            elif self._lit_how == _INLINE:
                self._lit_data += data[:take]
            self._lit_left -= take
        if self._lit_left == 0:
            self._end_literal(events)
        return take

    def _end_literal(self, events: list[ParserEvent]) -> None:
        lit, how = self._lit, self._lit_how
        self._lit = None
        if lit is None or how == _DISCARD:
            return
        lit.pending = False
        if how == _STREAM:
            lit.streamed = True
            ctx = self._lit_ctx
            index = ctx.append.stream_index if ctx is not None and ctx.append is not None else 0
            events.append(LiteralEnd(tag=self._lit_tag, index=index, size=lit.size))
        else:
            lit.data = bytes(self._lit_data)
        self._lit_data = bytearray()

    def _literal_failed(
        self,
        *,
        tag: str | None,
        name: str | None,
        message: str | None,
        nonsync: bool,
        digits: bytes,
        events: list[ParserEvent],
    ) -> None:
        """A literal's command is bad. A sync literal won't come (no ``+``); the data of a
        non-sync one is on its way and must be skipped with the rest of the command."""
        self._reset_frame()
        if message is not None and not nonsync:
            events.append(ProtocolError(tag=tag, message=message, command=name))
            return
        if not nonsync:
            return
        if message is not None:
            self._close(tag, message, None, events)
            return
        self._skip = "frame"
        self._discard_literal(digits, tag, events)

    def _discard_literal(self, digits: bytes, tag: str | None, events: list[ParserEvent]) -> None:
        limit = max(
            self.max_literal_size,
            INT63_MAX if self.append_limit is None else self.append_limit,
        )
        if len(digits) > 19 or int(digits) > limit:
            self._close(tag, "Literal too large", "TOOBIG", events)
            return
        self._lit = LiteralArg(int(digits))
        self._lit_ctx = None
        self._lit_how = _DISCARD
        self._lit_left = int(digits)
        if self._lit_left == 0:
            self._lit = None

    def _finish_frame(self, events: list[ParserEvent]) -> None:
        tag = _guess_tag(self._texts[0])
        cur = Cursor(self._texts, self._lits, self._options)
        try:
            command = parse_command(cur)
        except ImapSyntaxError as exc:
            events.append(
                ProtocolError(
                    tag=tag,
                    message=exc.message,
                    code=exc.code,
                    status=exc.status,
                    command=cur.command or command_name_of(self._texts[0]),
                )
            )
        except Exception:
            if self._raise_internal_errors:
                raise
            events.append(ProtocolError(tag=tag, message="Error in IMAP command"))
        else:
            events.append(command)
            if command.name in _PAUSING or (
                isinstance(command, c.EnableCommand)
                and {"UTF8=ACCEPT", "IMAP4REV2"} & set(command.capabilities)
            ):
                self._pause = "command"
        self._reset_frame()

    def _reset_frame(self) -> None:
        self._texts = []
        self._lits = []
        self._text_len = 0
        self._inline_total = 0
        self._last_ctx = None

    def _close(
        self, tag: str | None, message: str, code: str | None, events: list[ParserEvent]
    ) -> list[ParserEvent]:
        self._closed = True
        self._pause = None
        self._buf.clear()
        self._reset_frame()
        self._lit = None
        self._skip = None
        events.append(ConnectionClose(tag=tag, message=message, code=code))
        return events


def _literal_marker(line: bytes) -> tuple[int, bool, bytes, bool] | None:
    """``(start, binary, digits, nonsync)`` when *line* ends with ``{n}``, ``{n+}``,
    ``~{n}`` or ``~{n+}``; start is -1 when the digits reach the start of *line* (no ``{``
    seen: a truncated tail). A linear scan from the end, whatever the line holds."""
    n = len(line)
    if n < 3 or line[-1] != 0x7D:  # }
        return None
    i = n - 2
    nonsync = line[i] == 0x2B  # +
    if nonsync:
        i -= 1
    j = i
    while j >= 0 and 0x30 <= line[j] <= 0x39:
        j -= 1
    if j == i:
        return None
    digits = line[j + 1 : i + 1]
    if j < 0:
        return (-1, False, digits, nonsync)
    if line[j] != 0x7B:  # {
        return None
    binary = j > 0 and line[j - 1] == 0x7E  # ~
    return (j - 1 if binary else j, binary, digits, nonsync)


def _guess_tag(line: bytes) -> str | None:
    m = _TAG_GUESS_RE.match(line)
    return m.group(1).decode("ascii") if m else None
