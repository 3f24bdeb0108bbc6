"""The fs contract: every stack in `FS_STACKS` must pass every test here.

A new driver (s3, aws-s3, crypt, fscache ...) joins by adding an entry to `FS_STACKS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import columba.fs.s3  # noqa: F401 - registers the s3 and aws-s3 drivers
from columba.dict.api import Dict, create_dict
from columba.fs.api import (
    Fs,
    FsError,
    FsNotFound,
    FsSpec,
    FsStat,
    create_fs_stack,
)
from tests.crypt_keys import crypt_settings

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


@dataclass(frozen=True)
class Stack:
    specs: Callable[[Path], list[FsSpec]]
    in_memory: bool = False  # the terminal keeps whole objects in RAM
    s3: bool = False  # the terminal is s3 on the session's SeaweedFS (fixture `s3_server`)


def _posix(tmp: Path) -> FsSpec:
    return FsSpec("posix", {"fs_posix_prefix": str(tmp / "objects")})


def _sqlite(tmp: Path) -> Callable[[], Dict]:
    return lambda: create_dict("sqlite", {"sqlite_path": str(tmp / "dict.db")})


def _memdict() -> Callable[[], Dict]:
    return lambda: create_dict("memory", {})


FS_STACKS: dict[str, Stack] = {
    "posix": Stack(lambda t: [_posix(t)]),
    "memory": Stack(lambda t: [FsSpec("memory")], in_memory=True),
    "compress-zstd+memory": Stack(
        lambda t: [FsSpec("compress", {}), FsSpec("memory")], in_memory=True
    ),
    "compress-gz+posix": Stack(
        lambda t: [FsSpec("compress", {"fs_compress_write_method": "gz"}), _posix(t)]
    ),
    "dictmap(memory)+memory": Stack(
        lambda t: [
            FsSpec("dictmap", {"storage_objectid_prefix": "u/mails/"}, _memdict()),
            FsSpec("memory"),
        ],
        in_memory=True,
    ),
    "dictmap(sqlite)+posix": Stack(
        lambda t: [
            FsSpec("dictmap", {"storage_objectid_prefix": "u/mails/"}, _sqlite(t)),
            _posix(t),
        ]
    ),
    "dictmap(sqlite,passthrough=full)+memory": Stack(
        lambda t: [
            FsSpec("dictmap", {"storage_passthrough_paths": "full"}, _sqlite(t)),
            FsSpec("memory"),
        ],
        in_memory=True,
    ),
    "obox:compress+dictmap(sqlite)+posix": Stack(
        lambda t: [
            FsSpec("compress", {"fs_compress_write_method": "zstd"}),
            FsSpec(
                "dictmap",
                {"dict_driver": "sqlite", "sqlite_path": str(t / "settings-dict.db")},
            ),
            _posix(t),
        ]
    ),
    "posix(no-autodelete)": Stack(
        lambda t: [
            FsSpec(
                "posix",
                {
                    "fs_posix_prefix": str(t / "objects"),
                    "fs_posix_autodelete_empty_directories": "no",
                },
            )
        ]
    ),
    "randomfail(0%)+posix": Stack(
        lambda t: [FsSpec("randomfail", {"fs_randomfail_ops": "all=0"}), _posix(t)]
    ),
    "compress+crypt+memory": Stack(
        lambda t: [
            FsSpec("compress", {}),
            FsSpec("crypt", crypt_settings(t / "keys")),
            FsSpec("memory"),
        ],
        in_memory=True,
    ),
    "crypt+posix": Stack(lambda t: [FsSpec("crypt", crypt_settings(t / "keys")), _posix(t)]),
    "fscache+compress+memory": Stack(
        lambda t: [
            FsSpec("fscache", {"fs_fscache_path": str(t / "cache"), "fs_fscache_size": "64M"}),
            FsSpec("compress", {}),
            FsSpec("memory"),
        ],
        in_memory=True,
    ),
    "fscache+crypt+posix": Stack(
        lambda t: [
            FsSpec("fscache", {"fs_fscache_path": str(t / "cache"), "fs_fscache_size": "64M"}),
            FsSpec("crypt", crypt_settings(t / "keys")),
            _posix(t),
        ]
    ),
    "s3": Stack(lambda t: [FsSpec("s3")], s3=True),
    "compress+s3": Stack(lambda t: [FsSpec("compress", {}), FsSpec("s3")], s3=True),
    "dictmap(sqlite)+s3": Stack(
        lambda t: [
            FsSpec("dictmap", {"storage_objectid_prefix": "u/mails/"}, _sqlite(t)),
            FsSpec("s3"),
        ],
        s3=True,
    ),
}


class StackFactory:
    """Opens the stack under test; every call opens the same underlying store."""

    def __init__(self, specs: list[FsSpec], in_memory: bool) -> None:
        self.specs = specs
        self.in_memory = in_memory

    def __call__(self) -> Fs:
        return create_fs_stack(self.specs)


@pytest.fixture(params=sorted(FS_STACKS))
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> StackFactory:
    entry = FS_STACKS[request.param]
    specs = entry.specs(tmp_path)
    if entry.s3:
        # Every test gets its own key prefix in the session's bucket.
        server = request.getfixturevalue("s3_server")
        s3_settings = server.settings(prefix=f"contract/{uuid.uuid4().hex}/")
        specs = [
            FsSpec(s.driver, {**s3_settings, **s.settings}, s.dict_factory)
            if s.driver == "s3"
            else s
            for s in specs
        ]
    if entry.in_memory:
        # Share one memory store among the stacks this test opens.
        name = f"contract-{uuid.uuid4().hex}"
        specs = [
            FsSpec(s.driver, {**s.settings, "fs_memory_name": name}, s.dict_factory)
            if s.driver == "memory"
            else s
            for s in specs
        ]
        specs = [_shared_memdict(s, name) for s in specs]
    return StackFactory(specs, entry.in_memory)


def _shared_memdict(spec: FsSpec, name: str) -> FsSpec:
    if spec.driver != "dictmap" or spec.dict_factory is None:
        return spec
    probe = spec.dict_factory()
    if probe.name != "memory":
        return spec
    return FsSpec(
        spec.driver,
        spec.settings,
        lambda: create_dict("memory", {"memory_name": name}),
    )


def with_fs(factory: Callable[[], Fs], body: Callable[[Fs], Awaitable[None]]) -> None:
    async def main() -> None:
        fs = factory()
        try:
            await body(fs)
        finally:
            await fs.close()

    run(main())


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


async def collect(it: AsyncIterator[str]) -> list[str]:
    return [x async for x in it]


MAIL = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


# ---------------------------------------------------------------------- read / write


def test_write_read_roundtrip(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("u/mailboxes/g1/o1", MAIL)
        assert await fs.read("u/mailboxes/g1/o1") == MAIL
        got = b"".join([c async for c in fs.read_stream("u/mailboxes/g1/o1", 7)])
        assert got == MAIL
        assert await fs.exists("u/mailboxes/g1/o1")
        st = await fs.stat("u/mailboxes/g1/o1")
        assert isinstance(st, FsStat)
        assert st.size == len(MAIL)
        assert abs(st.mtime - time.time()) < 60

    with_fs(stack, body)


def test_write_from_stream_and_bytearray(stack: Callable[[], Fs]) -> None:
    data = bytes(range(256)) * 100

    async def body(fs: Fs) -> None:
        await fs.write("a/streamed", chunks(data, 1000))
        await fs.write("a/bytearray", bytearray(data))
        await fs.write("a/memoryview", memoryview(data))
        for name in ("streamed", "bytearray", "memoryview"):
            assert await fs.read(f"a/{name}") == data
            assert (await fs.stat(f"a/{name}")).size == len(data)

    with_fs(stack, body)


@pytest.mark.parametrize("data", [b"", b"x", b"ab", b"abc", b"\x28\xb5", b"\x1f"])
def test_tiny_objects(stack: Callable[[], Fs], data: bytes) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("tiny/o", data)
        assert await fs.read("tiny/o") == data
        assert b"".join([c async for c in fs.read_stream("tiny/o")]) == data
        assert (await fs.stat("tiny/o")).size == len(data)

    with_fs(stack, body)


def test_overwrite_replaces_data_and_metadata(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("u/idx/bundle", b"first version, longer", {"a": "1", "b": "2"})
        await fs.write("u/idx/bundle", b"second", {"c": "3"})
        assert await fs.read("u/idx/bundle") == b"second"
        assert await fs.get_metadata("u/idx/bundle") == {"c": "3"}
        await fs.write("u/idx/bundle", b"third")
        assert await fs.get_metadata("u/idx/bundle") == {}
        assert await collect(fs.iter_files("u")) == ["u/idx/bundle"]

    with_fs(stack, body)


def test_persists_across_reopen(stack: Callable[[], Fs]) -> None:
    async def write(fs: Fs) -> None:
        await fs.write("u/fts/x", b"kept", {"fname": "x"})

    async def check(fs: Fs) -> None:
        assert await fs.read("u/fts/x") == b"kept"
        assert await fs.get_metadata("u/fts/x") == {"fname": "x"}
        assert await collect(fs.iter_files("")) == ["u/fts/x"]

    with_fs(stack, write)
    with_fs(stack, check)


# ---------------------------------------------------------------------- missing files


def test_missing_files(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("u/present", b"x")
        for path in ("u/missing", "nodir/missing", "u/present/below"):
            assert not await fs.exists(path)
            with pytest.raises(FsNotFound):
                await fs.read(path)
            with pytest.raises(FsNotFound):
                async for _ in fs.read_stream(path):
                    pass
            with pytest.raises(FsNotFound):
                await fs.stat(path)
            with pytest.raises(FsNotFound):
                await fs.get_metadata(path)
            with pytest.raises(FsNotFound):
                await fs.delete(path)
            with pytest.raises(FsNotFound):
                await fs.copy(path, "u/copy")
        assert not await fs.exists("u/copy")
        # A "directory" is not a file.
        assert not await fs.exists("u")
        with pytest.raises(FsNotFound):
            await fs.read("u")

    with_fs(stack, body)


def test_delete(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("u/mailboxes/g/1", b"one")
        await fs.write("u/mailboxes/g/2", b"two")
        await fs.delete("u/mailboxes/g/1")
        assert not await fs.exists("u/mailboxes/g/1")
        with pytest.raises(FsNotFound):
            await fs.read("u/mailboxes/g/1")
        with pytest.raises(FsNotFound):
            await fs.delete("u/mailboxes/g/1")
        assert await collect(fs.iter_files("u/mailboxes/g")) == ["u/mailboxes/g/2"]
        # Rewriting a deleted path works.
        await fs.write("u/mailboxes/g/1", b"again")
        assert await fs.read("u/mailboxes/g/1") == b"again"

    with_fs(stack, body)


# ---------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/abs",
        "/",
        "a/../b",
        "..",
        "../x",
        "a/./b",
        ".",
        "a//b",
        "a/",
        "nul\0x",
        ".columba-tmp.x",
    ],
)
def test_invalid_paths_rejected(stack: Callable[[], Fs], path: str) -> None:
    async def body(fs: Fs) -> None:
        with pytest.raises(FsError):
            await fs.write(path, b"x")
        with pytest.raises(FsError):
            await fs.read(path)
        with pytest.raises(FsError):
            await fs.delete(path)
        with pytest.raises(FsError):
            await fs.stat(path)

    with_fs(stack, body)


def test_prefix_cannot_escape(stack: Callable[[], Fs], tmp_path: Path) -> None:
    async def body(fs: Fs) -> None:
        with pytest.raises(FsError):
            await collect(fs.iter_files("../"))
        with pytest.raises(FsError):
            await collect(fs.iter_files("/etc"))
        with pytest.raises(FsError):
            await fs.write("x/../../escaped", b"x")
        assert not (tmp_path.parent / "escaped").exists()

    with_fs(stack, body)


def test_unicode_and_odd_names(stack: Callable[[], Fs]) -> None:
    names = ["u/mailboxes/g/ä-ö", "u/mailboxes/g/with space", "u/mailboxes/g/%2F", "u/x.y~z"]

    async def body(fs: Fs) -> None:
        for i, name in enumerate(names):
            await fs.write(name, str(i).encode())
        for i, name in enumerate(names):
            assert await fs.read(name) == str(i).encode()
        assert await collect(fs.iter_files("")) == sorted(names)

    with_fs(stack, body)


# ---------------------------------------------------------------------- metadata


def test_metadata(stack: Callable[[], Fs]) -> None:
    meta = {"username": "alice@example.com", "guid": "0123abcd", "size": "42", "fname": "ä b"}

    async def body(fs: Fs) -> None:
        await fs.write("u/mailboxes/g/m", MAIL, meta)
        assert await fs.get_metadata("u/mailboxes/g/m") == meta
        await fs.write("u/mailboxes/g/plain", MAIL)
        assert await fs.get_metadata("u/mailboxes/g/plain") == {}
        await fs.write("u/mailboxes/g/streamed", chunks(MAIL, 3), meta)
        assert await fs.get_metadata("u/mailboxes/g/streamed") == meta

    with_fs(stack, body)


# ---------------------------------------------------------------------- copy


def test_copy(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("u/mailboxes/g1/a", MAIL, {"guid": "1"})
        await fs.copy("u/mailboxes/g1/a", "u/mailboxes/g2/a")
        assert await fs.read("u/mailboxes/g2/a") == MAIL
        assert await fs.get_metadata("u/mailboxes/g2/a") == {"guid": "1"}
        # The copy outlives its source and vice versa.
        await fs.delete("u/mailboxes/g1/a")
        assert await fs.read("u/mailboxes/g2/a") == MAIL
        await fs.copy("u/mailboxes/g2/a", "u/mailboxes/g3/a")
        await fs.delete("u/mailboxes/g3/a")
        assert await fs.read("u/mailboxes/g2/a") == MAIL
        # Copy over an existing object replaces it.
        await fs.write("u/mailboxes/g3/b", b"old")
        await fs.copy("u/mailboxes/g2/a", "u/mailboxes/g3/b")
        assert await fs.read("u/mailboxes/g3/b") == MAIL
        # Overwriting a copy leaves the other name alone.
        await fs.write("u/mailboxes/g3/b", b"new")
        assert await fs.read("u/mailboxes/g2/a") == MAIL
        assert await collect(fs.iter_files("u")) == ["u/mailboxes/g2/a", "u/mailboxes/g3/b"]

    with_fs(stack, body)


# ---------------------------------------------------------------------- iteration


def test_iteration_order_and_depth(stack: Callable[[], Fs]) -> None:
    paths = [
        "u/mailboxes/g/b",
        "u/mailboxes/g/a",
        "u/mailboxes/g/idx/bundle.2",
        "u/mailboxes/g/idx/bundle.1",
        "u/mailboxes/g-x/z",  # '-' sorts before '/'
        "u/mailboxes/g0/y",
        "u/idx/bundle",
        "u/fts/f",
        "v/mailboxes/h/1",
    ]

    async def body(fs: Fs) -> None:
        random.Random(1).shuffle(paths)
        for p in paths:
            await fs.write(p, p.encode())
        everything = await collect(fs.iter_files(""))
        assert everything == sorted(paths)
        assert await collect(fs.iter_files("u/mailboxes/g")) == [
            "u/mailboxes/g/a",
            "u/mailboxes/g/b",
            "u/mailboxes/g/idx/bundle.1",
            "u/mailboxes/g/idx/bundle.2",
        ]
        assert await collect(fs.iter_files("u/mailboxes/g/")) == await collect(
            fs.iter_files("u/mailboxes/g")
        )
        assert await collect(fs.iter_files("u/mailboxes/g", recursive=False)) == [
            "u/mailboxes/g/a",
            "u/mailboxes/g/b",
        ]
        assert await collect(fs.iter_files("u/mailboxes", recursive=False)) == []
        assert await collect(fs.iter_files("nothing/here")) == []
        assert await collect(fs.iter_files("u/mailboxes/g/a")) == []  # a file isn't a dir
        assert await fs.iter_dirs("u/mailboxes") == ["g", "g-x", "g0"]
        assert await fs.iter_dirs("u") == ["fts", "idx", "mailboxes"]
        assert await fs.iter_dirs("") == ["u", "v"]

    with_fs(stack, body)


def test_iteration_many_files(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        # More than one page of dictmap's dict listing (1000 rows).
        names = [f"u/mailboxes/g/{i:05d}" for i in range(1100)]
        await asyncio.gather(*(fs.write(n, b"x") for n in names[:550]))
        await asyncio.gather(*(fs.write(n, b"x") for n in names[550:]))
        assert await collect(fs.iter_files("u/mailboxes/g", recursive=False)) == names

    with_fs(stack, body)


def test_early_stop_of_iterators(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        await fs.write("a/1", b"x" * 100_000)
        await fs.write("a/2", b"y")
        stream = fs.read_stream("a/1", 1000)
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
        listing = fs.iter_files("a")
        async for _ in listing:
            break
        await listing.aclose()  # type: ignore[attr-defined]
        await fs.delete("a/1")  # nothing left open
        assert await collect(fs.iter_files("a")) == ["a/2"]

    with_fs(stack, body)


# ---------------------------------------------------------------------- streaming


def _block(i: int) -> bytes:
    # Compressible but not trivial: a run of random words.
    rng = random.Random(i)
    words = [rng.randbytes(rng.randrange(2, 9)).hex().encode() for _ in range(20000)]
    return b" ".join(words)[: 1 << 20].ljust(1 << 20, b".")


def test_large_object_streams_in_bounded_memory(stack: StackFactory) -> None:
    """20 MB through the stack in 1 MB chunks; reading holds a few chunks at most."""
    total_chunks = 20
    blocks = [_block(i % 4) for i in range(4)]
    expected = hashlib.sha256()
    for i in range(total_chunks):
        expected.update(blocks[i % 4])

    async def source() -> AsyncIterator[bytes]:
        for i in range(total_chunks):
            yield blocks[i % 4]

    async def body(fs: Fs) -> None:
        tracemalloc.start()
        try:
            await fs.write("u/mailboxes/g/big", source(), {"size": str(total_chunks << 20)})
            before_read, write_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            digest = hashlib.sha256()
            biggest = 0
            async for chunk in fs.read_stream("u/mailboxes/g/big", 256 * 1024):
                biggest = max(biggest, len(chunk))
                digest.update(chunk)
            _, read_peak = tracemalloc.get_traced_memory()
            read_peak -= before_read
        finally:
            tracemalloc.stop()
        assert digest.hexdigest() == expected.hexdigest()
        assert biggest <= 1 << 20
        assert read_peak < 12 << 20, f"read held {read_peak} bytes"
        if not stack.in_memory:
            assert write_peak < 12 << 20, f"write held {write_peak} bytes"
        assert (await fs.stat("u/mailboxes/g/big")).size == total_chunks << 20

    with_fs(stack, body)


# ---------------------------------------------------------------------- concurrency


def test_concurrent_writers_same_path(stack: Callable[[], Fs]) -> None:
    """Concurrent overwrites: the result is one writer's whole object, never a mix."""
    versions = [bytes([65 + i]) * (50_000 + i) for i in range(8)]

    async def body(fs: Fs) -> None:
        await asyncio.gather(*(fs.write("u/idx/hot", chunks(v, 4096)) for v in versions))
        assert await fs.read("u/idx/hot") in versions
        assert await collect(fs.iter_files("u")) == ["u/idx/hot"]

    with_fs(stack, body)


def test_concurrent_mixed_operations(stack: Callable[[], Fs]) -> None:
    async def body(fs: Fs) -> None:
        async def worker(n: int) -> None:
            for i in range(10):
                path = f"u/mailboxes/g{n}/{i}"
                await fs.write(path, path.encode())
                if i % 3 == 0:
                    await fs.copy(path, path + "-copy")
                if i % 2 == 0:
                    await fs.delete(path)

        await asyncio.gather(*(worker(n) for n in range(8)))
        listed = await collect(fs.iter_files("u"))
        for path in listed:
            assert (await fs.read(path)).decode().startswith(path.removesuffix("-copy"))
        assert len(listed) == 8 * (5 + 4)

    with_fs(stack, body)
