"""Offline checks of the cassandra dict driver (no Cassandra server can run here).

* every CQL statement the driver can build (and every one it sent in these tests) is parsed by
  a small CQL checker against the DDL: tables and columns exist, placeholders match the bound
  values, WHERE restricts whole partition keys and clustering prefixes, conditional batches
  stay in one partition of one table and carry no client timestamp;
* key -> table mapping for every public dictmap pattern, and near misses;
* the consistency fallback state machine on a fake clock, and the driver's use of it;
* the driver's Dict logic (transactions, CAS, iteration across tables) against `FakeCluster`,
  an in-memory model interpreting the statements' structure — including the contract suite's
  own test bodies.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from columba.dict.api import Dict, DictConflict, DictError, DictTemporaryError
from columba.dict.cassandra import (
    TEXT_MAGIC,
    CassandraDict,
    CqlTimeout,
    CqlUnavailable,
    FallbackState,
    decode_value,
    encode_value,
    match_prefix,
    partition_of,
    route_key,
)
from columba.dict.cassandra_schema import (
    GENERIC_DDL,
    GENERIC_TABLE,
    MAPS,
    PUBLIC_DDL,
    TABLES,
    Stmt,
    cas_delete,
    cas_set,
    delete,
    distinct_partitions,
    parse_create_table,
    scan,
    select_one,
    select_range,
    upsert,
)
from tests.contract import test_dict_contract as contract

GUID = "0123456789abcdef0123456789abcdef"
OID = "fedcba9876543210fedcba9876543210"

# --------------------------------------------------------------------------- CQL checker

_TOKEN_RE = re.compile(r"\s*(>=|<=|[(),=<>?*]|[A-Za-z_][A-Za-z0-9_]*|\S)")


def _tokens(cql: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(cql):
        m = _TOKEN_RE.match(cql, pos)
        assert m, f"cannot tokenize {cql[pos:]!r}"
        out.append(m.group(1))
        pos = m.end()
        if not cql[pos:].strip():
            break
    return out


class _P:
    def __init__(self, cql: str) -> None:
        self.t = _tokens(cql)
        self.i = 0
        self.markers = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def kw(self, word: str) -> bool:
        if self.peek() is not None and self.peek().upper() == word:  # type: ignore[union-attr]
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> None:
        got = self.peek()
        assert got is not None and got.upper() == word.upper(), f"expected {word}, got {got}"
        self.i += 1

    def ident(self) -> str:
        got = self.peek()
        assert got is not None and re.match(r"^[a-z_][a-z0-9_]*$", got), f"bad identifier {got}"
        self.i += 1
        return got

    def term(self) -> str:
        got = self.peek()
        if got == "?":
            self.markers += 1
            self.i += 1
            return "?"
        assert got is not None and got.lower() == "null", f"bad term {got}"
        self.i += 1
        return "null"

    def ident_list(self) -> list[str]:
        cols = [self.ident()]
        while self.peek() == ",":
            self.i += 1
            cols.append(self.ident())
        return cols

    def done(self) -> None:
        assert self.i == len(self.t), f"trailing tokens {self.t[self.i :]}"


def check_cql(stmt: Stmt) -> dict[str, Any]:
    """Parse `stmt.cql` (the statement forms the driver uses) and check it against the DDL and
    Cassandra's rules; return what was parsed."""
    p = _P(stmt.cql)
    info: dict[str, Any] = {"where": [], "ranges": []}

    def table() -> Any:
        name = p.ident()
        assert name in TABLES, f"unknown table {name}"
        info["table"] = name
        return TABLES[name]

    def where(t: Any) -> None:
        p.expect("WHERE")
        while True:
            col = p.ident()
            assert col in t.columns, f"unknown column {col}"
            op = p.t[p.i]
            p.i += 1
            assert op in ("=", ">", ">=", "<"), op
            assert p.term() == "?"
            (info["where"] if op == "=" else info["ranges"]).append((col, op))
            if not p.kw("AND"):
                break

    def condition(t: Any) -> None:
        if p.kw("IF"):
            col = p.ident()
            assert col in t.columns and col not in t.key_columns
            p.expect("=")
            info["if"] = (col, p.term())

    first = p.t[0].upper()
    if first == "SELECT":
        p.i = 1
        distinct = p.kw("DISTINCT")
        cols = p.ident_list()
        p.expect("FROM")
        t = table()
        for c in cols:
            assert c in t.columns, f"unknown column {c}"
        if distinct:
            assert tuple(cols) == t.partition
        if p.peek() is not None and p.peek().upper() == "WHERE":  # type: ignore[union-attr]
            where(t)
        if p.kw("LIMIT"):
            assert p.term() == "?"
        p.done()
        eq = [c for c, _ in info["where"]]
        if eq or info["ranges"]:
            # Whole partition key by equality, then a clustering prefix, then one range.
            assert eq[: len(t.partition)] == list(t.partition), stmt.cql
            assert eq[len(t.partition) :] == list(t.clustering[: len(eq) - len(t.partition)])
            rest = t.clustering[len(eq) - len(t.partition) :]
            for col, _op in info["ranges"]:
                assert rest and col == rest[0], f"range on {col} not allowed: {stmt.cql}"
    elif first == "INSERT":
        p.i = 1
        p.expect("INTO")
        t = table()
        p.expect("(")
        cols = p.ident_list()
        p.expect(")")
        p.expect("VALUES")
        p.expect("(")
        vals = [p.term()]
        while p.peek() == ",":
            p.i += 1
            vals.append(p.term())
        p.expect(")")
        assert len(vals) == len(cols) and set(t.key_columns) <= set(cols)
        assert all(c in t.columns for c in cols)
        if p.kw("USING"):
            p.expect("TIMESTAMP")
            assert p.term() == "?"
            info["timestamp"] = True
        p.done()
    elif first == "UPDATE":
        p.i = 1
        t = table()
        p.expect("SET")
        col = p.ident()
        assert col in t.columns and col not in t.key_columns
        p.expect("=")
        assert p.term() == "?"
        where(t)
        condition(t)
        p.done()
        assert sorted(c for c, _ in info["where"]) == sorted(t.key_columns)
    elif first == "DELETE":
        p.i = 1
        p.expect("FROM")
        t = table()
        if p.kw("USING"):
            p.expect("TIMESTAMP")
            assert p.term() == "?"
            info["timestamp"] = True
        where(t)
        condition(t)
        p.done()
        assert sorted(c for c, _ in info["where"]) == sorted(t.key_columns)
    else:
        raise AssertionError(f"unexpected statement {stmt.cql}")
    assert not info["ranges"] or first == "SELECT"
    assert p.markers == len(stmt.params), f"{stmt.cql}: {p.markers} markers, {stmt.params}"
    if "if" in info:
        assert "timestamp" not in info, "a conditional update can't carry USING TIMESTAMP"
    assert info["table"] == stmt.table
    return info


