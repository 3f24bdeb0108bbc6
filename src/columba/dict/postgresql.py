"""PostgreSQL dict driver (asyncpg): the production dict store.

Schema: one plain table (default ``columba_dict``)::

    username   TEXT COLLATE "C" NOT NULL   -- "" for shared/ keys
    dict_key   TEXT COLLATE "C" NOT NULL
    dict_value TEXT NOT NULL
    PRIMARY KEY (username, dict_key)

``COLLATE "C"`` makes the primary-key order code point order (= UTF-8 byte order), which the
dict contract requires whatever the database's default locale is.  The table is created on first
use when it does not exist.  The SQL is portable to PostgreSQL-wire distributed engines
(CockroachDB, YugabyteDB): no extensions, ``INSERT ... ON CONFLICT``, prefix iteration as an
indexed range scan ``dict_key >= prefix AND dict_key < upper`` (never LIKE).

Transactions: every buffered operation runs in one database transaction.  ``atomic_inc`` is a
single ``INSERT ... ON CONFLICT DO UPDATE`` doing the arithmetic in SQL (no read-modify-write
race); ``set_if`` is a conditional ``UPDATE``/``DELETE`` (``... AND dict_value = expected``) or
``INSERT ... ON CONFLICT DO NOTHING`` (expected missing), and a statement that touched no row
is a failed condition: the transaction is rolled back and `DictConflict` raised.  Under READ
COMMITTED, PostgreSQL re-checks the ``WHERE`` of an ``UPDATE`` against the newest committed row
after waiting for its lock, so CAS is exact across processes.  A serialization failure or
deadlock (SQLSTATE 40001/40P01, the normal retry signal of SERIALIZABLE engines) retries the
whole transaction a few times, then raises `DictTemporaryError`.  Commits are durable with the
server's default ``synchronous_commit = on``.

One round trip: a transaction whose keys are distinct and that holds at most one ``set_if``
(every dictmap write: ``set_if`` of the name plus its reverse rows; single operations) is sent
as *one* statement, data-modifying CTEs gated on the ``set_if``'s outcome (``... WHERE EXISTS
(SELECT 1 FROM c0)``), instead of ``BEGIN``, one statement per operation and ``COMMIT`` (four
round trips for a dictmap write, each waiting for the event loop and the server under load).
A single statement is atomic on its own; a failed condition changes nothing and raises
`DictConflict`.  Other transactions take the ``BEGIN … COMMIT`` path.  A connection lost while
that statement was in flight makes the outcome ``uncertain``, as a lost ``COMMIT`` does.

Errors: connection failures, timeouts, "too many connections", server shutdown ->
`DictTemporaryError`; a connection lost while ``COMMIT`` was in flight sets ``uncertain``.
Anything else (e.g. ``atomic_inc`` on a non-integer value, a NUL byte in a value) ->
`DictError`.

Connections: one small asyncpg pool per process (per event loop and connection target), shared
by every `PgDict` with the same connection settings (one `Dict` is opened per user) and closed
when the last of them closes.  Constructors do no I/O.  A connection returned to the pool is
not reset with asyncpg's reset query (a round trip per operation for session state this driver
never sets); an unfinished transaction is still rolled back.

Settings: ``pgsql_url`` (``postgresql://user:password@host:port/dbname``) or ``pgsql_host``,
``pgsql_port``, ``pgsql_dbname``, ``pgsql_user``, ``pgsql_password``; ``pgsql_table`` (default
``columba_dict``); ``pgsql_pool_size`` (default 4); ``pgsql_timeout`` (connect and statement
timeout, default ``30s``).  The password is never logged or put in error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from columba.dict.api import (
    Dict,
    DictConflict,
    DictError,
    DictOp,
    DictTemporaryError,
    DictTransaction,
    prefix_upper_bound,
    register_dict,
)
from columba.dict.sqlite import parse_duration

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    _Conn = PoolConnectionProxy[asyncpg.Record]

__all__ = ["DEFAULT_TABLE", "PgDict", "schema_sql"]

DEFAULT_TABLE = "columba_dict"
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MAX_ATTEMPTS = 10

_T = TypeVar("_T")


def _asyncpg() -> ModuleType:
    """asyncpg, imported on first use so the other dict drivers work without it."""
    try:
        import asyncpg as mod
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise DictError("postgresql dict: the asyncpg package is not installed") from err
    return mod


def schema_sql(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        ' username TEXT COLLATE "C" NOT NULL,'
        ' dict_key TEXT COLLATE "C" NOT NULL,'
        " dict_value TEXT NOT NULL,"
        " PRIMARY KEY (username, dict_key))"
    )


@dataclass(frozen=True)
class _Sql:
    select: str
    upsert: str
    delete: str
    inc: str
    insert_new: str
    cas_update: str
    cas_delete: str

    @classmethod
    def for_table(cls, t: str) -> _Sql:
        where = "WHERE username = $1 AND dict_key = $2"
        return cls(
            select=f"SELECT dict_value FROM {t} {where}",
            upsert=(
                f"INSERT INTO {t} (username, dict_key, dict_value) VALUES ($1, $2, $3) "
                "ON CONFLICT (username, dict_key) DO UPDATE SET dict_value = excluded.dict_value"
            ),
            delete=f"DELETE FROM {t} {where}",
            inc=(
                f"INSERT INTO {t} (username, dict_key, dict_value) VALUES ($1, $2, $3) "
                "ON CONFLICT (username, dict_key) DO UPDATE SET dict_value = "
                f"CAST(CAST({t}.dict_value AS BIGINT) + CAST($3 AS BIGINT) AS TEXT)"
            ),
            insert_new=(
                f"INSERT INTO {t} (username, dict_key, dict_value) VALUES ($1, $2, $3) "
                "ON CONFLICT (username, dict_key) DO NOTHING"
            ),
            cas_update=f"UPDATE {t} SET dict_value = $4 {where} AND dict_value = $3",
            cas_delete=f"DELETE FROM {t} {where} AND dict_value = $3",
        )


def _rowcount(status: str) -> int:
    """Rows touched, from a command tag like ``INSERT 0 1`` / ``UPDATE 1``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0


