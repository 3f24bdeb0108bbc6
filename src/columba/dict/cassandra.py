"""Cassandra dict driver: CQL through scylla-driver (``import cassandra``), Dovecot Pro's public
dictmap tables, consistency levels with fallback (reference §1.6.4).  See docs/cassandra.md.

Key mapping (`route_key`): a ``shared/`` key matching one of the public dictmap patterns in
`cassandra_schema.MAPS` (every ``$variable`` one non-empty path component of its type: hexblob
= canonical lowercase hex, uint = canonical decimal) is stored in that public table, so the
layout of a Dovecot Pro cluster is reused; every other key (generic keys, GeoDB, ``priv/``)
goes to the generic ``columba_dict`` table, partitioned by (owner, first `PARTITION_DEPTH`
path components) and clustered by key, so a prefix inside a partition is one ordered range
read.  Values of hexblob columns are the hex of the blob; a value that isn't canonical hex (or
whose bytes start with `TEXT_MAGIC`) is stored as `TEXT_MAGIC` + UTF-8, so every string
round-trips.  ``max_bucket`` (an ``int`` column) only takes values 0..2**31-1.

Consistency: reads use ``cassandra_read_consistency``, writes ``cassandra_write_consistency``,
transactions that only delete ``cassandra_delete_consistency``.  When a query at the primary
level fails because too few replicas are alive (Unavailable) or the coordinator timed out
waiting for them, and a ``*_fallback_consistency`` is set, the query is retried at the
fallback level and every following query of that class uses the fallback; the primary level is
retried after 50 ms, doubling up to 60 s, and restored by its first success (`FallbackState`).
Plain writes carry a client ``USING TIMESTAMP`` so that retry is idempotent.  Conditional
writes (Paxos) are retried at the fallback level only after Unavailable (nothing was written);
their serial consistency is ``LOCAL_SERIAL`` when the write level is a ``local-*`` level,
``SERIAL`` otherwise.

Transactions (`CassandraTransaction`): operations are folded per key locally (in order), so
each key gets one final write.  ``atomic_inc`` and ``set_if`` are lightweight transactions:
the key's stored value is read at serial consistency, the operations are evaluated (a failed
``set_if`` raises `DictConflict`, ``atomic_inc`` of a non-integer raises `DictError`, nothing
written), then the writes go out as one conditional batch ``... IF v = <read value>`` (``IF v
= null`` for a missing key); when another writer got in between, the batch is not applied and
the whole transaction is re-read and re-evaluated.  Counters were not used: a counter table
cannot share a batch or an LWT with other rows, a timed-out counter update cannot be retried
safely, and the dict value is text.

What holds (Cassandra has no multi-partition atomic CAS):

* all keys in one partition (of one table): atomic and isolated (one conditional batch, or one
  unlogged batch when there is no condition);
* no ``set_if``/``atomic_inc``: one LOGGED BATCH, atomic (all or nothing, eventually) but not
  isolated: a reader may see part of it for a moment;
* conditions in one partition plus plain writes elsewhere: the conditional batch first, then
  the rest as a LOGGED BATCH; if that second step fails the commit raises `DictError` with
  ``uncertain`` set (the first step is applied);
* conditions in several partitions: every key of those partitions is read and conditioned, the
  partitions are applied one by one, and a partition whose condition fails has the ones
  before it undone by compensating conditional writes before the transaction is retried; a
  failed undo raises `DictError` with ``uncertain``.  Not isolated.

Errors: Unavailable, server timeouts, no host reachable -> `DictTemporaryError`; for a write
that may have reached a replica (timeout, write failure) ``uncertain`` is set.

Driver: scylla-driver, imported on first use; each process shares one ``Cluster`` per
(hosts, port, keyspace, credentials) among its dicts.  Statements are prepared once and run
with ``execute_async``; results come back to the event loop through
``call_soon_threadsafe``, so the loop never blocks on the network (connecting and preparing run
in a worker thread).  `setup_keyspace` creates the keyspace and tables (tests, first install).

Settings: ``cassandra_hosts``, ``cassandra_port``, ``cassandra_keyspace``, ``cassandra_user``,
``cassandra_password``, ``cassandra_{read,write,delete}_consistency`` and their
``_fallback_consistency``, ``cassandra_protocol_version``, ``cassandra_page_size``,
``cassandra_request_timeout``, ``cassandra_connect_timeout``, ``cassandra_ssl`` (``no``,
``cert-only``, ``cert-ip``).  ``cassandra_io_thread_count``, ``cassandra_latency_aware_routing``
and ``cassandra_metrics`` are cpp-driver options without a python-driver equivalent: accepted,
ignored.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from columba.dict.api import (
    Dict,
    DictConflict,
    DictError,
    DictOp,
    DictTemporaryError,
    DictTransaction,
    filter_iteration,
    prefix_upper_bound,
    register_dict,
)
from columba.dict.cassandra_schema import (
    GENERIC_DDL,
    GENERIC_TABLE,
    KEYSPACE_DDL,
    MAPS,
    PARTITION_DEPTH,
    PUBLIC_DDL,
    TABLES,
    KeyMap,
    Stmt,
    Table,
    cas_delete,
    cas_set,
    delete,
    distinct_partitions,
    scan,
    select_one,
    select_range,
    upsert,
)
from columba.dict.sqlite import parse_duration

__all__ = [
    "CONSISTENCY_LEVELS",
    "TEXT_MAGIC",
    "CassandraDict",
    "CqlFailure",
    "CqlTimeout",
    "CqlUnavailable",
    "Executor",
    "FallbackState",
    "Route",
    "decode_value",
    "encode_value",
    "live_test_settings",
    "match_prefix",
    "partition_of",
    "route_key",
    "setup_keyspace",
]

_T = TypeVar("_T")

TEXT_MAGIC = b"\x00columba:text\x00"
"""Marks a hexblob cell that holds a non-hex dict value (UTF-8 after the marker)."""

CONSISTENCY_LEVELS = {
    "any": "ANY",
    "one": "ONE",
    "two": "TWO",
    "three": "THREE",
    "quorum": "QUORUM",
    "all": "ALL",
    "local-quorum": "LOCAL_QUORUM",
    "each-quorum": "EACH_QUORUM",
    "local-one": "LOCAL_ONE",
}

_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})+$")
_UINT_RE = re.compile(r"^(?:0|[1-9][0-9]{0,9})$")
_INT_RE = re.compile(r"^-?[0-9]+$")
_INT_MAX = 2**31 - 1
_MAX_ATTEMPTS = 30
_FIRST_RETRY = 0.05
_MAX_RETRY = 60.0


# --------------------------------------------------------------------------- values


def _valid_var(typ: str, raw: str) -> bool:
    if raw == "" or "/" in raw:
        return False
    if typ == "hexblob":
        return bool(_HEX_RE.match(raw))
    if typ == "uint":
        return bool(_UINT_RE.match(raw)) and int(raw) <= _INT_MAX
    return True


def _var_prefix_ok(typ: str, partial: str) -> bool:
    """Can a valid `typ` variable start with `partial`?"""
    if partial == "":
        return True
    if typ == "hexblob":
        return all(c in "0123456789abcdef" for c in partial)
    if typ == "uint":
        return partial.isascii() and partial.isdigit() and (partial == "0" or partial[0] != "0")
    return "/" not in partial


def _bind_var(typ: str, raw: str) -> object:
    if typ == "hexblob":
        return bytes.fromhex(raw)
    if typ == "uint":
        return int(raw)
    return raw


def _format_var(typ: str, value: object) -> str:
    if typ == "hexblob":
        assert isinstance(value, bytes | bytearray)
        return bytes(value).hex()
    return str(value)


def encode_value(value_type: str, value: str) -> object:
    """Dict value -> cell value of a column of `value_type` (hexblob | uint | text)."""
    if value_type == "hexblob":
        if _HEX_RE.match(value) or value == "":
            raw = bytes.fromhex(value)
            if not raw.startswith(TEXT_MAGIC):
                return raw
        return TEXT_MAGIC + value.encode()
    if value_type == "uint":
        if not _UINT_RE.match(value) or int(value) > _INT_MAX:
            raise DictError(f"cassandra dict: value {value!r} is not an int of 0..{_INT_MAX}")
        return int(value)
    return value


def decode_value(value_type: str, cell: object) -> str | None:
    if cell is None:
        return None
    if value_type == "hexblob":
        assert isinstance(cell, bytes | bytearray)
        raw = bytes(cell)
        if raw.startswith(TEXT_MAGIC):
            return raw[len(TEXT_MAGIC) :].decode()
        return raw.hex()
    return str(cell)


# --------------------------------------------------------------------------- routing


def partition_of(key: str) -> str:
    """Generic-table partition: `key` up to its `PARTITION_DEPTH`-th slash (or its last)."""
    pos = -1
    for _ in range(PARTITION_DEPTH):
        nxt = key.find("/", pos + 1)
        if nxt < 0:
            break
        pos = nxt
    return key[: pos + 1]


@dataclass(frozen=True)
class Route:
    """Where one key lives: table, key-column values, value column and type."""

    table: Table
    key_values: tuple[object, ...]  # in table.key_columns order
    value_column: str
    value_type: str
    keymap: KeyMap | None = None

    @property
    def partition(self) -> tuple[str, tuple[object, ...]]:
        return self.table.name, self.key_values[: len(self.table.partition)]


def _match_map(m: KeyMap, key: str) -> dict[str, object] | None:
    comps = key.split("/")
    pattern = m.components
    if len(comps) != len(pattern):
        return None
    cols: dict[str, object] = {}
    for pat, comp in zip(pattern, comps, strict=True):
        if pat.startswith("$"):
            typ = m.types[pat]
            if not _valid_var(typ, comp):
                return None
            cols[m.fields[pat]] = _bind_var(typ, comp)
        elif pat != comp:
            return None
    return cols


def route_key(key: str, owner: str) -> Route:
    if key.startswith("shared/"):
        for m in MAPS:
            cols = _match_map(m, key)
            if cols is not None:
                table = TABLES[m.table]
                values = tuple(cols[c] for c in table.key_columns)
                return Route(table, values, m.value_column, m.value_type, m)
    table = TABLES[GENERIC_TABLE]
    return Route(table, (owner, partition_of(key), key), "v", "text")


@dataclass(frozen=True)
class PrefixMatch:
    """What a prefix pins of a map: the columns of its complete components, and the partial
    last component (a client-side filter)."""

    bound: dict[str, object]  # column -> value
    partial_column: str | None
    partial: str


def match_prefix(m: KeyMap, prefix: str) -> PrefixMatch | None:
    """None when no key of map `m` can start with `prefix`."""
    comps = prefix.split("/")
    full, partial = comps[:-1], comps[-1]
    pattern = m.components
    if len(full) >= len(pattern):
        return None
    bound: dict[str, object] = {}
    for pat, comp in zip(pattern, full, strict=False):
        if pat.startswith("$"):
            if not _valid_var(m.types[pat], comp):
                return None
            bound[m.fields[pat]] = _bind_var(m.types[pat], comp)
        elif pat != comp:
            return None
    nxt = pattern[len(full)]
    if nxt.startswith("$"):
        if not _var_prefix_ok(m.types[nxt], partial):
            return None
        return PrefixMatch(bound, m.fields[nxt] if partial else None, partial)
    if not nxt.startswith(partial):
        return None
    return PrefixMatch(bound, None, "")


def _key_of_row(m: KeyMap, cols: dict[str, object]) -> str:
    out = []
    for pat in m.components:
        out.append(_format_var(m.types[pat], cols[m.fields[pat]]) if pat.startswith("$") else pat)
    return "/".join(out)


# --------------------------------------------------------------------------- consistency


def parse_consistency(raw: str, setting: str, *, allow_empty: bool = False) -> str | None:
    text = raw.strip().lower().replace("_", "-")
    if text == "" and allow_empty:
        return None
    try:
        return CONSISTENCY_LEVELS[text]
    except KeyError:
        raise DictError(f"{setting}: unknown consistency {raw!r}") from None


def serial_for(level: str) -> str:
    return "LOCAL_SERIAL" if level.startswith("LOCAL_") else "SERIAL"


class FallbackState:
    """Dovecot's fallback rule for one query class (read, write or delete).

    After a primary-level failure every query uses the fallback level; the primary is tried
    again `_FIRST_RETRY` seconds later, then after intervals doubling up to `_MAX_RETRY`, and
    restored by its first success.  Thread-safe (the driver's callbacks run in its threads)."""

    def __init__(
        self, primary: str, fallback: str | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.primary = primary
        self.fallback = fallback if fallback != primary else None
        self.clock = clock
        self.in_fallback = False
        self.interval = _FIRST_RETRY
        self.next_probe = 0.0
        self._lock = threading.Lock()

    def level(self) -> tuple[str, bool]:
        """(level to use now, whether it is the primary)."""
        with self._lock:
            if self.fallback is None or not self.in_fallback:
                return self.primary, True
            if self.clock() >= self.next_probe:
                return self.primary, True
            return self.fallback, False

    def primary_failed(self) -> None:
        with self._lock:
            if self.fallback is None:
                return
            if self.in_fallback:
                self.interval = min(self.interval * 2, _MAX_RETRY)
            else:
                self.in_fallback = True
                self.interval = _FIRST_RETRY
            self.next_probe = self.clock() + self.interval

    def primary_succeeded(self) -> None:
        with self._lock:
            self.in_fallback = False
            self.interval = _FIRST_RETRY


# --------------------------------------------------------------------------- executor


class CqlUnavailable(Exception):  # noqa: N818 - mirrors the server's error name
    """Too few replicas alive for the consistency level: nothing was written."""


class CqlTimeout(Exception):  # noqa: N818
    """A timeout.  `server`: the coordinator timed out waiting for replicas (fallback applies);
    else the client gave up.  A write may have been applied either way."""

    def __init__(self, message: str, *, server: bool) -> None:
        super().__init__(message)
        self.server = server


class CqlFailure(Exception):  # noqa: N818
    """Any other failure; `maybe_applied` for replica-side write failures."""

    def __init__(
        self, message: str, *, maybe_applied: bool = False, temporary: bool = False
    ) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied
        self.temporary = temporary


class Executor(Protocol):
    """Runs `Stmt`s; raises only `CqlUnavailable`, `CqlTimeout`, `CqlFailure`."""

    async def execute(
        self, stmt: Stmt, values: Sequence[object], consistency: str, serial: str | None = None
    ) -> list[tuple[Any, ...]]: ...

    async def batch(
        self,
        items: Sequence[tuple[Stmt, Sequence[object]]],
        *,
        logged: bool,
        consistency: str,
        serial: str | None = None,
    ) -> bool:
        """Run a batch; return whether it was applied (always true without conditions)."""
        ...

    async def close(self) -> None: ...


class _Timestamps:
    """Client write timestamps (microseconds), strictly increasing within the process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


_TIMESTAMPS = _Timestamps()


# --------------------------------------------------------------------------- the dict


@dataclass
class _KeyState:
    route: Route
    needs_read: bool
    ops: list[DictOp] = field(default_factory=list)


def _fold(
    ops: Sequence[DictOp], stored: Mapping[str, str | None], states: Mapping[str, _KeyState]
) -> dict[str, str | None]:
    """Apply `ops` in order over `stored` (read values); return each key's final value."""
    current: dict[str, str | None] = {}
    for op in ops:
        if op.key in current:
            cur = current[op.key]
        elif states[op.key].needs_read:
            cur = stored[op.key]
        else:
            cur = None  # only reached by blind writes, which ignore it
        if op.kind == "set":
            current[op.key] = op.value
        elif op.kind == "unset":
            current[op.key] = None
        elif op.kind == "inc":
            if cur is not None and not _INT_RE.match(cur):
                raise DictError(f"cassandra dict: atomic_inc of {op.key!r}: not an integer")
            current[op.key] = str(int(cur or "0") + op.diff)
        elif op.kind == "set_if":
            if cur != op.expected:
                raise DictConflict(f"cassandra dict: set_if of {op.key!r}: condition failed")
            current[op.key] = op.value
        else:  # pragma: no cover - DictTransaction only makes the four kinds
            raise DictError(f"unknown operation {op.kind!r}")
    for key, value in current.items():
        r = states[key].route
        if value is not None and r.value_type == "uint":
            encode_value("uint", value)  # raises on a value the column can't hold
    return current


def plan_keys(ops: Sequence[DictOp], owner_of: Callable[[str], str]) -> dict[str, _KeyState]:
    """Route each touched key; a key needs a (serial) read when its first operation depends on
    the stored value (``set_if``, ``atomic_inc``)."""
    states: dict[str, _KeyState] = {}
    for op in ops:
        st = states.get(op.key)
        if st is None:
            st = _KeyState(route_key(op.key, owner_of(op.key)), op.kind in ("set_if", "inc"))
            states[op.key] = st
        st.ops.append(op)
    return states


def write_statement(
    route: Route, old: str | None, new: str | None, *, conditional: bool, timestamp: int
) -> tuple[Stmt, list[object]]:
    """The statement that makes `route`'s key hold `new` (None: absent), conditional on it
    holding `old` when `conditional`."""
    t, col, keys = route.table, route.value_column, list(route.key_values)
    if conditional:
        cond: list[object] = [] if old is None else [encode_value(route.value_type, old)]
        if new is None:
            return cas_delete(t, col, expect_null=old is None), [*keys, *cond]
        value = encode_value(route.value_type, new)
        return cas_set(t, col, expect_null=old is None), [value, *keys, *cond]
    if new is None:
        return delete(t, timestamp=True), [timestamp, *keys]
    return upsert(t, col, timestamp=True), [*keys, encode_value(route.value_type, new), timestamp]


def cas_batch_statement(route: Route, new: str | None) -> tuple[Stmt, list[object]]:
    """A plain write inside a conditional batch (no client timestamp allowed there)."""
    t, col, keys = route.table, route.value_column, list(route.key_values)
    if new is None:
        return delete(t, timestamp=False), keys
    return upsert(t, col, timestamp=False), [*keys, encode_value(route.value_type, new)]


@register_dict("cassandra")
class CassandraDict(Dict):
    def __init__(
        self,
        settings: Mapping[str, str],
        username: str | None = None,
        *,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, username)
        s = self.settings
        states: dict[str, FallbackState] = {}
        for cls in ("read", "write", "delete"):
            primary = parse_consistency(
                s.get(f"cassandra_{cls}_consistency", "") or "local-quorum",
                f"cassandra_{cls}_consistency",
            )
            assert primary is not None
            fallback = parse_consistency(
                s.get(f"cassandra_{cls}_fallback_consistency", ""),
                f"cassandra_{cls}_fallback_consistency",
                allow_empty=True,
            )
            states[cls] = FallbackState(primary, fallback, clock)
        self.consistency = states
        self._executor = executor
        self._own_executor = executor is None
        self._closed = False
        if executor is None:
            self._target = _ClusterTarget.from_settings(s)

    # ------------------------------------------------------------------ execution

    async def _exec(self) -> Executor:
        if self._closed:
            raise DictError("dict is closed")
        if self._executor is None:
            self._executor = await _acquire_cluster(self._target)
        return self._executor

    async def _run(
        self, cls: str, fn: Callable[[str], Awaitable[_T]], *, write: bool, retry_timeout: bool
    ) -> _T:
        """Run `fn(level)` with the fallback rule of query class `cls`; map errors."""
        state = self.consistency[cls]
        level, primary = state.level()
        try:
            result = await fn(level)
        except (CqlUnavailable, CqlTimeout) as err:
            server = isinstance(err, CqlUnavailable) or (isinstance(err, CqlTimeout) and err.server)
            if not (primary and server and state.fallback is not None):
                raise _map_error(err, write=write) from err
            state.primary_failed()
            if isinstance(err, CqlTimeout) and not retry_timeout:
                raise _map_error(err, write=write) from err
            try:
                return await fn(state.fallback)
            except (CqlUnavailable, CqlTimeout, CqlFailure) as err2:
                uncertain = write and isinstance(err, CqlTimeout)
                raise _map_error(err2, write=write, uncertain=uncertain) from err2
        except CqlFailure as err:
            raise _map_error(err, write=write) from err
        if primary:
            state.primary_succeeded()
        return result

    async def _query(self, stmt: Stmt, values: Sequence[object]) -> list[tuple[Any, ...]]:
        ex = await self._exec()
        return await self._run(
            "read",
            lambda level: ex.execute(stmt, values, level),
            write=False,
            retry_timeout=True,
        )

    async def _serial_read(self, route: Route) -> str | None:
        ex = await self._exec()
        stmt = select_one(route.table, route.value_column)

        async def read(level: str) -> list[tuple[Any, ...]]:
            # Paxos read: the serial level that goes with the current write level.
            return await ex.execute(stmt, list(route.key_values), serial_for(level))

        rows = await self._run("write", read, write=False, retry_timeout=True)
        return decode_value(route.value_type, rows[0][0]) if rows else None

    # ------------------------------------------------------------------ reads

    async def get(self, key: str) -> str | None:
        self.check_key(key)
        route = route_key(key, self.owner_of(key))
        rows = await self._query(select_one(route.table, route.value_column), route.key_values)
        return decode_value(route.value_type, rows[0][0]) if rows else None

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
        if exact_depth:
            value = await self.get(prefix)
            if value is None or (after is not None and prefix <= after):
                return []
            return [(prefix, value)]
        sources = [self._iter_generic(prefix, recurse=recurse, after=after, limit=limit)]
        if prefix.startswith("shared/"):
            for m in MAPS:
                pm = match_prefix(m, prefix)
                if pm is not None:
                    sources.append(self._iter_map(m, pm))
        found: dict[str, str] = {}
        for rows in await asyncio.gather(*sources):
            for k, v in rows:
                if k.startswith(prefix) and (after is None or k > after):
                    found[k] = v
        items = filter_iteration(sorted(found.items()), prefix, recurse=recurse, exact_depth=False)
        return items if limit is None else items[:limit]

    def generic_partitions_pinned(self, prefix: str, *, recurse: bool) -> str | None:
        """The one generic partition holding every match of `prefix`, if there is one."""
        if prefix.count("/") >= PARTITION_DEPTH or not recurse:
            return partition_of(prefix)
        return None

    async def _iter_generic(
        self, prefix: str, *, recurse: bool, after: str | None, limit: int | None
    ) -> list[tuple[str, str]]:
        table = TABLES[GENERIC_TABLE]
        owner = self.owner_of(prefix)
        pinned = self.generic_partitions_pinned(prefix, recurse=recurse)
        if pinned is not None:
            parts = [pinned]
        else:
            rows = await self._query(distinct_partitions(table), [])
            home = partition_of(prefix)
            parts = sorted(
                {home} | {str(p) for o, p in rows if o == owner and str(p).startswith(prefix)}
            )
        if after is not None and after >= prefix:
            lo, lo_value = ">", after
        else:
            lo, lo_value = ">=", prefix
        upper = prefix_upper_bound(prefix)
        use_limit = limit is not None and recurse
        stmt = select_range(
            table,
            ("k", "v"),
            ("o", "p"),
            lo=("k", lo),
            hi="k" if upper is not None else None,
            limit=use_limit,
        )
        base: list[object] = [lo_value]
        if upper is not None:
            base.append(upper)
        if use_limit:
            base.append(limit)
        results = await asyncio.gather(*(self._query(stmt, [owner, p, *base]) for p in parts))
        return [(str(k), str(v)) for rows in results for k, v in rows]

    async def _iter_map(self, m: KeyMap, pm: PrefixMatch) -> list[tuple[str, str]]:
        table = TABLES[m.table]
        cols = (*table.key_columns, m.value_column)
        var_type = {m.fields[v]: t for v, t in m.types.items()}
        queries: list[tuple[Stmt, list[object]]] = []
        if all(c in pm.bound for c in table.partition):
            where: list[str] = list(table.partition)
            for c in table.clustering:
                if c not in pm.bound:
                    break
                where.append(c)
            stmt = select_range(table, cols, tuple(where))
            queries.append((stmt, [pm.bound[c] for c in where]))
        elif m.table == "user_mailbox_objects" and "u" in pm.bound and "g" in pm.bound:
            # Dovecot's invariant: buckets 0..max_bucket are in use.
            buckets = TABLES["user_mailbox_buckets"]
            rows = await self._query(select_one(buckets, "b"), [pm.bound["u"], pm.bound["g"]])
            top = int(rows[0][0]) if rows and rows[0][0] is not None else 0
            stmt = select_range(table, cols, table.partition)
            for b in range(top + 1):
                queries.append((stmt, [pm.bound["u"], pm.bound["g"], b]))
        else:
            queries.append((scan(table, cols), []))
        results = await asyncio.gather(*(self._query(s, v) for s, v in queries))
        out: list[tuple[str, str]] = []
        for rows in results:
            for row in rows:
                values = dict(zip(cols, row, strict=True))
                if any(values[c] != v for c, v in pm.bound.items()):
                    continue
                if pm.partial_column is not None and not _format_var(
                    var_type[pm.partial_column], values[pm.partial_column]
                ).startswith(pm.partial):
                    continue
                value = decode_value(m.value_type, values[m.value_column])
                if value is not None:
                    out.append((_key_of_row(m, values), value))
        return out

    # ------------------------------------------------------------------ writes

    def transaction(self) -> DictTransaction:
        return CassandraTransaction(self)

    async def apply(self, ops: Sequence[DictOp]) -> None:
        states = plan_keys(ops, self.owner_of)
        cond_parts = {st.route.partition for st in states.values() if st.needs_read}
        if len(cond_parts) > 1:
            # Several conditional partitions: read and condition every key in them so that a
            # partition applied before a later conflict can be undone exactly.
            for st in states.values():
                if st.route.partition in cond_parts:
                    st.needs_read = True
        if not cond_parts:
            final = _fold(ops, {}, states)
            await self._blind_writes([(states[k].route, v) for k, v in final.items()])
            return
        for _attempt in range(_MAX_ATTEMPTS):
            reads = [k for k, st in states.items() if st.needs_read]
            values = await asyncio.gather(*(self._serial_read(states[k].route) for k in reads))
            stored = dict(zip(reads, values, strict=True))
            final = _fold(ops, stored, states)  # DictConflict / DictError: nothing written
            if await self._conditional_writes(states, stored, final, sorted(cond_parts, key=repr)):
                return
            # Lost a race on a condition: back off (jittered, growing) before re-reading.
            await asyncio.sleep(random.uniform(0, min(0.002 * 2**_attempt, 0.2)))
        raise DictTemporaryError("cassandra dict: too many concurrent changes, giving up")

    async def _blind_writes(self, writes: Sequence[tuple[Route, str | None]]) -> None:
        if not writes:
            return
        ts = _TIMESTAMPS.next()
        items = [write_statement(r, None, v, conditional=False, timestamp=ts) for r, v in writes]
        cls = "delete" if all(v is None for _r, v in writes) else "write"
        ex = await self._exec()
        single_partition = len({r.partition for r, _v in writes}) == 1

        async def run(level: str) -> None:
            if len(items) == 1:
                await ex.execute(items[0][0], items[0][1], level)
            else:
                await ex.batch(items, logged=not single_partition, consistency=level)

        await self._run(cls, run, write=True, retry_timeout=True)

    async def _cas(self, items: list[tuple[Stmt, list[object]]], cls: str) -> bool:
        ex = await self._exec()

        async def run(level: str) -> bool:
            serial = serial_for(level)
            if len(items) == 1:
                rows = await ex.execute(items[0][0], items[0][1], level, serial)
                return bool(rows and rows[0][0])
            return await ex.batch(items, logged=False, consistency=level, serial=serial)

        return await self._run(cls, run, write=True, retry_timeout=False)

    async def _conditional_writes(
        self,
        states: Mapping[str, _KeyState],
        stored: Mapping[str, str | None],
        final: Mapping[str, str | None],
        cond_parts: list[tuple[str, tuple[object, ...]]],
    ) -> bool:
        """Apply the final values: conditional partitions one by one, then the rest.
        False: a condition failed (everything applied so far was undone)."""
        done: list[list[tuple[Route, str | None, str | None]]] = []
        for part in cond_parts:
            changes: list[tuple[Route, str | None, str | None]] = []
            items: list[tuple[Stmt, list[object]]] = []
            for key, st in states.items():
                if st.route.partition != part:
                    continue
                new = final[key]
                if st.needs_read:
                    old = stored[key]
                    changes.append((st.route, old, new))
                    items.append(write_statement(st.route, old, new, conditional=True, timestamp=0))
                else:
                    items.append(cas_batch_statement(st.route, new))
            cls = "delete" if all(s.op in ("delete", "cas_delete") for s, _v in items) else "write"
            try:
                applied = await self._cas(items, cls)
            except DictError as err:
                if done:
                    await self._undo(done)
                    raise type(err)(str(err), uncertain=err.uncertain) from err
                raise
            if not applied:
                await self._undo(done)
                return False
            done.append(changes)
        rest = [
            (st.route, final[key])
            for key, st in states.items()
            if st.route.partition not in cond_parts and key in final
        ]
        try:
            await self._blind_writes(rest)
        except DictError as err:
            raise type(err)(
                f"{err} (the conditional part of the transaction was applied)", uncertain=True
            ) from err
        return True

    async def _undo(self, done: list[list[tuple[Route, str | None, str | None]]]) -> None:
        for changes in reversed(done):
            items = [
                write_statement(r, new, old, conditional=True, timestamp=0)
                for r, old, new in changes
            ]
            try:
                applied = await self._cas(items, "write")
            except DictError as err:
                raise DictError(
                    f"cassandra dict: transaction partially applied, undo failed: {err}",
                    uncertain=True,
                ) from err
            if not applied:
                raise DictError(
                    "cassandra dict: transaction partially applied, undo found newer values",
                    uncertain=True,
                )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ex, self._executor = self._executor, None
        if ex is not None:
            if self._own_executor:
                await _release_cluster(self._target)
            else:
                await ex.close()


class CassandraTransaction(DictTransaction):
    _owner: CassandraDict

    async def _commit(self, ops: list[DictOp]) -> None:
        await self._owner.apply(ops)


def _map_error(err: BaseException, *, write: bool, uncertain: bool = False) -> DictError:
    text = f"cassandra dict: {type(err).__name__}: {err}"
    if isinstance(err, CqlUnavailable):
        return DictTemporaryError(text, uncertain=uncertain)
    if isinstance(err, CqlTimeout):
        return DictTemporaryError(text, uncertain=uncertain or write)
    if isinstance(err, CqlFailure):
        maybe = uncertain or (write and err.maybe_applied)
        if err.temporary:
            return DictTemporaryError(text, uncertain=maybe)
        return DictError(text, uncertain=maybe)
    return DictError(text, uncertain=uncertain)


# --------------------------------------------------------------------------- scylla-driver


@dataclass(frozen=True)
class _ClusterTarget:
    hosts: tuple[str, ...]
    port: int
    keyspace: str
    user: str
    password: str
    protocol_version: int
    page_size: int
    request_timeout: float
    connect_timeout: float
    ssl: str

    @classmethod
    def from_settings(cls, s: Mapping[str, str]) -> _ClusterTarget:
        hosts = tuple(s.get("cassandra_hosts", "").split())
        if not hosts:
            raise DictError("cassandra dict: cassandra_hosts is not set")

        def number(name: str, default: str) -> int:
            raw = s.get(name, "").strip() or default
            try:
                return int(raw)
            except ValueError:
                raise DictError(f"{name}: not a number: {raw!r}") from None

        keyspace = s.get("cassandra_keyspace", "").strip() or "mails"
        if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]{0,47}$", keyspace):
            raise DictError(f"cassandra_keyspace: invalid keyspace name {keyspace!r}")
        ssl = s.get("cassandra_ssl", "").strip().lower() or "no"
        if ssl not in ("no", "cert-only", "cert-ip"):
            raise DictError(f"cassandra_ssl: expected no, cert-only or cert-ip, not {ssl!r}")
        return cls(
            hosts,
            number("cassandra_port", "9042"),
            keyspace,
            s.get("cassandra_user", ""),
            s.get("cassandra_password", ""),
            number("cassandra_protocol_version", "4"),
            number("cassandra_page_size", "0"),
            parse_duration(s.get("cassandra_request_timeout", ""), 5.0),
            parse_duration(s.get("cassandra_connect_timeout", ""), 5.0),
            ssl,
        )


def _driver() -> Any:
    try:
        import cassandra.cluster  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise DictError(
            "cassandra dict: the scylla-driver package (import cassandra) is not installed"
        ) from err
    import cassandra as mod

    return mod


def _new_cluster(target: _ClusterTarget) -> tuple[Any, Any]:
    """Connect (blocking: runs in a worker thread)."""
    from cassandra.auth import PlainTextAuthProvider  # type: ignore[import-untyped]
    from cassandra.cluster import (
        EXEC_PROFILE_DEFAULT,
        Cluster,
        ExecutionProfile,
    )
    from cassandra.policies import (  # type: ignore[import-untyped]
        DCAwareRoundRobinPolicy,
        FallthroughRetryPolicy,
        TokenAwarePolicy,
    )
    from cassandra.query import tuple_factory  # type: ignore[import-untyped]

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        retry_policy=FallthroughRetryPolicy(),  # retries are ours (fallback rule)
        request_timeout=target.request_timeout,
        row_factory=tuple_factory,
    )
    kwargs: dict[str, Any] = {
        "contact_points": list(target.hosts),
        "port": target.port,
        "protocol_version": target.protocol_version,
        "connect_timeout": target.connect_timeout,
        "execution_profiles": {EXEC_PROFILE_DEFAULT: profile},
    }
    if target.user:
        kwargs["auth_provider"] = PlainTextAuthProvider(target.user, target.password)
    if target.ssl != "no":
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = target.ssl == "cert-ip"
        kwargs["ssl_context"] = ctx
    cluster = Cluster(**kwargs)
    try:
        session = cluster.connect(target.keyspace)
    except Exception:
        cluster.shutdown()
        raise
    session.default_fetch_size = target.page_size or None
    return cluster, session


