"""A real Columba server for IMAP end-to-end tests.

:class:`ImapServer` writes the single-node example configuration into a directory (free
loopback ports, two workers, a log file), adds test users to its passwd-file, starts
``python -m columba.cli serve -c CONF`` as a subprocess, waits for ``base_dir/listeners.json``
and for the IMAP port to greet, and stops the process (SIGTERM, then SIGKILL) when done.
The pytest fixture is ``imap_server`` (one server per test module).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from columba.demo import prepare

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
CORPUS = REPO.parent / "shared" / "data" / "imaptest-200.mbox"

USERS = {
    "alice@example.com": "alice-secret",
    "bob@example.com": "bob-secret",
    "carol@example.com": "carol-secret",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_tls_context() -> ssl.SSLContext:
    """TLS for tests: the server's certificate is self-signed, so no verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImapServer:
    def __init__(self, data_dir: Path, *, workers: int = 2, extra_config: str = "") -> None:
        self.data_dir = data_dir
        self.ports = {"imap": free_port(), "imaps": free_port(), "lmtp": free_port()}
        self.workers = workers
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = data_dir / "columba.log"
        self.conf = data_dir / "columba.conf"

    @property
    def port(self) -> int:
        return self.ports["imap"]

    @property
    def ssl_port(self) -> int:
        return self.ports["imaps"]

    def write_config(self) -> Path:
        conf = prepare(self.data_dir, self.ports)
        users = "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in USERS.items())
        (self.data_dir / "users").write_text(users)
        text = conf.read_text()
        text += (
            f"\ncolumba_workers = {self.workers}\n"
            f"log_path = {self.log_file}\n"
            "auth_failure_delay = 0\n" + self.extra_config
        )
        conf.write_text(text)
        return conf

    def start(self, timeout: float = 20.0) -> None:
        self.write_config()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "columba.cli", "serve", "-c", str(self.conf)],
            cwd=str(self.data_dir),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir / "stderr.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        state = self.data_dir / "run" / "listeners.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.stderr()}")
            if state.exists() and self._greets():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start: {self.stderr()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                ok = s.recv(1000).startswith(b"* OK")
                s.sendall(b"x LOGOUT\r\n")
                s.recv(1000)
                return ok
        except OSError:
            return False

    def stderr(self) -> str:
        path = self.data_dir / "stderr.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    # -- clients ------------------------------------------------------------------------------

    def imaplib(self, user: str | None = None) -> imaplib.IMAP4:
        """A plain imaplib connection, logged in as *user* when given."""
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=15)
        if user is not None:
            conn.login(user, USERS[user])
        return conn


class RawClient:
    """A minimal IMAP client on a socket that returns responses byte for byte.

    :meth:`command` sends one command (its literals as LITERAL+ unless ``sync=True``) and
    returns the response lines up to the tagged one, each with its literals inlined.
    """

    def __init__(self, port: int, *, tls: bool = False, timeout: float = 15.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            sock = client_tls_context().wrap_socket(sock)
        self.sock = sock
        self.file = sock.makefile("rb")
        self.greeting = self.read_line()
        self._tag = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """One response line with its literals inlined (CRLF kept)."""
        line = self.file.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        out = bytearray(line)
        while out.endswith(b"}\r\n"):
            start = out.rfind(b"{")
            size = int(out[start + 1 : -3])
            out += self.file.read(size)
            more = self.file.readline()
            out += more
        return bytes(out)

    def next_tag(self) -> str:
        self._tag += 1
        return f"t{self._tag}"

    def command(self, text: str | bytes, *literals: bytes, sync: bool = False) -> list[bytes]:
        """Send ``TAG text`` with ``{}`` in *text* replaced by each literal; the response
        lines (the tagged one last)."""
        tag = self.next_tag()
        body = text.encode() if isinstance(text, str) else text
        pieces = body.split(b"{}")
        if len(pieces) != len(literals) + 1:
            raise ValueError("one {} per literal")
        lines: list[bytes] = []
        out = bytearray(tag.encode() + b" " + pieces[0])
        for lit, rest in zip(literals, pieces[1:], strict=True):
            if sync:
                self.send(bytes(out) + b"{%d}\r\n" % len(lit))
                out.clear()
                while True:
                    line = self.read_line()
                    if line.startswith(b"+"):
                        break
                    lines.append(line)
                    if line.startswith(tag.encode() + b" "):
                        return lines
            else:
                out += b"{%d+}\r\n" % len(lit)
            out += lit + rest
        self.send(bytes(out) + b"\r\n")
        return lines + self.read_until(tag)

    def read_until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            line = self.read_line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    def login(self, user: str) -> list[bytes]:
        return self.command(f"LOGIN {user} {USERS[user]}")


def tagged_status(lines: list[bytes]) -> bytes:
    """The tagged line without its tag: ``OK ...``."""
    return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n")


def read_corpus(limit: int | None = None) -> list[bytes]:
    """Messages of the shared mbox corpus as CRLF bytes."""
    import mailbox

    box = mailbox.mbox(str(CORPUS), create=False)
    out: list[bytes] = []
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            out.append(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
            if limit is not None and len(out) >= limit:
                break
    finally:
        box.close()
    return out


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    server = ImapServer(tmp_path_factory.mktemp("columba"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
