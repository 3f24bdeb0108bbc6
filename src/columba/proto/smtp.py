"""Sans-IO SMTP/LMTP server codec: bytes in, typed events out; replies out as bytes.

Why hand-written
================
Columba needs LMTP's defining behaviour (RFC 2033 §4.2): after the message, one reply *per
accepted recipient*, in RCPT order, so that delivery to one mailbox can fail (over quota,
temporary storage error) without failing the others, and so that the proxy can fan one
LMTP transaction out to several backends. aiosmtpd's LMTP class only swaps HELO/EHLO for
LHLO and still gives one reply after DATA, for all recipients together. It is also an
asyncio server, not a codec, so it can't sit under Columba's own connection driver, STARTTLS
and PROXY-protocol handling, and its DATA handling keeps the whole message in memory. This
module is the codec only; the I/O layer decides every reply.

How to drive it
===============
``parser.feed(data)`` returns the events found so far, in order. The I/O layer answers
them in that order (pipelining, RFC 2920, is just several commands in one feed). Three
commands make the parser **stop** because what follows them depends on the server's answer:

* :class:`Data` — after replying 354 call ``start_data()``; after refusing call ``resume()``.
* :class:`Auth` / :class:`AuthResponse` — after a 334 challenge call
  ``expect_auth_line()`` (the next line becomes an :class:`AuthResponse`); when the
  exchange is over (235/535/501…) call ``resume()``.
* :class:`StartTls` — after replying 220 and starting TLS call ``start_tls()``: it drops
  plaintext the client pipelined after STARTTLS (the CVE-2011-0411 injection) and returns
  it; after refusing call ``resume()``.

A stopping command is always the last event of its batch. Each of these methods returns the
events that follow from bytes already buffered, so a driver loop is just::

    queue = deque(parser.feed(data))
    while queue:
        event = queue.popleft()
        ...                                     # decide and write the reply
        if parser.paused == "DATA":
            queue.extend(parser.start_data() if accepted else parser.resume())
        elif parser.paused == "AUTH":           # after Auth or AuthResponse
            queue.extend(parser.expect_auth_line() if sent_334 else parser.resume())
        elif parser.paused == "STARTTLS":
            if accepted: parser.start_tls()     # then feed decrypted bytes
            else: queue.extend(parser.resume())

While stopped, ``feed()`` only buffers: stop reading from the socket until it is resolved
(``paused`` says so, ``buffered_bytes`` how much is held).

BDAT (RFC 3030) needs no decision: its chunk follows the command whatever the answer, so
:class:`Bdat` is followed at once by :class:`MessageChunk` events carrying the octets exactly
as sent, then :class:`ChunkEnd` — reply to the BDAT there (in LMTP, after the ``LAST`` chunk,
once per recipient).

Limits
======
* Command lines longer than ``max_line_length`` octets (not counting CRLF; RFC 5321 §4.5.3.1.4
  says 512 with CRLF, we are lenient up to this bound) give ``500 5.5.2 Line too long``; the
  rest of the line is discarded as it arrives, never buffered. ``AUTH`` lines and SASL
  responses may be up to ``max_auth_line_length`` (RFC 4954 §4: 12288 is enough for deployed
  mechanisms; a longer response gives ``500 5.5.6``).
* Message size: ``MAIL … SIZE=n`` over ``max_message_size`` gives ``552 5.3.4`` at once. A
  DATA or BDAT message that grows past it stops producing chunks once its first
  ``max_message_size`` octets are out; the rest is read and dropped, and a ``552 5.3.4``
  :class:`ProtocolError` with ``data_ended=True`` takes the place of :class:`MessageEnd` /
  :class:`ChunkEnd` (every further BDAT chunk of the same transaction gets one too,
  RFC 3030 §4.2). The chunks already emitted must then be thrown away.
* Recipients: more than ``max_recipients`` RCPT commands in one transaction give
  ``452 4.5.3 Too many recipients`` (RFC 5321 §4.5.3.1.10). The parser counts RCPTs it
  parsed, accepted or not; the server may apply a lower limit of its own.
* Buffering: the parser holds at most one partial command line (bounded as above), or at
  most 2 octets of message data, or, while stopped, what was fed after the stopping command.

Line endings
============
RFC 5321 §2.3.8 and §4.1.1.4: lines end in CRLF; a server MUST NOT treat a bare LF as a
line end in message data, and ``<LF>.<LF>`` MUST NOT end the data. So:

* Command lines: a bare LF also ends a line (one CR before it is dropped). This is the
  usual leniency (sendmail, Postfix before 3.9, Dovecot) and is safe here because a command
  line carries no data that another hop re-parses.
* Message data: only ``<CRLF>.<CRLF>`` ends it, and dots are unstuffed only after CRLF, so
  the SMTP-smuggling variants (``<LF>.<LF>``, ``<LF>.<CRLF>``, ``<CR>.<CR>`` …) are plain
  content and can never end a message early. What happens to bare LFs is ``bare_lf``:

  - ``"reject"`` (default): chunks stop at the first bare LF, the message is read to its
    end and refused with ``550 5.5.2`` (``data_ended=True``), as Postfix 3.9's
    ``smtpd_forbid_bare_newline`` does. Columba stores and
    relays messages, and a message whose line ends differ between hops is what smuggling
    is made of; the stored form (RFC 5322, CRLF) would not be faithful either.
  - ``"normalize"``: each bare LF becomes CRLF in the delivered bytes (size counted after).
  - ``"keep"``: passed through unchanged.

  A bare CR is ordinary content under every policy. BDAT content is never looked into
  (BINARYMIME).

Other choices
=============
* Commands are UTF-8 (RFC 6531); other bytes and control characters give ``500 5.5.2``.
* Addresses: see :mod:`columba.proto.smtp_address`. Bad sender ``501 5.1.7``, bad recipient
  ``501 5.1.3``, non-ASCII without ``SMTPUTF8`` on the transaction's MAIL ``553 5.6.7``.
* In LMTP mode HELO/EHLO are unknown commands and LHLO is accepted; in SMTP mode the reverse.
* Unknown verbs: ``500 5.5.2``; bad arguments: ``501 5.5.4``. After any error the parser
  goes on with the next line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from typing import Literal

from columba.proto.smtp_address import (
    Address,
    AddressError,
    NonAsciiAddressError,
    is_valid_domain,
    parse_path,
    split_path,
    xtext_decode,
    xtext_encode,
)
from columba.proto.smtp_events import (
    Auth,
    AuthResponse,
    Bdat,
    ChunkEnd,
    Command,
    Data,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    Lhlo,
    Mail,
    MessageChunk,
    MessageEnd,
    Noop,
    ProtocolError,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Vrfy,
    XClient,
)
from columba.proto.smtp_reply import ehlo_capabilities, ehlo_reply, reply

__all__ = [
    "Address",
    "Auth",
    "AuthResponse",
    "BareLfPolicy",
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
    "SmtpServerParser",
    "StartTls",
    "Vrfy",
    "XClient",
    "ehlo_capabilities",
    "ehlo_reply",
    "is_valid_domain",
    "reply",
    "xtext_decode",
    "xtext_encode",
]

BareLfPolicy = Literal["reject", "normalize", "keep"]

RFC4954_AUTH_LINE = 12288

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_VERB_SPLIT = re.compile(r"([^ \t]*)[ \t]*(.*)\Z", re.S)
_WS = re.compile(r"[ \t]+")
_DIGITS = re.compile(r"[0-9]{1,20}\Z")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_SASL_MECH = re.compile(r"[A-Z0-9_-]{1,20}\Z")
_XCLIENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_BARE_LF = re.compile(rb"(?<!\r)\n")

_BODY_TYPES = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class _Mode(Enum):
    COMMAND = "command"
    AUTH_LINE = "auth-line"
    DATA = "data"
    BDAT = "bdat"


class _RejectError(Exception):
    """Internal: a command failed to parse; becomes a ProtocolError."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.enhanced = enhanced
        self.text = text


