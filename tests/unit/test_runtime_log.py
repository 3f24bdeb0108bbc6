"""Events reach log_path and the exporters of metrics, without secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from columba.config import SettingsView, load_text
from columba.events.model import Event, emit
from columba.events.runtime_log import LoggingConfigError, configure_logging, log_line


def view(text: str) -> SettingsView:
    config = load_text("dovecot_config_version = 2.4.0\n" + text, env={"PW": "hunter2-secret"})
    return SettingsView(config.schema, config.root)


def test_events_go_to_log_path_and_metric_exporters(tmp_path: Path) -> None:
    log = tmp_path / "columba.log"
    exported = tmp_path / "events.jsonl"
    configure_logging(
        view(
            f"log_path = {log}\nlog_format = json\n"
            "doveadm_password = $ENV:PW\n"
            f"event_exporter ex {{\n  driver = file\n  file_path = {exported}\n  format = json\n}}\n"
            "metric auth_failures {\n  exporter = ex\n"
            "  filter = event=auth_request_finished AND NOT success=yes\n}\n"
        )
    )
    log_line("auth_request_finished", success="no", user="alice", note="pw hunter2-secret")
    log_line("auth_request_finished", success="yes", user="bob")
    emit(Event("imap_command_finished", {"cmd_name": "LIST"}, end_time=1.0))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["event"] for line in lines] == [
        "auth_request_finished",
        "auth_request_finished",
        "imap_command_finished",
    ]
    assert "hunter2-secret" not in log.read_text()
    exported_lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["fields"]["user"] for line in exported_lines] == ["alice"]
    configure_logging(view(f"log_path = {tmp_path / 'other.log'}\n"))
    log_line("after_reconfigure")
    assert "after_reconfigure" not in log.read_text()
    assert "after_reconfigure" in (tmp_path / "other.log").read_text()


def test_undefined_exporter_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(LoggingConfigError, match="metric m: exporter nope is not defined"):
        configure_logging(
            view(
                f"log_path = {tmp_path}/l\nmetric m {{\n  exporter = nope\n  filter = event=x\n}}\n"
            )
        )
