"""Cross-process change notification never misses a commit made before its first poll, and a
watched file is asked only when its WAL index changed (or the full poll interval passed)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

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


_DMS_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)  # SQLite's WAL-index DMS byte
    print("free")
except OSError:
    print("held")
"""


def _dms_lock(shm: Path) -> str:
    """Does another process see this process's shared lock on the WAL index?"""
    out = subprocess.run(
        [sys.executable, "-c", _DMS_PROBE, str(shm)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_polling_keeps_this_process_sqlite_locks(tmp_path: Path) -> None:
    """Opening and closing an SQLite file outside SQLite drops every POSIX lock the process
    holds on it; another process then resets the WAL index under the live mapping (SIGBUS,
    seen in the bench when the notifier peeked at ``-shm``). Polling must not do that."""
    path = tmp_path / "index.db"
    _make_db(path)
    holder = sqlite3.connect(path)  # maps the WAL index and holds its shared lock
    holder.execute("SELECT 1 FROM t").fetchall()
    shm = Path(f"{path}-shm")
    notifier = ChangeNotifier()
    entry = notify._Entry(str(path))
    conns: dict[str, tuple[notify._Entry, Any]] = {}
    try:
        assert _dms_lock(shm) == "held"
        for step in range(3):
            _commit(path, step)
            notifier._poll(entry, conns, float(step))
        for _entry, cursor in conns.values():
            cursor.connection.close()
        assert _dms_lock(shm) == "held"
        os.close(os.open(shm, os.O_RDONLY))  # what a peek at the file does
        assert _dms_lock(shm) == "free"  # the hazard is real: the check above can fail
    finally:
        holder.close()
