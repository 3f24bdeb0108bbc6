"""The fscache fs wrapper: hits, read/write-through, eviction, restarts, coherence, processes.

Parent reads are counted by `CountingFs`, a pass-through wrapper over the real memory fs (or
posix fs in the multi-process test).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsData,
    FsError,
    FsNotFound,
    FsSpec,
    FsTemporaryError,
    FsWrapper,
    create_fs_stack,
)
from columba.fs.fscache import FscacheFs
from columba.fs.memory import MemoryFs
from columba.fs.posix import PosixFs

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


class CountingFs(FsWrapper):
    """Counts the operations reaching the parent; can be told to fail writes."""

    def __init__(self, parent: Fs) -> None:
        super().__init__(parent)
        self.calls: Counter[str] = Counter()
        self.fail_writes = False

    def read_stream(self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        self.calls["read"] += 1
        return self.parent.read_stream(path, chunk_size)

    async def read(self, path: str) -> bytes:
        self.calls["read"] += 1
        return await self.parent.read(path)

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        self.calls["write"] += 1
        if self.fail_writes:
            if not isinstance(data, bytes | bytearray | memoryview):
                async for _ in data:  # consume part of the stream, then fail
                    break
            raise FsTemporaryError("injected write failure")
        await self.parent.write(path, data, metadata)


def cache_dir_bytes(root: Path) -> int:
    total = 0
    for sub in root.iterdir():
        if sub.name == "tmp":
            continue
        total += sum(f.stat().st_size for f in sub.iterdir())
    return total


def cache_files(root: Path) -> list[Path]:
    return [f for sub in root.iterdir() if sub.name != "tmp" for f in sub.iterdir()]


def make(
    tmp_path: Path, memory_name: str, size: str = "10M", path: Path | None = None
) -> tuple[FscacheFs, CountingFs]:
    counting = CountingFs(MemoryFs(FsSpec("memory", {"fs_memory_name": memory_name})))
    settings = {"fs_fscache_path": str(path or tmp_path / "cache"), "fs_fscache_size": size}
    return FscacheFs(FsSpec("fscache", settings), counting), counting


def test_hits_avoid_the_parent(tmp_path: Path) -> None:
    async def main() -> None:
        fs, parent = make(tmp_path, "hits")
        await fs.write("u/a", b"written through")
        await fs.write("u/b", (x async for x in _chunks(b"streamed " * 1000, 100)))
        for _ in range(3):
            assert await fs.read("u/a") == b"written through"
            got = b"".join([c async for c in fs.read_stream("u/b", 64)])
            assert got == b"streamed " * 1000
        assert parent.calls["read"] == 0
        # Read-through: an object the cache hasn't seen is read from the parent once.
        await parent.parent.write("u/c", b"only in parent")
        assert await fs.read("u/c") == b"only in parent"
        assert parent.calls["read"] == 1
        assert await fs.read("u/c") == b"only in parent"
        assert b"".join([c async for c in fs.read_stream("u/c")]) == b"only in parent"
        assert parent.calls["read"] == 1
        await parent.parent.write("u/d", b"d" * 100_000)
        assert b"".join([c async for c in fs.read_stream("u/d", 1000)]) == b"d" * 100_000
        assert await fs.read("u/d") == b"d" * 100_000
        assert parent.calls["read"] == 2
        # An early-stopped read-through doesn't install a partial copy.
        await parent.parent.write("u/e", b"e" * 10_000)
        stream = fs.read_stream("u/e", 100)
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
        assert await fs.read("u/e") == b"e" * 10_000
        assert parent.calls["read"] == 4
        assert await fs.read("u/e") == b"e" * 10_000
        assert parent.calls["read"] == 4

    run(main())


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


def test_eviction_keeps_size_bound_lru(tmp_path: Path) -> None:
    async def main() -> None:
        fs, parent = make(tmp_path, "evict", size="100K")
        blob = b"x" * 10_000
        await fs.write("keep", blob)
        for i in range(40):
            await fs.write(f"o/{i}", blob)
            # Keep "keep" recently used; sleep so mtimes order the rest.
            assert await fs.read("keep") == blob
            await asyncio.sleep(0.01)
            assert cache_dir_bytes(tmp_path / "cache") <= 100 * 1024
        reads = parent.calls["read"]
        assert reads == 0  # "keep" was never evicted: reading it kept it recently used
        assert await fs.read("keep") == blob
        assert parent.calls["read"] == reads  # still cached
        assert await fs.read("o/39") == blob
        assert parent.calls["read"] == reads  # recent: cached
        assert await fs.read("o/0") == blob
        assert parent.calls["read"] == reads + 1  # oldest: evicted
        assert 0 < len(cache_files(tmp_path / "cache")) <= 10
        # An object larger than the whole cache is never cached.
        await fs.write("huge", b"h" * 200_000)
        assert await fs.read("huge") == b"h" * 200_000
        assert parent.calls["read"] == reads + 2
        assert cache_dir_bytes(tmp_path / "cache") <= 100 * 1024

    run(main())


def test_restart_keeps_entries_and_accounting(tmp_path: Path) -> None:
    async def main() -> None:
        fs, _ = make(tmp_path, "restart", size="1M")
        for i in range(5):
            await fs.write(f"r/{i}", bytes([i]) * 1000)
        fs2, parent2 = make(tmp_path, "restart", size="1M")
        for i in range(5):
            assert await fs2.read(f"r/{i}") == bytes([i]) * 1000
        assert parent2.calls["read"] == 0
        assert await fs2.cached_bytes() == cache_dir_bytes(tmp_path / "cache")
        stats = await fs2.rescan()
        assert stats.files == 5
        assert stats.bytes == cache_dir_bytes(tmp_path / "cache")
        # A smaller limit after restart: rescan evicts down to it.
        fs3, _ = make(tmp_path, "restart", size="3K")
        stats = await fs3.rescan()
        assert stats.evicted >= 3
        assert cache_dir_bytes(tmp_path / "cache") <= 3 * 1024

    run(main())


def test_coherence_after_delete_overwrite_copy(tmp_path: Path) -> None:
    async def main() -> None:
        fs, parent = make(tmp_path, "coherent")
        other, _ = make(tmp_path, "coherent")  # another process' instance on the same cache
        await fs.write("c/a", b"version 1")
        assert await fs.read("c/a") == b"version 1"
        await other.write("c/a", b"version 2, from another instance")
        assert await fs.read("c/a") == b"version 2, from another instance"
        await fs.write("c/a", _chunks(b"version 3 streamed", 4))
        assert await other.read("c/a") == b"version 3 streamed"
        await other.delete("c/a")
        with pytest.raises(FsNotFound):
            await fs.read("c/a")
        with pytest.raises(FsNotFound):
            async for _ in fs.read_stream("c/a"):
                pass
        # copy: the target gets the source's bytes, replacing a cached target.
        await fs.write("c/src", b"source")
        await fs.write("c/dst", b"old target")
        assert await fs.read("c/dst") == b"old target"
        await other.copy("c/src", "c/dst")
        reads = parent.calls["read"]
        assert await fs.read("c/dst") == b"source"
        assert parent.calls["read"] == reads  # the copy linked the cached source
        await fs.delete("c/src")
        assert await fs.read("c/dst") == b"source"
        # A failed parent write leaves no cached copy of the new data.
        parent.fail_writes = True
        with pytest.raises(FsTemporaryError):
            await fs.write("c/dst", b"never stored")
        with pytest.raises(FsTemporaryError):
            await fs.write("c/dst", _chunks(b"never stored either", 3))
        parent.fail_writes = False
        assert await fs.read("c/dst") == b"source"
        assert not list((tmp_path / "cache" / "tmp").iterdir())

    run(main())


def test_read_through_overtaken_by_write_is_not_installed(tmp_path: Path) -> None:
    async def main() -> None:
        fs, parent = make(tmp_path, "race")
        await parent.parent.write("x", b"old" * 10_000)
        stream = fs.read_stream("x", 1000)
        first = await stream.__anext__()
        assert first == (b"old" * 10_000)[:1000]
        await fs.write("x", b"new")
        rest = b"".join([c async for c in stream])
        assert first + rest == b"old" * 10_000  # that reader saw the old object...
        assert await fs.read("x") == b"new"  # ...but didn't install it over the new one

    run(main())


def test_cache_failures_never_fail_operations(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"a file where the cache directory should be")

    async def main() -> None:
        fs, parent = make(tmp_path, "broken", path=blocker / "cache")
        await fs.write("a", b"data")
        await fs.write("b", _chunks(b"streamed", 2))
        assert await fs.read("a") == b"data"
        assert b"".join([c async for c in fs.read_stream("b")]) == b"streamed"
        await fs.copy("a", "c")
        assert await fs.read("c") == b"data"
        await fs.delete("a")
        assert parent.calls["read"] == 3
        assert (await fs.rescan()).files == 0

    run(main())


def test_damaged_entries_are_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        fs, parent = make(tmp_path, "damaged")
        await fs.write("d", b"0123456789" * 100)
        [entry] = cache_files(tmp_path / "cache")
        with open(entry, "r+b") as f:
            f.truncate(500)  # as after a crash without fsync
        assert await fs.read("d") == b"0123456789" * 100
        assert parent.calls["read"] == 1
        [entry] = cache_files(tmp_path / "cache")
        entry.write_bytes(b"")  # damaged again
        stale_tmp = tmp_path / "cache" / "tmp" / ".columba-tmp.stale"
        stale_tmp.write_bytes(b"left by a crash")
        os.utime(stale_tmp, (time.time() - 7200, time.time() - 7200))
        stats = await fs.rescan()
        assert stats.damaged == 1
        assert stats.files == 0
        assert not stale_tmp.exists()

    run(main())


def test_bad_settings(tmp_path: Path) -> None:
    parent = MemoryFs(FsSpec("memory"))
    with pytest.raises(FsError):
        FscacheFs(FsSpec("fscache", {}), parent)
    with pytest.raises(FsError):
        FscacheFs(
            FsSpec("fscache", {"fs_fscache_path": str(tmp_path), "fs_fscache_size": "x"}), parent
        )
    fs = create_fs_stack(
        [
            FsSpec("fscache", {"fs_fscache_path": str(tmp_path), "fs_fscache_size": "512 M"}),
            FsSpec("memory"),
        ]
    )
    assert isinstance(fs, FscacheFs)
    assert fs.limit == 512 << 20


# ---------------------------------------------------------------------- several processes

PROCS = 4
OBJECTS = 25
SIZE = 4000


def _payload(proc: int, i: int) -> bytes:
    return f"{proc}:{i}:".encode().ljust(SIZE, b"#")


def _worker(proc: int, cache: str, objects: str) -> int:
    async def main() -> int:
        parent = CountingFs(PosixFs(FsSpec("posix", {"fs_posix_prefix": objects})))
        fs = FscacheFs(
            FsSpec("fscache", {"fs_fscache_path": cache, "fs_fscache_size": "60K"}), parent
        )
        for i in range(OBJECTS):
            await fs.write(f"p{proc}/{i}", _payload(proc, i))
            for other in range(PROCS):
                for j in range(max(0, i - 3), i + 1):
                    try:
                        data = await fs.read(f"p{other}/{j}")
                    except FsNotFound:
                        continue  # not written yet by that process
                    assert data == _payload(other, j), (other, j)
            if i % 5 == 0:
                await fs.delete(f"p{proc}/{i}")
        return parent.calls["read"]

    return run(main())


def test_concurrent_processes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    objects = tmp_path / "objects"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCS) as pool:
        reads = pool.starmap(_worker, [(p, str(cache), str(objects)) for p in range(PROCS)])
    assert len(reads) == PROCS

    async def check() -> None:
        posix = CountingFs(PosixFs(FsSpec("posix", {"fs_posix_prefix": str(objects)})))
        fs = FscacheFs(
            FsSpec("fscache", {"fs_fscache_path": str(cache), "fs_fscache_size": "60K"}), posix
        )
        for proc in range(PROCS):
            for i in range(OBJECTS):
                if i % 5 == 0:
                    with pytest.raises(FsNotFound):
                        await fs.read(f"p{proc}/{i}")
                else:
                    assert await fs.read(f"p{proc}/{i}") == _payload(proc, i)
        stats = await fs.rescan()
        assert stats.damaged == 0
        assert stats.bytes <= 60 * 1024
        assert not list((cache / "tmp").iterdir())

    run(check())


def test_full_obox_stack(tmp_path: Path) -> None:
    """@fs_defaults' order: fscache (plaintext) -> compress -> crypt -> dictmap -> terminal."""
    from tests.crypt_keys import crypt_settings

    specs = [
        FsSpec("fscache", {"fs_fscache_path": str(tmp_path / "cache"), "fs_fscache_size": "1M"}),
        FsSpec("compress", {"fs_compress_write_method": "zstd"}),
        FsSpec("crypt", crypt_settings(tmp_path / "keys")),
        FsSpec(
            "dictmap",
            {
                "storage_objectid_prefix": "alice/mails/",
                "dict_driver": "sqlite",
                "sqlite_path": str(tmp_path / "dict.db"),
            },
        ),
        FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "objects")}),
    ]
    mail = b"From: a@example.com\r\nSubject: plaintext marker\r\n\r\n" + b"body line\r\n" * 500

    async def main() -> None:
        fs = create_fs_stack(specs)
        try:
            await fs.write("alice/mailboxes/g/1", mail, {"guid": "g1"})
            assert await fs.read("alice/mailboxes/g/1") == mail
        finally:
            await fs.close()
        stored = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
        assert stored
        assert all(b"plaintext marker" not in p.read_bytes() for p in stored)
        [entry] = cache_files(tmp_path / "cache")
        assert b"plaintext marker" in entry.read_bytes()  # the documented trade-off
        fs = create_fs_stack(specs)
        try:
            assert await fs.read("alice/mailboxes/g/1") == mail
            assert await fs.get_metadata("alice/mailboxes/g/1") == {"guid": "g1"}
        finally:
            await fs.close()

    run(main())