# --------------------------------------------------------------------------- error mapping


def _is_temporary(err: BaseException) -> bool:
    pg = _asyncpg()
    exc = pg.exceptions
    return isinstance(
        err,
        exc.PostgresConnectionError  # class 08, including ConnectionDoesNotExistError
        | exc.InsufficientResourcesError  # class 53: too many connections, disk full
        | exc.OperatorInterventionError  # class 57: shutdown, cannot connect now, canceled
        | exc.TransactionRollbackError  # class 40: serialization failure, deadlock
        | exc.LockNotAvailableError
        | exc.InterfaceError  # connection closed under us, pool closing
        | OSError
        | TimeoutError
        | asyncio.TimeoutError,
    )


def _is_connection_loss(err: BaseException) -> bool:
    exc = _asyncpg().exceptions
    return isinstance(
        err,
        exc.PostgresConnectionError
        | exc.InterfaceError
        | exc.AdminShutdownError
        | OSError
        | TimeoutError
        | asyncio.TimeoutError,
    )


def _map_error(err: BaseException, what: str, *, uncertain: bool = False) -> DictError:
    # Only the exception's class and its server message: never the DSN (it may hold a password).
    text = f"postgresql dict: {what}: {type(err).__name__}: {err}"
    if _is_temporary(err):
        return DictTemporaryError(text, uncertain=uncertain)
    return DictError(text, uncertain=uncertain)


# --------------------------------------------------------------------------- pools


@dataclass
class _PoolEntry:
    task: asyncio.Task[asyncpg.Pool]
    users: int = 0
    tables: set[str] = field(default_factory=set)
    table_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _PoolEntry]] = (
    weakref.WeakKeyDictionary()
)


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """The pool's reset on release: nothing to do.  asyncpg's default sends ``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` - one more round trip on every
    dict operation, for session state this driver never creates (no advisory locks, cursors,
    LISTEN or SET).  An open transaction is still rolled back by the pool before this runs."""


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


