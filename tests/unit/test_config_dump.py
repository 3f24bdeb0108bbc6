"""`columba config`: dumps of every shared example parse back to the same settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from columba.cli import main
from columba.config import SettingsView, load, load_text
from columba.config.dump import dump, dump_group
from columba.config.loader import Config
from columba.config.tree import snapshot
from tests.conftest import SHARED

EXAMPLES = sorted((SHARED / "examples").glob("*.conf"))
ENV = {"MASTER_PASSWORD": "m4ster", "S3_ACCESS_KEY": "AKIA", "S3_SECRET": "s3cret"}


def picture(config: Config) -> tuple[object, ...]:
    """Every declared setting's effective value at the top, and every filter block."""
    view = SettingsView(config.schema, config.root)
    values = tuple((name, repr(view.get(name))) for name in sorted(config.schema.settings))
    return values, tuple(snapshot(child) for child in config.root.children)


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "single-node.conf",
        "palomar-backend.conf",
        "palomar-proxy.conf",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("all_settings", [False, True], ids=["n", "a"])
def test_dump_parses_back_to_the_same_settings(path: Path, all_settings: bool) -> None:
    config = load(path, env=ENV)
    text = dump(config, all_settings=all_settings, show_secrets=True)
    again = load_text(text, "dump.conf", env={})
    assert picture(again) == picture(config)
    if not all_settings:
        assert snapshot(again.root) == snapshot(config.root)
    # A second round prints the same settings (only the group comments are gone).
    settings_lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    second = dump(again, all_settings=all_settings, show_secrets=True).splitlines()
    assert second[1:] == settings_lines


def test_backend_dump_expands_groups_and_keeps_filters() -> None:
    text = dump(load(SHARED / "examples" / "palomar-backend.conf", env=ENV))
    assert "# @fs_defaults = s3 (expanded below)" in text
    assert (
        "  fs fscache {\n    path = /var/cache/mails/%{user | sha1 % 4}\n    size = 512M\n  }"
        in text
    )
    assert "protocol lmtp {\n  mail_plugins {\n    sieve = yes\n  }\n}" in text
    assert "metric imap_commands {" in text  # from @metric_defaults = backend
    assert "filter = event=auth_request_finished AND (NOT success=yes)" in text
    # fs stack order is meaning: outermost first.
    order = [text.index(f"  fs {n} {{") for n in ("fscache", "compress", "crypt", "dictmap", "s3")]
    assert order == sorted(order)


def test_secrets_are_hidden_unless_asked() -> None:
    config = load(SHARED / "examples" / "palomar-backend.conf", env=ENV)
    hidden = dump(config)
    assert "m4ster" not in hidden and "s3cret" not in hidden and "AKIA" not in hidden
    assert "fs_s3_secret = # hidden, use -P to show it" in hidden
    shown = dump(config, show_secrets=True)
    assert "password = m4ster" in shown and "fs_s3_secret = s3cret" in shown


def test_dump_group() -> None:
    config = load_text("dovecot_config_version = 2.4.0\n")
    text = dump_group(config, "metric_defaults", "proxy")
    assert "metric proxy_session_established {" in text
    assert "group_by reason {" in text


def test_cli_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(
        "dovecot_config_version = 2.4.0\nprotocol imap {\n  login_greeting = hi imap\n}\n"
        "namespace inbox {\n  separator = .\n}\n"
    )
    assert main(["config", "-c", str(conf), "-h", "namespace/inbox/separator"]) == 0
    assert capsys.readouterr().out == ".\n"
    assert main(["config", "-c", str(conf), "-f", "protocol=imap", "-h", "login_greeting"]) == 0
    assert capsys.readouterr().out == "hi imap\n"
    assert main(["config", "-c", str(conf), "-o", "login_greeting=x", "-h", "login_greeting"]) == 0
    assert capsys.readouterr().out == "x\n"
    assert main(["config", "-c", str(conf), "-d", "@mailbox_defaults/english"]) == 0
    assert "mailbox Trash {" in capsys.readouterr().out
    assert main(["config", "-c", str(conf), "-n"]) == 0
    assert "protocol imap {\n  login_greeting = hi imap\n}" in capsys.readouterr().out


def test_cli_bad_config_is_fatal_with_status_2(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("dovecot_config_version = 2.4.0\nauth_verbose = perhaps\n")
    result = subprocess.run(
        [sys.executable, "-m", "columba.cli", "config", "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"columba: Fatal: {conf}:2: auth_verbose: Invalid boolean value 'perhaps' (use yes or no)\n"
    )