def all_statements() -> list[Stmt]:
    out: list[Stmt] = []
    value_columns = {m.table: m.value_column for m in MAPS} | {GENERIC_TABLE: "v"}
    for name, t in TABLES.items():
        col = value_columns[name]
        out += [select_one(t, col), scan(t, (*t.key_columns, col)), distinct_partitions(t)]
        out += [upsert(t, col, timestamp=ts) for ts in (True, False)]
        out += [delete(t, timestamp=ts) for ts in (True, False)]
        out += [cas_set(t, col, expect_null=n) for n in (True, False)]
        out += [cas_delete(t, col, expect_null=n) for n in (True, False)]
        where: list[str] = list(t.partition)
        out.append(select_range(t, (*t.key_columns, col), tuple(where)))
        for c in t.clustering:
            out.append(select_range(t, (*t.key_columns, col), tuple(where), lo=(c, ">=")))
            out.append(
                select_range(t, (*t.key_columns, col), tuple(where), lo=(c, ">"), hi=c, limit=True)
            )
            where.append(c)
            out.append(select_range(t, (*t.key_columns, col), tuple(where)))
    return out


def test_ddl_parses_and_matches_the_reference_layout() -> None:
    assert len(PUBLIC_DDL) == 8
    uo = parse_create_table(PUBLIC_DDL[2])
    assert uo.name == "user_mailbox_objects"
    assert uo.columns == {"u": "text", "g": "blob", "b": "int", "n": "blob", "i": "blob"}
    assert uo.partition == ("u", "g", "b") and uo.clustering == ("n",)
    diff = TABLES["user_mailbox_index_diff_objects"]
    assert diff.partition == ("u",) and diff.clustering == ("g", "h")
    rev = TABLES["user_mailbox_objects_reverse"]
    assert rev.partition == ("i",) and rev.clustering == ("n",)
    assert TABLES["user_mailbox_buckets"].clustering == ()
    gen = parse_create_table(GENERIC_DDL)
    assert gen.partition == ("o", "p") and gen.clustering == ("k",)
    for bad in (
        "create table if not exists x (a text,primary key (b));",
        "create table if not exists x (a text, a text,primary key (a));",
        "create table if not exists x (a txt,primary key (a));",
        "create table x (a text,primary key (a));",
    ):
        with pytest.raises(ValueError):
            parse_create_table(bad)


def test_every_statement_parses() -> None:
    stmts = all_statements()
    assert len(stmts) > 100
    for stmt in stmts:
        check_cql(stmt)


@pytest.mark.parametrize(
    "cql",
    [
        "SELECT v FROM columba_dict WHERE o = ? AND k = ?",  # partition key incomplete
        "SELECT v FROM nosuch WHERE o = ?",
        "SELECT zz FROM columba_dict WHERE o = ? AND p = ? AND k = ?",
        "UPDATE columba_dict SET v = ? WHERE o = ? AND p = ?",  # clustering missing
        "UPDATE columba_dict SET k = ? WHERE o = ? AND p = ? AND k = ?",  # key column set
        "DELETE FROM columba_dict WHERE o = ? AND p = ? AND k = ? AND v = ?",
        "SELECT n, i FROM user_mailbox_objects WHERE u = ? AND g = ? AND n > ?",  # b missing
        "INSERT INTO user_index_objects (u, i) VALUES (?, ?)",  # n missing
    ],
)
def test_checker_rejects_bad_cql(cql: str) -> None:
    table = cql.split("FROM " if "FROM " in cql else " ")[1].split(maxsplit=1)[0]
    if cql.startswith("INSERT"):
        table = "user_index_objects"
    n = cql.count("?")
    stmt = Stmt("select", table, params=tuple(f"x{i}" for i in range(n)), cql=cql)
    with pytest.raises(AssertionError):
        check_cql(stmt)


