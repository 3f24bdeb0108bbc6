"""SQLite dict driver: the embedded store of the all-in-one server.

One table, WAL journal, ``synchronous=FULL`` (a returned commit survives power loss), and a busy
timeout so several processes can share one file.  Transactions run as ``BEGIN IMMEDIATE`` (the
write lock is taken up front, so a read-check-write inside one transaction is atomic across
processes).  Prefix iteration is an indexed range scan on the primary key, never LIKE.  The DML
is plain SQL with ``INSERT ... ON CONFLICT`` so the PostgreSQL driver can share its shape.

Every `SqliteDict` of one file in a process shares one connection and one thread (users'
dicts are many, the file is one); the event loop never blocks. Commits are **grouped**: the
transactions that arrive while a commit is being written go into the next one, each inside its
own SAVEPOINT (a failing ``set_if`` or ``atomic_inc`` rolls back only its own transaction), so
concurrent deliveries share one WAL fsync instead of queueing for one each. A transaction's
``commit()`` returns only after the group holding it is committed.

Settings: ``sqlite_path`` (required), ``sqlite_journal_mode`` (``wal`` default, or ``delete``),
``sqlite_busy_timeout`` (default ``30s``; ``500ms``, ``10s``, ``1min`` or plain seconds).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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

__all__ = ["SCHEMA", "TABLE", "SqliteDict"]

TABLE = "columba_dict"

# username is "" for shared/ keys.  WITHOUT ROWID makes the primary key the table's own order
# (SQLite-only DDL; the DML below is portable).
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    username TEXT NOT NULL,
    dict_key TEXT NOT NULL,
    dict_value TEXT NOT NULL,
    PRIMARY KEY (username, dict_key)
) WITHOUT ROWID
"""

_UPSERT = (
    f"INSERT INTO {TABLE} (username, dict_key, dict_value) VALUES (?, ?, ?) "
    "ON CONFLICT (username, dict_key) DO UPDATE SET dict_value = excluded.dict_value"
)
_DELETE = f"DELETE FROM {TABLE} WHERE username = ? AND dict_key = ?"
_SELECT = f"SELECT dict_value FROM {TABLE} WHERE username = ? AND dict_key = ?"

_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED

_T = TypeVar("_T")


def parse_duration(raw: str, default: float) -> float:
    """Dovecot-style time value → seconds: ``500ms``, ``30s``, ``2min``, ``1h``, bare = seconds."""
    text = raw.strip().lower().replace(" ", "")
    if not text:
        return default
    units = (
        ("msecs", 0.001), ("msec", 0.001), ("ms", 0.001),
        ("mins", 60.0), ("min", 60.0), ("m", 60.0),
        ("hours", 3600.0), ("hour", 3600.0), ("h", 3600.0),
        ("secs", 1.0), ("sec", 1.0), ("s", 1.0),
    )  # fmt: skip
    number, scale = text, 1.0
    for suffix, unit_scale in units:
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], unit_scale
            break
    try:
        return float(number) * scale
    except ValueError:
        raise DictError(f"invalid time value {raw!r}") from None


def _map_error(err: sqlite3.Error, *, uncertain: bool = False) -> DictError:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _BUSY_CODES:
        return DictTemporaryError(f"sqlite dict busy: {err}")
    if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
        return DictTemporaryError(f"sqlite dict busy: {err}")
    return DictError(f"sqlite dict: {err}", uncertain=uncertain)


_Ops = list[tuple[str, DictOp]]


def _apply_ops(conn: sqlite3.Connection, ops: _Ops) -> None:
    for owner, op in ops:
        if op.kind == "set":
            conn.execute(_UPSERT, (owner, op.key, op.value))
        elif op.kind == "unset":
            conn.execute(_DELETE, (owner, op.key))
        elif op.kind == "inc":
            row = conn.execute(_SELECT, (owner, op.key)).fetchone()
            try:
                base = 0 if row is None else int(row[0])
            except ValueError:
                raise DictError(
                    f"atomic_inc {op.key!r}: value {row[0]!r} is not an integer"
                ) from None
            conn.execute(_UPSERT, (owner, op.key, str(base + op.diff)))
        elif op.kind == "set_if":
            row = conn.execute(_SELECT, (owner, op.key)).fetchone()
            current = None if row is None else str(row[0])
            if current != op.expected:
                raise DictConflict(f"set_if {op.key!r}: value is not {op.expected!r}")
            if op.value is None:
                conn.execute(_DELETE, (owner, op.key))
            else:
                conn.execute(_UPSERT, (owner, op.key, op.value))
        else:  # pragma: no cover
            raise DictError(f"unknown op {op.kind!r}")


