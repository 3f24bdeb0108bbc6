"""kill -9 during writes through compress + dictmap(sqlite) + posix, and randomfail outages.

A child process writes self-verifying objects (body + sha256 trailer) and prints each path after
``write()`` returned; the parent SIGKILLs it mid-stream.  Then every printed path must be listed
and readable, and every listed path must be complete (never half-written).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from columba.fs.api import Fs, FsNotFound, FsSpec, FsTemporaryError, create_fs_stack
from columba.fs.randomfail import RandomFailFs

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def specs(data: Path) -> list[FsSpec]:
    return [
        FsSpec("compress", {"fs_compress_write_method": "zstd"}),
        FsSpec(
            "dictmap",
            {
                "storage_objectid_prefix": "alice/mails/",
                "dict_driver": "sqlite",
                "sqlite_path": str(data / "dict.db"),
            },
        ),
        FsSpec("posix", {"fs_posix_prefix": str(data / "objects")}),
    ]


CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, os, random, sys
    from pathlib import Path
    from columba.fs.api import FsSpec, create_fs_stack

    data = Path(sys.argv[1])
    round_no = int(sys.argv[2])
    specs = [
        FsSpec("compress", {"fs_compress_write_method": "zstd"}),
        FsSpec("dictmap", {"storage_objectid_prefix": "alice/mails/",
                           "dict_driver": "sqlite", "sqlite_path": str(data / "dict.db")}),
        FsSpec("posix", {"fs_posix_prefix": str(data / "objects")}),
    ]

    async def chunks(payload):
        for i in range(0, len(payload), 32 * 1024):
            await asyncio.sleep(0)
            yield payload[i : i + 32 * 1024]

    async def main():
        fs = create_fs_stack(specs)
        rng = random.Random(round_no)
        i = 0
        while True:
            body = os.urandom(rng.randrange(1, 400_000)) + b"x" * rng.randrange(0, 200_000)
            payload = body + hashlib.sha256(body).digest()
            path = f"alice/mailboxes/guid{round_no}/{i:06d}"
            if i % 5 == 0:
                await fs.write(path, payload, {"n": str(i)})
            else:
                await fs.write(path, chunks(payload), {"n": str(i)})
            if i % 7 == 3:  # some copies and deletes too
                await fs.copy(path, path + ".copy")
            if i % 11 == 5:
                await fs.delete(path)
                print("deleted", path, flush=True)
            print("written", path, flush=True)
            i += 1

    asyncio.run(main())
    """
)


def _verify(payload: bytes) -> bool:
    body, digest = payload[:-32], payload[-32:]
    return len(payload) >= 32 and hashlib.sha256(body).digest() == digest


async def _check_store(data: Path, acknowledged: set[str], deleted: set[str]) -> int:
    fs = create_fs_stack(specs(data))
    try:
        listed = [p async for p in fs.iter_files("alice")]
        for path in listed:
            payload = await fs.read(path)  # a listed row always has a complete object
            assert _verify(payload), f"half-written object listed: {path}"
        for path in acknowledged - deleted:
            assert path in listed, f"acknowledged write lost: {path}"
            assert _verify(await fs.read(path))
        for path in deleted:
            assert path not in listed
    finally:
        await fs.close()
    # Temp files a killed writer left behind are never visible.
    raw = create_fs_stack([FsSpec("posix", {"fs_posix_prefix": str(data / "objects")})])
    raw_listed = [p async for p in raw.iter_files("")]
    assert not any(".columba-" in p for p in raw_listed)
    return len(listed)