def test_checker_rejects_marker_mismatch() -> None:
    good = select_one(TABLES[GENERIC_TABLE], "v")
    with pytest.raises(AssertionError):
        check_cql(Stmt(**{**good.__dict__, "params": good.params[:-1]}))


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("key", "table", "values", "value_column"),
    [
        ("shared/dictmap/alice/idx/bundle.1", "user_index_objects", ("alice", "bundle.1"), "i"),
        (
            f"shared/dictmap/alice/mailboxes/{GUID}/idx/b2",
            "user_mailbox_index_objects",
            ("alice", bytes.fromhex(GUID), "b2"),
            "i",
        ),
        (
            f"shared/dictmap/alice/mailboxes/{GUID}/7/{OID}",
            "user_mailbox_objects",
            ("alice", bytes.fromhex(GUID), 7, bytes.fromhex(OID)),
            "i",
        ),
        (
            f"shared/dictmap/alice/mailboxes/{GUID}/max_bucket",
            "user_mailbox_buckets",
            ("alice", bytes.fromhex(GUID)),
            "b",
        ),
        ("shared/dictmap/alice/fts/S", "user_fts_objects", ("alice", "S"), "i"),
        ("shared/dictdiffmap/alice/idx/host1", "user_index_diff_objects", ("alice", "host1"), "m"),
        (
            f"shared/dictdiffmap/alice/mailboxes/{GUID}/idx/host1",
            "user_mailbox_index_diff_objects",
            ("alice", bytes.fromhex(GUID), "host1"),
            "m",
        ),
        (
            f"shared/dictrevmap/{OID}/{GUID}",
            "user_mailbox_objects_reverse",
            (bytes.fromhex(OID), bytes.fromhex(GUID)),
            "g",
        ),
    ],
)
def test_public_patterns_route_to_their_tables(
    key: str, table: str, values: tuple[object, ...], value_column: str
) -> None:
    r = route_key(key, "")
    assert r.table.name == table
    assert r.key_values == values
    assert r.value_column == value_column
    assert r.keymap is not None and r.keymap.table == table
    # Every public pattern is covered by one of these cases.
    assert table in {m.table for m in MAPS}


def test_each_map_is_exercised_and_maps_do_not_overlap() -> None:
    samples = {
        "$user": "alice",
        "$object_name": "ab",
        "$mailbox_guid": GUID,
        "$bucket": "3",
        "$host": "h",
        "$object_id": OID,
    }
    for m in MAPS:
        key = "/".join(samples.get(c, c) for c in m.components)
        assert route_key(key, "").keymap is m, key
        hits = [other for other in MAPS if other is not m and match_prefix(other, key + "/")]
        assert not any(route_key(key, "").keymap is o for o in hits)


@pytest.mark.parametrize(
    "key",
    [
        "shared/dictmap/u/mailboxes/g/idx/b1",  # guid not hex
        f"shared/dictmap/u/mailboxes/{GUID.upper()}/idx/b1",  # not canonical hex
        f"shared/dictmap/u/mailboxes/{GUID}/01/{OID}",  # bucket not canonical
        f"shared/dictmap/u/mailboxes/{GUID}/2147483648/{OID}",  # bucket beyond int
        f"shared/dictmap/u/mailboxes/{GUID}/1/xyz",  # object name of user_mailbox_objects: hex
        "shared/dictmap/u/idx/b/extra",
        "shared/dictmap//idx/b",  # empty user
        f"shared/dictmap/u/mailboxes/{GUID}",  # folder listing: not a key/value map
        f"shared/dictrevmap/{OID}",
        f"shared/dictrevmap/alice/mailboxes/{GUID}/{OID}",
        "shared/dictmap/alice/mailboxes/x/1",
        "priv/dictmap/alice/idx/b",
    ],
)
def test_other_keys_go_to_the_generic_table(key: str) -> None:
    r = route_key(key, "bob" if key.startswith("priv/") else "")
    assert r.table.name == GENERIC_TABLE
    assert r.key_values == (r.key_values[0], partition_of(key), key)


def test_partition_of() -> None:
    assert partition_of("shared/x") == "shared/"
    assert partition_of("shared/c/v") == "shared/c/"
    assert partition_of("shared/dictmap/alice/mailboxes/g/1") == "shared/dictmap/alice/"
    assert partition_of("shared/dictrevmap/abc/alice/x") == "shared/dictrevmap/abc/"
    assert route_key("priv/quota/storage", "alice").key_values[:2] == ("alice", "priv/quota/")


