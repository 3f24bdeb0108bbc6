"""PostgreSQL dict driver specifics (the shared behaviour is in tests/contract/test_dict_contract).

Runs against the private PostgreSQL server of tests/pg_server.py: discrete connection settings,
the C-collation table, a custom table name, one pool shared by many per-user dicts, error
mapping (unreachable server, NUL values), the serialization-failure retry under SERIALIZABLE
(how CockroachDB-style engines behave) and an ``uncertain`` commit when the connection drops
right after ``COMMIT`` was sent (through a real TCP relay that cuts the connection).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest

from columba.dict.api import Dict, DictError, DictTemporaryError, create_dict
from tests.contract.test_dict_contract import increment_and_cas_concurrently
from tests.pg_server import PgServer, fresh_database, pg_server  # noqa: F401

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def test_discrete_settings_and_custom_table(pg_server: PgServer) -> None:  # noqa: F811
    url = fresh_database()
    dbname = urlsplit(url).path.lstrip("/")
    settings = {
        "pgsql_host": pg_server.host,
        "pgsql_port": str(pg_server.port),
        "pgsql_dbname": dbname,
        "pgsql_user": "columba",
        "pgsql_table": "my_dict",
    }

    async def main() -> None:
        async with create_dict("postgresql", settings, username="u") as d:
            await d.set("priv/a", "1")
            await d.set("shared/b", "2")
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT username, dict_key, dict_value FROM my_dict ORDER BY 2")
            assert [tuple(r) for r in rows] == [("u", "priv/a", "1"), ("", "shared/b", "2")]
            collation = await conn.fetchval(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'my_dict' AND column_name = 'dict_key'"
            )
            assert collation == "C"
        finally:
            await conn.close()

    run(main())


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"pgsql_url": "mysql://x"},
        {"pgsql_host": "h", "pgsql_port": "abc"},
        {"pgsql_host": "h", "pgsql_table": "bad-name; DROP"},
        {"pgsql_host": "h", "pgsql_pool_size": "many"},
    ],
)
def test_bad_settings(settings: dict[str, str]) -> None:
    with pytest.raises(DictError):
        create_dict("postgresql", settings)


def test_unreachable_server_is_temporary() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens

    async def main() -> None:
        d = create_dict(
            "postgresql",
            {
                "pgsql_url": f"postgresql://columba:secret-pw@127.0.0.1:{port}/x",
                "pgsql_timeout": "2s",
            },
        )
        try:
            with pytest.raises(DictTemporaryError) as info:
                await d.get("shared/x")
            assert "secret-pw" not in str(info.value)
            assert not info.value.uncertain
            with pytest.raises(DictTemporaryError):
                await d.set("shared/x", "1")
        finally:
            await d.close()

    run(main())


def test_nul_in_value_is_permanent_error(pg_server: PgServer) -> None:  # noqa: F811
    async def main() -> None:
        async with create_dict("postgresql", {"pgsql_url": fresh_database()}) as d:
            t = d.transaction()
            t.set("shared/ok", "1")
            t.set("shared/nul", "a\0b")
            with pytest.raises(DictError) as info:
                await t.commit()
            assert not isinstance(info.value, DictTemporaryError)
            assert await d.get("shared/ok") is None

    run(main())


def test_one_pool_for_many_user_dicts(pg_server: PgServer) -> None:  # noqa: F811
    url = fresh_database()
    dbname = urlsplit(url).path.lstrip("/")

    async def main() -> None:
        dicts = [
            create_dict("postgresql", {"pgsql_url": url, "pgsql_pool_size": "3"}, username=f"u{i}")
            for i in range(20)
        ]
        try:

            async def work(d: Dict) -> None:
                for _ in range(5):
                    t = d.transaction()
                    t.atomic_inc("priv/n", 1)
                    t.atomic_inc("shared/all", 1)
                    await t.commit()

            await asyncio.gather(*(work(d) for d in dicts))
            assert await dicts[0].get("shared/all") == "100"
            assert [await d.get("priv/n") for d in dicts] == ["5"] * 20
            conn = await asyncpg.connect(url)
            try:
                count = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                    "pg_backend_pid()",
                    dbname,
                )
            finally:
                await conn.close()
            assert 1 <= count <= 3
        finally:
            for d in dicts:
                await d.close()

    run(main())


def test_serializable_isolation_retries(pg_server: PgServer) -> None:  # noqa: F811
    """Under SERIALIZABLE (CockroachDB's default) conflicting transactions get SQLSTATE 40001;
    the driver replays them, so counts stay exact and only real CAS failures surface."""
    url = fresh_database()
    dbname = urlsplit(url).path.lstrip("/")

    async def main() -> None:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(
                f"ALTER DATABASE {dbname} SET default_transaction_isolation = 'serializable'"
            )
        finally:
            await admin.close()
        dicts = [create_dict("postgresql", {"pgsql_url": url}) for _ in range(4)]
        try:
            await increment_and_cas_concurrently(dicts, increments=20, cas_rounds=10)
            assert await dicts[0].get("shared/total") == "80"
            assert await dicts[0].get("shared/cas") == "40"
        finally:
            for d in dicts:
                await d.close()

    run(main())


class _CommitCutter:
    """A TCP relay to PostgreSQL that forwards a ``COMMIT`` query (or the first message holding
    `marker`) and then cuts the connection before the reply comes back: the server commits,
    the client can't know."""

    def __init__(self, port: int, marker: bytes = b"COMMIT") -> None:
        self.marker = marker
        self.target_port = port
        self.server: asyncio.Server | None = None
        self.cut = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        stop = asyncio.Event()
        cutting = asyncio.Event()

        async def upstream() -> None:
            while data := await cr.read(65536):
                committing = self.marker in (data.upper() if self.marker.isupper() else data)
                if committing:
                    cutting.set()  # no reply from now on reaches the client
                sw.write(data)
                await sw.drain()
                if committing:
                    self.cut += 1
                    await asyncio.sleep(0.3)  # let the server process it
                    stop.set()
                    return
            stop.set()

        async def downstream() -> None:
            while data := await sr.read(65536):
                if cutting.is_set():
                    return
                cw.write(data)
                await cw.drain()
            stop.set()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        await stop.wait()
        for task in tasks:
            task.cancel()
        for writer in (cw, sw):
            writer.transport.abort()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("single", [False, True], ids=["begin-commit", "one-statement"])
def test_connection_lost_during_commit_is_uncertain(
    pg_server: PgServer,  # noqa: F811
    single: bool,
) -> None:
    """Lost while ``COMMIT`` (a real transaction) or the one statement of a simple transaction
    (a dictmap write: ``set_if`` + reverse row) was in flight: the outcome is uncertain."""
    url = fresh_database()
    dbname = urlsplit(url).path.lstrip("/")

    async def main() -> None:
        # The one statement's parameters travel in its Bind message: cut at the value.
        relay = _CommitCutter(pg_server.port, b"cut-here" if single else b"COMMIT")
        port = await relay.start()
        try:
            # Create the table through a direct connection first.
            async with create_dict("postgresql", {"pgsql_url": url}) as direct:
                await direct.set("shared/setup", "1")
            d = create_dict(
                "postgresql",
                {
                    "pgsql_url": f"postgresql://columba@127.0.0.1:{port}/{dbname}",
                    "pgsql_timeout": "5s",
                },
            )
            try:
                t = d.transaction()
                t.set_if("shared/k", None, "cut-here" if single else "v")
                if single:
                    t.set("shared/rev", "")
                else:
                    t.set_if("shared/k2", None, "v2")  # two conditions: BEGIN ... COMMIT
                with pytest.raises(DictTemporaryError) as info:
                    await t.commit()
                assert info.value.uncertain
                assert relay.cut == 1
            finally:
                await d.close()
            async with create_dict("postgresql", {"pgsql_url": url}) as direct:
                # It was applied after all.
                assert await direct.get("shared/k") == ("cut-here" if single else "v")
                assert await direct.get("shared/rev" if single else "shared/k2") is not None
        finally:
            await relay.close()

    run(main())


def test_dictmap_write_is_one_statement_and_release_sends_nothing(
    pg_server: PgServer,  # noqa: F811
) -> None:
    """A dictmap-style write (``set_if`` of a new name + its reverse row) is one statement, and
    giving the connection back to the pool sends no reset query: one server round trip each."""
    from columba.dict.postgresql import PgDict

    async def main() -> None:
        d = create_dict("postgresql", {"pgsql_url": fresh_database(), "pgsql_pool_size": "1"})
        assert isinstance(d, PgDict)
        try:
            await d.set("shared/warm", "1")  # connects, creates the table
            pool = await d._pool()
            conn = await pool.acquire()
            try:
                protocol = conn._con._protocol  # type: ignore[attr-defined]
                before = protocol.queries_count
            finally:
                await pool.release(conn)
            for i in range(5):
                t = d.transaction()
                t.set_if(f"shared/dictmap/p{i}", None, f"oid{i}")
                t.set(f"shared/dictrevmap/oid{i}/p{i}", "")
                await t.commit()
            assert protocol.queries_count - before == 5
            t = d.transaction()
            t.set_if("shared/dictmap/p0", None, "other")  # exists: conflict, nothing applied
            t.set("shared/dictrevmap/other/p0", "")
            with pytest.raises(DictError):
                await t.commit()
            assert await d.get("shared/dictmap/p0") == "oid0"
            assert await d.get("shared/dictrevmap/other/p0") is None
        finally:
            await d.close()

    run(main())
