"""The master process: binds listeners, supervises workers, reloads on SIGHUP, drains on SIGTERM.

``run_master(load)`` calls ``load()`` for its ``MasterSettings``, takes the pid file
``base_dir/master.pid`` (refusing to start while another master holds it), binds every listener,
records the bound sockets in ``base_dir/listeners.json`` and forks the worker processes. Workers
inherit the listening sockets and accept on all of them in an asyncio loop (uvloop when
installed), dispatching to the handlers in ``columba.net.services``.

Memory: before the first fork the master trims SQLite's per-connection page-cache bulk
allocation (:func:`tune_sqlite`, ~80 KB per connection, and a worker holds a few per logged-in
user), and before every fork it collects and freezes the heap (``gc.freeze()``) so the workers
keep sharing the imported modules' pages instead of copying them when their collector runs
(the master unfreezes its own heap right after the fork).

The master itself runs no event loop: it sleeps in ``select`` on a signal wakeup pipe, so it
never blocks and never polls. SIGCHLD reaps and restarts dead workers (with back-off when a
worker keeps dying), SIGHUP reloads (a failing ``load()`` keeps the running configuration;
sockets whose address and port are unchanged are kept; workers are replaced gracefully),
SIGTERM/SIGINT drain the workers and exit 0. ``send_reload`` / ``send_stop`` signal a running
master through its pid file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import gc
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from columba.net.connection import ConnectionServer
from columba.net.listeners import BoundListener, ListenerError, ListenerSet, ListenerSpec

__all__ = [
    "PID_FILE_NAME",
    "STATE_FILE_NAME",
    "ListenerSpec",
    "LoadSettings",
    "MasterError",
    "MasterSettings",
    "describe_exit_status",
    "read_master_pid",
    "run_master",
    "send_reload",
    "send_stop",
]

PID_FILE_NAME = "master.pid"
STATE_FILE_NAME = "listeners.json"

#: A worker that lived shorter than this counts as a failed start for back-off.
HEALTHY_UPTIME = 5.0
#: Back-off after the second quick death in a row, doubling up to MAX_BACKOFF.
BACKOFF_BASE = 1.0
MAX_BACKOFF = 60.0
#: Extra time a draining worker gets past shutdown_timeout before it is killed.
KILL_GRACE = 5.0

_MASTER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)

_SQLITE_CONFIG_PAGECACHE = 7
_SQLITE_STATUS_MALLOC_COUNT = 9
_sqlite_tuned = False

Log = Callable[[str], None]


@dataclass(frozen=True)
class MasterSettings:
    """What the master needs from the configuration. ``workers`` 0 = one per core."""

    listeners: tuple[ListenerSpec, ...]
    workers: int
    base_dir: Path
    shutdown_timeout: float = 10.0


#: Loads the configuration; raises an exception whose ``str()`` is the one-line error.
LoadSettings = Callable[[], MasterSettings]


class MasterError(Exception):
    """The master cannot start or cannot be reached; ``str()`` is the one-line reason."""


def default_log(line: str) -> None:
    """Write one log line to stderr (a single write, so lines from processes do not mix)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def describe_exit_status(status: int) -> str:
    """``exited with status 3`` / ``killed by signal 9 (SIGKILL)`` from a waitpid status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "unknown"
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return f"killed by signal {signum} ({name}){core}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


def _worker_count(settings: MasterSettings) -> int:
    if settings.workers < 0:
        raise MasterError(f"workers must be 0 (one per core) or more, not {settings.workers}")
    return settings.workers or os.cpu_count() or 1


def tune_sqlite() -> bool:
    """Turn off SQLite's initial page-cache bulk allocation for connections opened later.

    By default every connection mallocs room for 20 pages (~85 KB) the first time it reads a
    page, however small the database is: with a few connections per logged-in user (the
    user's index, the change watcher's poll connection) that is most of what an idle user
    costs. ``sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0)`` makes SQLite allocate cache
    pages one by one as they are used instead. The call is only allowed while SQLite is shut
    down, so it is made only while SQLite has no allocation outstanding (no connection is
    open); the master does it once at start, before forking, and workers inherit it. Returns
    whether the setting took; a Python whose ``_sqlite3`` does not use the shared
    ``libsqlite3`` is left as it is.
    """
    global _sqlite_tuned
    if _sqlite_tuned:
        return True
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return False
    try:
        import _sqlite3  # noqa: F401 - makes sure the library our sqlite3 uses is loaded

        lib = ctypes.CDLL(name)
        current, highwater = ctypes.c_int64(), ctypes.c_int64()
        if lib.sqlite3_status64(
            _SQLITE_STATUS_MALLOC_COUNT, ctypes.byref(current), ctypes.byref(highwater), 0
        ):
            return False
        if current.value != 0 or lib.sqlite3_shutdown() != 0:
            return False  # something is open: shutting SQLite down would pull the rug
        status = lib.sqlite3_config(
            _SQLITE_CONFIG_PAGECACHE, ctypes.c_void_p(0), ctypes.c_int(0), ctypes.c_int(0)
        )
        lib.sqlite3_initialize()
    except (OSError, AttributeError, ImportError):
        return False
    _sqlite_tuned = bool(status == 0)
    return _sqlite_tuned


# --------------------------------------------------------------------------- pid file


class _PidFile:
    """``base_dir/master.pid`` held with an exclusive flock for the master's lifetime."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, path: Path) -> _PidFile:
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                who = f"pid {pid}" if pid else "unknown pid"
                raise MasterError(
                    f"another master ({who}) is already running with pid file {path}"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed it while we waited; try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return cls(path, fd)
        raise MasterError(f"cannot lock pid file {path}")

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        os.close(self.fd)


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "0")
    except ValueError:
        return 0