def test_match_prefix() -> None:
    idx = MAPS[0]  # shared/dictmap/$user/idx/$object_name
    pm = match_prefix(idx, "shared/dictmap/alice/idx/")
    assert pm is not None and pm.bound == {"u": "alice"} and pm.partial_column is None
    pm = match_prefix(idx, "shared/dictmap/alice/idx/bun")
    assert pm is not None and pm.partial_column == "n" and pm.partial == "bun"
    pm = match_prefix(idx, "shared/dictmap/al")
    assert pm is not None and pm.bound == {} and pm.partial == "al"
    assert match_prefix(idx, "shared/dictmap/alice/i") is not None
    assert match_prefix(idx, "shared/dictmap/alice/mailboxes/") is None
    assert match_prefix(idx, "shared/dictmap/alice/idx/b/") is None
    assert match_prefix(idx, "shared/other") is None
    objects = MAPS[2]
    assert match_prefix(objects, f"shared/dictmap/a/mailboxes/{GUID}/1") is not None
    assert match_prefix(objects, f"shared/dictmap/a/mailboxes/{GUID}/x") is None
    assert match_prefix(objects, "shared/dictmap/a/mailboxes/zz/") is None


def test_value_encoding_round_trips() -> None:
    assert encode_value("hexblob", "abcd") == b"\xab\xcd"
    assert encode_value("hexblob", "") == b""
    for value in ("", "abcd", OID, "6", "ABCD", "abc", "välue", TEXT_MAGIC.hex() + "00"):
        cell = encode_value("hexblob", value)
        assert isinstance(cell, bytes)
        assert decode_value("hexblob", cell) == value
    assert decode_value("hexblob", None) is None
    assert encode_value("uint", "42") == 42 and decode_value("uint", 42) == "42"
    for bad in ("-1", "x", "01", str(2**31)):
        with pytest.raises(DictError):
            encode_value("uint", bad)
    assert encode_value("text", "x/y") == "x/y"


# --------------------------------------------------------------------------- fallback


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fallback_state_machine() -> None:
    clock = Clock()
    st = FallbackState("EACH_QUORUM", "LOCAL_QUORUM", clock)
    assert st.level() == ("EACH_QUORUM", True)
    st.primary_failed()
    assert st.level() == ("LOCAL_QUORUM", False)
    clock.now += 0.049
    assert st.level() == ("LOCAL_QUORUM", False)
    clock.now += 0.002
    assert st.level() == ("EACH_QUORUM", True)  # probe after 50 ms
    expected = 0.05
    for _ in range(15):
        st.primary_failed()
        expected = min(expected * 2, 60.0)
        assert st.interval == pytest.approx(expected)
        clock.now += st.interval - 0.001
        assert st.level()[1] is False
        clock.now += 0.002
        assert st.level() == ("EACH_QUORUM", True)
    assert st.interval == 60.0
    st.primary_succeeded()
    assert st.level() == ("EACH_QUORUM", True)
    st.primary_failed()
    assert st.interval == 0.05  # a new outage starts at 50 ms again
    no_fallback = FallbackState("LOCAL_QUORUM", None, clock)
    no_fallback.primary_failed()
    assert no_fallback.level() == ("LOCAL_QUORUM", True)


# --------------------------------------------------------------------------- fake cluster


