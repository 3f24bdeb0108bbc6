"""`columba serve` / `reload` / `stop` with real configuration files and processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from columba.config import load_text
from columba.config.resolve import SettingsView
from columba.server import listener_specs

PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, base_dir: Path, port: int, extra: str = "") -> None:
    path.write_text(
        "dovecot_config_version = 2.4.0\n"
        "listen = 127.0.0.1\n"
        "protocols = imap\n"
        f"base_dir = {base_dir}\n"
        f"log_path = {base_dir}/columba.log\n"
        "log_format = json\n"
        "columba_workers = 2\n"
        "columba_shutdown_timeout = 2 secs\n"
        "ssl = no\n"
        "doveadm_password = sup3rs3cret\n"
        "service imap-login {\n"
        "  inet_listener imap {\n"
        f"    port = {port}\n"
        "  }\n"
        "}\n" + extra
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "columba.cli", *args], capture_output=True, text=True, timeout=30, check=False
    )


def wait_for(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def listening_ports(base_dir: Path) -> set[int]:
    state = base_dir / "listeners.json"
    if not state.exists():
        return set()
    try:
        data = json.loads(state.read_text())
    except json.JSONDecodeError:
        return set()
    return {int(item["port"]) for item in data.get("listeners", [])}


def can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Path, int, subprocess.Popen[str]]]:
    base_dir = tmp_path / "run"
    conf = tmp_path / "columba.conf"
    port = free_port()
    write_config(conf, base_dir, port)
    proc = subprocess.Popen(
        [PY, "-m", "columba.cli", "serve", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: port in listening_ports(base_dir) and can_connect(port))
        yield conf, base_dir, port, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_bad_config_is_fatal_with_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(
        "dovecot_config_version = 2.4.0\nprotocols = imap\nlisten = 127.0.0.1\nfoo_bar = 1\n"
    )
    result = run_cli("serve", "-c", str(conf))
    assert result.returncode == 2
    assert result.stderr.startswith(f"columba: Fatal: {conf}:4: Unknown setting: foo_bar")


def test_tls_listener_without_certificate_is_fatal(tmp_path: Path) -> None:
    conf = tmp_path / "tls.conf"
    write_config(conf, tmp_path / "run", free_port())
    conf.write_text(
        conf.read_text()
        + "service imap-login {\n  inet_listener imaps {\n    port = 1\n    ssl = yes\n  }\n}\n"
    )
    result = run_cli("serve", "-c", str(conf))
    assert result.returncode == 2
    assert "TLS listeners need ssl = yes and ssl_server_cert_file" in result.stderr


def test_serve_reload_and_stop(served: tuple[Path, Path, int, subprocess.Popen[str]]) -> None:
    conf, base_dir, port, proc = served
    # A good reload moves the listener to a new port.
    new_port = free_port()
    write_config(conf, base_dir, new_port)
    assert run_cli("reload", "-c", str(conf)).returncode == 0
    wait_for(lambda: listening_ports(base_dir) == {new_port})
    wait_for(lambda: can_connect(new_port))
    wait_for(lambda: not can_connect(port))
    # A bad reload is reported and the running configuration stays.
    conf.write_text(conf.read_text() + "mail_plugins {\n")
    assert run_cli("reload", "-c", str(conf.with_name("columba.conf"))).returncode in (0, 2)
    os.kill(proc.pid, signal.SIGHUP)
    log = base_dir / "columba.log"
    wait_for(lambda: log.exists() and "reload failed" in log.read_text())
    assert can_connect(new_port)
    # Stop drains and exits 0, removing the pid file.
    write_config(conf, base_dir, new_port)
    assert run_cli("stop", "-c", str(conf)).returncode == 0
    assert proc.wait(timeout=20) == 0
    assert not (base_dir / "master.pid").exists()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert all("event" in line and "fields" in line for line in lines)
    assert any("worker" in str(line["fields"].get("message", "")) for line in lines)
    assert "sup3rs3cret" not in log.read_text()


def test_reload_and_stop_without_a_server(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    write_config(conf, tmp_path / "nothing-here", free_port())
    result = run_cli("reload", "-c", str(conf))
    assert result.returncode == 69
    assert result.stderr.startswith("columba: Fatal:")


def test_listener_specs_follow_protocols_and_dovecot_defaults() -> None:
    config = load_text(
        "dovecot_config_version = 2.4.0\nprotocols = imap lmtp pop3\nlisten = 127.0.0.1\n"
        "service imap-login {\n  inet_listener imap {\n    port = 1143\n  }\n"
        "  inet_listener imaps {\n    port = 0\n  }\n}\n"
        "service managesieve-login {\n  inet_listener sieve {\n    port = 4190\n  }\n}\n"
    )
    specs = listener_specs(SettingsView(config.schema, config.root))
    described = {(s.service, s.name, s.port, s.ssl) for s in specs}
    assert ("imap-login", "imap", 1143, False) in described
    assert not any(s.name == "imaps" for s in specs)  # port 0 disables it
    assert ("lmtp", "lmtp", 24, False) in described  # Dovecot's default for a protocol left out
    assert ("pop3-login", "pop3s", 995, True) in described
    assert not any(s.service == "managesieve-login" for s in specs)  # not in protocols
    assert all(s.address == "127.0.0.1" for s in specs)
