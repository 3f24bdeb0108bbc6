"""compress wrapper: method selection, magic detection, old objects stay readable, streaming."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest
import zstandard

from columba.fs.api import Fs, FsCorrupt, FsError, FsSpec, create_fs_stack
from columba.fs.compress import CompressFs, detect_method

_T = TypeVar("_T")

MAIL = b"From: a@example.com\r\nSubject: compress me\r\n\r\n" + b"hello world\r\n" * 500


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def stacks(method: str | None, **extra: str) -> tuple[Fs, Fs]:
    """(compress stack, its raw memory parent) sharing one store."""
    name = uuid.uuid4().hex
    settings = dict(extra)
    if method is not None:
        settings["fs_compress_write_method"] = method
    fs = create_fs_stack([FsSpec("compress", settings), FsSpec("memory", {"fs_memory_name": name})])
    raw = create_fs_stack([FsSpec("memory", {"fs_memory_name": name})])
    return fs, raw


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_detect_method() -> None:
    assert detect_method(zstandard.ZstdCompressor().compress(b"x")) == "zstd"
    assert detect_method(gzip.compress(b"x")) == "gz"
    assert detect_method(bz2.compress(b"x")) == "bz2"
    assert detect_method(b"From: x") == "plain"
    assert detect_method(b"BZhx") == "plain"
    assert detect_method(b"") == "plain"


@pytest.mark.parametrize(
    ("method", "magic"),
    [
        (None, b"\x28\xb5\x2f\xfd"),
        ("zstd", b"\x28\xb5\x2f\xfd"),
        ("gz", b"\x1f\x8b"),
        ("bz2", b"BZh"),
    ],
)
def test_write_method_and_roundtrip(method: str | None, magic: bytes) -> None:
    async def main() -> None:
        fs, raw = stacks(method)
        await fs.write("o/bytes", MAIL)
        await fs.write("o/stream", chunked(MAIL, 100))
        for name in ("o/bytes", "o/stream"):
            stored = await raw.read(name)
            assert stored.startswith(magic)
            assert len(stored) < len(MAIL) / 4
            assert await fs.read(name) == MAIL
            assert b"".join([c async for c in fs.read_stream(name, 1000)]) == MAIL
            assert (await fs.stat(name)).size == len(MAIL)

    run(main())


@pytest.mark.parametrize("method", ["none", ""])
def test_disabled_writes_plain(method: str) -> None:
    async def main() -> None:
        fs, raw = stacks(method)
        await fs.write("o", MAIL)
        assert await raw.read("o") == MAIL
        assert await fs.read("o") == MAIL

    run(main())


def test_changing_method_keeps_old_objects_readable() -> None:
    async def main() -> None:
        name = uuid.uuid4().hex
        parent = FsSpec("memory", {"fs_memory_name": name})
        raw = create_fs_stack([parent])
        await raw.write("plain", MAIL)  # written before compression was enabled
        for method in ("gz", "bz2", "zstd", "none"):
            fs = create_fs_stack([FsSpec("compress", {"fs_compress_write_method": method}), parent])
            await fs.write(method, MAIL)
        reader = create_fs_stack([FsSpec("compress", {"fs_compress_write_method": "zstd"}), parent])
        for obj in ("plain", "gz", "bz2", "zstd", "none"):
            assert await reader.read(obj) == MAIL, obj
            assert b"".join([c async for c in reader.read_stream(obj, 333)]) == MAIL
            assert (await reader.stat(obj)).size == len(MAIL)

    run(main())


def test_level_setting() -> None:
    async def main() -> None:
        data = bytes(range(256)) * 2000 + MAIL * 20
        fast, raw_fast = stacks("zstd", fs_compress_write_level="1")
        best, raw_best = stacks("zstd", fs_compress_write_level="19")
        await fast.write("o", data)
        await best.write("o", data)
        assert len(await raw_best.read("o")) <= len(await raw_fast.read("o"))
        assert await best.read("o") == data

    run(main())


def test_bad_settings() -> None:
    with pytest.raises(FsError):
        stacks("lz77")
    with pytest.raises(FsError):
        stacks("zstd", fs_compress_write_level="high")


@pytest.mark.parametrize("method", ["zstd", "gz", "bz2"])
def test_truncated_object_is_an_error(method: str) -> None:
    async def main() -> None:
        fs, raw = stacks(method)
        await fs.write("o", chunked(MAIL * 10, 1000))
        stored = await raw.read("o")
        await raw.write("o", stored[: len(stored) // 2])
        with pytest.raises(FsCorrupt):  # an FsError: obox answers IMAP NO [CORRUPTION]
            await fs.read("o")
        with pytest.raises(FsCorrupt):
            async for _ in fs.read_stream("o"):
                pass

    run(main())


def test_corrupt_object_is_an_error() -> None:
    async def main() -> None:
        fs, raw = stacks("zstd")
        await raw.write("o", b"\x28\xb5\x2f\xfd" + b"\xff" * 100)
        with pytest.raises(FsCorrupt):
            await fs.read("o")

    run(main())


def test_concatenated_frames_are_read() -> None:
    async def main() -> None:
        fs, raw = stacks("zstd")
        c = zstandard.ZstdCompressor()
        await raw.write("z", c.compress(b"first ") + c.compress(b"second"))
        assert await fs.read("z") == b"first second"
        await raw.write("g", gzip.compress(b"first ") + gzip.compress(b"second"))
        assert b"".join([x async for x in fs.read_stream("g", 4)]) == b"first second"

    run(main())


def test_read_chunks_are_bounded_for_highly_compressible_data() -> None:
    """A 32 MB run of zeros compresses to a few KB; reading must still come in small chunks."""

    async def main() -> None:
        fs, raw = stacks("zstd")
        size = 32 << 20

        async def zeros() -> AsyncIterator[bytes]:
            for _ in range(32):
                yield bytes(1 << 20)

        await fs.write("z", zeros())
        assert len(await raw.read("z")) < 64 * 1024
        total = 0
        biggest = 0
        async for chunk in fs.read_stream("z", 64 * 1024):
            total += len(chunk)
            biggest = max(biggest, len(chunk))
        assert total == size
        assert biggest <= 64 * 1024
        assert (await fs.stat("z")).size == size

    run(main())


def test_wrapper_passes_through_other_operations() -> None:
    async def main() -> None:
        fs, raw = stacks("zstd")
        assert isinstance(fs, CompressFs)
        await fs.write("a/b", MAIL, {"k": "v"})
        await fs.copy("a/b", "a/c")
        assert await raw.read("a/b") == await raw.read("a/c")
        assert await fs.get_metadata("a/c") == {"k": "v"}
        assert [p async for p in fs.iter_files("a")] == ["a/b", "a/c"]
        await fs.delete("a/b")
        assert not await fs.exists("a/b")
        assert await fs.exists("a/c")

    run(main())


def test_read_plain_fallback_off() -> None:
    async def main() -> None:
        fs, raw = stacks("zstd", fs_compress_read_plain_fallback="no")
        await raw.write("plain", MAIL)
        await fs.write("packed", MAIL)
        assert await fs.read("packed") == MAIL
        with pytest.raises(FsError):
            await fs.read("plain")
        with pytest.raises(FsError):
            async for _ in fs.read_stream("plain"):
                pass

    run(main())