class _SqliteFile:
    """One dict file as this process uses it: a connection, its thread, the commit queue."""

    def __init__(self, path: str, journal_mode: str, busy_timeout: float) -> None:
        self.path = path
        self.journal_mode = journal_mode
        self.busy_timeout = busy_timeout
        self.key = _file_key(path, journal_mode, busy_timeout)
        """Its entry in the process's table of open dict files."""
        self.loop = asyncio.get_running_loop()
        self.refs = 0
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="columba-sqlite-dict")
        self._pending: list[tuple[_Ops, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ thread side

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout
        while True:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # only ever used from our one executor thread
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute(f"PRAGMA journal_mode = {self.journal_mode.upper()}")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(SCHEMA)
            except sqlite3.OperationalError as err:
                conn.close()
                # Setting the journal mode can fail at once with "database is locked" while
                # another process opens or writes the file (SQLite skips the busy handler
                # there): retry until the busy timeout, as a blocked write would wait.
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
                continue
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            return conn

    def get(self, owner: str, key: str) -> str | None:
        row = self._connect().execute(_SELECT, (owner, key)).fetchone()
        return None if row is None else str(row[0])

    def iterate(  # noqa: PLR0917
        self,
        owner: str,
        prefix: str,
        recurse: bool,
        exact_depth: bool,
        after: str | None,
        limit: int | None,
    ) -> list[tuple[str, str]]:
        sql = [f"SELECT dict_key, dict_value FROM {TABLE} WHERE username = ?"]
        args: list[object] = [owner]
        if exact_depth:
            sql.append("AND dict_key = ?")
            args.append(prefix)
        else:
            sql.append("AND dict_key >= ?")
            args.append(prefix)
            upper = prefix_upper_bound(prefix)
            if upper is not None:
                sql.append("AND dict_key < ?")
                args.append(upper)
            if not recurse:
                sql.append("AND instr(substr(dict_key, ?), '/') = 0")
                args.append(len(prefix) + 1)
        if after is not None:
            sql.append("AND dict_key > ?")
            args.append(after)
        sql.append("ORDER BY dict_key")
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        rows = self._connect().execute(" ".join(sql), args).fetchall()
        return [(str(k), str(v)) for k, v in rows]

    def _apply_group(self, group: list[_Ops]) -> list[BaseException | None]:
        """One transaction for the whole group, a savepoint per member: per member None
        (applied) or the error that rolled it back. Raises if the group as a whole failed."""
        conn = self._connect()
        outcome: list[BaseException | None] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ops in group:
                conn.execute("SAVEPOINT member")
                try:
                    _apply_ops(conn, ops)
                except (DictError, sqlite3.IntegrityError) as err:
                    conn.execute("ROLLBACK TO member")
                    outcome.append(err)
                else:
                    outcome.append(None)
                conn.execute("RELEASE member")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
                raise
            # COMMIT failed but the transaction is gone: we can't tell whether it was applied.
            raise _map_error(err, uncertain=True) from err
        return outcome

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ loop side

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return await self.loop.run_in_executor(self._executor, fn, *args)
        except DictError:
            raise
        except sqlite3.Error as err:
            raise _map_error(err) from err
        except OSError as err:
            raise DictError(f"sqlite dict {self.path}: {err}") from err

    async def apply(self, ops: _Ops) -> None:
        done: asyncio.Future[None] = self.loop.create_future()
        self._pending.append((ops, done))
        if self._flusher is None:
            self._flusher = self.loop.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    outcome = await self.run(self._apply_group, [ops for ops, _ in group])
                except asyncio.CancelledError:
                    for _, done in group:
                        done.cancel()
                    raise
                except Exception as err:  # the whole group failed
                    for _, done in group:
                        if not done.done():
                            done.set_exception(err)
                    continue
                for (_, done), failure in zip(group, outcome, strict=True):
                    if done.done():
                        continue
                    if failure is None:
                        done.set_result(None)
                    elif isinstance(failure, sqlite3.Error):
                        done.set_exception(_map_error(failure))
                    else:
                        done.set_exception(failure)
        finally:
            self._flusher = None

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self.loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)


_FileKey = tuple[str, str, float]
_files: dict[_FileKey, _SqliteFile] = {}


def _file_key(path: str, journal_mode: str, busy_timeout: float) -> _FileKey:
    return (os.path.abspath(path), journal_mode, busy_timeout)


async def _open_file(path: str, journal_mode: str, busy_timeout: float) -> _SqliteFile:
    key = _file_key(path, journal_mode, busy_timeout)
    shared = _files.get(key)
    if shared is None or shared.loop is not asyncio.get_running_loop():
        shared = _files[key] = _SqliteFile(path, journal_mode, busy_timeout)
    shared.refs += 1
    return shared


async def _release_file(shared: _SqliteFile) -> None:
    shared.refs -= 1
    if shared.refs > 0:
        return
    if _files.get(shared.key) is shared:
        del _files[shared.key]
    await shared.close()


@register_dict("sqlite")
class SqliteDict(Dict):
    def __init__(self, settings: Mapping[str, str], username: str | None = None) -> None:
        super().__init__(settings, username)
        path = self.settings.get("sqlite_path", "")
        if not path:
            raise DictError("sqlite dict: sqlite_path is not set")
        self.path = path
        journal = self.settings.get("sqlite_journal_mode", "wal").strip().lower() or "wal"
        if journal not in ("wal", "delete"):
            raise DictError(f"sqlite_journal_mode: expected wal or delete, not {journal!r}")
        self.journal_mode = journal
        self.busy_timeout = parse_duration(self.settings.get("sqlite_busy_timeout", ""), 30.0)
        self._file: _SqliteFile | None = None
        self._closed = False

    async def _shared(self) -> _SqliteFile:
        if self._closed:
            raise DictError("dict is closed")
        if self._file is None:
            self._file = await _open_file(self.path, self.journal_mode, self.busy_timeout)
        return self._file

    async def get(self, key: str) -> str | None:
        self.check_key(key)
        shared = await self._shared()
        return await shared.run(shared.get, self.owner_of(key), key)

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
        shared = await self._shared()
        return await shared.run(
            shared.iterate, self.owner_of(prefix), prefix, recurse, exact_depth, after, limit
        )

    def transaction(self) -> DictTransaction:
        return _SqliteTransaction(self)

    async def apply(self, ops: list[DictOp]) -> None:
        shared = await self._shared()
        await shared.apply([(self.owner_of(op.key), op) for op in ops])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._file is not None:
            shared, self._file = self._file, None
            await _release_file(shared)


class _SqliteTransaction(DictTransaction):
    _owner: SqliteDict

    async def _commit(self, ops: list[DictOp]) -> None:
        await self._owner.apply(ops)
