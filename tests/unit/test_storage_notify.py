"""Cross-process change notification never misses a commit made before its first poll, and a
watched file is asked only when its WAL index changed (or the full poll interval passed)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from columba.storage import notify
from columba.storage.notify import ChangeNotifier


def _commit(path: Path, value: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.close()


def _make_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.commit()
    conn.close()


def test_commit_between_watch_and_first_poll_wakes_the_waiter(tmp_path: Path) -> None:
    other, path = tmp_path / "other.db", tmp_path / "index.db"
    _make_db(other)
    _make_db(path)

    async def scenario() -> bool:
        notifier = ChangeNotifier(interval=0.5)
        busy = notifier.watch(other)  # the poll thread is already running and asleep
        await asyncio.sleep(0.1)
        watch = notifier.watch(path)
        try:
            generation = watch.generation
            # Another process commits before the poll thread has looked at the file once.
            _commit(path, 1)
            return await watch.wait(generation, 1.5)
        finally:
            watch.close()
            busy.close()

    assert asyncio.run(scenario()) is True


def test_later_commits_wake_waiters_and_quiet_files_do_not(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    _make_db(path)

    async def scenario() -> tuple[bool, bool]:
        notifier = ChangeNotifier(interval=0.05)
        watch = notifier.watch(path)
        try:
            await asyncio.sleep(0.3)  # past the first poll and its one wake-up
            quiet = await watch.wait(watch.generation, 0.3)
            generation = watch.generation
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, _commit, path, 2)
            woken = await watch.wait(generation, 2.0)
            return quiet, woken
        finally:
            watch.close()

    assert asyncio.run(scenario()) == (False, True)


class _CountingCursor:
    """Stands in for the poll connection's cursor: counts the questions asked."""

    connection = None

    def __init__(self) -> None:
        self.asked = 0

    def execute(self, sql: str) -> _CountingCursor:
        assert sql == "PRAGMA data_version"
        self.asked += 1
        return self

    def fetchone(self) -> tuple[int]:
        return (7,)


def test_a_file_is_asked_only_when_its_wal_index_changed_or_the_full_interval_passed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "index.db"
    _make_db(path)
    holder = sqlite3.connect(path)  # keeps the WAL index in place, as the index connection does
    holder.execute("SELECT 1 FROM t").fetchall()
    notifier = ChangeNotifier()
    entry = notify._Entry(str(path))
    cursor = _CountingCursor()
    conns: dict[str, tuple[notify._Entry, Any]] = {entry.path: (entry, cursor)}
    try:
        notifier._poll(entry, conns, 0.0)  # first look
        assert cursor.asked == 1
        notifier._poll(entry, conns, 0.1)
        notifier._poll(entry, conns, 0.2)
        assert cursor.asked == 1  # nothing written: not asked
        _commit(path, 1)
        notifier._poll(entry, conns, 0.3)
        assert cursor.asked == 2  # the commit rewrote the WAL-index header: asked
        notifier._poll(entry, conns, 0.3 + notify.FULL_POLL_INTERVAL)
        assert cursor.asked == 3  # asked anyway once the full interval passed
    finally:
        holder.close()


def test_a_commit_the_marker_misses_still_wakes_the_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.db"
    _make_db(path)
    monkeypatch.setattr(notify, "_change_marker", lambda _path: b"x" * 48)  # never changes
    monkeypatch.setattr(notify, "FULL_POLL_INTERVAL", 0.5)

    async def scenario() -> bool:
        notifier = ChangeNotifier(interval=0.05)
        watch = notifier.watch(path)
        try:
            await asyncio.sleep(0.3)  # past the first poll and its one wake-up
            generation = watch.generation
            _commit(path, 2)
            return await watch.wait(generation, 3.0)
        finally:
            watch.close()

    assert asyncio.run(scenario()) is True
