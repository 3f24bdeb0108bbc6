"""Smoke test of the benchmark suite: quick LMTP and IMAP-mix workloads against Columba only.

Runs ``bench.__main__.run`` with tiny sizes (a real ``columba serve`` on loopback, a few
seconds of load) and checks that the report has sane fields and that nothing failed. Speed
targets are reported by ``make bench``, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.__main__ import Sizes, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TINY = Sizes(
    mix_users=8,
    mix_messages=10,
    mix_clients=(4,),
    mix_seconds=2.0,
    lmtp_users=5,
    lmtp_runs=((1, 1), (2, 2)),
    lmtp_seconds=1.5,
    processes=2,
)


def test_quick_imap_and_lmtp_against_columba(tmp_path: Path) -> None:
    data = run(quick=True, only={"imap", "lmtp"}, peers=["columba"], out_dir=tmp_path, sizes=TINY)
    results = data["results"]["columba"]
    mix = results["imap_c4"]
    assert mix["errors"] == 0, mix["error_samples"]
    assert mix["commands_per_sec"] > 0
    for op in ("LOGIN", "SELECT", "FETCH_BODY", "APPEND", "EXPUNGE", "LOGOUT"):
        stats = mix["ops"][op]
        assert stats["count"] > 0
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    assert 0 <= mix["loadgen_cpu_share"] <= 1
    for key in ("lmtp_c1_r1", "lmtp_c2_r2"):
        lmtp = results[key]
        assert lmtp["errors"] == 0, lmtp["error_samples"]
        assert lmtp["messages"] > 0
        assert lmtp["deliveries_per_sec"] >= lmtp["messages_per_sec"] > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["columba"]["imap_c4"]["errors"] == 0
    rows = {(r["workload"], r["metric"]) for r in saved["summary"]}
    assert ("IMAP mix, 4 clients", "commands/s") in rows
    assert ("LMTP, 2 conn, 2 rcpt", "messages/s") in rows
    markdown = (tmp_path / "results.md").read_text()
    assert "Columba ÷ Dovecot" in markdown
