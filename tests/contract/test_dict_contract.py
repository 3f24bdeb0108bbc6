"""The dict contract: every driver in `DICT_DRIVERS` must pass every test here.

A new driver (postgresql, cassandra ...) joins by adding an entry to `DICT_DRIVERS`: a function
of the test's tmp dir returning the driver name and settings, so that every `create_dict` with
them opens the same store (also from other processes when ``multiprocess`` is true).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from columba.dict import cassandra as cassandra_dict  # registers "cassandra", also in children
from columba.dict.api import (
    Dict,
    DictConflict,
    DictError,
    create_dict,
    dict_drivers,
    prefix_upper_bound,
)
from tests.pg_server import fresh_database

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


@dataclass(frozen=True)
class DictTarget:
    driver: str
    settings: dict[str, str]
    multiprocess: bool

    def open(self, username: str | None = None) -> Dict:
        return create_dict(self.driver, self.settings, username=username)


DICT_DRIVERS: dict[str, Callable[[Path], DictTarget]] = {
    "sqlite": lambda t: DictTarget("sqlite", {"sqlite_path": str(t / "dict.db")}, True),
    "sqlite-journal-delete": lambda t: DictTarget(
        "sqlite", {"sqlite_path": str(t / "dict.db"), "sqlite_journal_mode": "delete"}, True
    ),
    "memory": lambda t: DictTarget("memory", {"memory_name": uuid.uuid4().hex}, False),
    "postgresql": lambda t: DictTarget("postgresql", {"pgsql_url": fresh_database()}, True),
    "cassandra": lambda t: _cassandra_target(),
}


def _cassandra_target() -> DictTarget:
    """A fresh keyspace on the live cluster named by COLUMBA_TEST_CASSANDRA (opt-in)."""
    addr = os.environ.get("COLUMBA_TEST_CASSANDRA", "")
    if not addr:
        pytest.skip("COLUMBA_TEST_CASSANDRA=host:port not set (no Cassandra server here)")
    return DictTarget("cassandra", cassandra_dict.live_test_settings(addr), True)


@pytest.fixture(params=sorted(DICT_DRIVERS))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> DictTarget:
    return DICT_DRIVERS[request.param](tmp_path)


def with_dict(
    target: DictTarget, body: Callable[[Dict], Awaitable[None]], username: str | None = None
) -> None:
    async def main() -> None:
        d = target.open(username)
        try:
            await body(d)
        finally:
            await d.close()

    run(main())


def test_registry() -> None:
    assert {"sqlite", "memory"} <= set(dict_drivers())
    with pytest.raises(DictError):
        create_dict("no-such-driver", {})


# ---------------------------------------------------------------------- get / set / unset


def test_get_set_unset(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        assert await d.get("shared/a") is None
        await d.set("shared/a", "1")
        assert await d.get("shared/a") == "1"
        await d.set("shared/a", "two")
        assert await d.get("shared/a") == "two"
        await d.set("shared/empty", "")
        assert await d.get("shared/empty") == ""
        await d.unset("shared/a")
        assert await d.get("shared/a") is None
        await d.unset("shared/never-existed")
        await d.set("shared/ünï/✉", "välue ✉ \U0001f600")
        assert await d.get("shared/ünï/✉") == "välue ✉ \U0001f600"

    with_dict(target, body)


@pytest.mark.parametrize("key", ["", "a", "shared", "private/x", "Shared/x", "shared/\0"])
def test_invalid_keys(target: DictTarget, key: str) -> None:
    async def body(d: Dict) -> None:
        with pytest.raises(DictError):
            await d.get(key)
        with pytest.raises(DictError):
            d.transaction().set(key, "x")

    with_dict(target, body)


def test_priv_keys_are_per_user(target: DictTarget) -> None:
    async def no_user(d: Dict) -> None:
        with pytest.raises(DictError):
            await d.get("priv/x")
        with pytest.raises(DictError):
            d.transaction().set("priv/x", "1")
        await d.set("shared/x", "shared")

    async def alice(d: Dict) -> None:
        await d.set("priv/quota/storage", "100")
        await d.set("priv/quota/messages", "1")
        assert await d.get("shared/x") == "shared"

    async def bob(d: Dict) -> None:
        assert await d.get("priv/quota/storage") is None
        assert await d.iterate("priv/") == []
        await d.set("priv/quota/storage", "7")

    async def alice_again(d: Dict) -> None:
        assert await d.iterate("priv/quota/") == [
            ("priv/quota/messages", "1"),
            ("priv/quota/storage", "100"),
        ]
        assert await d.iterate("shared/") == [("shared/x", "shared")]

    with_dict(target, no_user)
    with_dict(target, alice, "alice")
    with_dict(target, bob, "bob")
    with_dict(target, alice_again, "alice")


def test_persists_across_reopen(target: DictTarget) -> None:
    async def write(d: Dict) -> None:
        await d.set("shared/kept", "yes")

    async def check(d: Dict) -> None:
        assert await d.get("shared/kept") == "yes"

    with_dict(target, write)
    with_dict(target, check)


# ---------------------------------------------------------------------- iteration


KEYS = [
    "shared/dictmap/u/mailboxes/g/1",
    "shared/dictmap/u/mailboxes/g/2",
    "shared/dictmap/u/mailboxes/g/idx/b1",
    "shared/dictmap/u/mailboxes/g-x/1",
    "shared/dictmap/u/mailboxes/g0/1",
    "shared/dictmap/u/mailboxes/g",
    "shared/dictmap/u/idx/b",
    "shared/dictmap/v/x",
    "shared/dictmap/u/mailboxes/g/é",
    "shared/dictmap/u/mailboxes/g/z",
    "shared/dictmap/u/mailboxes/g/\U0001f600",
    "shared/dictmap/u/mailboxes/g/\uffff",
    "shared/other",
]


def test_iterate(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        t = d.transaction()
        for i, k in enumerate(KEYS):
            t.set(k, str(i))
        await t.commit()
        value = {k: str(i) for i, k in enumerate(KEYS)}

        got = await d.iterate("shared/dictmap/u/mailboxes/g/")
        want = sorted(k for k in KEYS if k.startswith("shared/dictmap/u/mailboxes/g/"))
        assert [k for k, _ in got] == want
        assert all(v == value[k] for k, v in got)
        # Code point order == UTF-8 byte order.
        assert want == sorted(want, key=lambda k: k.encode())

        flat = await d.iterate("shared/dictmap/u/mailboxes/g/", recurse=False)
        assert [k for k, _ in flat] == [
            k for k in want if k != "shared/dictmap/u/mailboxes/g/idx/b1"
        ]

        assert await d.iterate("shared/dictmap/u/mailboxes/g", exact_depth=True) == [
            ("shared/dictmap/u/mailboxes/g", value["shared/dictmap/u/mailboxes/g"])
        ]
        assert await d.iterate("shared/dictmap/u/mailboxes/nothing", exact_depth=True) == []
        assert await d.iterate("shared/dictmap/w/") == []

        # A plain string prefix: "g" also matches g-x and g0.
        plain = [k for k, _ in await d.iterate("shared/dictmap/u/mailboxes/g")]
        assert plain == sorted(k for k in KEYS if k.startswith("shared/dictmap/u/mailboxes/g"))

        everything = [k for k, _ in await d.iterate("shared/")]
        assert everything == sorted(KEYS)

    with_dict(target, body)


def test_iterate_paging(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        t = d.transaction()
        keys = [f"shared/p/{i:04d}" for i in range(250)]
        for k in keys:
            t.set(k, k[-4:])
        t.set("shared/p/0000/deep", "x")
        await t.commit()
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await d.iterate("shared/p/", recurse=False, after=after, limit=64)
            seen.extend(k for k, _ in page)
            if len(page) < 64:
                break
            after = page[-1][0]
        assert seen == keys
        assert await d.iterate("shared/p/", limit=0) == []
        # `after` before the prefix doesn't widen the range.
        assert [k for k, _ in await d.iterate("shared/p/", after="shared/a", limit=2)] == [
            keys[0],
            "shared/p/0000/deep",
        ]

    with_dict(target, body)


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound("shared/a/") == "shared/a0"
    assert prefix_upper_bound("") is None
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("a\ud7ff") == "a\ue000"


# ---------------------------------------------------------------------- transactions


def test_transaction_atomic_and_ordered(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        t = d.transaction()
        t.set("shared/t/a", "1")
        t.set("shared/t/b", "2")
        t.unset("shared/t/a")
        t.set_if("shared/t/b", "2", "3")  # sees the earlier set in this transaction
        t.atomic_inc("shared/t/n", 5)
        t.atomic_inc("shared/t/n", -2)
        await t.commit()
        assert await d.iterate("shared/t/") == [("shared/t/b", "3"), ("shared/t/n", "3")]

    with_dict(target, body)


def test_failed_cas_applies_nothing(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        await d.set("shared/c/v", "old")
        t = d.transaction()
        t.set("shared/c/other", "x")
        t.atomic_inc("shared/c/n", 1)
        t.set_if("shared/c/v", "not-old", "new")
        with pytest.raises(DictConflict):
            await t.commit()
        assert await d.iterate("shared/c/") == [("shared/c/v", "old")]

        t = d.transaction()
        t.set_if("shared/c/v", None, "x")  # must not exist: it does
        with pytest.raises(DictConflict):
            await t.commit()

        t = d.transaction()
        t.set_if("shared/c/new", None, "created")
        t.set_if("shared/c/v", "old", None)  # compare-and-delete
        await t.commit()
        assert await d.iterate("shared/c/") == [("shared/c/new", "created")]

        t = d.transaction()
        t.set_if("shared/c/missing", None, None)  # "still missing" check only
        await t.commit()

    with_dict(target, body)


def test_atomic_inc(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        t = d.transaction()
        t.atomic_inc("shared/n", 10)
        await t.commit()
        assert await d.get("shared/n") == "10"
        t = d.transaction()
        t.atomic_inc("shared/n", -25)
        await t.commit()
        assert await d.get("shared/n") == "-15"
        await d.set("shared/text", "abc")
        t = d.transaction()
        t.set("shared/side-effect", "x")
        t.atomic_inc("shared/text", 1)
        with pytest.raises(DictError):
            await t.commit()
        assert await d.get("shared/side-effect") is None
        assert await d.get("shared/text") == "abc"
        with pytest.raises(DictError):
            d.transaction().atomic_inc("shared/n", 1.5)  # type: ignore[arg-type]

    with_dict(target, body)


def test_rollback_and_context_manager(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        t = d.transaction()
        t.set("shared/r/a", "1")
        t.rollback()
        assert await d.get("shared/r/a") is None
        with pytest.raises(DictError):
            t.set("shared/r/a", "1")
        with pytest.raises(DictError):
            await t.commit()

        async with d.transaction() as t2:
            t2.set("shared/r/b", "2")
        assert await d.get("shared/r/b") == "2"

        with pytest.raises(RuntimeError):
            async with d.transaction() as t3:
                t3.set("shared/r/c", "3")
                raise RuntimeError("abort")
        assert await d.get("shared/r/c") is None

        t4 = d.transaction()
        t4.set("shared/r/d", "4")
        await t4.commit()
        with pytest.raises(DictError):
            await t4.commit()
        await d.transaction().commit()  # empty transaction is fine

    with_dict(target, body)


def test_values_must_be_strings(target: DictTarget) -> None:
    async def body(d: Dict) -> None:
        with pytest.raises(DictError):
            d.transaction().set("shared/x", 1)  # type: ignore[arg-type]

    with_dict(target, body)


# ---------------------------------------------------------------------- concurrency


async def increment_and_cas_concurrently(
    dicts: list[Dict], *, increments: int, cas_rounds: int
) -> None:
    """Each dict adds ``increments`` to ``shared/total`` with atomic_inc and ``cas_rounds`` to
    ``shared/cas`` with compare-and-set retries, all at once (also used by driver tests)."""

    async def incr(d: Dict) -> None:
        for _ in range(increments):
            t = d.transaction()
            t.atomic_inc("shared/total", 1)
            await t.commit()

    async def cas(d: Dict) -> None:
        done = 0
        while done < cas_rounds:
            old = await d.get("shared/cas")
            t = d.transaction()
            t.set_if("shared/cas", old, str(int(old or "0") + 1))
            try:
                await t.commit()
            except DictConflict:
                continue
            done += 1

    await asyncio.gather(*(incr(d) for d in dicts), *(cas(d) for d in dicts))


def test_concurrent_transactions_in_process(target: DictTarget) -> None:
    async def main() -> None:
        dicts = [target.open() for _ in range(4)]
        try:
            await increment_and_cas_concurrently(dicts, increments=25, cas_rounds=10)
            assert await dicts[0].get("shared/total") == "100"
            assert await dicts[0].get("shared/cas") == "40"
        finally:
            for d in dicts:
                await d.close()

    run(main())


PROCS = 4
INCS = 60
CASES = 25


def _process_worker(driver: str, settings: dict[str, str]) -> tuple[int, int]:
    """Runs in a child process: atomic increments and CAS increments; returns conflicts seen."""

    async def main() -> tuple[int, int]:
        d = create_dict(driver, settings)
        conflicts = 0
        try:
            for i in range(INCS):
                t = d.transaction()
                t.atomic_inc("shared/mp/total", 1)
                t.set(f"shared/mp/seen/{uuid.uuid4().hex}", str(i))
                await t.commit()
            done = 0
            while done < CASES:
                old = await d.get("shared/mp/cas")
                t = d.transaction()
                t.set_if("shared/mp/cas", old, str(int(old or "0") + 1))
                try:
                    await t.commit()
                except DictConflict:
                    conflicts += 1
                    continue
                done += 1
        finally:
            await d.close()
        return done, conflicts

    return run(main())


def test_concurrent_transactions_across_processes(target: DictTarget) -> None:
    if not target.multiprocess:
        pytest.skip("driver is process-local")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCS) as pool:
        results = pool.starmap(
            _process_worker, [(target.driver, target.settings)] * PROCS, chunksize=1
        )
    assert [done for done, _ in results] == [CASES] * PROCS

    async def check(d: Dict) -> None:
        assert await d.get("shared/mp/total") == str(PROCS * INCS)
        assert await d.get("shared/mp/cas") == str(PROCS * CASES)
        assert len(await d.iterate("shared/mp/seen/")) == PROCS * INCS

    with_dict(target, check)