def _classify(err: BaseException) -> Exception:
    import cassandra as mod
    from cassandra.cluster import NoHostAvailable

    msg = f"{type(err).__name__}: {err}"
    if isinstance(err, mod.Unavailable):
        return CqlUnavailable(msg)
    if isinstance(err, mod.ReadTimeout | mod.WriteTimeout):
        return CqlTimeout(msg, server=True)
    if isinstance(err, mod.OperationTimedOut | TimeoutError):
        return CqlTimeout(msg, server=False)
    if isinstance(err, mod.WriteFailure):
        return CqlFailure(msg, maybe_applied=True, temporary=True)
    if isinstance(err, NoHostAvailable | mod.ReadFailure | mod.CoordinationFailure | OSError):
        return CqlFailure(msg, temporary=True)
    return CqlFailure(msg)


class DriverExecutor:
    """`Executor` on a scylla-driver session: prepared statements, ``execute_async``."""

    def __init__(self, cluster: Any, session: Any) -> None:
        self.cluster = cluster
        self.session = session
        self._prepared: dict[str, Any] = {}

    async def _prepare(self, stmt: Stmt) -> Any:
        ps = self._prepared.get(stmt.cql)
        if ps is None:
            try:
                ps = await asyncio.to_thread(self.session.prepare, stmt.cql)
            except Exception as err:
                raise _classify(err) from err
            self._prepared[stmt.cql] = ps
        return ps

    async def _bound(
        self, stmt: Stmt, values: Sequence[object], consistency: str, serial: str | None
    ) -> Any:
        from cassandra import ConsistencyLevel

        if len(values) != len(stmt.params):
            raise CqlFailure(f"{stmt.cql}: {len(values)} values for {len(stmt.params)} markers")
        bound = (await self._prepare(stmt)).bind(list(values))
        bound.consistency_level = getattr(ConsistencyLevel, consistency)
        if serial is not None:
            bound.serial_consistency_level = getattr(ConsistencyLevel, serial)
        return bound

    async def _run(self, query: Any) -> list[tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
        rows: list[tuple[Any, ...]] = []

        def settle(result: list[tuple[Any, ...]] | None, err: BaseException | None) -> None:
            if done.done():
                return
            if err is not None:
                done.set_exception(_classify(err))
            else:
                done.set_result(result or [])

        try:
            future = self.session.execute_async(query)
        except Exception as err:
            raise _classify(err) from err

        def on_page(page: Sequence[tuple[Any, ...]]) -> None:
            rows.extend(tuple(r) for r in page)
            if future.has_more_pages:
                future.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(settle, rows, None)

        def on_error(err: BaseException) -> None:
            loop.call_soon_threadsafe(settle, None, err)

        future.add_callbacks(on_page, on_error)
        return await done

    async def execute(
        self, stmt: Stmt, values: Sequence[object], consistency: str, serial: str | None = None
    ) -> list[tuple[Any, ...]]:
        return await self._run(await self._bound(stmt, values, consistency, serial))

    async def batch(
        self,
        items: Sequence[tuple[Stmt, Sequence[object]]],
        *,
        logged: bool,
        consistency: str,
        serial: str | None = None,
    ) -> bool:
        from cassandra import ConsistencyLevel
        from cassandra.query import BatchStatement, BatchType

        batch = BatchStatement(batch_type=BatchType.LOGGED if logged else BatchType.UNLOGGED)
        batch.consistency_level = getattr(ConsistencyLevel, consistency)
        if serial is not None:
            batch.serial_consistency_level = getattr(ConsistencyLevel, serial)
        for stmt, values in items:
            batch.add(await self._bound(stmt, values, consistency, None))
        rows = await self._run(batch)
        if not any(stmt.is_conditional for stmt, _v in items):
            return True
        return bool(rows and rows[0][0])

    async def close(self) -> None:
        await asyncio.to_thread(self.cluster.shutdown)


@dataclass
class _SharedCluster:
    task: asyncio.Task[DriverExecutor]
    users: int = 0


_CLUSTERS: dict[tuple[int, _ClusterTarget], _SharedCluster] = {}


async def _connect(target: _ClusterTarget) -> DriverExecutor:
    _driver()
    try:
        cluster, session = await asyncio.to_thread(_new_cluster, target)
    except DictError:
        raise
    except Exception as err:
        raise _map_error(_classify(err), write=False) from err
    return DriverExecutor(cluster, session)


async def _acquire_cluster(target: _ClusterTarget) -> DriverExecutor:
    key = (id(asyncio.get_running_loop()), target)
    shared = _CLUSTERS.get(key)
    if shared is None or (
        shared.task.done() and (shared.task.cancelled() or shared.task.exception() is not None)
    ):
        shared = _SharedCluster(asyncio.get_running_loop().create_task(_connect(target)))
        _CLUSTERS[key] = shared
    shared.users += 1
    try:
        return await asyncio.shield(shared.task)
    except BaseException:
        shared.users -= 1
        raise


async def _release_cluster(target: _ClusterTarget) -> None:
    key = (id(asyncio.get_running_loop()), target)
    shared = _CLUSTERS.get(key)
    if shared is None:
        return
    shared.users -= 1
    if shared.users > 0:
        return
    del _CLUSTERS[key]
    if shared.task.done() and not shared.task.cancelled() and shared.task.exception() is None:
        await shared.task.result().close()


def setup_keyspace(settings: Mapping[str, str], *, replication_factor: int = 3) -> None:
    """Create the keyspace (SimpleStrategy; production clusters usually create theirs with
    NetworkTopologyStrategy beforehand) and every table.  Blocking; for tests and installs."""
    target = _ClusterTarget.from_settings(settings)
    _driver()
    from cassandra.cluster import Cluster

    cluster = Cluster(list(target.hosts), port=target.port, connect_timeout=target.connect_timeout)
    try:
        session = cluster.connect()
        session.execute(
            KEYSPACE_DDL.format(keyspace=target.keyspace, rf=replication_factor), timeout=60
        )
        session.set_keyspace(target.keyspace)
        for ddl in (*PUBLIC_DDL, GENERIC_DDL):
            session.execute(ddl.rstrip(";"), timeout=60)
        cluster.control_connection.wait_for_schema_agreement()
    finally:
        cluster.shutdown()


def live_test_settings(host_port: str) -> dict[str, str]:
    """Settings of a fresh keyspace (replication factor 1) on the cluster at ``host:port``;
    what the contract suite uses when ``COLUMBA_TEST_CASSANDRA`` is set.  Blocking."""
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise DictError(f"COLUMBA_TEST_CASSANDRA: expected host:port, not {host_port!r}")
    settings = {
        "cassandra_hosts": host.strip("[]"),
        "cassandra_port": port,
        "cassandra_keyspace": f"columba_test_{uuid.uuid4().hex[:16]}",
        "cassandra_read_consistency": "local-quorum",
        "cassandra_write_consistency": "local-quorum",
        "cassandra_delete_consistency": "local-quorum",
    }
    setup_keyspace(settings, replication_factor=1)
    return settings