class FakeCluster:
    """In-memory model of the tables, interpreting `Stmt` structure (and checking its CQL)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[object, ...], dict[str, object]]] = {t: {} for t in TABLES}
        self.log: list[tuple[str, Stmt, str, str | None]] = []
        self.fail: Callable[[Stmt, str], Exception | None] = lambda s, c: None
        self.before_write: Callable[[Stmt], None] = lambda s: None

    def _bind(self, stmt: Stmt, values: Sequence[object]) -> dict[str, object]:
        assert len(values) == len(stmt.params), stmt.cql
        return dict(zip(stmt.params, values, strict=True))

    def _key(self, stmt: Stmt, b: dict[str, object], prefix: str) -> tuple[object, ...]:
        t = TABLES[stmt.table]
        return tuple(b[f"{prefix}:{c}"] for c in t.key_columns)

    def _cond_ok(self, stmt: Stmt, b: dict[str, object]) -> bool:
        assert stmt.condition is not None
        row = self.rows[stmt.table].get(self._key(stmt, b, "where"))
        cur = None if row is None else row.get(stmt.condition)
        want = None if stmt.condition_null else b[f"if:{stmt.condition}"]
        return cur == want

    def _write(self, stmt: Stmt, b: dict[str, object]) -> None:
        rows = self.rows[stmt.table]
        if stmt.op == "insert":
            key = self._key(stmt, b, "values")
            rows[key] = {c: b[f"values:{c}"] for c in stmt.insert_columns}
        elif stmt.op in ("delete", "cas_delete"):
            rows.pop(self._key(stmt, b, "where"), None)
        elif stmt.op == "cas_set":
            key = self._key(stmt, b, "where")
            t = TABLES[stmt.table]
            row = rows.setdefault(key, dict(zip(t.key_columns, key, strict=True)))
            assert stmt.set_column is not None
            row[stmt.set_column] = b[f"set:{stmt.set_column}"]
        else:
            raise AssertionError(stmt.op)

    def _read(self, stmt: Stmt, b: dict[str, object]) -> list[tuple[Any, ...]]:
        t = TABLES[stmt.table]
        rows = list(self.rows[stmt.table].values())
        if stmt.op == "distinct":
            return sorted({tuple(r[c] for c in t.partition) for r in rows}, key=repr)
        if stmt.op == "select":
            row = self.rows[stmt.table].get(self._key(stmt, b, "where"))
            return [] if row is None else [tuple(row.get(c) for c in stmt.select)]
        out = [r for r in rows if all(r[c] == b[f"where:{c}"] for c in stmt.where)]
        if stmt.lo is not None:
            col, op = stmt.lo
            lo = b[f"lo:{col}"]
            out = [r for r in out if (r[col] > lo if op == ">" else r[col] >= lo)]  # type: ignore[operator]
        if stmt.hi is not None:
            out = [r for r in out if r[stmt.hi] < b[f"hi:{stmt.hi}"]]  # type: ignore[operator]
        if stmt.op == "range":
            out.sort(key=lambda r: tuple(r[c] for c in t.key_columns))
        if stmt.limit:
            out = out[: int(b["limit"])]  # type: ignore[call-overload]
        return [tuple(r.get(c) for c in stmt.select) for r in out]

    def _check(self, kind: str, stmt: Stmt, consistency: str, serial: str | None) -> None:
        check_cql(stmt)
        self.log.append((kind, stmt, consistency, serial))
        err = self.fail(stmt, consistency)
        if err is not None:
            raise err

    async def execute(
        self, stmt: Stmt, values: Sequence[object], consistency: str, serial: str | None = None
    ) -> list[tuple[Any, ...]]:
        self._check("execute", stmt, consistency, serial)
        await asyncio.sleep(0)
        b = self._bind(stmt, values)
        if not stmt.is_write:
            return self._read(stmt, b)
        self.before_write(stmt)
        if stmt.is_conditional:
            assert serial in ("SERIAL", "LOCAL_SERIAL")
            if not self._cond_ok(stmt, b):
                return [(False,)]
            self._write(stmt, b)
            return [(True,)]
        assert stmt.timestamp, "plain writes carry a client timestamp"
        self._write(stmt, b)
        return []

    async def batch(
        self,
        items: Sequence[tuple[Stmt, Sequence[object]]],
        *,
        logged: bool,
        consistency: str,
        serial: str | None = None,
    ) -> bool:
        for stmt, _v in items:
            self._check("batch", stmt, consistency, serial)
        await asyncio.sleep(0)
        bound = [(s, self._bind(s, v)) for s, v in items]
        assert all(s.is_write for s, _b in bound)
        self.before_write(items[0][0])
        parts = {
            (
                s.table,
                self._key(s, b, "values" if s.op == "insert" else "where")[
                    : len(TABLES[s.table].partition)
                ],
            )
            for s, b in bound
        }
        if any(s.is_conditional for s, _b in bound):
            # Cassandra: a conditional batch is one partition of one table, no timestamps.
            assert not logged and len(parts) == 1 and serial is not None
            assert not any(s.timestamp for s, _b in bound)
            if not all(self._cond_ok(s, b) for s, b in bound if s.is_conditional):
                return False
        else:
            assert logged or len(parts) == 1, "unlogged batches only within one partition"
            assert all(s.timestamp for s, _b in bound)
        for s, b in bound:
            self._write(s, b)
        return True

    async def close(self) -> None:
        pass


class FakeTarget:
    """Duck-typed `DictTarget` of the contract suite, on one `FakeCluster`."""

    multiprocess = False

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.cluster = FakeCluster()
        self.settings = settings or {}

    def open(self, username: str | None = None) -> Dict:
        return CassandraDict(self.settings, username, executor=self.cluster)


CONTRACT_TESTS = [
    "test_get_set_unset",
    "test_priv_keys_are_per_user",
    "test_persists_across_reopen",
    "test_iterate",
    "test_iterate_paging",
    "test_transaction_atomic_and_ordered",
    "test_failed_cas_applies_nothing",
    "test_atomic_inc",
    "test_rollback_and_context_manager",
    "test_values_must_be_strings",
    "test_concurrent_transactions_in_process",
]


@pytest.mark.parametrize("name", CONTRACT_TESTS)
def test_contract_bodies_on_the_fake_cluster(name: str) -> None:
    target = FakeTarget()
    getattr(contract, name)(target)
    if name != "test_values_must_be_strings":  # that one fails before any I/O
        assert target.cluster.log  # it really went through the statements


@pytest.mark.parametrize("key", ["", "a", "shared", "private/x", "shared/\0"])
def test_contract_invalid_keys_on_the_fake_cluster(key: str) -> None:
    contract.test_invalid_keys(FakeTarget(), key)  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- operations


def test_statements_of_each_operation() -> None:
    target = FakeTarget()
    c = target.cluster

    async def main() -> None:
        d = target.open()
        c.log.clear()
        await d.get("shared/a/b")
        assert [s.op for _k, s, _c, _s in c.log] == ["select"]
        c.log.clear()
        await d.set("shared/a/b", "1")
        assert [(k, s.op, s.timestamp) for k, s, _c, _s in c.log] == [("execute", "insert", True)]
        assert c.log[0][2] == "LOCAL_QUORUM"
        c.log.clear()
        await d.unset("shared/a/b")
        assert [s.op for _k, s, _c, _s in c.log] == ["delete"]
        c.log.clear()
        t = d.transaction()
        t.set_if("shared/a/b", None, "x")
        await t.commit()
        # Serial read, then one conditional insert-if-missing.
        assert [(s.op, cl) for _k, s, cl, _s in c.log] == [
            ("select", "LOCAL_SERIAL"),
            ("cas_set", "LOCAL_QUORUM"),
        ]
        assert c.log[1][1].condition_null and c.log[1][3] == "LOCAL_SERIAL"
        c.log.clear()
        t = d.transaction()
        t.atomic_inc("shared/a/n", 2)
        t.set("shared/a/other", "y")  # same partition: one conditional batch
        await t.commit()
        assert [(k, s.op) for k, s, _c, _s in c.log] == [
            ("execute", "select"),
            ("batch", "cas_set"),
            ("batch", "insert"),
        ]
        c.log.clear()
        t = d.transaction()
        t.set("shared/x/1", "1")
        t.set("shared/y/1", "1")
        await t.commit()  # two partitions, no condition: one logged batch
        assert {(k, s.op) for k, s, _c, _s in c.log} == {("batch", "insert")}
        c.log.clear()
        t = d.transaction()
        t.unset("shared/x/1")
        t.unset("shared/y/1")
        await t.commit()
        assert {cl for _k, _s, cl, _x in c.log} == {"LOCAL_QUORUM"}
        await d.close()

    run(main())


def test_delete_consistency_and_serial_level_follow_settings() -> None:
    target = FakeTarget(
        {
            "cassandra_write_consistency": "each-quorum",
            "cassandra_delete_consistency": "all",
            "cassandra_read_consistency": "one",
        }
    )
    c = target.cluster

    async def main() -> None:
        d = target.open()
        await d.get("shared/q")
        await d.set("shared/q", "1")
        await d.unset("shared/q")
        t = d.transaction()
        t.set_if("shared/q", None, "2")
        await t.commit()
        levels = [(s.op, cl, ser) for _k, s, cl, ser in c.log]
        assert levels == [
            ("select", "ONE", None),
            ("insert", "EACH_QUORUM", None),
            ("delete", "ALL", None),
            ("select", "SERIAL", None),
            ("cas_set", "EACH_QUORUM", "SERIAL"),
        ]

    run(main())
    with pytest.raises(DictError):
        CassandraDict({"cassandra_read_consistency": "serial"}, executor=FakeCluster())


def test_driver_falls_back_and_probes_primary() -> None:
    clock = Clock()
    cluster = FakeCluster()
    d = CassandraDict(
        {
            "cassandra_write_consistency": "each-quorum",
            "cassandra_write_fallback_consistency": "local-quorum",
        },
        executor=cluster,
        clock=clock,
    )
    down = {"EACH_QUORUM"}
    cluster.fail = lambda s, cl: CqlUnavailable("not enough replicas") if cl in down else None

    async def main() -> None:
        await d.set("shared/f/1", "a")
        assert [cl for _k, _s, cl, _x in cluster.log] == ["EACH_QUORUM", "LOCAL_QUORUM"]
        cluster.log.clear()
        await d.set("shared/f/2", "b")  # all queries now use the fallback
        assert [cl for _k, _s, cl, _x in cluster.log] == ["LOCAL_QUORUM"]
        cluster.log.clear()
        clock.now += 0.051
        await d.set("shared/f/3", "c")  # probe primary, fails, retried at fallback
        assert [cl for _k, _s, cl, _x in cluster.log] == ["EACH_QUORUM", "LOCAL_QUORUM"]
        assert d.consistency["write"].interval == pytest.approx(0.1)
        cluster.log.clear()
        down.clear()
        clock.now += 0.101
        await d.set("shared/f/4", "d")  # primary is back
        await d.set("shared/f/5", "e")
        assert [cl for _k, _s, cl, _x in cluster.log] == ["EACH_QUORUM", "EACH_QUORUM"]
        assert [k for k, _v in await d.iterate("shared/f/")] == [
            f"shared/f/{i}" for i in range(1, 6)
        ]
        # Reads have their own state: no fallback configured -> the error surfaces.
        cluster.fail = lambda s, cl: CqlUnavailable("down") if s.op == "select" else None
        with pytest.raises(DictTemporaryError) as info:
            await d.get("shared/f/1")
        assert not info.value.uncertain

    run(main())


def test_timeouts_make_writes_uncertain() -> None:
    cluster = FakeCluster()
    d = CassandraDict({}, executor=cluster)

    async def main() -> None:
        cluster.fail = lambda s, cl: (
            CqlTimeout("write timeout", server=True) if s.is_write else None
        )
        with pytest.raises(DictTemporaryError) as info:
            await d.set("shared/t/1", "x")
        assert info.value.uncertain
        cluster.log.clear()
        t = d.transaction()
        t.set_if("shared/t/2", None, "y")
        with pytest.raises(DictTemporaryError) as info:
            await t.commit()
        assert info.value.uncertain
        assert [s.op for _k, s, _c, _x in cluster.log] == ["select", "cas_set"]  # no retry
        cluster.fail = lambda s, cl: CqlTimeout("read timeout", server=True)
        with pytest.raises(DictTemporaryError) as info:
            await d.get("shared/t/1")
        assert not info.value.uncertain

    run(main())


def test_cas_timeout_is_not_retried_at_fallback_but_unavailable_is() -> None:
    cluster = FakeCluster()
    d = CassandraDict(
        {"cassandra_write_fallback_consistency": "one"}, executor=cluster, clock=Clock()
    )
    calls: list[str] = []

    def fail(s: Stmt, cl: str) -> Exception | None:
        if s.op == "cas_set":
            calls.append(cl)
            if cl == "LOCAL_QUORUM":
                return CqlUnavailable("down")
        return None

    cluster.fail = fail

    async def main() -> None:
        t = d.transaction()
        t.set_if("shared/u/1", None, "v")
        await t.commit()
        assert calls == ["LOCAL_QUORUM", "ONE"]
        assert await d.get("shared/u/1") == "v"

    run(main())


# --------------------------------------------------------------------------- public tables


def test_public_tables_hold_dictmap_rows() -> None:
    target = FakeTarget()
    c = target.cluster

    async def main() -> None:
        d = target.open()
        await d.set("shared/dictmap/alice/idx/bundle.1", OID)
        await d.set("shared/dictmap/alice/idx/bundle.2", "")  # passthrough: empty blob
        await d.set(f"shared/dictmap/alice/mailboxes/{GUID}/idx/b", "not hex")
        assert c.rows["user_index_objects"][("alice", "bundle.1")]["i"] == bytes.fromhex(OID)
        assert c.rows["user_index_objects"][("alice", "bundle.2")]["i"] == b""
        assert await d.get("shared/dictmap/alice/idx/bundle.2") == ""
        assert await d.get(f"shared/dictmap/alice/mailboxes/{GUID}/idx/b") == "not hex"
        # Rows a Dovecot Pro backend wrote are visible under their dict keys.
        g = bytes.fromhex(GUID)
        for b, n in ((0, "aa"), (0, "ab"), (1, "ba"), (3, "ff")):
            c.rows["user_mailbox_objects"][("alice", g, b, bytes.fromhex(n))] = {
                "u": "alice", "g": g, "b": b, "n": bytes.fromhex(n), "i": bytes.fromhex(OID)
            }  # fmt: skip
        c.rows["user_mailbox_buckets"][("alice", g)] = {"u": "alice", "g": g, "b": 1}
        base = f"shared/dictmap/alice/mailboxes/{GUID}/"
        got = [k for k, _v in await d.iterate(base)]
        # Buckets 0..max_bucket (=1) plus max_bucket itself and the folder index.
        assert got == [
            f"{base}0/aa",
            f"{base}0/ab",
            f"{base}1/ba",
            f"{base}idx/b",
            f"{base}max_bucket",
        ]
        assert await d.get(f"{base}max_bucket") == "1"
        assert await d.iterate(f"{base}0/", recurse=False) == [
            (f"{base}0/aa", OID),
            (f"{base}0/ab", OID),
        ]
        assert [k for k, _v in await d.iterate(f"{base}0/a", after=f"{base}0/aa")] == [
            f"{base}0/ab"
        ]
        # Broad prefixes scan: the user's whole key space, all tables, in key order (a scan
        # also finds rows of buckets beyond max_bucket).
        everything = [k for k, _v in await d.iterate("shared/dictmap/alice/")]
        assert everything == sorted(everything) and len(everything) == 8
        assert f"{base}3/ff" in everything
        # CAS on a public row, and atomic_inc of max_bucket.
        t = d.transaction()
        t.set_if("shared/dictmap/alice/idx/bundle.1", OID, GUID)
        t.atomic_inc(f"{base}max_bucket", 2)
        await t.commit()
        assert await d.get("shared/dictmap/alice/idx/bundle.1") == GUID
        assert c.rows["user_mailbox_buckets"][("alice", g)]["b"] == 3
        with pytest.raises(DictError):
            await d.set(f"{base}max_bucket", "many")
        t = d.transaction()
        t.atomic_inc(f"{base}max_bucket", -10)
        with pytest.raises(DictError):
            await t.commit()
        await d.set(f"shared/dictrevmap/{OID}/{GUID}", GUID)
        assert await d.iterate(f"shared/dictrevmap/{OID}/") == [
            (f"shared/dictrevmap/{OID}/{GUID}", GUID)
        ]

    run(main())


# --------------------------------------------------------------------------- multi-partition


def test_multi_partition_cas_undoes_and_retries() -> None:
    target = FakeTarget()
    c = target.cluster

    async def main() -> None:
        d = target.open()
        await d.set("shared/a/x", "1")
        await d.set("shared/b/y", "1")
        interfered = False

        def before_write(stmt: Stmt) -> None:
            # After the first partition is applied, change the second one behind our back once.
            nonlocal interfered
            key = ("", "shared/b/", "shared/b/y")
            if (
                not interfered
                and stmt.op == "cas_set"
                and c.rows[GENERIC_TABLE].get(("", "shared/a/", "shared/a/x"), {}).get("v") == "2"
            ):
                interfered = True
                c.rows[GENERIC_TABLE][key]["v"] = "5"

        c.before_write = before_write
        t = d.transaction()
        t.atomic_inc("shared/a/x", 1)
        t.atomic_inc("shared/b/y", 1)
        t.set("shared/c/z", "side")
        await t.commit()
        assert interfered
        assert await d.get("shared/a/x") == "2"  # undone once, then applied once
        assert await d.get("shared/b/y") == "6"
        assert await d.get("shared/c/z") == "side"

        # A conflict found by the serial reads applies nothing anywhere.
        t = d.transaction()
        t.set("shared/c/z", "no")
        t.set_if("shared/a/x", "2", "3")
        t.set_if("shared/b/y", "wrong", "7")
        with pytest.raises(DictConflict):
            await t.commit()
        assert [await d.get(k) for k in ("shared/a/x", "shared/b/y", "shared/c/z")] == [
            "2",
            "6",
            "side",
        ]

    run(main())


def test_partial_failure_after_conditional_part_is_uncertain() -> None:
    cluster = FakeCluster()
    d = CassandraDict({}, executor=cluster)

    async def main() -> None:
        cluster.fail = lambda s, cl: CqlUnavailable("down") if s.op == "insert" else None
        key = f"shared/dictmap/alice/x/{uuid.uuid4().hex}"
        t = d.transaction()
        t.set_if(key, None, OID)
        t.set(f"shared/dictrevmap/{OID}/alice/x", "")  # another partition, plain write
        with pytest.raises(DictTemporaryError) as info:
            await t.commit()
        assert info.value.uncertain
        cluster.fail = lambda s, cl: None
        assert await d.get(key) == OID  # the conditional part stays applied

    run(main())


def test_every_sent_statement_was_checked() -> None:
    # The fake checks each statement as it is sent; make sure that check bites.
    cluster = FakeCluster()
    bad = Stmt(
        "select",
        GENERIC_TABLE,
        select=("v",),
        where=("o", "p", "k"),
        params=("a",),
        cql="SELECT v FROM columba_dict WHERE o = ?",
    )
    with pytest.raises(AssertionError):
        run(cluster.execute(bad, ["x"], "ONE"))


def test_settings_are_validated() -> None:
    with pytest.raises(DictError):
        CassandraDict({})  # no hosts
    with pytest.raises(DictError):
        CassandraDict({"cassandra_hosts": "h", "cassandra_keyspace": "bad-name"})
    with pytest.raises(DictError):
        CassandraDict({"cassandra_hosts": "h", "cassandra_ssl": "maybe"})
    with pytest.raises(DictError):
        CassandraDict({"cassandra_hosts": "h", "cassandra_write_fallback_consistency": "x"})
    d = CassandraDict({"cassandra_hosts": "10.0.0.1 10.0.0.2", "cassandra_port": "9142"})
    assert d._target.hosts == ("10.0.0.1", "10.0.0.2") and d._target.port == 9142


# --------------------------------------------------------------------------- real driver


def test_real_driver_unreachable_cluster_is_temporary_and_loop_keeps_running() -> None:
    pytest.importorskip("cassandra.cluster")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def main() -> None:
        d = CassandraDict(
            {
                "cassandra_hosts": "127.0.0.1",
                "cassandra_port": str(port),
                "cassandra_connect_timeout": "2s",
            }
        )
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            with pytest.raises(DictTemporaryError) as info:
                await d.get("shared/x")
            assert not info.value.uncertain
            assert ticks > 0  # connecting ran in a thread, not on the loop
        finally:
            task.cancel()
            await d.close()

    run(main())


class _FakeResponseFuture:
    """Pages delivered from another thread, like the driver's I/O thread does."""

    def __init__(self, pages: list[list[tuple[int]]]) -> None:
        self.pages = pages
        self.has_more_pages = len(pages) > 1
        self._ok: Callable[[list[tuple[int]]], None] | None = None

    def add_callbacks(self, ok: Callable[[list[tuple[int]]], None], err: object) -> None:
        self._ok = ok
        self._deliver()

    def _deliver(self) -> None:
        import threading

        page = self.pages.pop(0)
        self.has_more_pages = bool(self.pages)
        assert self._ok is not None
        threading.Thread(target=self._ok, args=(page,)).start()

    def start_fetching_next_page(self) -> None:
        self._deliver()


def test_driver_executor_collects_pages_across_threads() -> None:
    from columba.dict.cassandra import DriverExecutor

    class Session:
        def execute_async(self, query: object) -> _FakeResponseFuture:
            return _FakeResponseFuture([[(1,), (2,)], [(3,)], [(4,)]])

    ex = DriverExecutor(cluster=None, session=Session())
    assert run(ex._run("q")) == [(1,), (2,), (3,), (4,)]
