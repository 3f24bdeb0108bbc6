"""dictmap: key space, object ids, refcounted copy/delete, listing from the dict, failure order."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from columba.dict.api import Dict, DictError, DictOp, DictTemporaryError, create_dict
from columba.dict.memory import MemoryDict
from columba.fs.api import Fs, FsError, FsNotFound, FsSpec, FsTemporaryError, create_fs_stack
from columba.fs.dictmap import DictmapFs
from columba.fs.randomfail import RandomFailFs, parse_ops

_T = TypeVar("_T")
OID = re.compile(r"^[0-9a-f]{32}$")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


class Env:
    """dictmap over a named memory fs with a named memory dict, plus raw views of both."""

    def __init__(self, **settings: str) -> None:
        self.fs_name = uuid.uuid4().hex
        self.dict_name = uuid.uuid4().hex
        self.settings = {"storage_objectid_prefix": "alice/mails/", **settings}
        self.raw = create_fs_stack([FsSpec("memory", {"fs_memory_name": self.fs_name})])
        self.dict = create_dict("memory", {"memory_name": self.dict_name})

    def open(self, *, dict_obj: Dict | None = None, extra: list[FsSpec] | None = None) -> Fs:
        factory = (lambda: dict_obj) if dict_obj is not None else self._new_dict
        return create_fs_stack(
            [
                FsSpec("dictmap", self.settings, factory),
                *(extra or []),
                FsSpec("memory", {"fs_memory_name": self.fs_name}),
            ]
        )

    def _new_dict(self) -> Dict:
        return create_dict("memory", {"memory_name": self.dict_name})

    async def raw_files(self) -> list[str]:
        return [p async for p in self.raw.iter_files("")]

    async def rows(self, prefix: str = "shared/") -> dict[str, str]:
        return dict(await self.dict.iterate(prefix))


MB = "alice/mailboxes/0123456789abcdef0123456789abcdef"


def test_key_space_and_object_ids() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open()
        assert isinstance(fs, DictmapFs)
        await fs.write(f"{MB}/msg1", b"mail", {"guid": "g1"})
        rows = await env.rows()
        oid = rows[f"shared/dictmap/{MB}/msg1"]
        assert OID.match(oid)
        assert rows == {f"shared/dictmap/{MB}/msg1": oid, f"shared/dictrevmap/{oid}/{MB}/msg1": ""}
        assert await env.raw_files() == [f"alice/mails/{oid}"]
        assert await env.raw.read(f"alice/mails/{oid}") == b"mail"
        assert await env.raw.get_metadata(f"alice/mails/{oid}") == {"guid": "g1"}

    run(main())


def test_prefix_without_trailing_slash() -> None:
    async def main() -> None:
        env = Env(storage_objectid_prefix="alice/mails")
        fs = env.open()
        await fs.write("alice/idx/b", b"x")
        (path,) = await env.raw_files()
        assert path.startswith("alice/mails/")

    run(main())


def test_overwrite_frees_old_object() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open()
        await fs.write("alice/idx/b", b"1")
        await fs.write("alice/idx/b", b"2")
        files = await env.raw_files()
        assert len(files) == 1
        assert await env.raw.read(files[0]) == b"2"
        assert len(await env.rows("shared/dictrevmap/")) == 1

    run(main())


def test_copy_shares_object_and_refcounts() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open()
        await fs.write(f"{MB}/a", b"mail")
        await fs.copy(f"{MB}/a", "alice/mailboxes/other/a")
        await fs.copy(f"{MB}/a", "alice/mailboxes/third/a")
        rows = await env.rows("shared/dictmap/")
        assert len(set(rows.values())) == 1
        (oid,) = set(rows.values())
        assert len(await env.rows(f"shared/dictrevmap/{oid}/")) == 3
        assert await env.raw_files() == [f"alice/mails/{oid}"]  # no data copied

        await fs.delete(f"{MB}/a")
        await fs.delete("alice/mailboxes/third/a")
        assert await env.raw_files() == [f"alice/mails/{oid}"]
        assert await fs.read("alice/mailboxes/other/a") == b"mail"
        await fs.delete("alice/mailboxes/other/a")
        assert await env.raw_files() == []
        assert await env.rows() == {}

    run(main())


def test_copy_onto_itself_and_onto_same_object() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open()
        await fs.write("alice/x", b"1")
        await fs.copy("alice/x", "alice/x")
        await fs.copy("alice/x", "alice/y")
        await fs.copy("alice/x", "alice/y")
        assert len(await env.rows("shared/dictrevmap/")) == 2
        assert len(await env.raw_files()) == 1

    run(main())


def test_listing_comes_from_the_dict_only() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open()
        await fs.write(f"{MB}/a", b"1")
        await env.raw.write(f"{MB}/stray", b"not listed")  # an object without a row
        assert [p async for p in fs.iter_files("alice")] == [f"{MB}/a"]
        assert not await fs.exists(f"{MB}/stray")
        with pytest.raises(FsNotFound):
            await fs.read(f"{MB}/stray")
        # A row is listed even when the object store has lost the object (repair's job).
        (oid,) = (await env.rows("shared/dictmap/")).values()
        await env.raw.delete(f"alice/mails/{oid}")
        assert [p async for p in fs.iter_files("alice")] == [f"{MB}/a"]
        with pytest.raises(FsNotFound):
            await fs.read(f"{MB}/a")

    run(main())


class FailingDict(MemoryDict):
    """Commits fail with the given error."""

    def __init__(self, name: str, error: DictError) -> None:
        super().__init__({"memory_name": name})
        self.error = error
        self.fail = True

    def apply(self, ops: list[DictOp]) -> None:
        if self.fail:
            raise self.error
        super().apply(ops)


def test_failed_commit_deletes_the_new_object() -> None:
    async def main() -> None:
        env = Env()
        d = FailingDict(env.dict_name, DictTemporaryError("dict down"))
        fs = env.open(dict_obj=d)
        with pytest.raises(FsTemporaryError):
            await fs.write("alice/idx/b", b"x")
        assert await env.raw_files() == []
        assert await env.rows() == {}
        d.error = DictError("broken")
        with pytest.raises(FsError):
            await fs.write("alice/idx/b", b"x")
        assert await env.raw_files() == []

    run(main())


def test_uncertain_commit_keeps_the_object() -> None:
    async def main() -> None:
        env = Env()
        d = FailingDict(env.dict_name, DictTemporaryError("lost reply", uncertain=True))
        fs = env.open(dict_obj=d)
        with pytest.raises(FsTemporaryError):
            await fs.write("alice/idx/b", b"x")
        assert len(await env.raw_files()) == 1  # may be referenced: never deleted

    run(main())


def test_failed_object_write_leaves_no_row() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open(extra=[FsSpec("randomfail", {"fs_randomfail_ops/write": "100"})])
        for _ in range(10):
            with pytest.raises(FsTemporaryError):
                await fs.write("alice/idx/b", b"x" * 100_000)
        assert await env.rows() == {}
        assert await env.raw_files() == []

    run(main())


def test_failed_delete_of_object_keeps_rows_consistent() -> None:
    async def main() -> None:
        env = Env()
        fs = env.open(extra=[FsSpec("randomfail", {"fs_randomfail_ops/delete": "100"})])
        await fs.write("alice/idx/b", b"x")
        await fs.delete("alice/idx/b")  # the name is deleted even though the object isn't
        # The row went first: the name is gone, the object leaked (harmless).
        assert not await fs.exists("alice/idx/b")
        assert await env.rows() == {}
        assert len(await env.raw_files()) == 1

    run(main())


def test_passthrough_full() -> None:
    async def main() -> None:
        env = Env(storage_passthrough_paths="full")
        fs = env.open()
        await fs.write("alice/idx/bundle.1", b"idx", {"fname": "bundle.1"})
        assert await env.rows() == {"shared/dictmap/alice/idx/bundle.1": ""}
        assert await env.raw_files() == ["alice/idx/bundle.1"]
        await fs.write("alice/idx/bundle.1", b"idx2")
        assert await env.raw.read("alice/idx/bundle.1") == b"idx2"
        await fs.copy("alice/idx/bundle.1", "alice/idx/bundle.2")
        assert await env.raw_files() == ["alice/idx/bundle.1", "alice/idx/bundle.2"]
        assert await fs.read("alice/idx/bundle.2") == b"idx2"
        await fs.delete("alice/idx/bundle.1")
        assert await env.raw_files() == ["alice/idx/bundle.2"]
        assert [p async for p in fs.iter_files("alice/idx")] == ["alice/idx/bundle.2"]

    run(main())


def test_passthrough_read_only_migrates() -> None:
    async def main() -> None:
        env = Env(storage_passthrough_paths="full")
        await env.open().write("alice/idx/old", b"old")
        env.settings["storage_passthrough_paths"] = "read-only"
        fs = env.open()
        assert await fs.read("alice/idx/old") == b"old"  # empty value: object id = path
        await fs.write("alice/idx/new", b"new")
        value = (await env.rows())["shared/dictmap/alice/idx/new"]
        assert OID.match(value)
        # Overwriting a passthrough object moves it to an object id and frees the path.
        await fs.write("alice/idx/old", b"newer")
        assert "alice/idx/old" not in await env.raw_files()
        assert await fs.read("alice/idx/old") == b"newer"
        # Copying a passthrough object copies its data to a new object id.
        await env.raw.write("alice/idx/legacy", b"legacy")
        await env.dict.set("shared/dictmap/alice/idx/legacy", "")
        await fs.copy("alice/idx/legacy", "alice/idx/legacy-copy")
        assert await fs.read("alice/idx/legacy-copy") == b"legacy"
        assert OID.match((await env.rows())["shared/dictmap/alice/idx/legacy-copy"])

    run(main())


def test_settings() -> None:
    with pytest.raises(FsError):
        create_fs_stack([FsSpec("dictmap", {}), FsSpec("memory")])  # no dict
    with pytest.raises(FsError):
        create_fs_stack(
            [
                FsSpec(
                    "dictmap", {"storage_passthrough_paths": "half"}, lambda: create_dict("memory")
                ),
                FsSpec("memory"),
            ]
        )
    with pytest.raises(FsError):
        create_fs_stack([FsSpec("dictmap", {"dict_driver": "nope"}), FsSpec("memory")])
    with pytest.raises(FsError):
        create_fs_stack([FsSpec("dictmap", {"dict_driver": "memory"})])  # wrapper can't be last
    with pytest.raises(FsError):
        create_fs_stack([FsSpec("memory"), FsSpec("memory")])  # terminal must be last
    with pytest.raises(FsError):
        create_fs_stack([FsSpec("no-such-driver")])


def test_dict_from_settings(tmp_path: Path) -> None:
    async def main() -> None:
        specs = [
            FsSpec("dictmap", {"dict_driver": "sqlite", "sqlite_path": str(tmp_path / "d.db")}),
            FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "o")}),
        ]
        async with create_fs_stack(specs) as fs:
            await fs.write("alice/fts/x", b"fts")
        async with create_fs_stack(specs) as fs:
            assert await fs.read("alice/fts/x") == b"fts"

    run(main())


def test_randomfail_settings() -> None:
    assert parse_ops({"fs_randomfail_ops": "read=100, write=50"})["write"] == 50
    ops = parse_ops({"fs_randomfail_ops/all": "10", "fs_randomfail_ops/delete": "0"})
    assert ops["read"] == 10
    assert ops["delete"] == 0
    with pytest.raises(FsError):
        parse_ops({"fs_randomfail_ops/bogus": "1"})
    with pytest.raises(FsError):
        parse_ops({"fs_randomfail_ops/read": "101"})


def test_concurrent_copy_and_delete_never_dangle() -> None:
    """Random concurrent writes/copies/deletes: every row's object exists, no object leaks."""

    async def main() -> None:
        env = Env()
        fs = env.open()
        rng = random.Random(7)
        names = [f"alice/mailboxes/m{i % 3}/{i}" for i in range(12)]

        async def worker(seed: int) -> None:
            r = random.Random(seed)
            for _ in range(60):
                a, b = r.choice(names), r.choice(names)
                op = r.randrange(3)
                try:
                    if op == 0:
                        await fs.write(a, a.encode())
                    elif op == 1:
                        await fs.copy(a, b)
                    else:
                        await fs.delete(a)
                except FsNotFound:
                    pass

        await asyncio.gather(*(worker(rng.randrange(1 << 30)) for _ in range(6)))
        rows = await env.rows("shared/dictmap/")
        rev = await env.rows("shared/dictrevmap/")
        objects = set(await env.raw_files())
        for key, oid in rows.items():
            path = key.removeprefix("shared/dictmap/")
            assert f"alice/mails/{oid}" in objects
            assert f"shared/dictrevmap/{oid}/{path}" in rev
        assert len(rev) == len(rows)
        assert objects == {f"alice/mails/{oid}" for oid in rows.values()}

    run(main())


def test_randomfail_wrapper_counts() -> None:
    async def main() -> None:
        fs = create_fs_stack(
            [
                FsSpec("randomfail", {"fs_randomfail_ops/read": "100", "fs_randomfail_seed": "1"}),
                FsSpec("memory"),
            ]
        )
        assert isinstance(fs, RandomFailFs)
        await fs.write("a", b"x" * 10000)
        for _ in range(5):
            with pytest.raises(FsTemporaryError):
                async for _chunk in fs.read_stream("a", 100):
                    pass
        fs.set_probability("read", 0)
        assert await fs.read("a") == b"x" * 10000
        assert fs.failures == 5

    run(main())
