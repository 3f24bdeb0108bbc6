"""The LMTP connection handler (RFC 2033): session state, replies, and the hand-off to delivery.

Registered for the ``lmtp`` service. Bytes go through the sans-IO codec
(:class:`~columba.proto.smtp.SmtpServerParser` in LMTP mode); this module decides every reply:

* greeting ``220 HOSTNAME Columba LMTP ready``; ``LHLO`` answers with ``PIPELINING``, ``SIZE
  [n]`` (n = ``mail_save_max_size`` when set), ``ENHANCEDSTATUSCODES``, ``8BITMIME`` and
  ``CHUNKING``; no STARTTLS, AUTH or XCLIENT (``502 5.5.1``).
* ``MAIL`` (one per transaction; ``SIZE`` and ``BODY=7BIT|8BITMIME`` accepted, other
  parameters ``555 5.5.4``), ``RCPT`` with a userdb lookup per recipient (``user+detail`` is
  looked up as ``user``; unknown ``550 5.1.1``, lookup failure ``451 4.3.0``).
* ``DATA`` and ``BDAT`` stream into a buffer bounded by ``mail_save_max_size`` (or
  :data:`DEFAULT_MAX_MESSAGE_SIZE` when unlimited); a bigger message is read to its end and
  refused ``552 5.3.4``. After the message (DATA's dot, or the ``BDAT … LAST`` chunk) comes
  **one reply per accepted recipient**, in RCPT order, from
  :func:`columba.delivery.deliver_message`: ``250 2.0.0 <rcpt> ID Saved`` only once the copy
  is durable.
* ``RSET``, ``NOOP``, ``QUIT`` (``221 2.0.0 OK``), ``VRFY`` (``252 2.3.3``, never reveals users),
  ``EXPN`` (``502``); codec errors are answered with the codec's reply.
* A connection idle for :data:`IDLE_TIMEOUT` seconds gets ``421 4.4.2`` and is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from columba.auth.service import Authenticator, AuthError
from columba.context import current_context
from columba.delivery import (
    DeliveryReply,
    DeliverySettings,
    Envelope,
    Recipient,
    deliver_message,
    lookup_name,
)
from columba.net.connection import ConnectionInfo
from columba.net.services import register_service
from columba.proto.smtp import (
    Auth,
    AuthResponse,
    Bdat,
    ChunkEnd,
    Data,
    Event,
    Expn,
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
    SmtpServerParser,
    StartTls,
    Vrfy,
    XClient,
    ehlo_capabilities,
    ehlo_reply,
    reply,
)
from columba.storage.api import MailStorage

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "IDLE_TIMEOUT", "LmtpSession", "serve_lmtp"]

log = logging.getLogger("columba.lmtp")

IDLE_TIMEOUT = 300.0
"""Seconds without input before the server says 421 and closes (Dovecot: 5 minutes)."""

DEFAULT_MAX_MESSAGE_SIZE = 100 * 1024 * 1024
"""Bound of the message buffer when ``mail_save_max_size`` is 0 (unlimited): messages are held
in memory until delivered, so some bound is needed."""

READ_SIZE = 65536

_MAIL_PARAMS = frozenset({"SIZE", "BODY"})
_RCPT_PARAMS = frozenset({"ORCPT", "NOTIFY"})


@dataclass
class _Transaction:
    """One mail transaction: from MAIL to the end of the message (or RSET)."""

    mail: Mail
    recipients: list[Recipient] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    bdat_started: bool = False
    bdat_refused: bytes | None = None
    """The reply for BDAT chunks of a transaction that can't take a message."""
    bdat_last: bool = False


