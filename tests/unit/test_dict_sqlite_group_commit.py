"""The SQLite dict groups concurrent commits: one file, one connection per process, and each
transaction still atomic on its own (a failing member rolls back only itself)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from columba.dict.api import Dict, DictConflict, DictError, create_dict
from columba.dict.sqlite import SqliteDict


def _dict(path: Path, user: str) -> Dict:
    return create_dict("sqlite", {"sqlite_path": str(path)}, username=user)


def test_concurrent_commits_share_groups_and_fail_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dict.db"
    groups: list[int] = []
    from columba.dict import sqlite as driver

    original = driver._SqliteFile._apply_group

    def counting(self: Any, group: list[Any]) -> list[BaseException | None]:
        groups.append(len(group))
        return original(self, group)

    monkeypatch.setattr(driver._SqliteFile, "_apply_group", counting)

    async def scenario() -> None:
        dicts = [_dict(path, f"user{i}") for i in range(20)]
        async with dicts[0].transaction() as tx:
            tx.set("shared/counter", "nan")

        async def member(i: int) -> str:
            tx = dicts[i].transaction()
            tx.set(f"priv/k{i}", str(i))
            if i == 7:
                tx.set_if("shared/missing", "x", "y")  # conflict: only this one is undone
            if i == 11:
                tx.atomic_inc("shared/counter", 1)  # not an integer: only this one fails
            try:
                await tx.commit()
            except DictConflict:
                return "conflict"
            except DictError:
                return "error"
            return "ok"

        outcomes = await asyncio.gather(*(member(i) for i in range(20)))
        assert outcomes[7] == "conflict"
        assert outcomes[11] == "error"
        assert outcomes.count("ok") == 18
        for i, d in enumerate(dicts):
            expected = None if i in (7, 11) else str(i)
            assert await d.get(f"priv/k{i}") == expected
        assert await dicts[0].get("shared/counter") == "nan"
        shared = {id(d._file) for d in dicts if isinstance(d, SqliteDict)}
        assert len(shared) == 1  # one connection for the file
        for d in dicts:
            await d.close()

    asyncio.run(scenario())
    assert sum(groups) == 21
    assert len(groups) < 21  # concurrent commits were grouped
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT count(*) FROM columba_dict").fetchone()[0]
    assert rows == 19  # 18 members and the counter


def test_the_file_closes_with_its_last_dict_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "dict.db"

    async def scenario() -> None:
        first, second = _dict(path, "a"), _dict(path, "b")
        async with first.transaction() as tx:
            tx.set("priv/x", "1")
        assert await second.get("priv/x") is None  # another user's row
        await first.close()
        async with second.transaction() as tx:
            tx.set("priv/x", "2")
        await second.close()
        third = _dict(path, "a")
        assert await third.get("priv/x") == "1"
        await third.close()
        with pytest.raises(DictError):
            await third.get("priv/x")

    asyncio.run(scenario())
