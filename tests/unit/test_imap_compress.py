"""COMPRESS=DEFLATE (RFC 4978): the deflate stream layer on its own, and real in-process
sessions driven by a client that does its side with plain :mod:`zlib` (raw DEFLATE)."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest

from columba.imap.compress import INFLATE_CHUNK, DeflateReader, DeflateStreamError, DeflateWriter
from tests.unit.test_imap_session import (
    MESSAGE,
    PASSWORD,
    USER,
    Client,
    _client_tls,
    serving,
)

pytestmark = pytest.mark.timeout(60)

SYNC_TAIL = b"\x00\x00\xff\xff"


def _status(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n")


def _deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)


class ZClient:
    """The client side of a compressed session, with zlib only."""

    def __init__(self, client: Client) -> None:
        self.reader = client.reader
        self.writer = client.writer
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)
        self.buf = bytearray()
        self.raw_in = 0
        self.n = 0

    def compressed(self, data: bytes) -> bytes:
        return self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)

    async def send(self, data: bytes) -> None:
        self.writer.write(self.compressed(data))
        await self.writer.drain()

    async def _more(self) -> None:
        raw = await asyncio.wait_for(self.reader.read(65536), 5)
        if not raw:
            raise ConnectionError("closed")
        self.raw_in += len(raw)
        self.buf += self.decomp.decompress(raw)

    async def _take_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            await self._more()
        end = self.buf.index(b"\r\n") + 2
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    async def line(self) -> bytes:
        out = bytearray(await self._take_line())
        while out.endswith(b"}\r\n"):
            size = int(out[out.rfind(b"{") + 1 : -3])
            while len(self.buf) < size:
                await self._more()
            out += self.buf[:size]
            del self.buf[:size]
            out += await self._take_line()
        return bytes(out)

    async def until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    async def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = f"z{self.n}"
        await self.send(f"{tag} {text}\r\n".encode())
        return await self.until(tag)


# ---------------------------------------------------------------------- the layer


def test_reader_inflates_pending_then_stream() -> None:
    async def main() -> None:
        text = b"".join(b"line %d of the client's input\r\n" % i for i in range(2000))
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        stream = comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH)
        inner = asyncio.StreamReader()
        reader = DeflateReader(inner, pending=stream[:7])
        for i in range(7, len(stream), 100):
            inner.feed_data(stream[i : i + 100])
        inner.feed_eof()
        assert await reader.readline() == b"line 0 of the client's input\r\n"
        assert await reader.readexactly(30) == b"line 1 of the client's input\r\n"
        rest = bytearray()
        while chunk := await reader.read(4096):
            assert len(chunk) <= 4096
            rest += chunk
        assert bytes(rest) == text[60:]
        assert reader.at_eof()
        assert reader.compressed_in == len(stream)

    asyncio.run(main())


def test_reader_bounds_inflation_and_rejects_garbage() -> None:
    async def main() -> None:
        bomb = _deflate(b"\x00" * (8 << 20))  # 8 MiB of zeros: a few KiB compressed
        assert len(bomb) < 20000
        inner = asyncio.StreamReader()
        inner.feed_data(bomb)
        inner.feed_eof()
        reader = DeflateReader(inner)
        total = 0
        while chunk := await reader.read(1 << 30):
            assert len(chunk) <= INFLATE_CHUNK
            total += len(chunk)
        assert total == 8 << 20

        bad = asyncio.StreamReader()
        bad.feed_data(b"\xff\xff\xff\xff not deflate")
        with pytest.raises(DeflateStreamError):
            await DeflateReader(bad).read(100)
        assert issubclass(DeflateStreamError, ConnectionError)

    asyncio.run(main())


def test_writer_sync_flushes_each_batch() -> None:
    async def main() -> None:
        received = bytearray()
        got = asyncio.Event()

        async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                received.extend(data)
                got.set()
            w.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        writer = DeflateWriter(w)
        decomp = zlib.decompressobj(-15)
        out = b""
        for batch in (b"* OK first\r\n", b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n" * 500):
            writer.write(batch[:10])
            writer.writelines([batch[10:]])
            await writer.drain()
            # the whole batch is decodable as soon as it arrived
            while True:
                await asyncio.wait_for(got.wait(), 5)
                got.clear()
                if received.endswith(SYNC_TAIL):
                    break
            out += decomp.decompress(bytes(received))
            received.clear()
            assert out.endswith(batch)
        await writer.drain()  # nothing new: no empty flush block
        await asyncio.sleep(0.05)
        assert not received
        assert writer.compressed_out < len(out)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


# ---------------------------------------------------------------------- sessions


async def _compressed_session(connect: object) -> tuple[Client, ZClient]:
    c: Client = await connect()  # type: ignore[operator]
    await c.line()
    await c.cmd(f"LOGIN {USER} {PASSWORD}")
    lines = await c.cmd("COMPRESS DEFLATE")
    assert lines == [b"c2 OK Begin compression.\r\n"]
    return c, ZClient(c)


def test_compress_session(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            greeting = await c.line()
            assert b"COMPRESS" not in greeting
            assert _status(await c.cmd("COMPRESS DEFLATE")) == b"BAD Please authenticate first."
            lines = await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert b" COMPRESS=DEFLATE" in lines[-1]
            assert _status(await c.cmd("COMPRESS LZW")) == b"NO Unknown compression mechanism."

            # a command pipelined right behind COMPRESS is already compressed
            z = ZClient(c)
            c.writer.write(b"c3 COMPRESS DEFLATE\r\n" + z.compressed(b"z0 NOOP\r\n"))
            await c.writer.drain()
            assert await c.line() == b"c3 OK Begin compression.\r\n"
            assert await z.until("z0") == [b"z0 OK NOOP completed.\r\n"]

            lines = await z.cmd("COMPRESS DEFLATE")
            assert lines == [b"z1 NO [COMPRESSIONACTIVE] COMPRESSION=DEFLATE already enabled.\r\n"]
            lines = await z.cmd("CAPABILITY")
            assert b" COMPRESS=DEFLATE" in lines[0]

            # big literals both ways (the session streams big ones in slices)
            body = MESSAGE + b"".join(b"line %d of a big body\r\n" % i for i in range(40000))
            await z.send(b"a APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
            assert _status(await z.until("a")).startswith(b"OK [APPENDUID ")
            await z.cmd("SELECT INBOX")
            before = z.raw_in
            lines = await z.cmd("FETCH 1 BODY.PEEK[]")
            assert lines[0] == b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\n"
            assert z.raw_in - before < len(body) // 4
            # IDLE reads and writes through the layer too
            await z.send(b"i IDLE\r\n")
            assert (await z.line()).startswith(b"+ ")
            await z.send(b"DONE\r\n")
            assert await z.until("i") == [b"i OK Idle completed.\r\n"]
            assert _status(await z.cmd("LOGOUT")) == b"OK Logout completed."

    asyncio.run(main())


def test_compress_after_starttls(tmp_path: Path) -> None:
    async def main() -> None:
        extra = "login_trusted_networks =\n"
        async with serving(tmp_path, extra, remote_ip="192.0.2.7", local_ip="192.0.2.1") as (
            connect,
            sessions,
        ):
            c = await connect()
            await c.line()
            assert _status(await c.cmd("STARTTLS")) == b"OK Begin TLS negotiation now."
            await c.writer.start_tls(_client_tls())
            await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert _status(await c.cmd("COMPRESS DEFLATE")) == b"OK Begin compression."
            z = ZClient(c)
            lines = await z.cmd("STATUS INBOX (MESSAGES)")
            assert lines[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
            assert _status(await z.cmd("STARTTLS")) == b"BAD TLS is already active."
            assert sessions[0].tls

    asyncio.run(main())


def test_corrupt_compressed_input_ends_the_session(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c, z = await _compressed_session(connect)
            assert await z.cmd("NOOP") == [b"z1 OK NOOP completed.\r\n"]
            c.writer.write(b"\xff\xff\xff\xff this is not deflate\r\n")
            await c.writer.drain()
            assert await asyncio.wait_for(c.reader.read(100), 5) == b""

    asyncio.run(main())