class LmtpSession:
    """One LMTP connection's state machine; :meth:`run` drives it over a stream pair."""

    def __init__(
        self,
        info: ConnectionInfo,
        settings: DeliverySettings,
        authenticator: Authenticator,
        storage: MailStorage,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.info = info
        self.settings = settings
        self.authenticator = authenticator
        self.storage = storage
        self.idle_timeout = idle_timeout
        limit = settings.max_message_size or DEFAULT_MAX_MESSAGE_SIZE
        self.parser = SmtpServerParser(lmtp=True, max_message_size=limit, bare_lf="normalize")
        self.helo: str | None = None
        self.tx: _Transaction | None = None
        self.transactions = 0
        self.closing = False
        self._out: list[bytes] = []
        self._data_accepted = False
        self._orphan_bdat: bytes | None = None
        """The reply owed at the end of a BDAT chunk sent outside a transaction."""

    # ------------------------------------------------------------------ driving

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(220, None, f"{self.settings.hostname} Columba LMTP ready"))
        await writer.drain()
        while not self.closing:
            try:
                async with asyncio.timeout(self.idle_timeout):  # no task per read
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                writer.write(
                    reply(421, "4.4.2", f"{self.settings.hostname} Disconnected for inactivity")
                )
                await writer.drain()
                return
            if not data:
                return
            queue: deque[Event] = deque(self.parser.feed(data))
            while queue and not self.closing:
                event = queue.popleft()
                await self.handle(event)
                if self._out:
                    writer.write(b"".join(self._out))
                    self._out.clear()
                paused = self.parser.paused if not queue else None  # stops end a batch
                if paused == "DATA":
                    accepted = isinstance(event, Data) and self._data_accepted
                    queue.extend(self.parser.start_data() if accepted else self.parser.resume())
                elif paused is not None:  # AUTH, STARTTLS: refused above
                    queue.extend(self.parser.resume())
            await writer.drain()

    def _send(self, data: bytes) -> None:
        self._out.append(data)

    def _reply(self, code: int, enhanced: str | None, text: str) -> None:
        self._out.append(reply(code, enhanced, text))

    # ------------------------------------------------------------------ events

    async def handle(self, event: Event) -> None:
        """Act on one codec event; replies are queued in order."""
        self._data_accepted = False
        if isinstance(event, MessageChunk):
            self._chunk(event.data)
        elif isinstance(event, MessageEnd):
            await self._finish_message()
        elif isinstance(event, ChunkEnd):
            await self._chunk_end(event)
        elif isinstance(event, ProtocolError):
            self._protocol_error(event)
        elif isinstance(event, Lhlo):
            self.helo = event.domain
            self.tx = None
            caps = ehlo_capabilities(max_message_size=self.settings.max_message_size or None)
            self._send(ehlo_reply(self.settings.hostname, caps))
        elif isinstance(event, Mail):
            self._mail(event)
        elif isinstance(event, Rcpt):
            await self._rcpt(event)
        elif isinstance(event, Data):
            self._data()
        elif isinstance(event, Bdat):
            self._bdat(event)
        elif isinstance(event, Rset):
            self.tx = None
            self._reply(250, "2.0.0", "OK")
        elif isinstance(event, Noop):
            self._reply(250, "2.0.0", "OK")
        elif isinstance(event, Quit):
            self._reply(221, "2.0.0", "OK")
            self.closing = True
        elif isinstance(event, Vrfy):
            self._reply(252, "2.3.3", "Try RCPT instead")
        elif isinstance(event, Help):
            self._reply(214, "2.0.0", "Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT")
        elif isinstance(event, Expn | StartTls | Auth | AuthResponse | XClient):
            self._reply(502, "5.5.1", "Unsupported command")
        else:  # HELO/EHLO never come in LMTP mode
            self._reply(500, "5.5.2", "Syntax error, command unrecognized")

    def _mail(self, cmd: Mail) -> None:
        if self.helo is None:
            self._reply(503, "5.5.1", "Invalid command: send LHLO first")
            return
        if self.tx is not None:
            self._reply(503, "5.5.1", "MAIL already given")
            return
        unknown = sorted(set(cmd.params) - _MAIL_PARAMS)
        if unknown:
            self._reply(555, "5.5.4", f"Unsupported parameter {unknown[0]}")
            return
        if cmd.body == "BINARYMIME":
            self._reply(555, "5.5.4", "BODY=BINARYMIME is not supported")
            return
        self.tx = _Transaction(cmd)
        self._reply(250, "2.1.0", "OK")

    async def _rcpt(self, cmd: Rcpt) -> None:
        tx = self.tx
        if tx is None:
            self._reply(503, "5.5.1", "MAIL needed first")
            return
        if tx.bdat_started:
            self._reply(503, "5.5.1", "RCPT not allowed after BDAT")
            return
        unknown = sorted(set(cmd.params) - _RCPT_PARAMS)
        if unknown:
            self._reply(555, "5.5.4", f"Unsupported parameter {unknown[0]}")
            return
        address = str(cmd.forward_path)
        name, detail = lookup_name(
            cmd.forward_path.local_part, cmd.forward_path.domain, self.settings.recipient_delimiter
        )
        user = self.authenticator.normalize(name)
        info = None
        if user is not None:
            try:
                info = await self.authenticator.lookup_user(user)
            except AuthError as exc:
                log.warning(
                    "lmtp: userdb lookup of %s failed: %s (%s)", user, exc, self.info.describe()
                )
                self._reply(451, "4.3.0", f"<{address}> Temporary internal error")
                return
            except Exception:
                log.exception("lmtp: userdb lookup of %s failed (%s)", user, self.info.describe())
                self._reply(451, "4.3.0", f"<{address}> Temporary internal error")
                return
        if info is None:
            self._reply(550, "5.1.1", f"<{address}> User doesn't exist: {address}")
            return
        orcpt = cmd.orcpt[1] if cmd.orcpt is not None else None
        tx.recipients.append(Recipient(address, info, detail, orcpt))
        self._reply(250, "2.1.5", "OK")

    def _data(self) -> None:
        tx = self.tx
        if tx is None:
            self._reply(503, "5.5.1", "MAIL needed first")
        elif tx.bdat_started:
            self._reply(503, "5.5.1", "DATA not allowed after BDAT")
        elif not tx.recipients:
            self._reply(503, "5.5.1", "No valid recipients")
        else:
            tx.data.clear()
            self._data_accepted = True
            self._reply(354, None, "OK")

    def _bdat(self, cmd: Bdat) -> None:
        # The chunk follows whatever we answer; a refusal is sent at the chunk's end.
        tx = self.tx
        if tx is None:
            self._orphan_bdat = reply(503, "5.5.1", "MAIL needed first")
            return
        if not tx.recipients and tx.bdat_refused is None:
            tx.bdat_refused = reply(503, "5.5.1", "No valid recipients")
        tx.bdat_started = True
        tx.bdat_last = cmd.last

    def _chunk(self, data: bytes) -> None:
        tx = self.tx
        if tx is None or tx.bdat_refused is not None:
            return
        tx.data += data

    async def _chunk_end(self, event: ChunkEnd) -> None:
        tx = self.tx
        if tx is None:
            self._send(self._orphan_bdat or reply(503, "5.5.1", "MAIL needed first"))
            return
        if tx.bdat_refused is not None:
            self._send(tx.bdat_refused)
            if event.last:
                self.tx = None
            return
        if not event.last:
            self._reply(250, "2.0.0", f"{event.size} octets received")
            return
        await self._finish_message()

    def _protocol_error(self, error: ProtocolError) -> None:
        if not error.data_ended:
            self._send(error.to_reply())
            return
        # The message was read to its end and is refused as a whole.
        tx = self.tx
        if tx is None:
            self._send(self._orphan_bdat or error.to_reply())
            return
        whole_message = error.verb == "DATA" or tx.bdat_last
        if tx.bdat_refused is not None:
            self._send(tx.bdat_refused)
        elif whole_message and tx.recipients:
            for _ in tx.recipients:  # RFC 2033 §4.2: one reply per recipient
                self._send(error.to_reply())
        else:
            self._send(error.to_reply())
        if whole_message:
            self.tx = None
        else:
            tx.data.clear()

    async def _finish_message(self) -> None:
        tx = self.tx
        assert tx is not None and tx.recipients  # DATA/BDAT were refused otherwise
        self.tx = None
        self.transactions += 1
        sid = self.info.session_id
        tid = sid if self.transactions == 1 else f"{sid}:{self.transactions}"
        recipients = [
            Recipient(r.address, r.user, r.detail, r.orcpt, tid if i == 0 else f"{tid}:{i + 1}")
            for i, r in enumerate(tx.recipients)
        ]
        sender = str(tx.mail.reverse_path) if tx.mail.reverse_path is not None else ""
        envelope = Envelope(sender, self.helo or "", self.info.remote_ip, tid)
        message = bytes(tx.data)
        tx.data.clear()
        replies: list[DeliveryReply] = await deliver_message(
            self.storage, envelope, recipients, message, self.settings
        )
        for r in replies:
            self._reply(r.code, r.enhanced, r.text)


@register_service("lmtp")
async def serve_lmtp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: ConnectionInfo
) -> None:
    """The ``lmtp`` service handler: settings and storage from this process's context."""
    try:
        context = current_context()
        view = context.view("lmtp", local_ip=info.local_ip, remote_ip=info.remote_ip)
        session = LmtpSession(
            info,
            DeliverySettings.from_view(view),
            context.authenticator_for("lmtp"),
            context.storage,
        )
    except Exception:
        # e.g. a storage or userdb configuration the process can't use: tell the MTA to retry
        log.exception("lmtp: can't serve connection (%s)", info.describe())
        writer.write(reply(421, "4.3.0", "Service temporarily unavailable"))
        await writer.drain()
        return
    await session.run(reader, writer)