@register_dict("postgresql")
class PgDict(Dict):
    def __init__(self, settings: Mapping[str, str], username: str | None = None) -> None:
        super().__init__(settings, username)
        s = self.settings
        self.table = (s.get("pgsql_table", "") or DEFAULT_TABLE).strip()
        if not _TABLE_RE.match(self.table):
            raise DictError(f"pgsql_table: invalid table name {self.table!r}")
        self.timeout = parse_duration(s.get("pgsql_timeout", ""), 30.0)
        raw_pool = s.get("pgsql_pool_size", "").strip() or "4"
        try:
            self.pool_size = max(1, int(raw_pool))
        except ValueError:
            raise DictError(f"pgsql_pool_size: not a number: {raw_pool!r}") from None
        url = s.get("pgsql_url", "").strip()
        connect: dict[str, Any] = {}
        if url:
            if not url.startswith(("postgresql://", "postgres://")):
                raise DictError("pgsql_url must start with postgresql://")
            connect["dsn"] = url
        else:
            for setting, arg in (
                ("pgsql_host", "host"),
                ("pgsql_dbname", "database"),
                ("pgsql_user", "user"),
                ("pgsql_password", "password"),
            ):
                if s.get(setting, ""):
                    connect[arg] = s[setting]
            if s.get("pgsql_port", "").strip():
                try:
                    connect["port"] = int(s["pgsql_port"])
                except ValueError:
                    raise DictError(f"pgsql_port: not a number: {s['pgsql_port']!r}") from None
            if not connect.get("host"):
                raise DictError("postgresql dict: set pgsql_url or pgsql_host")
        self._connect_args = connect
        self._pool_key = (tuple(sorted(connect.items())), self.pool_size, self.timeout)
        self._sql = _Sql.for_table(self.table)
        self._entry: _PoolEntry | None = None
        self._closed = False

    # ------------------------------------------------------------------ connections

    async def _new_pool(self) -> asyncpg.Pool:
        pg = _asyncpg()
        pool: asyncpg.Pool = await pg.create_pool(
            min_size=1,
            max_size=self.pool_size,
            timeout=self.timeout,
            command_timeout=self.timeout,
            reset=_keep_session,
            **self._connect_args,
        )
        return pool

    async def _pool(self) -> asyncpg.Pool:
        if self._closed:
            raise DictError("dict is closed")
        if self._entry is None:
            loop = asyncio.get_running_loop()
            pools = _POOLS.setdefault(loop, {})
            entry = pools.get(self._pool_key)
            if entry is None or _failed(entry.task):
                entry = _PoolEntry(loop.create_task(self._new_pool()))
                pools[self._pool_key] = entry
            entry.users += 1
            self._entry = entry
        entry = self._entry
        try:
            pool = await asyncio.shield(entry.task)
        except BaseException as err:
            # Let the next call try a new pool.
            self._release_entry()
            if isinstance(err, Exception):
                raise _map_error(err, "connect") from err
            raise
        if self.table not in entry.tables:
            async with entry.table_lock:
                if self.table not in entry.tables:
                    await self._ensure_table(pool)
                    entry.tables.add(self.table)
        return pool

    async def _ensure_table(self, pool: asyncpg.Pool) -> None:
        exc = _asyncpg().exceptions
        try:
            async with pool.acquire() as conn:
                try:
                    await conn.fetch(f"SELECT 1 FROM {self.table} LIMIT 0")
                    return
                except exc.UndefinedTableError:
                    pass
                try:
                    await conn.execute(schema_sql(self.table))
                except (exc.UniqueViolationError, exc.DuplicateTableError):
                    pass  # another process created it at the same moment
        except DictError:
            raise
        except Exception as err:
            raise _map_error(err, f"create table {self.table}") from err

    def _release_entry(self) -> asyncpg.Pool | None:
        """Drop this dict's reference; return the pool when this was its last user."""
        entry, self._entry = self._entry, None
        if entry is None:
            return None
        entry.users -= 1
        if entry.users > 0:
            return None
        for pools in list(_POOLS.values()):
            for key, candidate in list(pools.items()):
                if candidate is entry:
                    del pools[key]
        if entry.task.done() and not _failed(entry.task):
            return entry.task.result()
        entry.task.cancel()
        return None

    async def _with_conn(self, pool: asyncpg.Pool, fn: Callable[[_Conn], Awaitable[_T]]) -> _T:
        """Run `fn` on a pooled connection.  A failing release (the connection broke) never
        replaces the operation's own outcome or error: the broken connection is dropped."""
        conn = await pool.acquire()
        try:
            return await fn(conn)
        finally:
            # On failure the pool has already discarded the broken connection.
            with contextlib.suppress(Exception):
                await pool.release(conn, timeout=self.timeout)

    async def _run(self, what: str, fn: Callable[[_Conn], Awaitable[_T]]) -> _T:
        pool = await self._pool()
        try:
            return await self._with_conn(pool, fn)
        except DictError:
            raise
        except Exception as err:
            raise _map_error(err, what) from err

    # ------------------------------------------------------------------ reads

    async def get(self, key: str) -> str | None:
        self.check_key(key)
        owner = self.owner_of(key)

        async def fetch(conn: _Conn) -> str | None:
            value = await conn.fetchval(self._sql.select, owner, key)
            return None if value is None else str(value)

        return await self._run("get", fetch)

    async def iterate(
        self,
        prefix: str,
        *,
        recurse: bool = True,
        exact_depth: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, str]]:
        self.check_key(prefix)
        if limit is not None and limit <= 0:
            return []
        sql = [f"SELECT dict_key, dict_value FROM {self.table} WHERE username = $1"]
        args: list[object] = [self.owner_of(prefix)]

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        if exact_depth:
            sql.append(f"AND dict_key = {arg(prefix)}")
        else:
            sql.append(f"AND dict_key >= {arg(prefix)}")
            upper = prefix_upper_bound(prefix)
            if upper is not None:
                sql.append(f"AND dict_key < {arg(upper)}")
            if not recurse:
                sql.append(f"AND strpos(substr(dict_key, {arg(len(prefix) + 1)}), '/') = 0")
        if after is not None:
            sql.append(f"AND dict_key > {arg(after)}")
        sql.append("ORDER BY dict_key")
        if limit is not None:
            sql.append(f"LIMIT {arg(limit)}")
        query = " ".join(sql)

        async def fetch(conn: _Conn) -> list[tuple[str, str]]:
            rows = await conn.fetch(query, *args)
            return [(str(r[0]), str(r[1])) for r in rows]

        return await self._run("iterate", fetch)

    # ------------------------------------------------------------------ writes

    def transaction(self) -> DictTransaction:
        return _PgTransaction(self)

    async def _apply_ops(self, conn: _Conn, ops: list[tuple[str, DictOp]]) -> None:
        sql = self._sql
        exc = _asyncpg().exceptions
        for owner, op in ops:
            if op.kind == "set":
                await conn.execute(sql.upsert, owner, op.key, op.value)
            elif op.kind == "unset":
                await conn.execute(sql.delete, owner, op.key)
            elif op.kind == "inc":
                try:
                    await conn.execute(sql.inc, owner, op.key, str(op.diff))
                except exc.DataError as err:
                    raise DictError(
                        f"atomic_inc {op.key!r}: value is not an integer or out of range"
                    ) from err
            elif op.kind == "set_if":
                if op.expected is None and op.value is None:
                    touched = 0 if await conn.fetchval(sql.select, owner, op.key) is None else 1
                    ok = touched == 0
                elif op.expected is None:
                    status = await conn.execute(sql.insert_new, owner, op.key, op.value)
                    ok = _rowcount(status) == 1
                elif op.value is None:
                    status = await conn.execute(sql.cas_delete, owner, op.key, op.expected)
                    ok = _rowcount(status) == 1
                else:
                    status = await conn.execute(
                        sql.cas_update, owner, op.key, op.expected, op.value
                    )
                    ok = _rowcount(status) == 1
                if not ok:
                    raise DictConflict(f"set_if {op.key!r}: value is not {op.expected!r}")
            else:  # pragma: no cover
                raise DictError(f"unknown op {op.kind!r}")

    async def apply(self, ops: list[DictOp]) -> None:
        owned = [(self.owner_of(op.key), op) for op in ops]
        if not owned:
            return
        exc = _asyncpg().exceptions
        single = self._single_statement(owned)
        delay = 0.01
        for attempt in range(_MAX_ATTEMPTS):
            pool = await self._pool()
            try:
                if single is not None:
                    await self._with_conn(pool, functools.partial(self._commit_single, single))
                else:
                    await self._with_conn(pool, lambda conn: self._commit_once(conn, owned))
                return
            except exc.TransactionRollbackError as err:
                # Serialization failure / deadlock: the server rolled back; replay is safe.
                if attempt + 1 >= _MAX_ATTEMPTS:
                    raise _map_error(err, "commit") from err
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.5)
            except DictError:
                raise
            except Exception as err:
                raise _map_error(err, "commit") from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _single_statement(
        self, ops: list[tuple[str, DictOp]]
    ) -> tuple[str, list[object], bool] | None:
        """(query, args, has an increment) applying `ops` in one statement, or None when they
        need a real transaction (a key twice, several conditions)."""
        if len({(owner, op.key) for owner, op in ops}) != len(ops):
            return None
        conditions = [(owner, op) for owner, op in ops if op.kind == "set_if"]
        if len(conditions) > 1 or any(
            op.kind not in ("set", "unset", "inc", "set_if") for _o, op in ops
        ):
            return None
        t = self.table
        args: list[object] = []

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        ctes: list[str] = []
        gate = ""
        if conditions:
            owner, op = conditions[0]
            u, k = arg(owner), arg(op.key)
            if op.expected is None and op.value is None:
                body = (
                    f"SELECT 1 AS ok WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {t} WHERE username = {u} AND dict_key = {k})"
                )
            elif op.expected is None:
                body = (
                    f"INSERT INTO {t} (username, dict_key, dict_value) VALUES ({u}, {k}, "
                    f"{arg(op.value)}) ON CONFLICT (username, dict_key) DO NOTHING RETURNING 1"
                )
            elif op.value is None:
                body = (
                    f"DELETE FROM {t} WHERE username = {u} AND dict_key = {k} "
                    f"AND dict_value = {arg(op.expected)} RETURNING 1"
                )
            else:
                body = (
                    f"UPDATE {t} SET dict_value = {arg(op.value)} WHERE username = {u} "
                    f"AND dict_key = {k} AND dict_value = {arg(op.expected)} RETURNING 1"
                )
            ctes.append(f"c0 AS ({body})")
            gate = "EXISTS (SELECT 1 FROM c0)"
        inc = False
        for n, (owner, op) in enumerate(ops, 1):
            if op.kind == "set_if":
                continue
            u, k = arg(owner), arg(op.key)
            if op.kind == "unset":
                where = f" AND {gate}" if gate else ""
                body = f"DELETE FROM {t} WHERE username = {u} AND dict_key = {k}{where}"
            else:
                if op.kind == "set":
                    value = arg(op.value)
                    update = "excluded.dict_value"
                else:
                    inc = True
                    value = arg(str(op.diff))
                    update = (
                        f"CAST(CAST({t}.dict_value AS BIGINT) + CAST({value} AS BIGINT) AS TEXT)"
                    )
                where = f" WHERE {gate}" if gate else ""
                body = (
                    f"INSERT INTO {t} (username, dict_key, dict_value) SELECT {u}, {k}, "
                    f"CAST({value} AS TEXT){where} ON CONFLICT (username, dict_key) "
                    f"DO UPDATE SET dict_value = {update}"
                )
            ctes.append(f"c{n} AS ({body})")
        final = f"SELECT {gate}" if gate else "SELECT TRUE"
        return "WITH " + ", ".join(ctes) + " " + final, args, inc

    async def _commit_single(self, single: tuple[str, list[object], bool], conn: _Conn) -> None:
        """Run a transaction compiled by `_single_statement` (autocommit: one round trip)."""
        query, args, inc = single
        exc = _asyncpg().exceptions
        try:
            ok = await conn.fetchval(query, *args)
        except exc.TransactionRollbackError:
            raise  # rolled back by the server: certain, retryable
        except exc.DataError as err:
            if inc:
                raise DictError("atomic_inc: value is not an integer or out of range") from err
            raise _map_error(err, "commit") from err
        except exc.PostgresError as err:
            # The server answered with an error: the statement (all of it) did not happen.
            raise _map_error(err, "commit", uncertain=_is_connection_loss(err)) from err
        except Exception as err:
            # Sent (or not) and the answer lost: outcome unknown.
            raise _map_error(err, "commit", uncertain=True) from err
        if not ok:
            raise DictConflict("set_if: the value is not the expected one")

    async def _commit_once(self, conn: _Conn, ops: list[tuple[str, DictOp]]) -> None:
        exc = _asyncpg().exceptions
        tr = conn.transaction()
        await tr.start()
        try:
            await self._apply_ops(conn, ops)
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(Exception):  # the pool discards a broken connection
                    await tr.rollback()
            raise
        try:
            await tr.commit()
        except exc.TransactionRollbackError:
            raise  # the server reported the rollback: certain, retryable
        except exc.PostgresError as err:
            if _is_connection_loss(err):
                raise _map_error(err, "commit", uncertain=True) from err
            raise _map_error(err, "commit") from err
        except Exception as err:
            # The COMMIT was sent (or not) and its reply lost: outcome unknown.
            raise _map_error(err, "commit", uncertain=True) from err

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pool = self._release_entry()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=max(self.timeout, 1.0))
            except Exception:
                pool.terminate()


class _PgTransaction(DictTransaction):
    _owner: PgDict

    async def _commit(self, ops: list[DictOp]) -> None:
        await self._owner.apply(ops)