@pytest.mark.slow
def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    acknowledged: set[str] = set()
    deleted: set[str] = set()
    rng = random.Random(42)
    for round_no in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        target = rng.randrange(5, 40)
        count = 0
        err = ""
        deadline = time.monotonic() + 60
        try:
            while count < target and time.monotonic() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                kind, path = line.split()
                if kind == "written":
                    acknowledged.add(path)
                    count += 1
                else:
                    deleted.add(path)
            # Let it get into the middle of the next write, then kill it.
            time.sleep(rng.random() * 0.05)
            os.kill(child.pid, signal.SIGKILL)
            rest, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert count == target, f"child stopped early: {err}"
        # Lines printed before the kill are acknowledged too.
        for line in rest.splitlines():
            parts = line.split()
            if len(parts) == 2:
                (acknowledged if parts[0] == "written" else deleted).add(parts[1])
        listed = run(_check_store(tmp_path, acknowledged, deleted))
        assert listed >= len(acknowledged - deleted)
    # Orphan temp files exist on disk only as reserved names, and leftovers don't break writes.
    run(_check_store(tmp_path, acknowledged, deleted))


def test_object_store_outage_through_randomfail(tmp_path: Path) -> None:
    """Writes/reads/deletes under a flaky object store: retried ops succeed, rows never dangle."""

    async def main() -> None:
        stack = [
            FsSpec(
                "dictmap",
                {
                    "storage_objectid_prefix": "alice/mails/",
                    "dict_driver": "sqlite",
                    "sqlite_path": str(tmp_path / "dict.db"),
                },
            ),
            FsSpec(
                "randomfail",
                {
                    "fs_randomfail_ops": "write=40,read=30,delete=30,stat=20",
                    "fs_randomfail_seed": "3",
                },
            ),
            FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "objects")}),
        ]
        fs = create_fs_stack(stack)
        flaky = fs.parent  # type: ignore[attr-defined]
        assert isinstance(flaky, RandomFailFs)
        expected: dict[str, bytes] = {}
        try:
            for i in range(60):
                path = f"alice/mailboxes/g/{i:03d}"
                payload = os.urandom(1000 + i * 997)
                for _ in range(100):
                    try:
                        await fs.write(path, payload)
                        break
                    except FsTemporaryError:
                        # Never listed after a failed write.
                        assert not await fs.exists(path)
                else:
                    pytest.fail("write never succeeded")
                expected[path] = payload
                if i % 4 == 0:
                    await fs.delete(path)  # object-delete failures leak, never raise
                    del expected[path]
            assert flaky.failures > 10
            listed = [p async for p in fs.iter_files("alice")]
            assert listed == sorted(expected)
            flaky.set_probability("all", 0)
            for path, payload in expected.items():
                assert await fs.read(path) == payload
            # Objects without rows (leaks) may exist; rows without objects must not.
            raw = create_fs_stack([FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "objects")})])
            stored = {p async for p in raw.iter_files("alice/mails")}
            rows = await fs.dict.iterate("shared/dictmap/")  # type: ignore[attr-defined]
            for _key, oid in rows:
                assert f"alice/mails/{oid}" in stored
        finally:
            await fs.close()

    run(main())


def test_dict_outage_leaves_no_dangling_rows(tmp_path: Path) -> None:
    """The sqlite file is locked by another process: writes fail temporarily, nothing dangles."""
    import sqlite3

    async def main() -> None:
        stack = [
            FsSpec(
                "dictmap",
                {
                    "storage_objectid_prefix": "alice/mails/",
                    "dict_driver": "sqlite",
                    "sqlite_path": str(tmp_path / "dict.db"),
                    "sqlite_busy_timeout": "200ms",
                },
            ),
            FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "objects")}),
        ]
        fs: Fs = create_fs_stack(stack)
        await fs.write("alice/idx/first", b"1")
        blocker = sqlite3.connect(tmp_path / "dict.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(FsTemporaryError):
                await fs.write("alice/idx/second", b"2")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        raw = create_fs_stack([FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "objects")})])
        assert len([p async for p in raw.iter_files("alice/mails")]) == 1  # new object removed
        with pytest.raises(FsNotFound):
            await fs.read("alice/idx/second")
        await fs.write("alice/idx/second", b"2")
        assert [p async for p in fs.iter_files("alice")] == ["alice/idx/first", "alice/idx/second"]
        await fs.close()

    run(main())
