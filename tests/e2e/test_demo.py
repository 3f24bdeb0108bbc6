"""`make run`: the demo is the shared single-node example, and it starts and serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from columba.config import load
from columba.demo import DEMO_PASSWORD, DEMO_USER, SINGLE_NODE_CONF, prepare, single_node_config
from tests.conftest import SHARED


def test_demo_config_is_the_shared_single_node_example() -> None:
    assert (SHARED / "examples" / "single-node.conf").read_text() == SINGLE_NODE_CONF


def test_prepared_config_only_moves_paths_and_ports(tmp_path: Path) -> None:
    text = single_node_config(tmp_path, {"imap": 2143})
    original = SINGLE_NODE_CONF.replace("/var/lib/columba", str(tmp_path)).replace(
        "port = 1143", "port = 2143"
    )
    assert text == original
    conf = prepare(tmp_path / "data")
    config = load(conf)
    assert config.path == str(conf)
    assert (tmp_path / "data" / "users").read_text().startswith(f"{DEMO_USER}:{{SHA512-CRYPT}}")
    assert (tmp_path / "data" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_make_run_starts_a_server_the_demo_user_can_use(tmp_path: Path) -> None:
    if not all(_port_free(p) for p in (1143, 1993, 1024)):
        pytest.skip("the demo's fixed ports 1143/1993/1024 are in use on this machine")
    env = dict(os.environ, COLUMBA_DEMO_DIR=str(tmp_path / "demo"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "columba.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        banner = "".join(proc.stdout.readline() for _ in range(4))
        assert f"user:    {DEMO_USER}   password: {DEMO_PASSWORD}" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", 1143), timeout=1) as sock:
                    greeting = sock.recv(200)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert greeting.startswith(b"* OK")
        import imaplib

        client = imaplib.IMAP4("127.0.0.1", 1143)
        client.login(DEMO_USER, DEMO_PASSWORD)
        typ, boxes = client.list()
        assert typ == "OK"
        assert any(b"INBOX" in line for line in boxes if isinstance(line, bytes))
        client.logout()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