def read_master_pid(base_dir: Path) -> int:
    """The pid of the master running with ``base_dir``; MasterError if none is running."""
    path = Path(base_dir) / PID_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise MasterError(f"master is not running (no pid file {path})") from None
    except OSError as exc:
        raise MasterError(f"cannot read pid file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # the master holds it: running
        else:
            raise MasterError(f"master is not running (stale pid file {path})")
        pid = _read_pid(fd)
    finally:
        os.close(fd)
    if pid <= 0:
        raise MasterError(f"pid file {path} does not hold a pid")
    return pid


def _signal_master(base_dir: Path, signum: signal.Signals) -> None:
    pid = read_master_pid(base_dir)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise MasterError(f"master is not running (pid {pid} is gone)") from None
    except PermissionError:
        raise MasterError(f"not allowed to signal master pid {pid}") from None


def send_reload(base_dir: Path) -> None:
    """Ask the master running with ``base_dir`` to reload its configuration (SIGHUP)."""
    _signal_master(base_dir, signal.SIGHUP)


def send_stop(base_dir: Path) -> None:
    """Ask the master running with ``base_dir`` to drain and stop (SIGTERM)."""
    _signal_master(base_dir, signal.SIGTERM)


# --------------------------------------------------------------------------- worker process


def _run_worker(
    listeners: Sequence[BoundListener], shutdown_timeout: float, master_fd: int, log: Log
) -> int:
    """Body of a worker process (after fork): serve until SIGTERM or the master goes away."""
    main = _worker_main(listeners, shutdown_timeout, master_fd, log)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


async def _worker_main(
    listeners: Sequence[BoundListener], shutdown_timeout: float, master_fd: int, log: Log
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def master_gone() -> None:
        loop.remove_reader(master_fd)
        log(f"worker {os.getpid()}: master process went away, shutting down")
        stop.set()

    loop.add_reader(master_fd, master_gone)
    server = ConnectionServer(listeners, log)
    await server.start()
    await stop.wait()
    server.stop_accepting()
    cancelled = await server.drain(shutdown_timeout)
    if cancelled:
        log(
            f"worker {os.getpid()}: closed {cancelled} connection(s) still open after "
            f"shutdown_timeout={shutdown_timeout:g}s"
        )
    from columba.context import close_context

    try:
        await asyncio.wait_for(close_context(), 30)  # metacache flushall
    except Exception as exc:
        log(f"worker {os.getpid()}: closing mail storage: {exc}")
    return 0


# --------------------------------------------------------------------------- master


@dataclass
class _Worker:
    pid: int
    slot: int
    generation: int
    started: float
    shutdown_timeout: float
    draining: bool = False
    kill_at: float | None = None


@dataclass
class _Restart:
    when: float
    slot: int
    generation: int


@dataclass
class _Master:
    load: LoadSettings
    log: Log
    on_ready: Callable[[int], None] | None = None
    listeners: ListenerSet = field(default_factory=ListenerSet)
    workers: dict[int, _Worker] = field(default_factory=dict)
    restarts: list[_Restart] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)
    generation: int = 0
    stopping: bool = False
    pending: list[int] = field(default_factory=list)
    settings: MasterSettings | None = None
    _pidfile: _PidFile | None = None
    _selector: selectors.BaseSelector | None = None
    _wake_r: int = -1
    _wake_w: int = -1
    _alive_r: int = -1
    _alive_w: int = -1

    # ---- lifecycle

    def run(self) -> int:
        try:
            settings = self.load()
            _worker_count(settings)
        except Exception as exc:
            self.log(f"master: fatal: {exc}")
            return 1
        base_dir = Path(settings.base_dir)
        try:
            base_dir.mkdir(parents=True, exist_ok=True)
            self._pidfile = _PidFile.acquire(base_dir / PID_FILE_NAME)
        except (MasterError, OSError) as exc:
            self.log(f"master: fatal: {exc}")
            return 1
        saved: dict[int, Any] = {}
        old_wakeup = -1
        tune_sqlite()
        try:
            try:
                changes = self.listeners.apply(settings.listeners)
            except ListenerError as exc:
                self.log(f"master: fatal: {exc}")
                return 1
            self.settings = settings
            for bound in changes.added:
                self.log(f"master: listening on {bound.describe()}")
            self._write_state()
            self._alive_r, self._alive_w = os.pipe()
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._wake_r, selectors.EVENT_READ)
            old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            for signum in _MASTER_SIGNALS:
                saved[signum] = signal.signal(signum, self._on_signal)
            self.log(f"master: started (pid {os.getpid()})")
            if self.on_ready is not None:
                self.on_ready(0)
            self._start_generation()
            self._loop()
            self.log("master: stopped")
            return 0
        finally:
            for saved_signum, handler in saved.items():
                signal.signal(saved_signum, handler)
            if saved:
                signal.set_wakeup_fd(old_wakeup)
            self._cleanup()

    def _cleanup(self) -> None:
        self.listeners.close_all()
        if self.settings is not None:
            with contextlib.suppress(FileNotFoundError):
                (Path(self.settings.base_dir) / STATE_FILE_NAME).unlink()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for name in ("_wake_r", "_wake_w", "_alive_r", "_alive_w"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        if self._pidfile is not None:
            self._pidfile.release()
            self._pidfile = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def _loop(self) -> None:
        assert self._selector is not None
        while True:
            while self.pending:
                signum = self.pending.pop(0)
                if signum == signal.SIGHUP:
                    self._reload()
                elif signum in (signal.SIGTERM, signal.SIGINT):
                    self._shutdown(signal.Signals(signum).name)
            self._reap()
            self._run_timers()
            if self.stopping and not self.workers:
                return
            self._selector.select(self._next_timeout())
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 512):
                    pass

    # ---- workers

    def _current(self) -> MasterSettings:
        assert self.settings is not None
        return self.settings

    def _start_generation(self) -> None:
        for slot in range(1, _worker_count(self._current()) + 1):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        settings = self._current()
        listeners = self.listeners.listeners
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        # Objects that exist now are shared with the child copy-on-write; keep the child's
        # collector from writing to (and so copying) every page that holds one.
        gc.collect()
        gc.freeze()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            gc.unfreeze()
            self.log(f"master: cannot fork worker: {exc.strerror}")
            self._schedule_restart(slot, quick_death=True)
            return
        if pid == 0:  # child
            status = 70
            try:
                self._become_worker(old_mask)
                status = _run_worker(listeners, settings.shutdown_timeout, self._alive_r, self.log)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.log(f"worker {os.getpid()}: crashed: {traceback.format_exc(limit=5)}")
            finally:
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        gc.unfreeze()  # the master itself keeps collecting (old configurations after reloads)
        self.workers[pid] = _Worker(
            pid=pid,
            slot=slot,
            generation=self.generation,
            started=time.monotonic(),
            shutdown_timeout=settings.shutdown_timeout,
        )
        self.log(f"master: worker {pid} started")

    def _become_worker(self, old_mask: set[int | signal.Signals]) -> None:
        """In the forked child: drop the master's signal plumbing and file descriptors."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the master reloads, not workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the master, which drains us
        if self._selector is not None:
            with contextlib.suppress(OSError):
                self._selector.close()
        for fd in (self._wake_r, self._wake_w, self._alive_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._pidfile is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfile.fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            self._worker_exited(pid, status)

    def _worker_exited(self, pid: int, status: int) -> None:
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        how = describe_exit_status(status)
        if worker.draining or self.stopping:
            self.log(f"master: worker {pid} {how}")
            return
        quick = time.monotonic() - worker.started < HEALTHY_UPTIME
        self.log(f"master: worker {pid} {how} unexpectedly, restarting it")
        self._schedule_restart(worker.slot, quick_death=quick)

    def _schedule_restart(self, slot: int, *, quick_death: bool) -> None:
        failures = self.failures.get(slot, 0) + 1 if quick_death else 1
        self.failures[slot] = failures
        delay = 0.0 if failures <= 1 else min(MAX_BACKOFF, BACKOFF_BASE * 2 ** (failures - 2))
        if delay:
            self.log(
                f"master: worker slot {slot} died {failures} times in a row, "
                f"throttling restart for {delay:g}s"
            )
        self.restarts.append(_Restart(time.monotonic() + delay, slot, self.generation))

    def _drain_worker(self, worker: _Worker) -> None:
        worker.draining = True
        worker.kill_at = time.monotonic() + worker.shutdown_timeout + KILL_GRACE
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)

    def _run_timers(self) -> None:
        now = time.monotonic()
        due = [r for r in self.restarts if r.when <= now]
        self.restarts = [r for r in self.restarts if r.when > now]
        for restart in due:
            if restart.generation == self.generation and not self.stopping:
                self._spawn(restart.slot)
        for worker in self.workers.values():
            if worker.kill_at is not None and worker.kill_at <= now:
                worker.kill_at = None
                self.log(
                    f"master: worker {worker.pid} still running "
                    f"{worker.shutdown_timeout + KILL_GRACE:g}s after being told to stop, "
                    "killing it"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)

    def _next_timeout(self) -> float | None:
        times = [r.when for r in self.restarts]
        times += [w.kill_at for w in self.workers.values() if w.kill_at is not None]
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    # ---- reload and shutdown

    def _write_state(self) -> None:
        settings = self._current()
        path = Path(settings.base_dir) / STATE_FILE_NAME
        try:
            self.listeners.write_state(path, {"pid": os.getpid(), "generation": self.generation})
        except OSError as exc:
            self.log(f"master: cannot write {path}: {exc.strerror}")

    def _reload(self) -> None:
        if self.stopping:
            return
        self.log("master: SIGHUP received, reloading configuration")
        old = self._current()
        try:
            new = self.load()
            _worker_count(new)
        except Exception as exc:
            self.log(f"master: reload failed, keeping the running configuration: {exc}")
            return
        if Path(new.base_dir).resolve() != Path(old.base_dir).resolve():
            self.log("master: base_dir cannot change on reload, restart to change it")
            new = replace(new, base_dir=old.base_dir)
        try:
            changes = self.listeners.apply(new.listeners)
        except ListenerError as exc:
            self.log(f"master: reload failed, keeping the running configuration: {exc}")
            return
        for bound in changes.removed:
            self.log(f"master: stopped listening on {bound.describe()}")
        for bound in changes.added:
            self.log(f"master: listening on {bound.describe()}")
        self.settings = new
        self.generation += 1
        self._write_state()
        old_workers = [w for w in self.workers.values() if not w.draining]
        self.restarts.clear()
        self.failures.clear()
        self._start_generation()
        for worker in old_workers:
            self._drain_worker(worker)
        self.log(
            f"master: configuration reloaded ({len(self.listeners.listeners)} listening "
            f"sockets, {_worker_count(new)} workers)"
        )

    def _shutdown(self, reason: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.log(f"master: {reason} received, shutting down")
        for bound in self.listeners.close_all():
            self.log(f"master: stopped listening on {bound.describe()}")
        self.restarts.clear()
        for worker in list(self.workers.values()):
            if not worker.draining:
                self._drain_worker(worker)


def _run_daemonized(master: _Master) -> int:
    """Detach (double fork, new session); return once the daemon is up (0) or failed (1)."""
    ready_r, ready_w = os.pipe()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    pid = os.fork()
    if pid > 0:
        os.close(ready_w)
        os.waitpid(pid, 0)
        with os.fdopen(ready_r, "rb") as pipe:
            answer = pipe.read(1)
        return 0 if answer == b"0" else 1
    status = 1
    try:
        os.close(ready_r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)

        def ready(code: int) -> None:
            os.write(ready_w, str(code).encode())
            os.close(ready_w)

        master.on_ready = ready
        status = master.run()
    except BaseException:
        with contextlib.suppress(Exception):
            master.log(f"master: crashed: {traceback.format_exc(limit=5)}")
    finally:
        os._exit(status)


def run_master(load: LoadSettings, *, foreground: bool = True, log: Log = default_log) -> int:
    """Run the master until it is told to stop; returns the exit status (0 after a clean
    shutdown, 1 when it cannot start). Must be called from the main thread.

    With ``foreground=False`` the master detaches into the background (its stdin is
    /dev/null; ``log`` keeps writing where it did) and this returns as soon as it is serving.
    """
    master = _Master(load=load, log=log)
    if foreground:
        return master.run()
    return _run_daemonized(master)
