"""Start a real ``columba serve`` on free loopback ports for transcript and end-to-end tests.

The configuration is the demo's single-node example (``columba.demo.prepare``) plus a log
file, no failed-login delay, two workers (so IDLE crosses processes) and a 1 MiB
``mail_save_max_size`` (APPENDLIMIT), METADATA (``imap_metadata``) and URLAUTH
(``imap_urlauth_host``, the host the scripts' URLs name). Extra accounts are appended to the
passwd-file before the server starts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "APPEND_LIMIT",
    "URLAUTH_HOST",
    "ColumbaServer",
    "columba_server",
    "free_port",
    "hash_password",
]

APPEND_LIMIT = 1 << 20
URLAUTH_HOST = "localhost"
EXTRA_SETTINGS = f"""
log_path = {{data_dir}}/columba.log
auth_failure_delay = 0
columba_workers = 2
mail_save_max_size = {APPEND_LIMIT}
mail_utf8_extensions = yes
imap4rev2_enable = yes
imap_metadata = yes
imap_urlauth_host = {URLAUTH_HOST}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hash_password(password: str) -> str:
    """``{SHA512-CRYPT}...`` for the passwd-file (in-process, or through ``columba pw``)."""
    try:
        from columba.auth import schemes

        hashed: str = schemes.generate("SHA512-CRYPT", password)
        return hashed
    except (ImportError, AttributeError):
        out = subprocess.run(
            [sys.executable, "-m", "columba.cli", "pw", "-s", "SHA512-CRYPT", "-p", password],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return out.stdout.strip()


@dataclass
class ColumbaServer:
    """A running Columba."""

    host: str
    ports: dict[str, int]
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def imap_port(self) -> int:
        return self.ports["imap"]

    def log_tail(self, lines: int = 40) -> str:
        log = self.data_dir / "columba.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _listening(base_dir: Path) -> set[int]:
    state = base_dir / "listeners.json"
    try:
        data = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        return set()
    return {int(item["port"]) for item in data.get("listeners", [])}


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(3)
            return sock.recv(5) == b"* OK "
    except OSError:
        return False


@contextmanager
def columba_server(data_dir: Path, accounts: Mapping[str, str]) -> Iterator[ColumbaServer]:
    """Run Columba with these extra accounts (user → password) until the block ends."""
    from columba.demo import prepare

    ports = {"imap": free_port(), "imaps": free_port(), "lmtp": free_port()}
    conf = prepare(data_dir, ports=ports)
    with conf.open("a") as out:
        out.write(EXTRA_SETTINGS.format(data_dir=data_dir.resolve()))
    users = data_dir / "users"
    with users.open("a") as out:
        for user, password in accounts.items():
            out.write(f"{user}:{hash_password(password)}::::::\n")
    stderr_path = data_dir / "serve.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "columba.cli", "serve", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        base_dir = data_dir.resolve() / "run"
        while not (set(ports.values()) <= _listening(base_dir) and _greets(ports["imap"])):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"columba serve exited ({proc.returncode}): "
                    + stderr_path.read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                raise RuntimeError("columba serve did not start listening within 30s")
            time.sleep(0.05)
        yield ColumbaServer("127.0.0.1", ports, data_dir, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        else:
            # workers may outlive a dead master
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
