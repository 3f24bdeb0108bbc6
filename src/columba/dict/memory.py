"""In-process dict driver for tests and single-process use.

Settings: ``memory_name`` (optional): instances created with the same name in one process share
their data, so a test can "reopen" a dict.  Without it every instance is private.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Mapping

from columba.dict.api import (
    Dict,
    DictConflict,
    DictError,
    DictOp,
    DictTransaction,
    filter_iteration,
    prefix_upper_bound,
    register_dict,
)

__all__ = ["MemoryDict"]


class _Store:
    """Rows of one owner (``""`` for shared/ keys): a dict plus a sorted key list."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.keys: list[str] = []

    def put(self, key: str, value: str) -> None:
        if key not in self.values:
            bisect.insort(self.keys, key)
        self.values[key] = value

    def remove(self, key: str) -> None:
        if self.values.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]


_NAMED: dict[str, dict[str, _Store]] = {}


@register_dict("memory")
class MemoryDict(Dict):
    def __init__(self, settings: Mapping[str, str], username: str | None = None) -> None:
        super().__init__(settings, username)
        name = self.settings.get("memory_name", "")
        if name:
            self._stores = _NAMED.setdefault(name, {})
        else:
            self._stores = {}
        self._closed = False

    def _store(self, key: str) -> _Store:
        if self._closed:
            raise DictError("dict is closed")
        owner = self.owner_of(key)
        store = self._stores.get(owner)
        if store is None:
            store = self._stores[owner] = _Store()
        return store

    async def get(self, key: str) -> str | None:
        self.check_key(key)
        await asyncio.sleep(0)
        return self._store(key).values.get(key)

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
        await asyncio.sleep(0)
        store = self._store(prefix)
        lo = prefix if after is None or after < prefix else after
        start = bisect.bisect_left(store.keys, lo)
        if after is not None and start < len(store.keys) and store.keys[start] == after:
            start += 1
        upper = prefix_upper_bound(prefix)
        out: list[tuple[str, str]] = []
        if limit is not None and limit <= 0:
            return out
        for key in store.keys[start:]:
            if upper is not None and key >= upper:
                break
            match = filter_iteration([(key, "")], prefix, recurse=recurse, exact_depth=exact_depth)
            if match:
                out.append((key, store.values[key]))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def transaction(self) -> DictTransaction:
        return _MemoryTransaction(self)

    def apply(self, ops: list[DictOp]) -> None:
        """Apply atomically: compute every new value first, then write them all."""
        staged: dict[tuple[str, str], str | None] = {}

        def current(key: str) -> str | None:
            owner = self.owner_of(key)
            if (owner, key) in staged:
                return staged[owner, key]
            return self._store(key).values.get(key)

        for op in ops:
            slot = (self.owner_of(op.key), op.key)
            if op.kind == "set":
                staged[slot] = op.value
            elif op.kind == "unset":
                staged[slot] = None
            elif op.kind == "inc":
                old = current(op.key)
                try:
                    base = int(old) if old is not None else 0
                except ValueError:
                    raise DictError(
                        f"atomic_inc {op.key!r}: value {old!r} is not an integer"
                    ) from None
                staged[slot] = str(base + op.diff)
            elif op.kind == "set_if":
                if current(op.key) != op.expected:
                    raise DictConflict(f"set_if {op.key!r}: value is not {op.expected!r}")
                staged[slot] = op.value
            else:  # pragma: no cover - DictTransaction only creates the kinds above
                raise DictError(f"unknown op {op.kind!r}")
        for (_owner, key), value in staged.items():
            store = self._store(key)
            if value is None:
                store.remove(key)
            else:
                store.put(key, value)

    async def close(self) -> None:
        self._closed = True


class _MemoryTransaction(DictTransaction):
    _owner: MemoryDict

    async def _commit(self, ops: list[DictOp]) -> None:
        await asyncio.sleep(0)
        self._owner.apply(ops)
