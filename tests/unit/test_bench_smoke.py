"""Smoke test of the benchmark suite: quick LMTP, IMAP-mix and FETCH workloads against Columba
only.

Runs ``bench.__main__.run`` with tiny sizes (a real ``columba serve`` on loopback, a few
seconds of load) and checks that the report has sane fields and that nothing failed. Speed
targets are reported by ``make bench``, never asserted here. The S3 + PostgreSQL comparison
table is checked on made-up results (starting SeaweedFS and PostgreSQL is left to the
acceptance test, tests/e2e/test_s3_pg_stack.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import report
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
    fetch_messages=120,
    fetch_clients=2,
    fetch_chunk=25,
    fetch_seconds=1.0,
    processes=2,
)


def test_quick_imap_lmtp_and_fetch_against_columba(tmp_path: Path) -> None:
    data = run(
        quick=True,
        only={"imap", "lmtp", "fetch"},
        peers=["columba"],
        out_dir=tmp_path,
        sizes=TINY,
    )
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
    fetch = results["fetch"]
    assert fetch["errors"] == 0, fetch["error_samples"]
    assert fetch["messages"] == 120
    for phase in ("body", "header", "body_pass"):
        stats = fetch["phases"][phase]
        assert stats["messages"] > 0 and stats["bytes"] > 0
        assert stats["messages_per_sec"] > 0 and stats["mb_per_sec"] > 0
    assert fetch["phases"]["body_pass"]["messages"] == 120  # exactly one pass
    assert fetch["phases"]["header"]["bytes"] < fetch["phases"]["body"]["bytes"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["columba"]["imap_c4"]["errors"] == 0
    rows = {(r["workload"], r["metric"]) for r in saved["summary"]}
    assert ("IMAP mix, 4 clients", "commands/s") in rows
    assert ("LMTP, 2 conn, 2 rcpt", "messages/s") in rows
    markdown = (tmp_path / "results.md").read_text()
    assert "Columba ÷ Dovecot" in markdown


def test_storage_comparison_table() -> None:
    def fetch(rate: float) -> dict[str, object]:
        phase = {"messages_per_sec": rate, "mb_per_sec": rate / 100, "chunk_p50_ms": 10.0}
        return {
            "messages": 2000,
            "clients": 4,
            "chunk": 100,
            "phases": {"body": {**phase, "errors": 0}, "header": {**phase, "errors": 0}},
        }

    data = {
        "meta": {
            "mode": "quick",
            "started": "now",
            "duration_s": 1.0,
            "machine": {"cpus": 2, "server_cpus": [0, 1], "python": "3", "load_processes": 2},
            "note": "test",
            "peers": {},
        },
        "results": {
            "columba": {"lmtp_c1_r1": {"messages_per_sec": 40.0, "errors": 0}, "fetch": fetch(400)},
            "columba-s3pg": {
                "lmtp_c1_r1": {"messages_per_sec": 10.0, "errors": 0, "backend_cpu_share": 0.2},
                "fetch": fetch(100),
            },
        },
    }
    data["summary"] = report.summarize(data)
    rows = {(r["workload"], r["metric"]): r for r in report.storage_summary(data)}
    assert rows[("LMTP, 1 conn, 1 rcpt", "messages/s")]["ratio"] == 0.25
    body = "FETCH bodies (BODY.PEEK[]), 2000 msgs, 4 clients"
    assert rows[(body, "MB/s")]["ratio"] == 0.25
    assert rows[(body, "errors")]["ratio"] is None
    text = report.markdown(data)
    assert report.STORAGE_TITLE in text and "ratio = s3pg ÷ posix" in text
    assert "– + 20% backend" in text
