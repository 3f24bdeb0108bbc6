"""CQL of the cassandra dict driver, as data: the DDL, the dict-key → table maps, and the
statements each dict operation sends.

The eight public tables are Dovecot Pro's object-ID dictmap layout, verbatim (reference
§1.6.4, ``dictmap_cassandra_objectid.rst``), so a keyspace created for a Dovecot Pro cluster can
be reused.  Keys that no public map covers go to one generic table::

    columba_dict (o text, p text, k text, v text, primary key ((o, p), k))
        o = owner ("" for shared/ keys, the username for priv/ keys)
        p = partition: the key up to and including its `PARTITION_DEPTH`-th "/" (or its last
            "/" when it has fewer), e.g. "shared/dictmap/alice/", "shared/dictrevmap/<oid>/"
        k = the whole key (clustering column: text compares as UTF-8 bytes = code point order)
        v = the value

Statements are `Stmt` values: the CQL text plus a structured description (operation, table,
WHERE columns, SET column, IF condition) that the driver binds and that the offline tests check
against the DDL and interpret with an in-memory model.  `Stmt.cql` is rendered from the
structure, so the two cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = [
    "GENERIC_DDL",
    "GENERIC_TABLE",
    "KEYSPACE_DDL",
    "MAPS",
    "PARTITION_DEPTH",
    "PUBLIC_DDL",
    "TABLES",
    "KeyMap",
    "Stmt",
    "Table",
    "cas_delete",
    "cas_set",
    "delete",
    "distinct_partitions",
    "parse_create_table",
    "scan",
    "select_one",
    "select_range",
    "upsert",
]

KEYSPACE_DDL = (
    "create keyspace if not exists {keyspace} with replication = "
    "{{'class':'SimpleStrategy','replication_factor':{rf}}}"
)

# Verbatim from the reference (dictmap_cassandra_objectid.rst).
PUBLIC_DDL: tuple[str, ...] = (
    "create table if not exists user_index_objects (u text,n text,i blob,primary key (u, n));",
    "create table if not exists user_mailbox_index_objects (u text,g blob,n text,i blob,primary key ((u, g), n));",  # noqa: E501
    "create table if not exists user_mailbox_objects (u text,g blob,b int,n blob,i blob,primary key ((u, g, b), n));",  # noqa: E501
    "create table if not exists user_mailbox_buckets (u text,g blob,b int,primary key ((u, g)));",
    "create table if not exists user_fts_objects (u text,n text,i blob,primary key (u, n));",
    "create table if not exists user_index_diff_objects (u text,h text,m text,primary key (u, h));",
    "create table if not exists user_mailbox_index_diff_objects (u text,g blob,h text,m text,primary key (u, g, h));",  # noqa: E501
    "create table if not exists user_mailbox_objects_reverse (u text,g blob,n blob,i blob,primary key (i, n));",  # noqa: E501
)

GENERIC_TABLE = "columba_dict"
GENERIC_DDL = (
    f"create table if not exists {GENERIC_TABLE} (o text,p text,k text,v text,"
    "primary key ((o, p), k)) with clustering order by (k asc);"
)

PARTITION_DEPTH = 3
"""Slashes of a key that make its generic-table partition (see the module docstring)."""


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, str]  # column -> CQL type, in declaration order
    partition: tuple[str, ...]
    clustering: tuple[str, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.partition + self.clustering


_CREATE_RE = re.compile(
    r"^create table if not exists (?P<name>[a-z_][a-z0-9_]*) \((?P<body>.*?)\)"
    r"(?: with clustering order by \((?P<order>[^)]*)\))?;$",
    re.IGNORECASE | re.DOTALL,
)
_PK_RE = re.compile(r",\s*primary key \((?P<pk>.*)\)$", re.IGNORECASE | re.DOTALL)
_COL_RE = re.compile(r"^(?P<col>[a-z_][a-z0-9_]*) (?P<type>text|blob|int|bigint)$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def parse_create_table(ddl: str) -> Table:
    """Structure of a ``create table if not exists`` statement (the subset the schema uses).

    Raises ValueError on anything it does not understand, so the DDL is checked, not assumed.
    """
    m = _CREATE_RE.match(ddl.strip())
    if not m:
        raise ValueError(f"not a create table statement: {ddl!r}")
    body = m.group("body")
    pkm = _PK_RE.search(body)
    if not pkm:
        raise ValueError(f"no primary key: {ddl!r}")
    columns: dict[str, str] = {}
    for part in body[: pkm.start()].split(","):
        cm = _COL_RE.match(part.strip())
        if not cm:
            raise ValueError(f"bad column definition {part!r} in {ddl!r}")
        if cm.group("col") in columns:
            raise ValueError(f"duplicate column {cm.group('col')!r}")
        columns[cm.group("col")] = cm.group("type").lower()
    pk = pkm.group("pk").strip()
    if pk.startswith("("):
        close = pk.index(")")
        partition = tuple(c.strip() for c in pk[1:close].split(","))
        rest = pk[close + 1 :].strip()
        if rest and not rest.startswith(","):
            raise ValueError(f"bad primary key {pk!r}")
        clustering = tuple(c.strip() for c in rest[1:].split(",")) if rest else ()
    else:
        names = tuple(c.strip() for c in pk.split(","))
        partition, clustering = names[:1], names[1:]
    for col in partition + clustering:
        if col not in columns:
            raise ValueError(f"primary key column {col!r} is not declared in {ddl!r}")
    if len(set(partition + clustering)) != len(partition + clustering):
        raise ValueError(f"repeated primary key column in {ddl!r}")
    order = m.group("order")
    if order:
        for item in order.split(","):
            col, _, direction = item.strip().partition(" ")
            if col not in clustering or direction.lower() not in ("asc", "desc"):
                raise ValueError(f"bad clustering order {item!r}")
    return Table(m.group("name"), columns, partition, clustering)


TABLES: dict[str, Table] = {
    t.name: t for t in (parse_create_table(d) for d in (*PUBLIC_DDL, GENERIC_DDL))
}


# --------------------------------------------------------------------------- key maps


@dataclass(frozen=True)
class KeyMap:
    """One ``dict_map``: a key pattern, its table, the column of each ``$variable`` and the
    value column.  Variable types: ``text``, ``hexblob`` (canonical lowercase hex ↔ blob),
    ``uint`` (canonical decimal ↔ int).  A variable matches exactly one non-empty path
    component."""

    pattern: str
    table: str
    fields: dict[str, str]  # $variable -> column
    types: dict[str, str]  # $variable -> text | hexblob | uint
    value_column: str
    value_type: str  # hexblob | uint | text

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.pattern.split("/"))


def _m(pattern: str, table: str, value: tuple[str, str], **fields: tuple[str, str]) -> KeyMap:
    return KeyMap(
        pattern,
        table,
        {f"${var}": col for var, (col, _t) in fields.items()},
        {f"${var}": typ for var, (_c, typ) in fields.items()},
        value[0],
        value[1],
    )


# In the reference's order (it matters there; here no two maps overlap, see the tests).
# Not mapped (their rows aren't one value per key; such keys go to the generic table):
# ``shared/dictmap/$user/mailboxes/$mailbox_guid`` (Dovecot's folder listing, read from the
# diff table: one row per host), ``shared/dictrevmap/$user/mailboxes/$mailbox_guid/$object_id``
# (its key columns u, g, i are not the table's primary key) and ``shared/dictrevmap/$object_id``
# (several value columns).
MAPS: tuple[KeyMap, ...] = (
    _m(
        "shared/dictmap/$user/idx/$object_name",
        "user_index_objects",
        ("i", "hexblob"),
        user=("u", "text"),
        object_name=("n", "text"),
    ),
    _m(
        "shared/dictmap/$user/mailboxes/$mailbox_guid/idx/$object_name",
        "user_mailbox_index_objects",
        ("i", "hexblob"),
        user=("u", "text"),
        mailbox_guid=("g", "hexblob"),
        object_name=("n", "text"),
    ),
    _m(
        "shared/dictmap/$user/mailboxes/$mailbox_guid/$bucket/$object_name",
        "user_mailbox_objects",
        ("i", "hexblob"),
        user=("u", "text"),
        mailbox_guid=("g", "hexblob"),
        bucket=("b", "uint"),
        object_name=("n", "hexblob"),
    ),
    _m(
        "shared/dictmap/$user/mailboxes/$mailbox_guid/max_bucket",
        "user_mailbox_buckets",
        ("b", "uint"),
        user=("u", "text"),
        mailbox_guid=("g", "hexblob"),
    ),
    _m(
        "shared/dictmap/$user/fts/$object_name",
        "user_fts_objects",
        ("i", "hexblob"),
        user=("u", "text"),
        object_name=("n", "text"),
    ),
    _m(
        "shared/dictdiffmap/$user/idx/$host",
        "user_index_diff_objects",
        ("m", "text"),
        user=("u", "text"),
        host=("h", "text"),
    ),
    _m(
        "shared/dictdiffmap/$user/mailboxes/$mailbox_guid/idx/$host",
        "user_mailbox_index_diff_objects",
        ("m", "text"),
        user=("u", "text"),
        mailbox_guid=("g", "hexblob"),
        host=("h", "text"),
    ),
    _m(
        "shared/dictrevmap/$object_id/$object_name",
        "user_mailbox_objects_reverse",
        ("g", "hexblob"),
        object_id=("i", "hexblob"),
        object_name=("n", "hexblob"),
    ),
)

# The generic table viewed as a map (used by the statement builders).
GENERIC_VALUE_COLUMN = "v"


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Stmt:
    """One CQL statement with its structure.  ``params`` names the bound values in order:
    ``where:<col>``, ``lo:<col>``, ``hi:<col>``, ``set:<col>``, ``if:<col>``, ``timestamp``,
    ``limit``, ``values:<col>``."""

    op: str  # select | range | scan | distinct | insert | delete | cas_set | cas_delete
    table: str
    select: tuple[str, ...] = ()
    where: tuple[str, ...] = ()  # equality, in order
    lo: tuple[str, str] | None = None  # (column, ">" | ">=")
    hi: str | None = None  # column < ?
    set_column: str | None = None
    insert_columns: tuple[str, ...] = ()
    condition: str | None = None  # IF <col> = ?   (None: no condition)
    condition_null: bool = False  # IF <col> = null
    timestamp: bool = False
    limit: bool = False
    params: tuple[str, ...] = field(default=())
    cql: str = ""

    @property
    def is_write(self) -> bool:
        return self.op in ("insert", "delete", "cas_set", "cas_delete")

    @property
    def is_conditional(self) -> bool:
        return self.condition is not None


def _where(cols: tuple[str, ...]) -> str:
    return " AND ".join(f"{c} = ?" for c in cols)


def _finish(s: Stmt, cql: str, params: list[str]) -> Stmt:
    return replace(s, cql=cql, params=tuple(params))


def select_one(table: Table, column: str) -> Stmt:
    keys = table.key_columns
    s = Stmt("select", table.name, select=(column,), where=keys)
    return _finish(
        s,
        f"SELECT {column} FROM {table.name} WHERE {_where(keys)}",
        [f"where:{c}" for c in keys],
    )


def select_range(
    table: Table,
    columns: tuple[str, ...],
    where: tuple[str, ...],
    *,
    lo: tuple[str, str] | None = None,
    hi: str | None = None,
    limit: bool = False,
) -> Stmt:
    """Rows of one partition (`where` covers the partition key, then a clustering prefix),
    optionally a range on the next clustering column."""
    s = Stmt("range", table.name, select=columns, where=where, lo=lo, hi=hi, limit=limit)
    parts = [f"SELECT {', '.join(columns)} FROM {table.name} WHERE {_where(where)}"]
    params = [f"where:{c}" for c in where]
    if lo is not None:
        parts.append(f"AND {lo[0]} {lo[1]} ?")
        params.append(f"lo:{lo[0]}")
    if hi is not None:
        parts.append(f"AND {hi} < ?")
        params.append(f"hi:{hi}")
    if limit:
        parts.append("LIMIT ?")
        params.append("limit")
    return _finish(s, " ".join(parts), params)


def scan(table: Table, columns: tuple[str, ...]) -> Stmt:
    """Every row of the table (paged): only for iterations that pin no partition."""
    s = Stmt("scan", table.name, select=columns)
    return _finish(s, f"SELECT {', '.join(columns)} FROM {table.name}", [])


def distinct_partitions(table: Table) -> Stmt:
    s = Stmt("distinct", table.name, select=table.partition)
    return _finish(s, f"SELECT DISTINCT {', '.join(table.partition)} FROM {table.name}", [])


def upsert(table: Table, value_column: str, *, timestamp: bool = True) -> Stmt:
    cols = (*table.key_columns, value_column)
    s = Stmt("insert", table.name, insert_columns=cols, timestamp=timestamp)
    cql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    params = [f"values:{c}" for c in cols]
    if timestamp:
        cql += " USING TIMESTAMP ?"
        params.append("timestamp")
    return _finish(s, cql, params)


def delete(table: Table, *, timestamp: bool = True) -> Stmt:
    keys = table.key_columns
    s = Stmt("delete", table.name, where=keys, timestamp=timestamp)
    using = " USING TIMESTAMP ?" if timestamp else ""
    params = (["timestamp"] if timestamp else []) + [f"where:{c}" for c in keys]
    return _finish(s, f"DELETE FROM {table.name}{using} WHERE {_where(keys)}", params)


def _condition(column: str, null: bool) -> tuple[str, list[str]]:
    if null:
        return f" IF {column} = null", []
    return f" IF {column} = ?", [f"if:{column}"]


def cas_set(table: Table, value_column: str, *, expect_null: bool) -> Stmt:
    """``UPDATE ... SET v = ? ... IF v = ?`` (or ``IF v = null``: the key must be missing)."""
    keys = table.key_columns
    s = Stmt(
        "cas_set",
        table.name,
        where=keys,
        set_column=value_column,
        condition=value_column,
        condition_null=expect_null,
    )
    cond, cond_params = _condition(value_column, expect_null)
    cql = f"UPDATE {table.name} SET {value_column} = ? WHERE {_where(keys)}{cond}"
    return _finish(s, cql, [f"set:{value_column}", *(f"where:{c}" for c in keys), *cond_params])


def cas_delete(table: Table, value_column: str, *, expect_null: bool) -> Stmt:
    """``DELETE ... IF v = ?`` (or ``IF v = null``: a pure "still missing" check)."""
    keys = table.key_columns
    s = Stmt(
        "cas_delete",
        table.name,
        where=keys,
        condition=value_column,
        condition_null=expect_null,
    )
    cond, cond_params = _condition(value_column, expect_null)
    cql = f"DELETE FROM {table.name} WHERE {_where(keys)}{cond}"
    return _finish(s, cql, [*(f"where:{c}" for c in keys), *cond_params])
