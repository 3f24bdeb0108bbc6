"""COMPRESS=DEFLATE (RFC 4978): the command and the deflate layer it puts between the
connection's streams and the session.

After ``tag OK Begin compression.`` has been written uncompressed, both directions are raw
DEFLATE (RFC 1951, no zlib or gzip framing): :class:`DeflateReader` inflates what the client
sends, :class:`DeflateWriter` compresses what the session writes and ends each batch of
output with a ``Z_SYNC_FLUSH`` when the session drains it (the session drains once per
batch), so the client can decode every response as soon as it arrives. The layer sits on
top of whatever the streams were, so TLS (implicit or STARTTLS, which can only come before
COMPRESS: STARTTLS is a not-authenticated command, COMPRESS an authenticated one) stays
underneath.

Bytes the client pipelined behind ``COMPRESS`` reached the parser before the switch; the
parser pauses after COMPRESS and hands them back (:meth:`ImapParser.take_buffered`): they
are the start of the compressed stream and are inflated first.

Answers are Dovecot's: ``NO Unknown compression mechanism.``, a second COMPRESS gets
``NO [COMPRESSIONACTIVE] COMPRESSION=DEFLATE already enabled.``. Inflating is bounded
(:data:`INFLATE_CHUNK` octets of output per step), so a small compressed input can't make
the server hold a huge inflated buffer; a corrupt stream ends the connection
(:class:`DeflateStreamError`, a :class:`ConnectionError`).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from typing import Any

from columba.imap.session import ALREADY_SENT, ImapSession, Reply, log_event
from columba.proto.imap import commands as c

__all__ = [
    "INFLATE_CHUNK",
    "DeflateReader",
    "DeflateStreamError",
    "DeflateWriter",
    "compress",
    "compression_active",
]

INFLATE_CHUNK = 64 * 1024
"""At most this many inflated octets are produced per read."""
READ_CHUNK = 64 * 1024
"""Compressed octets read from the connection at a time."""
WBITS = -15
"""Raw DEFLATE with a 32 KiB window (RFC 4978 §4)."""
LEVEL = 6


class DeflateStreamError(ConnectionError):
    """The client's compressed stream is not valid DEFLATE."""


class DeflateReader(asyncio.StreamReader):
    """A StreamReader whose data is the inflated content of *inner*.

    Every StreamReader read method waits in ``_wait_for_data`` when its buffer can't satisfy
    it; here that step reads compressed bytes from *inner* and feeds what they inflate to
    (``feed_data``), or ends the stream (``feed_eof``) when *inner* does. ``pending`` is
    compressed input that was already taken from *inner* (pipelined behind COMPRESS).
    """

    def __init__(self, inner: asyncio.StreamReader, pending: bytes = b"") -> None:
        super().__init__(limit=2 * INFLATE_CHUNK)
        self._inner = inner
        self._inflater = zlib.decompressobj(WBITS)
        self._pending = pending
        self.compressed_in = 0
        """Compressed octets consumed so far."""

    def _inflate(self, data: bytes) -> bytes:
        try:
            return self._inflater.decompress(data, INFLATE_CHUNK)
        except zlib.error as exc:
            raise DeflateStreamError(f"invalid compressed data: {exc}") from None

    async def _next_chunk(self) -> bytes | None:
        """Some inflated bytes (maybe none yet); None at the end of the stream."""
        tail = self._inflater.unconsumed_tail
        if tail:
            return self._inflate(tail)
        if self._inflater.eof:
            # the client ended the DEFLATE stream (Z_FINISH): nothing more can follow
            return None
        if self._pending:
            raw, self._pending = self._pending, b""
        else:
            raw = await self._inner.read(READ_CHUNK)
            if not raw:
                return None
        self.compressed_in += len(raw)
        return self._inflate(raw)

    async def _wait_for_data(self, func_name: str) -> None:
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                self.feed_eof()
                return
            if chunk:
                self.feed_data(chunk)
                return


class DeflateWriter(asyncio.StreamWriter):
    """A StreamWriter that deflates into *inner*; :meth:`drain` ends the batch with
    ``Z_SYNC_FLUSH`` and drains *inner*. The transport stays *inner*'s (closing either
    closes the connection)."""

    def __init__(self, inner: asyncio.StreamWriter, level: int = LEVEL) -> None:
        transport = inner.transport
        protocol: Any = transport.get_protocol()
        super().__init__(transport, protocol, None, asyncio.get_running_loop())
        self._inner = inner
        self._deflater = zlib.compressobj(level, zlib.DEFLATED, WBITS)
        self._unflushed = False
        self.compressed_out = 0
        """Compressed octets written so far."""

    def _put(self, data: bytes) -> None:
        if data:
            self.compressed_out += len(data)
            self._inner.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._put(self._deflater.compress(data))
        self._unflushed = True

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def flush_batch(self) -> None:
        """Hand everything written so far to the connection (``Z_SYNC_FLUSH``)."""
        if self._unflushed:
            self._unflushed = False
            self._put(self._deflater.flush(zlib.Z_SYNC_FLUSH))

    async def drain(self) -> None:
        self.flush_batch()
        await self._inner.drain()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise RuntimeError("can't half-close a compressed IMAP connection")

    def close(self) -> None:
        self.flush_batch()
        self._inner.close()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()

    async def start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        raise RuntimeError("TLS can't start under COMPRESS")

    def __del__(self) -> None:
        # StreamWriter.__del__ closes an open transport; this one belongs to *inner*.
        pass


def compression_active(session: ImapSession) -> bool:
    return isinstance(session.writer, DeflateWriter)


async def compress(session: ImapSession, cmd: c.CompressCommand) -> Reply:
    if cmd.algorithm.upper() != "DEFLATE":
        return Reply("NO", "Unknown compression mechanism.")
    if compression_active(session):
        return Reply("NO", "COMPRESSION=DEFLATE already enabled.", "COMPRESSIONACTIVE")
    session.tagged(cmd.tag, "OK", "Begin compression.")
    await session.flush()
    early = session.parser.take_buffered()
    session.switch_streams(DeflateReader(session.reader, early), DeflateWriter(session.writer))
    log_event("imap_compress", algorithm="deflate", session=session.info.session_id)
    session.push_events(session.parser.resume())
    return ALREADY_SENT
