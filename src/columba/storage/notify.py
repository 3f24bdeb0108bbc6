"""Cross-process change notification for the per-user SQLite index files.

How it works: every write transaction of :class:`columba.storage.index.MailIndex` commits to the
user's SQLite file (and bumps its ``change_counter``). SQLite's ``PRAGMA data_version`` on a
connection changes whenever *another* connection — in this process or any other — has committed
to the file since the last time it was asked. One daemon thread per process (the
:class:`ChangeNotifier`) keeps one read-only connection per watched index file and asks every
:data:`POLL_INTERVAL` seconds (default 0.15 s); each change increments the file's *generation*
and wakes the asyncio waiters of every event loop through ``call_soon_threadsafe``. The question
is answered from the WAL index in shared memory: no disk read, never the object store.
:meth:`Watch.poke` lets a writer in this process wake local waiters at once without waiting for
the next poll.

Asking costs a read transaction (~10-80 µs: shared-memory locks, several system calls). The
notifier never opens SQLite's files itself (say, to peek at the ``-shm`` WAL-index header):
closing such a descriptor drops every POSIX lock this process holds on the file, SQLite's
shared-memory lock included, and another process then resets the WAL index under this
process's live mapping of it (SIGBUS; see https://sqlite.org/howtocorrupt.html §2.2).

A waiter takes :attr:`Watch.generation` *before* checking its own state in the database, then
waits for the generation to move past it, so a commit between the check and the wait is never
missed. Wake-ups are hints ("something in this user's index changed"); the waiter re-checks the
database to decide whether its mailbox changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field

POLL_INTERVAL = 0.15


@dataclass(eq=False)
class _Entry:
    path: str
    refs: int = 0
    generation: int = 0
    data_version: int | None = None
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )


class Watch:
    """One subscriber's handle on one index file. Close it when done."""

    def __init__(self, notifier: ChangeNotifier, entry: _Entry) -> None:
        self._notifier = notifier
        self._entry = entry
        self._closed = False

    @property
    def generation(self) -> int:
        return self._entry.generation

    def poke(self) -> None:
        """A commit was just made in this process: wake local waiters now."""
        self._notifier.bump(self._entry)

    async def wait(self, generation: int, timeout: float) -> bool:
        """Wait until the generation differs from `generation`; False on timeout."""
        if self._entry.generation != generation:
            return True
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        pair = (loop, fut)
        with self._notifier.lock:
            if self._entry.generation != generation:
                return True
            self._entry.waiters.append(pair)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return self._entry.generation != generation
        finally:
            with self._notifier.lock, contextlib.suppress(ValueError):
                self._entry.waiters.remove(pair)
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._notifier.release(self._entry)


class ChangeNotifier:
    """The process-wide poller; use :func:`get_notifier`."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def watch(self, path: str | os.PathLike[str]) -> Watch:
        key = os.path.realpath(path)
        with self.lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(key)
            entry.refs += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="columba-index-notify", daemon=True
                )
                self._thread.start()
        return Watch(self, entry)

    def release(self, entry: _Entry) -> None:
        with self.lock:
            entry.refs -= 1
            if entry.refs <= 0 and self._entries.get(entry.path) is entry:
                del self._entries[entry.path]
                # The poll thread closes the connection of entries it no longer sees.
                self._wake.set()

    def bump(self, entry: _Entry) -> None:
        with self.lock:
            entry.generation += 1
            waiters = list(entry.waiters)
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(_resolve, fut)

    # ------------------------------------------------------------------ poll thread

    def _run(self) -> None:
        open_conns: dict[str, tuple[_Entry, sqlite3.Cursor]] = {}
        while True:
            with self.lock:
                entries = list(self._entries.values())
            live = {id(e) for e in entries}
            for path in [p for p, (e, _c) in open_conns.items() if id(e) not in live]:
                open_conns.pop(path)[1].connection.close()
            if not entries:
                with self.lock:
                    if not self._entries:
                        self._thread = None
                        return
                continue
            now = time.monotonic()
            for entry in entries:
                self._poll(entry, open_conns, now)
            self._wake.wait(self.interval)
            self._wake.clear()

    def _poll(
        self, entry: _Entry, conns: dict[str, tuple[_Entry, sqlite3.Cursor]], now: float
    ) -> None:
        try:
            pair = conns.get(entry.path)
            if pair is None:
                conn = sqlite3.connect(
                    entry.path, timeout=1.0, check_same_thread=False, cached_statements=1
                )
                # One cursor per file, reused: a cursor per poll leaves a weak reference in
                # the connection until its next purge (~9 KB per watched file at rest).
                cursor = conn.cursor()
                conns[entry.path] = (entry, cursor)
                # data_version values only compare within one connection: start afresh.
                entry.data_version = None
            else:
                cursor = pair[1]
            version = int(cursor.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            bad = conns.pop(entry.path, None)
            if bad is not None:
                bad[1].connection.close()
            return
        if entry.data_version is None:
            # The first look at a file: a commit made between the watch being taken and now
            # can't be told from the baseline, so wake the waiters once; they re-check the
            # database and go back to waiting if nothing of theirs changed.
            entry.data_version = version
            self.bump(entry)
        elif version != entry.data_version:
            entry.data_version = version
            self.bump(entry)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_NOTIFIER: ChangeNotifier | None = None
_NOTIFIER_PID = 0


def get_notifier() -> ChangeNotifier:
    """The notifier of this process (a forked child gets its own, threads don't survive fork)."""
    global _NOTIFIER, _NOTIFIER_PID
    if _NOTIFIER is None or os.getpid() != _NOTIFIER_PID:
        _NOTIFIER = ChangeNotifier()
        _NOTIFIER_PID = os.getpid()
    return _NOTIFIER
