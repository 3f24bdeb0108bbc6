"""Events produced by :class:`columba.proto.imap.parser.ImapParser`.

Every event is a frozen dataclass deriving from :class:`ParserEvent`. Parsed commands are the
``Command`` subclasses in :mod:`.commands`; the rest are here.

How the I/O layer answers each one:

================== ============================================================================
event              answer
================== ============================================================================
Command            run it (see the pause rule in :mod:`.parser` for IDLE, AUTHENTICATE,
                   STARTTLS, COMPRESS and ENABLE UTF8=ACCEPT / IMAP4rev2)
NeedContinuation   send ``+ OK`` and call ``accept_literal()``, or send ``tag NO/BAD ...`` and
                   call ``reject_literal()``
LiteralStart/      an APPEND message streamed in chunks (too large to hold): open the save
LiteralChunk/      at Start, write each Chunk, finish at End; the Command that follows lists the
LiteralEnd         message with ``data=None, streamed=True``
ProtocolError      ``tag status [code] message`` (``* BAD message`` when ``tag`` is None),
                   i.e. ``event.response()``; any save begun by LiteralStart for that tag
                   is abandoned. :class:`LiteralTooBig` is one with ``status="NO"`` and
                   code ``TOOBIG``
ConnectionClose    ``event.response()`` (tagged BAD if a tag is known, ``* BYE``), close
AuthenticateLine   a SASL response line (after ``expect_raw_line()``)
IdleDone           end IDLE: ``tag OK`` when ``ok``, else ``tag BAD Expected DONE``
================== ============================================================================
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from dataclasses import dataclass, field

__all__ = [
    "AuthenticateLine",
    "ConnectionClose",
    "IdleDone",
    "LiteralChunk",
    "LiteralEnd",
    "LiteralStart",
    "LiteralTooBig",
    "NeedContinuation",
    "ParserEvent",
    "ProtocolError",
]


@dataclass(frozen=True, kw_only=True)
class ParserEvent:
    """Base of every event."""


@dataclass(frozen=True, kw_only=True)
class NeedContinuation(ParserEvent):
    """A synchronising literal ``{size}`` was announced. The parser has paused: answer
    ``+ OK`` and call ``accept_literal()``, or answer tagged NO/BAD and ``reject_literal()``
    (the client then drops the command). ``mailbox`` is set for an APPEND message literal,
    so a missing mailbox can be refused (``NO [TRYCREATE]``) before the data is sent."""

    tag: str
    size: int
    command: str
    binary: bool = False
    append: bool = False
    mailbox: str | None = None


@dataclass(frozen=True, kw_only=True)
class LiteralStart(ParserEvent):
    """An APPEND message whose data will stream as :class:`LiteralChunk` events."""

    tag: str
    command: str
    index: int
    size: int
    mailbox: str
    flags: tuple[str, ...] = ()
    internal_date: _dt.datetime | None = None
    binary: bool = False
    utf8: bool = False


@dataclass(frozen=True, kw_only=True)
class LiteralChunk(ParserEvent):
    tag: str
    index: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class LiteralEnd(ParserEvent):
    tag: str
    index: int
    size: int


@dataclass(frozen=True, kw_only=True)
class ProtocolError(ParserEvent):
    """The command failed to parse. Answer ``tag status [code] message``, or ``* BAD
    message`` when ``tag`` is None. The parser has resynchronised and stays usable."""

    tag: str | None
    message: str
    code: str | None = None
    status: str = "BAD"
    command: str | None = None

    def response(self) -> bytes:
        """The answer to send: ``tag status [code] message`` or ``* BAD message``."""
        from columba.proto.imap.response import tagged, untagged_status

        if self.tag is None:
            return untagged_status("BAD", self.message, code=self.code)
        return tagged(self.tag, self.status, self.message, code=self.code)


@dataclass(frozen=True, kw_only=True)
class LiteralTooBig(ProtocolError):  # noqa: N818 - an event, not an exception
    """A synchronising literal over its limit (APPENDLIMIT for APPEND): answer
    ``tag NO [TOOBIG] ...``; the client won't send the data."""

    size: int = 0
    limit: int = 0


@dataclass(frozen=True, kw_only=True)
class ConnectionClose(ParserEvent):
    """Unrecoverable: a non-synchronising literal over its limit (its data is already on
    the way and can't be told from commands), or input past a bound while paused. Send
    ``tag status [code] message`` if ``tag`` is set, ``* BYE message``, and close. The
    parser ignores everything after this."""

    tag: str | None
    message: str
    code: str | None = None
    status: str = "BAD"

    def response(self) -> bytes:
        """The lines to send before closing: the tagged answer (if any) and ``* BYE``."""
        from columba.proto.imap.response import bye, tagged

        out = b""
        if self.tag is not None:
            out += tagged(self.tag, self.status, self.message, code=self.code)
        return out + bye(self.message)


@dataclass(frozen=True, kw_only=True)
class AuthenticateLine(ParserEvent):
    """One SASL client response line (CRLF removed). ``*`` cancels the exchange."""

    line: bytes = field(repr=False)

    @property
    def cancelled(self) -> bool:
        return self.line == b"*"

    def decode(self) -> bytes:
        """The base64-decoded response; ``ValueError`` when it isn't valid base64
        (answer ``tag BAD``)."""
        try:
            return base64.b64decode(self.line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("invalid base64 in SASL response") from exc


@dataclass(frozen=True, kw_only=True)
class IdleDone(ParserEvent):
    """The line that ends IDLE: ``ok`` when it was ``DONE``."""

    ok: bool = True
