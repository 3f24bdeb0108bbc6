"""A private PostgreSQL 15 server for tests (Debian's binaries under /usr/lib/postgresql/15/bin).

`start_pg_server()` runs ``initdb`` (trust auth, superuser ``columba``, UTF-8, C locale) into a
fresh temporary directory and starts ``postgres`` with ``pg_ctl`` on a free 127.0.0.1 port, its
Unix socket inside that directory.  PostgreSQL refuses to run as root, so when the tests run as
root the directory is handed to ``nobody`` and every server command runs through
``runuser -u nobody``.  `PgServer.stop()` stops the server (fast shutdown) and removes the data;
a small reaper process does the same if the test process dies without running it (killed by a
timeout).  The test server runs with ``fsync=off`` (speed; durability is not what it tests).

`shared_pg_server()` is the one server of this test process (started on first use, stopped at
exit); the session fixture `pg_server` returns it, and `fresh_database()` creates an empty
database per test.  Everything skips with a clear reason when the binaries are absent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
SUPERUSER = "columba"
RUN_AS = "nobody"

# Runs beside the test process and stops the server once the test process is gone, however it
# ended (atexit doesn't run when pytest is killed, e.g. by `timeout`): it blocks reading its
# stdin, a pipe only the test process holds, and reaches EOF when that process dies.
_REAPER = """
import shutil, subprocess, sys
pg_ctl, datadir, root, as_user = sys.argv[1:5]
sys.stdin.buffer.read()
cmd = [pg_ctl, "-D", datadir, "-m", "immediate", "-w", "stop"]
if as_user:
    cmd = ["runuser", "-u", as_user, "--", *cmd]
subprocess.run(cmd, cwd=root, capture_output=True, timeout=60, check=False)
shutil.rmtree(root, ignore_errors=True)
"""


def pg_bin_dir() -> Path | None:
    """The directory holding initdb/pg_ctl/createdb, or None when PostgreSQL isn't installed."""
    override = os.environ.get("COLUMBA_PG_BIN")
    for candidate in ((override,) if override else ()) + PG_BIN_DIRS:
        path = Path(candidate)
        if all((path / name).is_file() for name in ("initdb", "pg_ctl", "createdb", "postgres")):
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    root: Path  # temp dir: data/ and the socket
    port: int
    as_user: str | None  # runuser target when we are root
    reaper: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def _cmd(self, args: list[str]) -> list[str]:
        if self.as_user is None:
            return args
        return ["runuser", "-u", self.as_user, "--", *args]

    def run(self, args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def createdb(self, name: str) -> str:
        """Create database `name`; return its ``pgsql_url``."""
        done = subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "-T",
                "template0",
                name,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {done.stderr.strip()}")
        return self.url(name)

    def start_reaper(self) -> None:
        self.reaper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _REAPER,
                str(self.bindir / "pg_ctl"),
                str(self.datadir),
                str(self.root),
                self.as_user or "",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a signal sent to the test's process group
        )

    def stop(self) -> None:
        if self.datadir.exists():
            self.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"]
            )
        shutil.rmtree(self.root, ignore_errors=True)
        if self.reaper is not None:
            assert self.reaper.stdin is not None
            self.reaper.stdin.close()  # the server is gone: the reaper just exits
            self.reaper.wait(timeout=60)
            self.reaper = None


def start_pg_server() -> PgServer:
    bindir = pg_bin_dir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL 15 binaries not found in /usr/lib/postgresql/15/bin")
    as_user = RUN_AS if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="columba-pg-"))
    if as_user is not None:
        import pwd

        entry = pwd.getpwnam(as_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        # The parent (/tmp) must be traversable; mkdtemp made root 0700, owned by nobody now.
    server = PgServer(bindir, root, 0, as_user)
    init = server.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(server.datadir),
            "--auth=trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
    last_error = ""
    for _ in range(5):
        server.port = _free_port()
        options = (
            f"-k {root} -p {server.port} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c fsync=off -c full_page_writes=off"
        )
        started = server.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(server.datadir),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )
        if started.returncode == 0:
            server.start_reaper()
            return server
        log = root / "server.log"
        last_error = (log.read_text(errors="replace") if log.exists() else "") + started.stderr
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"postgres did not start: {last_error.strip()[-2000:]}")


_SHARED: PgServer | None = None


def shared_pg_server() -> PgServer:
    """The test process's server; skips the calling test when PostgreSQL isn't installed."""
    global _SHARED
    if _SHARED is None:
        if pg_bin_dir() is None:
            pytest.skip("PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin) are not installed")
        _SHARED = start_pg_server()
        atexit.register(_SHARED.stop)
    return _SHARED


def fresh_database(prefix: str = "t") -> str:
    """A new empty database on the shared server; its ``pgsql_url``."""
    return shared_pg_server().createdb(f"{prefix}_{uuid.uuid4().hex[:16]}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    yield shared_pg_server()
