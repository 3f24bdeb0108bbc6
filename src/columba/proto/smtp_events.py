"""Events produced by :class:`columba.proto.smtp.SmtpServerParser`.

Every client command becomes one :class:`Command` subclass (``verb`` names it); message
bytes become :class:`MessageChunk` events closed by :class:`MessageEnd` (DATA) or
:class:`ChunkEnd` (each BDAT chunk); anything the client got wrong becomes a
:class:`ProtocolError` that carries the reply to send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from columba.proto.smtp_address import Address
from columba.proto.smtp_reply import reply

__all__ = [
    "Auth",
    "AuthResponse",
    "Bdat",
    "ChunkEnd",
    "Command",
    "Data",
    "Ehlo",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "Lhlo",
    "Mail",
    "MessageChunk",
    "MessageEnd",
    "Noop",
    "ProtocolError",
    "Quit",
    "Rcpt",
    "Rset",
    "StartTls",
    "Vrfy",
    "XClient",
]


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every parsed command; ``verb`` is the upper-case command name."""

    verb: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Helo(Command):
    verb: ClassVar[str] = "HELO"
    domain: str


@dataclass(frozen=True, slots=True)
class Ehlo(Command):
    verb: ClassVar[str] = "EHLO"
    domain: str


@dataclass(frozen=True, slots=True)
class Lhlo(Command):
    """LMTP's greeting (RFC 2033 §4.1); only accepted by a parser in LMTP mode."""

    verb: ClassVar[str] = "LHLO"
    domain: str


@dataclass(frozen=True, slots=True)
class Mail(Command):
    """``MAIL FROM:<reverse_path> params``.

    ``reverse_path`` is None for the null sender ``<>``. ``params`` holds every parameter
    as sent (upper-case keyword → raw value, None for a keyword without ``=``), including
    ones this parser does not know: the server answers ``555 5.5.4`` for those it does not
    support. The known ones are also decoded into the typed fields.
    """

    verb: ClassVar[str] = "MAIL"
    reverse_path: Address | None
    params: Mapping[str, str | None] = field(default_factory=dict)
    size: int | None = None  # RFC 1870
    body: str | None = None  # "7BIT" | "8BITMIME" | "BINARYMIME" (RFC 6152, RFC 3030)
    smtputf8: bool = False  # RFC 6531
    ret: str | None = None  # "FULL" | "HDRS" (RFC 3461)
    envid: str | None = None  # RFC 3461, xtext-decoded
    auth: str | None = None  # RFC 4954 AUTH=, xtext-decoded ("<>" kept as is)

    @property
    def is_null_sender(self) -> bool:
        return self.reverse_path is None


@dataclass(frozen=True, slots=True)
class Rcpt(Command):
    """``RCPT TO:<forward_path> params``; ``params`` as for :class:`Mail`."""

    verb: ClassVar[str] = "RCPT"
    forward_path: Address
    params: Mapping[str, str | None] = field(default_factory=dict)
    notify: tuple[str, ...] | None = None  # ("NEVER",) or subset of SUCCESS/FAILURE/DELAY
    orcpt: tuple[str, str] | None = None  # (addr-type, xtext-decoded address)


@dataclass(frozen=True, slots=True)
class Data(Command):
    """DATA. The parser stops here until the server calls ``start_data()`` or ``resume()``."""

    verb: ClassVar[str] = "DATA"


@dataclass(frozen=True, slots=True)
class Bdat(Command):
    """``BDAT size [LAST]`` (RFC 3030). Its ``size`` octets follow as MessageChunk events."""

    verb: ClassVar[str] = "BDAT"
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset(Command):
    verb: ClassVar[str] = "RSET"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    verb: ClassVar[str] = "NOOP"
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Quit(Command):
    verb: ClassVar[str] = "QUIT"


@dataclass(frozen=True, slots=True)
class Vrfy(Command):
    verb: ClassVar[str] = "VRFY"
    argument: str


@dataclass(frozen=True, slots=True)
class Expn(Command):
    verb: ClassVar[str] = "EXPN"
    argument: str


@dataclass(frozen=True, slots=True)
class Help(Command):
    verb: ClassVar[str] = "HELP"
    argument: str = ""


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    """STARTTLS. The parser stops until ``start_tls()`` (drops pipelined plaintext) or
    ``resume()`` (the server refused)."""

    verb: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """``AUTH mechanism [initial-response]`` (RFC 4954).

    ``initial_response`` is None when absent, ``""`` for ``=`` (empty response), otherwise
    the base64 text as sent (the SASL layer decodes it). The parser stops until
    ``expect_auth_line()`` (a 334 challenge was sent) or ``resume()``.
    """

    verb: ClassVar[str] = "AUTH"
    mechanism: str
    initial_response: str | None = None


@dataclass(frozen=True, slots=True)
class XClient(Command):
    """Postfix XCLIENT: upper-case attribute name → xtext-decoded value."""

    verb: ClassVar[str] = "XCLIENT"
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One SASL response line, after ``expect_auth_line()``; ``*`` cancels (RFC 4954)."""

    response: str

    @property
    def cancelled(self) -> bool:
        return self.response == "*"


@dataclass(frozen=True, slots=True)
class MessageChunk:
    """Message bytes: dot-unstuffed for DATA, exactly as sent for BDAT.

    Chunk boundaries carry no meaning; only the concatenation does.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """The DATA terminator ``<CRLF>.<CRLF>`` was received; the message is complete."""


@dataclass(frozen=True, slots=True)
class ChunkEnd:
    """All octets of one BDAT chunk were received; ``last`` ends the message."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Something the client sent is wrong; send ``to_reply()`` (or per recipient, in LMTP).

    ``verb`` names the command it belongs to when known. ``data_ended`` is True when the
    error takes the place of :class:`MessageEnd` or :class:`ChunkEnd`: the message (or
    chunk) has been read to its end and must be discarded, including chunks already seen.
    """

    code: int
    enhanced: str
    text: str
    verb: str | None = None
    data_ended: bool = False

    def to_reply(self) -> bytes:
        return reply(self.code, self.enhanced, self.text)


Event = Command | AuthResponse | MessageChunk | MessageEnd | ChunkEnd | ProtocolError
