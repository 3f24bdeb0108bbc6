"""End-to-end tests of the master process: real processes listening on 127.0.0.1.

Each test writes a small harness script into tmp_path that registers a line-answering handler
for the ``imap`` service and runs ``run_master`` with settings read from ``settings.json``
(rewritten by the test before a SIGHUP; ``{"error": ...}`` makes the loader raise).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from columba.master import MasterError, read_master_pid, send_reload, send_stop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SRC = Path(__file__).resolve().parents[2] / "src"

HARNESS = r"""
import json
import os
import sys
from pathlib import Path

from columba.master import ListenerSpec, MasterSettings, run_master
from columba.net.services import get_service, register_service

base = Path(sys.argv[1])
if os.environ.get("HARNESS_CRASHING_WORKERS"):  # every worker exits with status 3 at once
    import columba.master

    columba.master._run_worker = lambda *args: 3
assert get_service("imap-login") is None  # the tests rely on imap-login having no handler


@register_service("imap")
async def answer(reader, writer, info):
    while True:
        line = await reader.readline()
        if not line:
            return
        word = line.decode().strip()
        writer.write(
            f"{os.getpid()} {info.listener} {info.service} {info.remote_ip} "
            f"{info.local_port} {info.session_id} {word}\n".encode()
        )
        await writer.drain()


def load():
    cfg = json.loads((base / "settings.json").read_text())
    if "error" in cfg:
        raise ValueError(cfg["error"])
    return MasterSettings(
        listeners=tuple(ListenerSpec(**spec) for spec in cfg["listeners"]),
        workers=cfg["workers"],
        base_dir=base,
        shutdown_timeout=cfg["shutdown_timeout"],
    )


sys.exit(run_master(load, foreground=bool(int(sys.argv[2]))))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def spec(name: str, port: int, service: str = "imap") -> dict[str, Any]:
    return {"service": service, "name": name, "address": "127.0.0.1", "port": port}


