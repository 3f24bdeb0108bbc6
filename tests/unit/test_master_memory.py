"""The master's memory tuning before it forks workers (:func:`columba.master.tune_sqlite`):
SQLite connections opened afterwards no longer allocate a 20-page cache up front, and the
tuning refuses to run while a connection is open. Each case runs in a fresh interpreter (the
setting is process-wide and can only change while SQLite holds nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

PROBE = """
import ctypes, ctypes.util, sqlite3, sys
sys.path.insert(0, {src!r})
from columba.master import tune_sqlite

lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))

def used() -> int:
    cur, high = ctypes.c_int64(), ctypes.c_int64()
    lib.sqlite3_status64(0, ctypes.byref(cur), ctypes.byref(high), 0)  # MEMORY_USED
    return cur.value

setup = sqlite3.connect({db!r})
setup.execute("PRAGMA journal_mode = WAL")
setup.execute("CREATE TABLE IF NOT EXISTS t (a)")
setup.commit()
early = {early}
if not early:
    setup.close()
tuned = tune_sqlite()
if early:
    setup.close()
conns = [sqlite3.connect({db!r}) for _ in range(20)]
for conn in conns:
    conn.execute("PRAGMA data_version").fetchone()
print(tuned, used() // len(conns))
"""


def _probe(tmp_path: Path, *, early: bool) -> tuple[bool, int]:
    code = PROBE.format(src=str(SRC), db=str(tmp_path / "x.db"), early=early)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_tune_sqlite_drops_the_page_cache_bulk(tmp_path: Path) -> None:
    tuned, per_connection = _probe(tmp_path, early=False)
    if not tuned:
        pytest.skip("this Python's sqlite3 does not use the shared libsqlite3")
    untuned, per_connection_before = _probe(tmp_path, early=True)
    assert not untuned  # a connection was open: left alone
    assert per_connection_before > 60_000  # the 20-page bulk (~85 KB)
    assert per_connection < per_connection_before / 2