def _syntax(text: str) -> _RejectError:
    return _RejectError(501, "5.5.4", text)


def _upper(s: str) -> str:
    """Upper-case ASCII only: ``"ſ".upper() == "S"`` must not make a keyword."""
    return s.upper() if s.isascii() else s


class SmtpServerParser:
    """Incremental server-side parser for SMTP (RFC 5321) or LMTP (RFC 2033).

    See the module docstring for the driving protocol, limits and line-ending policy.
    Nothing fed to it makes it raise; calling ``start_data()`` and friends at the wrong
    moment does (RuntimeError), as that is a bug in the caller.
    """

    def __init__(
        self,
        lmtp: bool = False,
        max_line_length: int = 4096,
        max_message_size: int | None = None,
        max_recipients: int = 1000,
        *,
        bare_lf: BareLfPolicy = "reject",
        max_auth_line_length: int = RFC4954_AUTH_LINE,
    ) -> None:
        if max_line_length < 64:
            raise ValueError("max_line_length must be at least 64")
        if max_message_size is not None and max_message_size < 0:
            raise ValueError("max_message_size must be >= 0 or None")
        if max_recipients < 1:
            raise ValueError("max_recipients must be >= 1")
        if bare_lf not in ("reject", "normalize", "keep"):
            raise ValueError(f"unknown bare_lf policy {bare_lf!r}")
        self.lmtp = lmtp
        self.max_line_length = max_line_length
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.bare_lf: BareLfPolicy = bare_lf
        self.max_auth_line_length = max(max_auth_line_length, max_line_length)

        self._buf = bytearray()
        self._pos = 0
        self._mode = _Mode.COMMAND
        self._paused: type[Command] | None = None
        self._skip_line = False  # discarding the rest of a too-long line
        # message state
        self._line_start = True
        self._data_verb = "DATA"
        self._msg_size = 0
        self._data_error: ProtocolError | None = None
        self._bdat_remaining = 0
        self._bdat_size = 0
        self._bdat_last = False
        # transaction state
        self._rcpt_count = 0
        self._tx_utf8 = False

        hello: dict[str, Callable[[str], Command]] = (
            {"LHLO": self._lhlo} if lmtp else {"HELO": self._helo, "EHLO": self._ehlo}
        )
        self._handlers: dict[str, Callable[[str], Command]] = {
            **hello,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._no_args(Data()),
            "BDAT": self._bdat,
            "RSET": self._no_args(Rset()),
            "NOOP": Noop,
            "QUIT": self._no_args(Quit()),
            "VRFY": self._vrfy,
            "EXPN": self._expn,
            "HELP": Help,
            "STARTTLS": self._no_args(StartTls()),
            "AUTH": self._auth,
            "XCLIENT": self._xclient,
        }

    # ------------------------------------------------------------------ public API

    @property
    def paused(self) -> str | None:
        """The verb the parser stopped after (``"DATA"``, ``"AUTH"``, ``"STARTTLS"``), or None."""
        return self._paused.verb if self._paused is not None else None

    @property
    def in_message(self) -> bool:
        """True while reading DATA content or a BDAT chunk."""
        return self._mode in (_Mode.DATA, _Mode.BDAT)

    @property
    def buffered_bytes(self) -> int:
        """Octets received but not yet turned into events."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes; return the events they complete."""
        if data:
            self._buf += data
        if self._paused is not None:
            return []
        return self._run()

    def start_data(self) -> list[Event]:
        """The server answered DATA with 354: what follows is message content."""
        self._require_paused(Data, "start_data")
        self._paused = None
        self._mode = _Mode.DATA
        self._data_verb = "DATA"
        self._line_start = True
        self._msg_size = 0
        self._data_error = None
        return self._run()

    def expect_auth_line(self) -> list[Event]:
        """The server sent a 334 challenge: the next line is a SASL response."""
        self._require_paused(Auth, "expect_auth_line")
        self._paused = None
        self._mode = _Mode.AUTH_LINE
        return self._run()

    def start_tls(self) -> bytes:
        """TLS is starting: drop (and return) plaintext pipelined after STARTTLS.

        The session restarts (RFC 3207 §4.2), so the transaction state is reset too.
        Feed the decrypted bytes afterwards.
        """
        self._require_paused(StartTls, "start_tls")
        dropped = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        self._paused = None
        self._mode = _Mode.COMMAND
        self._skip_line = False
        self.reset_transaction()
        return dropped

    def resume(self) -> list[Event]:
        """The server refused DATA/STARTTLS or ended a SASL exchange: back to commands."""
        if self._paused is None:
            raise RuntimeError("resume() called while the parser is not paused")
        self._paused = None
        self._mode = _Mode.COMMAND
        return self._run()

    def reset_transaction(self) -> None:
        """Forget the mail transaction (recipient count, SMTPUTF8, BDAT size).

        The parser does this itself on MAIL, RSET, HELO/EHLO/LHLO, XCLIENT, STARTTLS and at
        the end of a message; call it when the server ends a transaction for another reason.
        """
        self._rcpt_count = 0
        self._tx_utf8 = False
        if not self.in_message:
            self._msg_size = 0
            self._data_error = None

    # ------------------------------------------------------------------ machinery

    def _require_paused(self, kind: type[Command], name: str) -> None:
        if self._paused is not kind:
            raise RuntimeError(
                f"{name}() is only valid right after {kind.verb}; parser paused={self.paused}"
            )

    def _run(self) -> list[Event]:
        events: list[Event] = []
        while self._paused is None:
            if self._mode is _Mode.DATA:
                progressed = self._step_data(events)
            elif self._mode is _Mode.BDAT:
                progressed = self._step_bdat(events)
            else:
                progressed = self._step_line(events)
            if not progressed:
                break
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        return events

    # --- command and SASL lines

    def _line_limit(self) -> int:
        if self._mode is _Mode.AUTH_LINE:
            return self.max_auth_line_length
        head = bytes(self._buf[self._pos : self._pos + 5]).upper()
        return self.max_auth_line_length if head == b"AUTH " else self.max_line_length

    def _too_long(self, events: list[Event]) -> None:
        if self._mode is _Mode.AUTH_LINE:
            events.append(
                ProtocolError(500, "5.5.6", "Authentication exchange line too long", "AUTH")
            )
            self._mode = _Mode.COMMAND
        else:
            events.append(ProtocolError(500, "5.5.2", "Line too long"))

    def _step_line(self, events: list[Event]) -> bool:
        buf = self._buf
        nl = buf.find(b"\n", self._pos)
        if nl < 0:
            pending = len(buf) - self._pos
            if self._skip_line:
                self._pos = len(buf)
            elif pending > self._line_limit() + 1:  # +1: a CR that may precede the LF
                self._too_long(events)
                self._skip_line = True
                self._pos = len(buf)
            return False
        if self._skip_line:
            self._skip_line = False
            self._pos = nl + 1
            return True
        limit = self._line_limit()
        raw = bytes(buf[self._pos : nl])
        self._pos = nl + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > limit:
            self._too_long(events)
            return True
        if self._mode is _Mode.AUTH_LINE:
            self._mode = _Mode.COMMAND
            events.append(AuthResponse(raw.decode("ascii", "replace").strip(" \t")))
            self._paused = Auth
            return True
        self._command(raw, events)
        return True

    def _command(self, raw: bytes, events: list[Event]) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            events.append(ProtocolError(500, "5.5.2", "Syntax error, command is not UTF-8"))
            return
        if _CONTROL.search(line):
            events.append(ProtocolError(500, "5.5.2", "Syntax error, control character in command"))
            return
        m = _VERB_SPLIT.match(line)
        assert m is not None  # the pattern matches any string
        verb = _upper(m[1])
        handler = self._handlers.get(verb)
        if handler is None:
            text = "Syntax error, command unrecognized"
            if self.lmtp and verb in ("HELO", "EHLO"):
                text += " (LMTP: use LHLO)"
            elif not self.lmtp and verb == "LHLO":
                text += " (LHLO is LMTP only)"
            events.append(ProtocolError(500, "5.5.2", text))
            return
        try:
            cmd = handler(m[2].rstrip(" \t"))
        except _RejectError as e:
            events.append(ProtocolError(e.code, e.enhanced, e.text, verb))
            return
        events.append(cmd)
        self._after_command(cmd)

    def _after_command(self, cmd: Command) -> None:
        if isinstance(cmd, Data | Auth | StartTls):
            self._paused = type(cmd)
        elif isinstance(cmd, Bdat):
            self._mode = _Mode.BDAT
            self._data_verb = "BDAT"
            self._bdat_remaining = cmd.size
            self._bdat_size = cmd.size
            self._bdat_last = cmd.last
        elif isinstance(cmd, Mail):
            self.reset_transaction()
            self._tx_utf8 = cmd.smtputf8
        elif isinstance(cmd, Rcpt):
            self._rcpt_count += 1
        elif isinstance(cmd, Rset | Helo | Ehlo | Lhlo | XClient):
            self.reset_transaction()

    # --- DATA content

    def _content(self, seg: bytes, out: bytearray) -> None:
        """Account for message bytes and append them to ``out``.

        On the first failure (bare LF under "reject", size over the limit) only the bytes
        before the failing one are appended, and nothing after: what reaches the caller
        does not depend on how the input was split into feeds.
        """
        if self._data_error is not None:
            return
        error: ProtocolError | None = None
        if (
            self._mode is _Mode.DATA
            and self.bare_lf != "keep"
            and seg.count(b"\n") != seg.count(b"\r\n")  # 10x faster than the regex alone
        ):
            m = _BARE_LF.search(seg)
            if m is not None:
                if self.bare_lf == "reject":
                    seg = seg[: m.start()]
                    error = ProtocolError(
                        550,
                        "5.5.2",
                        "Bare <LF> received in message data; lines must end with <CR><LF>",
                        "DATA",
                        data_ended=True,
                    )
                else:
                    seg = _BARE_LF.sub(b"\r\n", seg)
        if self.max_message_size is not None:
            room = self.max_message_size - self._msg_size
            if len(seg) > room:
                seg = seg[:room]
                error = ProtocolError(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                    self._data_verb,
                    data_ended=True,
                )
        self._msg_size += len(seg)
        out += seg
        if error is not None:
            self._data_error = error

    def _step_data(self, events: list[Event]) -> bool:
        buf = self._buf
        pos = self._pos
        end = len(buf)
        out = bytearray()
        finished = False
        while True:
            if self._line_start:
                avail = end - pos
                if avail == 0:
                    break
                if buf[pos] == 0x2E:  # "." at the start of a line
                    if avail < 2:
                        break
                    if buf[pos + 1] == 0x0D:
                        if avail < 3:
                            break
                        if buf[pos + 2] == 0x0A:  # <CRLF>.<CRLF>
                            pos += 3
                            finished = True
                            break
                    pos += 1  # dot-stuffing: drop the leading dot (RFC 5321 §4.5.2)
                self._line_start = False
            i = buf.find(b"\r\n.", pos)
            if i >= 0:
                self._content(bytes(buf[pos : i + 2]), out)
                pos = i + 2
                self._line_start = True
                continue
            if pos == end:
                break
            if end - pos >= 2 and buf[end - 2] == 0x0D and buf[end - 1] == 0x0A:
                self._content(bytes(buf[pos:end]), out)
                pos = end
                self._line_start = True
            elif buf[end - 1] == 0x0D:  # keep a CR that may start <CRLF>.
                self._content(bytes(buf[pos : end - 1]), out)
                pos = end - 1
            else:
                self._content(bytes(buf[pos:end]), out)
                pos = end
            break
        self._pos = pos
        if out:
            events.append(MessageChunk(bytes(out)))
        if not finished:
            return False
        events.append(self._data_error if self._data_error is not None else MessageEnd())
        self._mode = _Mode.COMMAND
        self.reset_transaction()
        return True

    # --- BDAT content

    def _step_bdat(self, events: list[Event]) -> bool:
        n = min(self._bdat_remaining, len(self._buf) - self._pos)
        if n:
            seg = bytes(self._buf[self._pos : self._pos + n])
            self._pos += n
            self._bdat_remaining -= n
            out = bytearray()
            self._content(seg, out)
            if out:
                events.append(MessageChunk(bytes(out)))
        if self._bdat_remaining:
            return False
        error = self._data_error
        events.append(error if error is not None else ChunkEnd(self._bdat_size, self._bdat_last))
        self._mode = _Mode.COMMAND
        if self._bdat_last:
            self.reset_transaction()
        return True

    # ------------------------------------------------------------------ command handlers

    @staticmethod
    def _no_args(cmd: Command) -> Callable[[str], Command]:
        def handler(arg: str) -> Command:
            if arg:
                raise _syntax(f"Syntax: {cmd.verb} (no parameters allowed)")
            return cmd

        return handler

    @staticmethod
    def _hello_domain(verb: str, arg: str) -> str:
        if not arg:
            raise _syntax(f"Syntax: {verb} hostname")
        return arg

    def _helo(self, arg: str) -> Command:
        return Helo(self._hello_domain("HELO", arg))

    def _ehlo(self, arg: str) -> Command:
        return Ehlo(self._hello_domain("EHLO", arg))

    def _lhlo(self, arg: str) -> Command:
        return Lhlo(self._hello_domain("LHLO", arg))

    def _vrfy(self, arg: str) -> Command:
        if not arg:
            raise _syntax("Syntax: VRFY address")
        return Vrfy(arg)

    def _expn(self, arg: str) -> Command:
        if not arg:
            raise _syntax("Syntax: EXPN list")
        return Expn(arg)

    @staticmethod
    def _params(text: str) -> dict[str, str | None]:
        params: dict[str, str | None] = {}
        if not text:
            return params
        for tok in _WS.split(text):
            key, eq, value = tok.partition("=")
            if not _ESMTP_KEYWORD.match(key) or (eq and not value):
                raise _syntax(f"Syntax error in parameter {tok!r}")
            if eq and not all(c != "=" and (33 <= ord(c) <= 126 or ord(c) > 0x9F) for c in value):
                raise _syntax(f"Syntax error in parameter {tok!r}")
            ukey = _upper(key)
            if ukey in params:
                raise _syntax(f"Duplicate parameter {ukey}")
            params[ukey] = value if eq else None
        return params

    def _envelope(self, arg: str, keyword: str, usage: str) -> tuple[str, dict[str, str | None]]:
        if _upper(arg[: len(keyword)]) != keyword:
            raise _syntax(usage)
        try:
            path, rest = split_path(arg[len(keyword) :].lstrip(" \t"))
        except AddressError:
            raise _syntax(usage) from None
        return path, self._params(rest)

    def _mail(self, arg: str) -> Command:
        path, params = self._envelope(arg, "FROM:", "Syntax: MAIL FROM:<address>")
        smtputf8 = "SMTPUTF8" in params
        if not smtputf8 and not all(v is None or v.isascii() for v in params.values()):
            raise _syntax("Non-ASCII parameter value without SMTPUTF8")
        size: int | None = None
        body: str | None = None
        ret: str | None = None
        envid: str | None = None
        auth: str | None = None
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not _DIGITS.match(value):
                    raise _syntax("Syntax error in SIZE parameter")
                size = int(value)
            elif key == "BODY":
                body = _upper(value or "")
                if body not in _BODY_TYPES:
                    raise _syntax("BODY must be 7BIT, 8BITMIME or BINARYMIME")
            elif key == "SMTPUTF8":
                if value is not None:
                    raise _syntax("SMTPUTF8 takes no value")
            elif key == "RET":
                ret = _upper(value or "")
                if ret not in ("FULL", "HDRS"):
                    raise _syntax("RET must be FULL or HDRS")
            elif key == "ENVID":
                if value is None or len(value) > 100:
                    raise _syntax("Syntax error in ENVID parameter")
                envid = self._xtext(value, "ENVID", smtputf8)
            elif key == "AUTH":
                if value is None:
                    raise _syntax("Syntax error in AUTH parameter")
                auth = self._xtext(value, "AUTH", smtputf8)
        try:
            sender = parse_path(path, allow_null=True, utf8=smtputf8)
        except NonAsciiAddressError:
            raise _RejectError(553, "5.6.7", "Non-ASCII sender address requires SMTPUTF8") from None
        except AddressError:
            raise _RejectError(501, "5.1.7", "Bad sender address syntax") from None
        if size is not None and self.max_message_size is not None and size > self.max_message_size:
            raise _RejectError(552, "5.3.4", "Message size exceeds fixed maximum message size")
        return Mail(sender, params, size, body, smtputf8, ret, envid, auth)

    def _rcpt(self, arg: str) -> Command:
        path, params = self._envelope(arg, "TO:", "Syntax: RCPT TO:<address>")
        utf8 = self._tx_utf8
        if not utf8 and not all(v is None or v.isascii() for v in params.values()):
            raise _syntax("Non-ASCII parameter value without SMTPUTF8")
        notify: tuple[str, ...] | None = None
        orcpt: tuple[str, str] | None = None
        for key, value in params.items():
            if key == "NOTIFY":
                items = tuple(_upper(v) for v in (value or "").split(","))
                if items != ("NEVER",) and (
                    not set(items) <= _NOTIFY or len(set(items)) != len(items)
                ):
                    raise _syntax("NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY")
                notify = items
            elif key == "ORCPT":
                addr_type, semi, addr = (value or "").partition(";")
                if not semi or not addr or not _ADDR_TYPE.match(addr_type):
                    raise _syntax("Syntax error in ORCPT parameter")
                orcpt = (addr_type, self._xtext(addr, "ORCPT", utf8))
        try:
            rcpt = parse_path(path, allow_postmaster=True, utf8=utf8)
        except NonAsciiAddressError:
            raise _RejectError(
                553, "5.6.7", "Non-ASCII recipient address requires SMTPUTF8"
            ) from None
        except AddressError:
            raise _RejectError(501, "5.1.3", "Bad recipient address syntax") from None
        assert rcpt is not None  # allow_null is False
        if self._rcpt_count >= self.max_recipients:
            raise _RejectError(452, "4.5.3", "Too many recipients")
        return Rcpt(rcpt, params, notify, orcpt)

    @staticmethod
    def _xtext(value: str, name: str, utf8: bool) -> str:
        try:
            return xtext_decode(value, utf8=utf8)
        except AddressError:
            raise _syntax(f"Syntax error in {name} parameter") from None

    def _bdat(self, arg: str) -> Command:
        parts = _WS.split(arg) if arg else []
        if not 1 <= len(parts) <= 2 or not _DIGITS.match(parts[0]):
            raise _syntax("Syntax: BDAT size [LAST]")
        if len(parts) == 2 and _upper(parts[1]) != "LAST":
            raise _syntax("Syntax: BDAT size [LAST]")
        return Bdat(int(parts[0]), len(parts) == 2)

    def _auth(self, arg: str) -> Command:
        parts = _WS.split(arg) if arg else []
        if not 1 <= len(parts) <= 2:
            raise _syntax("Syntax: AUTH mechanism [initial-response]")
        mech = _upper(parts[0])
        if not _SASL_MECH.match(mech):
            raise _syntax("Syntax error in SASL mechanism name")
        if len(parts) == 1:
            return Auth(mech, None)
        return Auth(mech, "" if parts[1] == "=" else parts[1])

    def _xclient(self, arg: str) -> Command:
        if not arg:
            raise _syntax("Syntax: XCLIENT attribute=value ...")
        attrs: dict[str, str] = {}
        for tok in _WS.split(arg):
            name, eq, value = tok.partition("=")
            if not eq or not _XCLIENT_NAME.match(name):
                raise _syntax(f"Syntax error in XCLIENT attribute {tok!r}")
            uname = _upper(name)
            if uname in attrs:
                raise _syntax(f"Duplicate XCLIENT attribute {uname}")
            attrs[uname] = self._xtext(value, uname, True) if value else ""
        return XClient(attrs)
