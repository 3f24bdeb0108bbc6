"""Compression wrapper: compresses on write, detects the method from magic bytes on read.

Settings: ``fs_compress_write_method`` = ``zstd`` (default) | ``gz`` | ``bz2`` | ``none`` (or
empty: write plain); ``fs_compress_write_level`` (default: zstd 3, gz 6, bz2 9);
``fs_compress_read_plain_fallback`` (default ``yes``; ``no`` makes uncompressed objects an
error).

Reading never depends on the write method: zstd (``28 b5 2f fd``), gzip (``1f 8b``) and bzip2
(``BZh``) objects are decompressed, anything else passes through as plain data, so changing the
write method (or enabling compression) keeps old objects readable.  Like Dovecot's, detection
would misread a plain object that starts with one of those magics; mail (RFC 5322 text) and
index bundles never do.  A truncated or corrupt compressed object raises `FsError`.

Both directions stream: writes compress chunk by chunk, reads decompress small input slices so
memory stays bounded by the chunk size, not the object size.  ``stat().size`` is the plain size:
from the zstd frame header when the writer knew it, else by streaming through the object.
"""

from __future__ import annotations

import asyncio
import bz2
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import zstandard

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsCorrupt,
    FsData,
    FsError,
    FsSpec,
    FsStat,
    FsWrapper,
    aclose,
    aiter_bytes,
    register_fs,
    setting_bool,
    setting_int,
)