class Client:
    """A line-based client on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def ask(self, word: str) -> list[str]:
        self.sock.sendall(word.encode() + b"\n")
        line = self.file.readline().decode()
        assert line.endswith("\n"), f"connection closed instead of answering {word!r}"
        return line.split()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def ask_once(port: int, word: str) -> list[str]:
    client = Client(port)
    try:
        return client.ask(word)
    finally:
        client.close()


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


_RUNS = itertools.count(1)


class MasterProcess:
    def __init__(
        self,
        base: Path,
        settings: dict[str, Any],
        foreground: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.write_settings(settings)
        script = base.parent / "harness.py"
        script.write_text(HARNESS)
        self.log_path = base.parent / f"{base.name}-{next(_RUNS)}.log"
        env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1", **(env or {}))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), str(base), "1" if foreground else "0"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )

    def write_settings(self, settings: dict[str, Any]) -> None:
        tmp = self.base / "settings.json.tmp"
        tmp.write_text(json.dumps(settings))
        tmp.replace(self.base / "settings.json")

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        def found() -> list[str]:
            hits = re.findall(pattern, self.log(), re.MULTILINE)
            return hits if len(hits) >= count else []

        try:
            return list(wait_for(f"log {pattern!r} x{count}", found, timeout))
        except AssertionError:
            raise AssertionError(f"no {pattern!r} x{count} in log:\n{self.log()}") from None

    def live_workers(self) -> set[int]:
        text = self.log()
        started = {int(p) for p in re.findall(r"^master: worker (\d+) started$", text, re.M)}
        ended = {int(p) for p in re.findall(r"^master: worker (\d+) (?:exited|killed)", text, re.M)}
        return started - ended

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.base / "listeners.json").read_text()))

    def wait_ready(self, workers: int) -> None:
        self.wait_log(r"^master: worker \d+ started$", count=workers)
        assert (self.base / "listeners.json").exists()

    def all_pids(self) -> set[int]:
        text = self.log()
        pids = {int(p) for p in re.findall(r"^master: (?:worker|started \(pid) (\d+)", text, re.M)}
        return pids | {self.proc.pid}

    def kill_everything(self) -> None:
        for pid in self.all_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(5)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., MasterProcess]]:
    started: list[MasterProcess] = []

    def starter(
        ports: list[int] | None = None,
        *,
        listeners: list[dict[str, Any]] | None = None,
        workers: int = 2,
        shutdown_timeout: float = 10.0,
        name: str = "base",
        foreground: bool = True,
        env: dict[str, str] | None = None,
    ) -> MasterProcess:
        settings = {
            "listeners": listeners
            if listeners is not None
            else [spec(f"l{p}", p) for p in (ports or [])],
            "workers": workers,
            "shutdown_timeout": shutdown_timeout,
        }
        master = MasterProcess(tmp_path / name, settings, foreground, env)
        started.append(master)
        return master

    yield starter
    for master in started:
        master.kill_everything()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_serve_and_unhandled_service_is_refused(
    start: Callable[..., MasterProcess],
) -> None:
    port, refused_port = free_port(), free_port()
    master = start(listeners=[spec("imap", port), spec("imap-login", refused_port, "imap-login")])
    master.wait_ready(2)
    assert len(master.live_workers()) == 2
    assert read_master_pid(master.base) == master.proc.pid
    state = master.state()
    assert state["pid"] == master.proc.pid
    assert {(entry["name"], entry["port"]) for entry in state["listeners"]} == {
        ("imap", port),
        ("imap-login", refused_port),
    }

    served_by = set()
    sessions = set()
    for i in range(20):
        pid, listener, service, rip, lport, session, word = ask_once(port, f"w{i}")
        assert (listener, service, rip, lport, word) == (
            "imap",
            "imap",
            "127.0.0.1",
            str(port),
            f"w{i}",
        )
        served_by.add(int(pid))
        sessions.add(session)
    assert served_by <= master.live_workers()
    assert master.proc.pid not in served_by  # the master itself never accepts
    assert len(sessions) == 20

    with socket.create_connection(("127.0.0.1", refused_port), timeout=5) as s:
        data = s.makefile("rb").read()
    assert data == b"* BYE [UNAVAILABLE] Service not available.\r\n"
    master.wait_log(
        r"^imap-login: no handler for service imap-login, closing connection from 127\.0\.0\.1:\d+"
    )


def test_killed_worker_is_restarted(start: Callable[..., MasterProcess]) -> None:
    port = free_port()
    master = start([port])
    master.wait_ready(2)
    victim = sorted(master.live_workers())[0]
    os.kill(victim, signal.SIGKILL)
    master.wait_log(rf"^master: worker {victim} killed by signal 9 \(SIGKILL\) unexpectedly")
    master.wait_log(r"^master: worker \d+ started$", count=3)
    workers = master.live_workers()
    assert len(workers) == 2 and victim not in workers
    for i in range(10):
        answer = ask_once(port, f"again{i}")
        assert int(answer[0]) in workers and answer[-1] == f"again{i}"


def test_reload_rebinds_changed_ports_and_keeps_established_connections(
    start: Callable[..., MasterProcess],
) -> None:
    kept, removed, added = free_port(), free_port(), free_port()
    master = start([kept, removed], shutdown_timeout=10.0)
    master.wait_ready(2)
    old_workers = master.live_workers()
    on_removed = Client(removed)
    on_kept = Client(kept)
    assert on_removed.ask("before")[-1] == "before"
    assert on_kept.ask("before")[-1] == "before"

    master.write_settings(
        {
            "listeners": [spec(f"l{kept}", kept), spec(f"l{added}", added)],
            "workers": 2,
            "shutdown_timeout": 10.0,
        }
    )
    send_reload(master.base)
    master.wait_log(r"^master: configuration reloaded")
    master.wait_log(r"^master: worker \d+ started$", count=4)
    assert f"stopped listening on imap/l{removed} 127.0.0.1:{removed}" in master.log()
    assert f"listening on imap/l{added} 127.0.0.1:{added}" in master.log()
    assert {entry["port"] for entry in master.state()["listeners"]} == {kept, added}

    # the removed port stops accepting once the old workers closed their copies
    wait_for("removed port to refuse connections", lambda: refuses(removed))
    new_answer = ask_once(added, "new")
    assert new_answer[1:3] == [f"l{added}", "imap"] and int(new_answer[0]) not in old_workers
    for i in range(6):
        assert ask_once(kept, f"k{i}")[-1] == f"k{i}"

    # established connections, even on the removed port, are still served by the old workers
    after_removed = on_removed.ask("after")
    after_kept = on_kept.ask("after")
    assert int(after_removed[0]) in old_workers and after_removed[-1] == "after"
    assert int(after_kept[0]) in old_workers and after_kept[-1] == "after"
    assert {int(after_removed[0]), int(after_kept[0])} <= master.live_workers()

    # once their connections are gone, the old workers exit without waiting for the timeout
    on_removed.close()
    on_kept.close()
    for pid in old_workers:
        master.wait_log(rf"^master: worker {pid} exited with status 0$", timeout=5)
    assert len(master.live_workers()) == 2
    # the old workers closing their copies of the kept socket did not close it for the others
    for i in range(6):
        answer = ask_once(kept, f"late{i}")
        assert int(answer[0]) in master.live_workers() and answer[-1] == f"late{i}"


def test_workers_that_keep_dying_are_restarted_with_back_off(
    start: Callable[..., MasterProcess],
) -> None:
    master = start([free_port()], workers=1, env={"HARNESS_CRASHING_WORKERS": "1"})
    master.wait_log(
        r"^master: worker \d+ exited with status 3 unexpectedly, restarting it$", count=3
    )
    text = master.log()
    assert "master: worker slot 1 died 2 times in a row, throttling restart for 1s" in text
    assert "master: worker slot 1 died 3 times in a row, throttling restart for 2s" in text
    # the throttled restart really waits: the 4th start is not there yet
    assert len(re.findall(r"^master: worker \d+ started$", text, re.M)) == 3
    began = time.monotonic()
    os.kill(master.proc.pid, signal.SIGTERM)  # shutting down cancels the pending restart
    assert master.proc.wait(5) == 0
    assert time.monotonic() - began < 1.5
    assert len(re.findall(r"^master: worker \d+ started$", master.log(), re.M)) == 3


def test_failed_reload_keeps_running_configuration(start: Callable[..., MasterProcess]) -> None:
    port = free_port()
    master = start([port])
    master.wait_ready(2)
    workers = master.live_workers()
    master.write_settings({"error": "columba.conf:7: Unknown setting: listen_nowhere"})
    os.kill(master.proc.pid, signal.SIGHUP)
    master.wait_log(
        r"^master: reload failed, keeping the running configuration: "
        r"columba\.conf:7: Unknown setting: listen_nowhere$"
    )
    assert ask_once(port, "still")[-1] == "still"
    assert master.live_workers() == workers
    assert "configuration reloaded" not in master.log()

    # a reload whose new port cannot be bound is refused as a whole as well
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        master.write_settings(
            {
                "listeners": [spec("a", port), spec("b", busy_port)],
                "workers": 2,
                "shutdown_timeout": 10.0,
            }
        )
        os.kill(master.proc.pid, signal.SIGHUP)
        master.wait_log(
            rf"^master: reload failed, keeping the running configuration: "
            rf"imap/b: cannot listen on 127\.0\.0\.1:{busy_port}: Address already in use$"
        )
    assert ask_once(port, "still2")[-1] == "still2"
    assert master.live_workers() == workers
    assert [entry["port"] for entry in master.state()["listeners"]] == [port]


def test_sigterm_drains_connections_then_exits_cleanly(
    start: Callable[..., MasterProcess],
) -> None:
    port = free_port()
    master = start([port], shutdown_timeout=10.0)
    master.wait_ready(2)
    workers = master.live_workers()
    client = Client(port)
    assert client.ask("one")[-1] == "one"
    send_stop(master.base)
    master.wait_log(r"^master: SIGTERM received, shutting down$")
    wait_for("listener to close", lambda: refuses(port))
    assert client.ask("two")[-1] == "two"  # draining: the open connection is still served
    assert master.proc.poll() is None
    closed_at = time.monotonic()
    client.close()
    assert master.proc.wait(5) == 0
    assert time.monotonic() - closed_at < 4  # did not sit out the 10 s shutdown_timeout
    assert not (master.base / "master.pid").exists()
    assert not (master.base / "listeners.json").exists()
    assert not any(alive(pid) for pid in workers)
    assert "master: stopped" in master.log()
    with pytest.raises(MasterError, match="not running"):
        send_reload(master.base)


def test_shutdown_timeout_closes_lingering_connections(
    start: Callable[..., MasterProcess],
) -> None:
    port = free_port()
    master = start([port], workers=1, shutdown_timeout=0.5)
    master.wait_ready(1)
    client = Client(port)
    assert client.ask("x")[-1] == "x"
    began = time.monotonic()
    os.kill(master.proc.pid, signal.SIGINT)
    assert master.proc.wait(6) == 0
    assert time.monotonic() - began < 4
    assert client.file.readline() == b""  # the worker closed it after shutdown_timeout
    client.close()
    master.wait_log(
        r"^worker \d+: closed 1 connection\(s\) still open after shutdown_timeout=0\.5s$"
    )


def test_second_master_on_same_base_dir_refuses(start: Callable[..., MasterProcess]) -> None:
    port = free_port()
    first = start([port])
    first.wait_ready(2)
    second = start([free_port()], name="base")
    assert second.proc.wait(10) == 1
    assert re.search(
        rf"^master: fatal: another master \(pid {first.proc.pid}\) is already running",
        second.log(),
        re.M,
    )
    assert (first.base / "master.pid").read_text().strip() == str(first.proc.pid)
    assert ask_once(port, "first")[-1] == "first"


def test_workers_exit_when_master_is_killed(start: Callable[..., MasterProcess]) -> None:
    port = free_port()
    master = start([port])
    master.wait_ready(2)
    workers = master.live_workers()
    os.kill(master.proc.pid, signal.SIGKILL)
    master.proc.wait(5)
    wait_for("orphaned workers to exit", lambda: not any(alive(p) for p in workers), 5)
    assert refuses(port)
    with pytest.raises(MasterError, match="stale pid file"):
        send_stop(master.base)
    # a new master takes over the stale pid file
    again = start([port], name="base", workers=1)
    again.wait_ready(1)
    assert read_master_pid(again.base) == again.proc.pid
    assert ask_once(port, "back")[-1] == "back"


def test_background_mode_detaches_and_stops(start: Callable[..., MasterProcess]) -> None:
    port = free_port()
    master = start([port], workers=1, foreground=False)
    assert master.proc.wait(10) == 0  # returns once the detached master is serving
    daemon = read_master_pid(master.base)
    assert daemon != master.proc.pid and alive(daemon)
    assert ask_once(port, "bg")[-1] == "bg"
    send_stop(master.base)
    wait_for("daemon to exit", lambda: not alive(daemon))
    assert not (master.base / "master.pid").exists()


def test_signalling_without_a_master_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MasterError, match=r"master is not running \(no pid file .*master\.pid\)"):
        send_reload(tmp_path)
    with pytest.raises(MasterError, match="not running"):
        send_stop(tmp_path)
