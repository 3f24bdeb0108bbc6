"""Cross-process change notification never misses a commit made before its first poll."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

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