__all__ = ["CompressFs", "detect_method"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZ_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"
_MAGIC_LEN = 4

# Input slice fed to a decompressor at once; bounds the output of one step.
_DECOMPRESS_SLICE = 16 * 1024
# Chunks at least this big are (de)compressed in a worker thread.
_THREAD_THRESHOLD = 256 * 1024

_DEFAULT_LEVELS = {"zstd": 3, "gz": 6, "bz2": 9}


def detect_method(head: bytes) -> str:
    """``zstd`` | ``gz`` | ``bz2`` | ``plain`` from an object's first bytes (4 are enough)."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZ_MAGIC):
        return "gz"
    if head.startswith(BZ2_MAGIC) and len(head) >= 4 and head[3:4] in b"123456789":
        return "bz2"
    return "plain"


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, /) -> bytes: ...


def _compressor(method: str, level: int) -> _Compressor:
    if method == "zstd":
        return zstandard.ZstdCompressor(level=level).compressobj()
    if method == "gz":
        return zlib.compressobj(level, zlib.DEFLATED, 31)
    if method == "bz2":
        return bz2.BZ2Compressor(level)
    raise FsError(f"unknown compression method {method!r}")


def _new_decompressor(method: str) -> _Decompressor:
    if method == "zstd":
        return zstandard.ZstdDecompressor().decompressobj()
    if method == "gz":
        return zlib.decompressobj(31)
    return bz2.BZ2Decompressor()


class _Decoder:
    """Streaming decompressor; concatenated frames/members are read one after another."""

    def __init__(self, method: str) -> None:
        self.method = method
        self._d = _new_decompressor(method)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        try:
            for start in range(0, len(data), _DECOMPRESS_SLICE):
                piece = data[start : start + _DECOMPRESS_SLICE]
                while piece:
                    if self._d.eof:
                        self._d = _new_decompressor(self.method)
                    result = self._d.decompress(piece)
                    if result:
                        out.append(result)
                    piece = self._d.unused_data if self._d.eof else b""
        except (zstandard.ZstdError, zlib.error, OSError, EOFError, ValueError) as err:
            raise FsCorrupt(f"corrupt {self.method} object: {err}") from err
        return out

    def finish(self) -> None:
        if not self._d.eof:
            raise FsCorrupt(f"truncated {self.method} object")


@register_fs("compress")
class CompressFs(FsWrapper):
    def __init__(self, spec: FsSpec, parent: Fs) -> None:
        super().__init__(parent)
        method = spec.settings.get("fs_compress_write_method", "zstd").strip().lower()
        if method in ("", "none"):
            method = "none"
        elif method == "gzip":
            method = "gz"
        if method not in ("none", *_DEFAULT_LEVELS):
            raise FsError(f"fs_compress_write_method: unsupported method {method!r}")
        self.write_method = method
        self.read_plain_fallback = setting_bool(
            spec.settings, "fs_compress_read_plain_fallback", True
        )
        self.write_level = setting_int(
            spec.settings, "fs_compress_write_level", _DEFAULT_LEVELS.get(method, 0)
        )

    # ------------------------------------------------------------------ write

    async def _compressed(self, data: FsData) -> AsyncIterator[bytes]:
        comp = _compressor(self.write_method, self.write_level)
        async for chunk in aiter_bytes(data):
            if len(chunk) >= _THREAD_THRESHOLD:
                out = await asyncio.to_thread(comp.compress, chunk)
            else:
                out = comp.compress(chunk)
            if out:
                yield out
        tail = comp.flush()
        if tail:
            yield tail

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        if self.write_method == "none":
            await self.parent.write(path, data, metadata)
            return
        if self.write_method == "zstd" and isinstance(data, bytes | bytearray | memoryview):
            # One-shot: the frame header then records the content size, making stat() cheap.
            raw = bytes(data)
            cctx = zstandard.ZstdCompressor(level=self.write_level, write_content_size=True)
            if len(raw) >= _THREAD_THRESHOLD:
                packed = await asyncio.to_thread(cctx.compress, raw)
            else:
                packed = cctx.compress(raw)
            await self.parent.write(path, packed, metadata)
            return
        await self.parent.write(path, self._compressed(data), metadata)

    # ------------------------------------------------------------------ read

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        source = self.parent.read_stream(path, chunk_size)
        head = b""
        decoder: _Decoder | None = None
        plain = False
        pending: list[bytes] = []
        pending_len = 0
        try:
            async for chunk in source:
                if decoder is None and not plain:
                    head += chunk
                    if len(head) < _MAGIC_LEN:
                        continue
                    method = detect_method(head)
                    chunk, head = head, b""  # noqa: PLW2901 - the buffered head goes first
                    if method == "plain":
                        self._check_plain(path)
                        plain = True
                    else:
                        decoder = _Decoder(method)
                if plain:
                    yield chunk
                    continue
                assert decoder is not None
                if len(chunk) >= _THREAD_THRESHOLD:
                    outputs = await asyncio.to_thread(decoder.feed, chunk)
                else:
                    outputs = decoder.feed(chunk)
                for out in outputs:
                    pending.append(out)
                    pending_len += len(out)
                    if pending_len >= chunk_size:
                        joined = b"".join(pending)
                        cut = len(joined) - len(joined) % chunk_size
                        for start in range(0, cut, chunk_size):
                            yield joined[start : start + chunk_size]
                        pending = [joined[cut:]] if cut < len(joined) else []
                        pending_len = len(joined) - cut
            if decoder is None:
                if plain:
                    return
                # Short object: fewer bytes than a magic.
                method = detect_method(head)
                if method == "plain":
                    self._check_plain(path)
                    if head:
                        yield head
                    return
                decoder = _Decoder(method)
                pending.extend(decoder.feed(head))
            decoder.finish()
            rest = b"".join(pending)
            for start in range(0, len(rest), chunk_size):
                yield rest[start : start + chunk_size]
        finally:
            await aclose(source)

    async def read(self, path: str) -> bytes:
        data = await self.parent.read(path)
        method = detect_method(data[:_MAGIC_LEN])
        if method == "plain":
            self._check_plain(path)
            return data
        if len(data) >= _THREAD_THRESHOLD:
            return await asyncio.to_thread(_decompress_all, method, data)
        return _decompress_all(method, data)

    def _check_plain(self, path: str) -> None:
        if not self.read_plain_fallback:
            raise FsError(f"{path}: not compressed (fs_compress_read_plain_fallback = no)")

    async def stat(self, path: str) -> FsStat:
        st = await self.parent.stat(path)
        head = b""
        source = self.parent.read_stream(path, 64 * 1024)
        size = 0
        try:
            async for chunk in source:
                head = chunk
                break
        finally:
            await aclose(source)
        method = detect_method(head[:_MAGIC_LEN])
        if method == "plain":
            return st
        if method == "zstd":
            try:
                known = zstandard.frame_content_size(head)
            except zstandard.ZstdError:
                known = -1
            if known >= 0:
                return FsStat(known, st.mtime)
        async for chunk in self.read_stream(path):
            size += len(chunk)
        return FsStat(size, st.mtime)


def _decompress_all(method: str, data: bytes) -> bytes:
    decoder = _Decoder(method)
    parts = decoder.feed(data)
    decoder.finish()
    return b"".join(parts)
