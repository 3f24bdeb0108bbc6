"""The ``obox`` mail storage driver: immutable message objects in the fs stack, metadata in the
per-user SQLite index.

Layout: each message is one object written once through the user's ``obox`` fs stack at
``<user>/mailboxes/<mailbox guid>/<object name>`` with Dovecot's object metadata (``guid``,
``received``, ``saved``, ``size``, ``username``, ``origbox``; reference §1.6.5). A saved message's
object name is its GUID (32 hex); a copy gets a fresh random object name in the destination
mailbox's directory (through ``Fs.copy``, which dictmap turns into a second reference to the same
object), so two concurrent copies never share a name and expunging one never frees another's
object. Only after the object is durable is the index row committed; a crash in between leaves
an unreferenced object (a leak), never a visible half-message. Expunge commits the index change
first (the expunge log keeps uid and modseq for QRESYNC) and deletes objects afterwards; a failed
object delete is logged, never raised.

Threads: every SQLite call runs on the user's single index thread (:class:`_UserStore`), MIME
parsing on the default executor, fs I/O on the fs drivers' own threads; the event loop never
blocks. One :class:`_UserStore` per index file is shared by every :class:`ObOxUser` of this
process; other processes share the file itself (WAL) and learn of changes through
:mod:`columba.storage.notify`.

Views (:class:`ObOxMailboxView`) keep the mailbox's UIDs, modseqs and flags in memory as
columns (read at SELECT in one aggregated query), so ``uids``/``flag_rows`` answer without I/O;
the rest of a message's row (guid, object path, dates, size) is read on first use, for the
whole mailbox at once when most of it is wanted (``preload``); ``sync`` applies what changed
since the snapshot's HIGHESTMODSEQ/UIDNEXT in one read transaction.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import functools
import itertools
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from columba.fs.api import (
    Fs,
    FsCorrupt,
    FsError,
    FsNoSpace,
    FsNotFound,
    FsTemporaryError,
    create_fs_stack,
)
from columba.storage.api import (
    AppendRequest,
    AppendResult,
    CopyResult,
    DeliveryResult,
    InvalidMailboxName,
    MailboxExists,
    MailboxInfo,
    MailboxNotFound,
    MailboxStatus,
    MailboxView,
    MailStorage,
    MailUser,
    MessageExpunged,
    MessageRecord,
    MessageTooBig,
    StorageCorrupted,
    StorageError,
    StorageTemporaryError,
    StoreMode,
    StoreResult,
    SyncChanges,
    UserInfo,
)
from columba.storage.header_search import HeaderNeedle
from columba.storage.index import (
    CommitUncertain,
    Details,
    FsyncMode,
    LightSnapshot,
    MailboxRow,
    MailIndex,
    MessageRow,
    NewMessage,
    ViewSnapshot,
    index_path,
    is_corruption,
    is_temporary,
    new_guid,
    read_details,
    split_flags,
)
from columba.storage.metacache import Metacache
from columba.storage.names import INBOX, normalize, normalize_new
from columba.storage.notify import Watch, get_notifier

if TYPE_CHECKING:
    from columba.storage.factory import StorageSettings
    from columba.storage.mime import ParsedMessage
    from columba.storage.rebuild import ReconcileReport

__all__ = ["ObOxMailboxView", "ObOxStorage", "ObOxUser"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_FS_PARALLEL = 8
SORT_KEYS_READ = 16384
"""Messages whose stored sort keys one index job reads (a few milliseconds: other jobs of the
user, such as another session's NOOP, don't wait long behind a SORT of a big mailbox)."""
SORT_KEYS_FILL = 1024
"""Messages whose sort keys one index job computes and stores (old messages, on first use)."""
DETAILS_CHUNK = 4096
"""Messages whose details (:data:`Details`) one index job reads."""
DETAILS_ALL_AT = 0.25
"""When at least this share of a view's messages lack details, the whole mailbox's are read
in one aggregated query instead."""
HEADER_SCAN = 8192
"""Messages whose header blocks one SEARCH header job scans (some tens of milliseconds)."""
STORE_IDLE_TIMEOUT = 15.0
"""Seconds a user's store (index connection, index thread, fs stack, watch) stays open in this
process after its last user/delivery released it, so back-to-back sessions and deliveries
don't reopen it."""
STORE_IDLE_MAX = 256
"""Idle stores kept open at most (least recently released closed first)."""
INDEX_THREADS = 16
"""Threads running index jobs, shared by every user's store in the process."""


class _ProcessPool:
    """A thread pool of this process, created on first use (a forked worker makes its own)."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._owned: tuple[int, ThreadPoolExecutor] | None = None

    def __call__(self) -> ThreadPoolExecutor:
        if self._owned is None or self._owned[0] != os.getpid():
            self._owned = (os.getpid(), ThreadPoolExecutor(self.size, thread_name_prefix=self.name))
        return self._owned[1]


_index_pool = _ProcessPool(INDEX_THREADS, "columba-index")
"""The index threads, shared by every user's store."""
_lock_pool = _ProcessPool(64, "columba-uid-lock")
"""Threads that wait for other processes' UID locks (one at most per user store)."""


UID_LOCK_TIMEOUT = 30.0
"""Seconds a save waits for another process's UID lock before a temporary failure."""
UID_LOCK_FILE = "columba-uid.lock"
"""flock held from choosing a save's UIDs until its index commit (UIDs go into the objects'
metadata, so they are chosen before the objects are written, and must become visible in
ascending order across every process of the backend)."""


# ---------------------------------------------------------------------- helpers


def _fs_error(err: FsError, what: str) -> StorageError:
    if isinstance(err, FsCorrupt):
        return StorageCorrupted(f"{what}: {err}")
    if isinstance(err, FsNoSpace):
        return StorageTemporaryError(f"{what}: mail storage is out of space ({err})")
    if isinstance(err, FsTemporaryError):
        return StorageTemporaryError(f"{what}: {err}")
    return StorageError(f"{what}: {err}")


def _header_block(data: bytes) -> bytes:
    """The header block including the empty line that ends it (the whole message if none)."""
    if data.startswith(b"\r\n"):
        return b"\r\n"
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 4]


def _encode_parsed(parsed: ParsedMessage) -> str:
    value: Any = parsed.to_json()
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _decode_parsed(text: str, header: bytes) -> ParsedMessage:
    from columba.storage.mime import ParsedMessage

    parsed = ParsedMessage.from_json(text)
    parsed.header_bytes = header  # the cache JSON leaves the header block to the index
    return parsed


def _to_crlf(raw: bytes) -> bytes:
    from columba.storage.mime import to_crlf

    return to_crlf(raw)


def _record(row: MessageRow) -> MessageRecord:
    return MessageRecord(
        uid=row.uid,
        guid=row.guid,
        modseq=row.modseq,
        flags=row.flags,
        internaldate=datetime.fromisoformat(row.internaldate),
        savedate=datetime.fromisoformat(row.savedate),
        size=row.size,
    )


def _details_of(row: MessageRow) -> Details:
    return (row.guid, row.object_path, row.internaldate, row.savedate, row.size)


async def _bounded(jobs: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T | BaseException]:
    """Run `jobs` with at most :data:`_FS_PARALLEL` at once; results or exceptions in order."""
    sem = asyncio.Semaphore(_FS_PARALLEL)

    async def one(job: Callable[[], Awaitable[_T]]) -> _T:
        async with sem:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)


class _Prepared:
    """A message ready to be written: CRLF bytes, object metadata and its index row."""

    __slots__ = ("data", "metadata", "row")

    def __init__(self, data: bytes, metadata: dict[str, str], row: NewMessage) -> None:
        self.data = data
        self.metadata = metadata
        self.row = row


def _prepare(req: AppendRequest, username: str, mailbox_guid: str) -> _Prepared:
    from columba.storage.mime import parse_message
    from columba.storage.sort_keys import stored_keys

    data = _to_crlf(bytes(req.data))
    parsed = parse_message(data)
    guid = new_guid()
    internal = req.internaldate or datetime.now().astimezone()
    if internal.tzinfo is None:
        internal = internal.astimezone()
    internal = internal.replace(microsecond=0)  # IMAP dates have second resolution
    saved = datetime.now(UTC)
    path = f"{username}/mailboxes/{mailbox_guid}/{guid}"
    metadata = {
        "guid": guid,
        "received": str(int(internal.timestamp())),
        "saved": str(int(saved.timestamp())),
        "size": str(len(data)),
        "username": username,
        "origbox": mailbox_guid,
        "internaldate": internal.isoformat(),
    }
    if req.flags:
        metadata["flags"] = " ".join(req.flags)
    header = parsed.header_bytes or _header_block(data)
    row = NewMessage(
        guid=guid,
        object_path=path,
        flags=tuple(req.flags),
        internaldate=internal.isoformat(),
        savedate=saved.isoformat(timespec="seconds"),
        size=len(data),
        parsed=_encode_parsed(parsed),
        header=header,
        sort_keys=stored_keys(header, int(internal.timestamp()), len(data)),
    )
    return _Prepared(data, metadata, row)


# ---------------------------------------------------------------------- per-user store


class _UserStore:
    """One index file and fs stack open in this process, shared by its users and deliveries."""

    def __init__(
        self, user: UserInfo, path: Path, fs: Fs, busy_timeout: float, fsync: FsyncMode
    ) -> None:
        self.user = user
        self.path = path
        self.index = MailIndex(path, busy_timeout=busy_timeout, fsync=fsync)
        self.fs = fs
        self._serial = asyncio.Lock()
        """One index job at a time (the index is not thread-safe), in arrival order."""
        self.refs = 0
        self.watch: Watch | None = None
        self._uid_lock = asyncio.Lock()
        self._uid_fd: int | None = None
        self.ensured_version: int | None = None
        """``data_version`` right after the last auto-mailbox check (None: check again)."""
        self.idle_handle: asyncio.TimerHandle | None = None
        self.file_id: tuple[int, int] | None = None
        self._probe: sqlite3.Connection | None = None
        """A read-only connection that only asks ``PRAGMA data_version``, on the event loop."""

    def data_version(self) -> int | None:
        """A number that changes whenever any connection other than the probe (this process's
        index jobs, other processes) committed to the index file; None if it can't be asked.
        SQLite answers it from the WAL index in shared memory: no disk I/O, no lock, cheaper
        than a hop to an index thread, so a sync with nothing new costs microseconds."""
        try:
            if self._probe is None:
                self._probe = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False
                )
                self._probe.execute("PRAGMA query_only = 1")
            return int(self._probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            self.close_probe()
            return None

    def close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            with contextlib.suppress(sqlite3.Error):
                probe.close()

    def remember_file(self) -> None:
        """Note which index file is open (to notice it being removed or replaced later)."""
        try:
            st = os.stat(self.path)
        except OSError:
            self.file_id = None
        else:
            self.file_id = (st.st_dev, st.st_ino)

    def same_file(self) -> bool:
        """Is the open index still the file at :attr:`path` (not removed/replaced meanwhile)?"""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return self.file_id == (st.st_dev, st.st_ino)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @contextlib.asynccontextmanager
    async def uid_lock(self) -> AsyncIterator[None]:
        """Hold the user's UID allocation lock (this process, then the backend's processes).

        The lock file stays open while the store is (an flock per save, no open/close); it is
        reopened if the file was removed or replaced meanwhile, so every process locks the
        same file."""
        async with self._uid_lock:
            fd = await self._lock_uid_file()
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    async def _lock_uid_file(self) -> int:
        path = self.directory / UID_LOCK_FILE
        deadline = time.monotonic() + UID_LOCK_TIMEOUT
        while True:
            if self._uid_fd is None:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._uid_fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            fd = self._uid_fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Wait in the kernel's queue (a blocking flock on a lock thread), not by polling:
                # a poller starves while another process's sessions lock back to back.
                await self._wait_uid_lock(fd, path, deadline - time.monotonic())
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except OSError:
                same = False
            if same:
                return fd
            fcntl.flock(fd, fcntl.LOCK_UN)  # a stale file: lock the one at the path instead
            self._close_uid_file()

    async def _wait_uid_lock(self, fd: int, path: Path, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(_lock_pool(), fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.wait_for(asyncio.shield(job), max(timeout, 0.0))
        except (TimeoutError, asyncio.CancelledError) as err:
            # The thread still waits on `fd`: hand the fd to it (unlock and close once it got
            # the lock) and open a new one next time.
            self._uid_fd = None

            def abandon(done: asyncio.Future[None]) -> None:
                with contextlib.suppress(OSError):
                    if done.exception() is None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

            job.add_done_callback(abandon)
            if isinstance(err, asyncio.CancelledError):
                raise
            raise StorageTemporaryError(f"timed out waiting for lock {path}") from None

    def _close_uid_file(self) -> None:
        fd, self._uid_fd = self._uid_fd, None
        if fd is not None:
            os.close(fd)

    async def sync_mailbox_info(self) -> None:
        from columba.storage.rebuild import sync_mailbox_info

        await sync_mailbox_info(self.fs, self.run, self.index, self.user.username)

    async def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run an index method on the shared index threads, one job of this store at a time."""
        loop = asyncio.get_running_loop()
        try:
            async with self._serial:
                job = loop.run_in_executor(_index_pool(), functools.partial(fn, *args, **kwargs))
                try:
                    return await asyncio.shield(job)
                except asyncio.CancelledError:
                    # Hold the store until the job is over: the next one must not overlap it.
                    while not job.done():
                        with contextlib.suppress(asyncio.CancelledError):
                            await asyncio.wait([job])
                    raise
        except CommitUncertain:
            raise
        except StorageError:
            raise
        except sqlite3.Error as err:
            if is_temporary(err):
                raise StorageTemporaryError(f"mail index temporarily unavailable: {err}") from err
            if is_corruption(err):
                raise StorageCorrupted(f"mail index is damaged: {err}") from err
            raise StorageError(f"mail index error: {err}") from err
        except OSError as err:
            raise StorageTemporaryError(f"mail index I/O error: {err}") from err

    def object_path(self, mailbox_guid: str, name: str) -> str:
        return f"{self.user.username}/mailboxes/{mailbox_guid}/{name}"

    def poke(self) -> None:
        if self.watch is not None:
            self.watch.poke()

    async def delete_objects(self, paths: Iterable[str]) -> None:
        """Delete objects no index row references any more; failures are only logged."""

        def job(path: str) -> Callable[[], Awaitable[None]]:
            return lambda: self.fs.delete(path)

        todo = list(paths)
        for path, result in zip(todo, await _bounded([job(p) for p in todo]), strict=True):
            if isinstance(result, FsNotFound):
                continue
            if isinstance(result, BaseException):
                log.warning("obox: failed to delete object %s (leaked): %s", path, result)

    async def write_objects(self, items: Sequence[_Prepared]) -> None:
        """Write every object or none (written ones are deleted again on failure)."""

        def job(item: _Prepared) -> Callable[[], Awaitable[None]]:
            return lambda: self.fs.write(item.row.object_path, item.data, item.metadata)

        results = await _bounded([job(i) for i in items])
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return
        written = [i.row.object_path for i, r in zip(items, results, strict=True) if r is None]
        await self.delete_objects(written)
        err = errors[0]
        if isinstance(err, FsError):
            raise _fs_error(err, "saving message") from err
        if isinstance(err, OSError):
            raise StorageTemporaryError(f"saving message: {err}") from err
        raise err

    async def copy_objects(
        self, rows: Sequence[MessageRow], dest_guid: str
    ) -> list[tuple[int, str]]:
        """Copy each row's object into `dest_guid`; returns (uid, new path) of those copied.
        A source object already gone (expunged elsewhere) is skipped."""
        targets = [(r, self.object_path(dest_guid, new_guid())) for r in rows]

        def job(src: str, dst: str) -> Callable[[], Awaitable[None]]:
            return lambda: self.fs.copy(src, dst)

        results = await _bounded([job(r.object_path, dst) for r, dst in targets])
        done = [(r.uid, dst) for (r, dst), res in zip(targets, results, strict=True) if res is None]
        errors = [
            e for e in results if isinstance(e, BaseException) and not isinstance(e, FsNotFound)
        ]
        if errors:
            await self.delete_objects(dst for _uid, dst in done)
            err = errors[0]
            if isinstance(err, FsError):
                raise _fs_error(err, "copying message") from err
            raise err
        return done

    async def close(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        self.close_probe()
        try:
            await self.run(self.index.close)
        finally:
            self._close_uid_file()
            try:
                await self.fs.close()
            except FsError as err:
                log.warning("obox: closing fs stack: %s", err)


# ---------------------------------------------------------------------- storage


class ObOxStorage(MailStorage):
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.metacache = Metacache(settings)
        self._stores: dict[str, _UserStore] = {}
        self._idle: dict[str, _UserStore] = {}
        """Stores nobody holds, oldest release first (a subset of ``_stores``)."""
        self._expiring: set[asyncio.Task[None]] = set()
        self._key_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        """One lock per index file (with its count of holders and waiters): opening, reusing
        and closing one user's store never waits for another user's."""
        self.special_use_config: dict[str, frozenset[str]] = {}
        self._ensure: list[tuple[str, frozenset[str], bool]] = [(INBOX, frozenset(), False)]
        for auto in settings.auto_mailboxes:
            name = normalize(auto.name)
            if auto.special_use:
                self.special_use_config[name] = frozenset(auto.special_use)
            if auto.auto in ("create", "subscribe"):
                self._ensure.append((name, frozenset(auto.special_use), auto.auto == "subscribe"))

    # ------------------------------------------------------------------ stores

    @contextlib.asynccontextmanager
    async def _store_lock(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of one index file's store (created on demand, dropped when unused)."""
        entry = self._key_locks.get(key)
        if entry is None:
            entry = self._key_locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0 and self._key_locks.get(key) is entry:
                del self._key_locks[key]

    async def _acquire(self, user: UserInfo, *, ensure: bool = True) -> _UserStore:
        """The user's store, opened or reused. *ensure*: on reuse, recreate auto mailboxes
        deleted meanwhile (sessions; a delivery needs none of them: it falls back to INBOX)."""
        directory = Path(self.settings.index_dir(user))
        if not str(directory) or str(directory) == ".":
            raise StorageError(f"user {user.username!r} has no home directory for the index")
        path = index_path(directory)
        key = str(path)
        async with self._store_lock(key):
            store = self._stores.get(key)
            if store is not None and store.refs <= 0:
                # Idle in the cache: reuse it unless its file was removed or replaced meanwhile
                # (e.g. ``metacache clean``); then open afresh (pull/rebuild as on first use).
                self._idle.pop(key, None)
                if store.idle_handle is not None:
                    store.idle_handle.cancel()
                    store.idle_handle = None
                if not store.same_file():
                    del self._stores[key]
                    await store.close()
                    store = None
                elif ensure and (
                    store.ensured_version is None or store.data_version() != store.ensured_version
                ):
                    try:  # as on a fresh open: recreate auto mailboxes deleted meanwhile
                        await store.run(store.index.ensure_mailboxes, self._ensure)
                        store.ensured_version = store.data_version()
                    except BaseException:
                        del self._stores[key]
                        await store.close()
                        raise
            if store is None:
                try:
                    fs = create_fs_stack(self.settings.fs_specs(user))
                except FsError as err:
                    raise StorageError(f"mail storage configuration: {err}") from err
                store = _UserStore(
                    user, path, fs, self.settings.index_busy_timeout, self.settings.mail_fsync
                )
                try:
                    await self.metacache.ensure_local(
                        user, directory, fs, functools.partial(self._rebuild, store)
                    )
                    await store.run(store.index.open)
                    store.remember_file()
                    await store.run(store.index.ensure_mailboxes, self._ensure)
                    await self._boot_check(store)
                    await store.sync_mailbox_info()
                    store.ensured_version = store.data_version()
                except BaseException:
                    await store.close()
                    raise
                store.watch = get_notifier().watch(path)
                self._stores[key] = store
            store.refs += 1
            return store

    async def _release(self, store: _UserStore) -> None:
        key = str(store.path)
        async with self._store_lock(key):
            store.refs -= 1
            if store.refs > 0 or self._stores.get(key) is not store:
                return
            self.metacache.released(store.user, store.directory)
            # Keep it open for a while: the next session or delivery of this user reuses it.
            self._idle[key] = store
            loop = asyncio.get_running_loop()
            store.idle_handle = loop.call_later(STORE_IDLE_TIMEOUT, self._idle_expired, store)
            excess = [s for k, s in self._idle.items() if k != key][
                : max(len(self._idle) - STORE_IDLE_MAX, 0)
            ]
        for old in excess:
            await self._expire(old)

    def _idle_expired(self, store: _UserStore) -> None:
        store.idle_handle = None
        task = asyncio.get_running_loop().create_task(self._expire(store))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, store: _UserStore) -> None:
        """Close ``store`` if it is still idle (nobody took it again meanwhile)."""
        async with self._store_lock(str(store.path)):
            if store.refs <= 0 and self._idle.get(str(store.path)) is store:
                await self._close_idle(store)

    async def _close_idle(self, store: _UserStore) -> None:
        """Close an idle store (the caller holds the store's lock)."""
        key = str(store.path)
        self._idle.pop(key, None)
        if self._stores.get(key) is store:
            del self._stores[key]
        try:
            await store.close()
        except Exception as err:
            log.warning("obox: closing idle store of %s: %s", store.user.username, err)

    async def _boot_check(self, store: _UserStore) -> None:
        """First open since the machine booted, and the index was written without full fsyncs:
        a power loss may have dropped its last commits, so reconcile it with the dictmap
        listing (the durable record of every acknowledged message) before anyone uses it."""
        if store.index.fsync == "always" or not await store.run(store.index.needs_boot_check):
            return
        from columba.storage.rebuild import reconcile

        async with store.uid_lock():
            if not await store.run(store.index.needs_boot_check):
                return  # another process of this backend did it meanwhile
            report = await reconcile(store.fs, store.run, store.index, store.user.username)
            await store.run(store.index.mark_boot)
        if report.added or report.removed or report.mailboxes_created:
            log.warning(
                "obox: %s: index caught up with storage after a restart of the machine: "
                "%d mailbox(es) recreated, %d message(s) added, %d removed",
                store.user.username,
                len(report.mailboxes_created),
                report.added,
                report.removed,
            )

    async def _rebuild(self, store: _UserStore, directory: Path) -> None:
        """A new (or just pulled) index: reconcile it with the dictmap listing. On failure the
        index file is removed again, so the next open retries instead of trusting it."""
        from columba.storage.rebuild import reconcile

        try:
            await store.run(store.index.open)
            async with store.uid_lock():
                report = await reconcile(store.fs, store.run, store.index, store.user.username)
            await store.run(store.index.close)
        except BaseException as err:
            with contextlib.suppress(Exception):
                await store.run(store.index.close)
            for name in (store.path.name, f"{store.path.name}-wal", f"{store.path.name}-shm"):
                (directory / name).unlink(missing_ok=True)
            if isinstance(err, FsError):
                raise _fs_error(err, "rebuilding the mail index") from err
            raise
        if report.added or report.removed or report.mailboxes_created:
            log.info(
                "obox: %s: index rebuilt from storage: %d mailbox(es) recreated, %d message(s) "
                "added, %d removed",
                store.user.username,
                len(report.mailboxes_created),
                report.added,
                report.removed,
            )

    # ------------------------------------------------------------------ saving

    def _check_requests(self, requests: Sequence[AppendRequest]) -> None:
        limit = self.settings.mail_save_max_size
        for req in requests:
            if limit and len(req.data) > limit:
                raise MessageTooBig(f"Message is larger than {limit} bytes")
            split_flags(req.flags)  # reject bad flags before anything is written

    async def save(
        self, store: _UserStore, name: str, requests: Sequence[AppendRequest]
    ) -> list[AppendResult]:
        self._check_requests(requests)
        if not requests:
            return []
        box = await store.run(store.index.get_mailbox, name)
        if box is None or not box.selectable:
            raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
        username = store.user.username
        prepared = await asyncio.to_thread(
            lambda: [_prepare(r, username, box.guid) for r in requests]
        )
        return await self._save_prepared(store, name, box, prepared)

    async def _save_prepared(
        self, store: _UserStore, name: str, box: MailboxRow, prepared: list[_Prepared]
    ) -> list[AppendResult]:
        """Allocate UIDs, write the objects (durable, with their dictmap rows), then commit
        them to the index: the steps of a save after its messages were parsed."""
        async with store.uid_lock():
            current = await store.run(store.index.get_mailbox, name)
            if current is None or current.guid != box.guid or not current.selectable:
                raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
            wanted = list(range(current.uidnext, current.uidnext + len(prepared)))
            for uid, p in zip(wanted, prepared, strict=True):
                p.metadata["uid"] = str(uid)
            await store.write_objects(prepared)
            try:
                uidvalidity, uids = await store.run(
                    store.index.append, box.id, box.guid, [p.row for p in prepared], wanted
                )
            except CommitUncertain as err:
                # The rows may be committed: their objects must stay.
                raise StorageTemporaryError(str(err)) from err
            except BaseException:
                await store.delete_objects(p.row.object_path for p in prepared)
                raise
        store.poke()
        return [
            AppendResult(uidvalidity, uid, p.row.guid)
            for uid, p in zip(uids, prepared, strict=True)
        ]

    async def transfer(
        self,
        store: _UserStore,
        src: MailboxRow,
        rows: Sequence[MessageRow],
        dest: MailboxRow,
        *,
        move: bool,
    ) -> CopyResult:
        """Copy (or move) `rows` of `src` into `dest`: objects first, then one index commit."""
        async with store.uid_lock():
            pairs = await store.copy_objects(rows, dest.guid)
            try:
                outcome = await store.run(
                    store.index.copy_rows, src.id, src.guid, pairs, dest.id, dest.guid, move=move
                )
            except CommitUncertain as err:
                raise StorageTemporaryError(str(err)) from err
            except BaseException:
                await store.delete_objects(p for _u, p in pairs)
                raise
        store.poke()
        await store.delete_objects([*outcome.unused_paths, *outcome.removed_paths])
        return CopyResult(outcome.uidvalidity, tuple(outcome.source_uids), tuple(outcome.dest_uids))

    # ------------------------------------------------------------------ API

    async def open_user(self, user: UserInfo) -> MailUser:
        store = await self._acquire(user)
        return ObOxUser(self, store, user)

    async def deliver(
        self,
        user: UserInfo,
        data: bytes,
        mailbox: str = "INBOX",
        flags: frozenset[str] = frozenset(),
    ) -> DeliveryResult:
        store = await self._acquire(user, ensure=False)
        try:
            try:
                name = normalize(mailbox)
            except InvalidMailboxName:
                name = INBOX
            request = AppendRequest(data, flags)
            self._check_requests([request])
            username = user.username

            def lookup_and_prepare(name: str) -> tuple[MailboxRow | None, list[_Prepared]]:
                # One index job for the common case: the mailbox exists (parse included).
                found = store.index.get_mailbox(name)
                if found is None or not found.selectable:
                    return found, []
                return found, [_prepare(request, username, found.guid)]

            box, prepared = await store.run(lookup_and_prepare, name)
            if box is not None and prepared:
                results = await self._save_prepared(store, name, box, prepared)
                return DeliveryResult(name, results[0].uid, results[0].guid)
            if box is None or not box.selectable:
                if name != INBOX and self.settings.lda_mailbox_autocreate:
                    try:
                        await store.run(
                            store.index.create_mailbox,
                            normalize_new(name),
                            self.special_use_config.get(name, frozenset()),
                        )
                    except MailboxExists:
                        pass
                    except InvalidMailboxName:
                        name = INBOX
                    if name != INBOX and self.settings.lda_mailbox_autosubscribe:
                        await store.run(store.index.set_subscribed, name, True)
                    store.poke()
                else:
                    name = INBOX
            results = await self.save(store, name, [request])
            return DeliveryResult(name, results[0].uid, results[0].guid)
        finally:
            await self._release(store)

    async def resync(self, user: UserInfo) -> ReconcileReport:
        """``columba force-resync``: reconcile the user's index with the dictmap listing."""
        from columba.storage.rebuild import reconcile

        store = await self._acquire(user)
        try:
            async with store.uid_lock():
                report = await reconcile(store.fs, store.run, store.index, user.username)
            store.poke()
            return report
        finally:
            await self._release(store)

    async def cleanup(self, user: UserInfo, grace: float) -> tuple[int, int]:
        """``columba obox cleanup``: delete the user's mailbox rows no index row references and
        the objects (under the object-id prefix) no dictmap row references, when older than
        `grace` seconds. Returns (rows, objects) deleted."""
        from columba.fs.dictmap import REVERSE_PREFIX, DictmapFs

        store = await self._acquire(user)
        cutoff = time.time() - grace
        rows = objects = 0
        try:
            async with store.uid_lock():
                known = set(await store.run(store.index.all_object_paths))
                prefix = f"{user.username}/mailboxes/"
                candidates = []
                for guid in await store.fs.iter_dirs(prefix):
                    async for path in store.fs.iter_files(f"{prefix}{guid}/", recursive=False):
                        if path not in known:
                            candidates.append(path)
                for path in candidates:
                    try:
                        if (await store.fs.stat(path)).mtime > cutoff:
                            continue
                        await store.fs.delete(path)
                    except FsNotFound:
                        continue
                    rows += 1
            node: Fs | None = store.fs
            while node is not None and not isinstance(node, DictmapFs):
                node = getattr(node, "parent", None)
            if isinstance(node, DictmapFs) and node.objectid_prefix:
                base = node.objectid_prefix
                stored = [p async for p in node.parent.iter_files(base)]
                for path in stored:
                    oid = path[len(base) :]
                    if "/" in oid or await node.dict.iterate(f"{REVERSE_PREFIX}{oid}/", limit=1):
                        continue
                    try:
                        if (await node.parent.stat(path)).mtime > cutoff:
                            continue
                        await node.parent.delete(path)
                    except FsNotFound:
                        continue
                    objects += 1
            return rows, objects
        finally:
            await self._release(store)

    async def close(self) -> None:
        """Close every user and upload every index with changes (``metacache flushall``)."""
        stores = list(self._stores.values())
        self._stores.clear()
        idle = set(map(id, self._idle.values()))
        self._idle.clear()
        for store in stores:
            await store.close()
            if id(store) not in idle:  # an idle one was already reported released
                self.metacache.released(store.user, store.directory)
        await self.metacache.flushall()


# ---------------------------------------------------------------------- user


class ObOxUser(MailUser):
    def __init__(self, storage: ObOxStorage, store: _UserStore, info: UserInfo) -> None:
        self.info = info
        self._storage = storage
        self._store = store
        self._views: set[ObOxMailboxView] = set()
        self._closed = False

    def _check(self) -> _UserStore:
        if self._closed:
            raise StorageError("user is closed")
        return self._store

    async def list_mailboxes(self) -> list[MailboxInfo]:
        store = self._check()
        rows, subs = await store.run(store.index.list_mailboxes)
        names = sorted(r.name for r in rows)
        subscribed = set(subs)

        def has_children(name: str) -> bool:
            prefix = name + "/"
            i = bisect.bisect_left(names, prefix)
            return i < len(names) and names[i].startswith(prefix)

        out: list[MailboxInfo] = []
        known = set()
        for r in rows:
            known.add(r.name)
            special = r.special_use | self._storage.special_use_config.get(r.name, frozenset())
            out.append(
                MailboxInfo(
                    name=r.name,
                    guid=r.guid,
                    special_use=special if r.selectable else frozenset(),
                    subscribed=r.name in subscribed,
                    selectable=r.selectable,
                    exists=True,
                    has_children=has_children(r.name),
                )
            )
        for name in subs:
            if name not in known:
                out.append(
                    MailboxInfo(
                        name=name,
                        guid="",
                        subscribed=True,
                        selectable=False,
                        exists=False,
                        has_children=has_children(name),
                    )
                )
        out.sort(key=lambda m: (m.name != INBOX, m.name))
        return out

    def change_generation(self) -> int:
        watch = self._store.watch
        return watch.generation if watch is not None else 0

    async def wait_for_change(self, generation: int, timeout: float) -> bool:
        watch = self._check().watch
        if watch is None:
            return await super().wait_for_change(generation, timeout)
        return await watch.wait(generation, timeout)

    def change_watch(self) -> Watch:
        return get_notifier().watch(self._check().path)

    async def create_mailbox(self, name: str, special_use: frozenset[str] = frozenset()) -> None:
        store = self._check()
        norm = normalize_new(name[:-1] if name.endswith("/") and len(name) > 1 else name)
        if norm == INBOX:
            raise MailboxExists("Mailbox already exists")
        if not special_use:
            special_use = self._storage.special_use_config.get(norm, frozenset())
        await store.run(store.index.create_mailbox, norm, frozenset(special_use))
        store.poke()
        await store.sync_mailbox_info()

    async def delete_mailbox(self, name: str) -> None:
        store = self._check()
        paths = await store.run(store.index.delete_mailbox, normalize(name))
        store.poke()
        await store.delete_objects(paths)
        await store.sync_mailbox_info()

    async def rename_mailbox(self, old: str, new: str) -> None:
        store = self._check()
        src = normalize(old)
        dst = normalize_new(new)
        if src != INBOX:
            await store.run(store.index.rename_mailbox, src, dst)
            store.poke()
            await store.sync_mailbox_info()
            return
        if dst == INBOX:
            raise MailboxExists("Mailbox already exists")
        await store.run(store.index.create_mailbox, dst, frozenset())
        snap: ViewSnapshot = await store.run(store.index.load_view, INBOX)
        dest = await store.run(store.index.get_mailbox, dst)
        if dest is None:
            raise MailboxNotFound(f"Mailbox doesn't exist: {dst}")
        if snap.messages:
            await self._storage.transfer(store, snap.mailbox, snap.messages, dest, move=True)
        store.poke()
        await store.sync_mailbox_info()

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        store = self._check()
        await store.run(store.index.set_subscribed, normalize(name), subscribed)
        store.poke()
        await store.sync_mailbox_info()

    async def status(self, name: str) -> MailboxStatus:
        store = self._check()
        row, counts = await store.run(store.index.status, normalize(name))
        return MailboxStatus(
            messages=counts.messages,
            recent=counts.recent,
            uidnext=row.uidnext,
            uidvalidity=row.uidvalidity,
            unseen=counts.unseen,
            size=counts.size,
            deleted=counts.deleted,
            highestmodseq=row.highestmodseq,
            mailboxid=row.guid,
            deleted_storage=counts.deleted_size,
        )

    async def open_mailbox(self, name: str, *, readonly: bool) -> MailboxView:
        store = self._check()
        snap = await store.run(store.index.load_view_light, normalize(name))
        view = ObOxMailboxView(self._storage, store, snap, readonly, self._views.discard)
        if not readonly:
            await view.claim_recent()
        self._views.add(view)
        return view

    async def append(self, name: str, messages: Sequence[AppendRequest]) -> list[AppendResult]:
        store = self._check()
        return await self._storage.save(store, normalize(name), messages)

    async def get_metadata(
        self, mailbox: str, entries: Sequence[str], *, descendants: bool = False
    ) -> dict[str, bytes]:
        store = self._check()
        name = normalize(mailbox) if mailbox else ""
        result: dict[str, bytes] = await store.run(
            store.index.get_metadata, name, tuple(entries), descendants
        )
        return result

    async def set_metadata(
        self,
        mailbox: str,
        changes: Sequence[tuple[str, bytes | None]],
        *,
        max_entries: int = 0,
    ) -> None:
        store = self._check()
        name = normalize(mailbox) if mailbox else ""
        await store.run(store.index.set_metadata, name, tuple(changes), max_entries)

    async def urlauth_key(self, mailbox: str, *, create: bool = False) -> bytes | None:
        store = self._check()
        key: bytes | None = await store.run(store.index.urlauth_key, normalize(mailbox), create)
        return key

    async def reset_urlauth_keys(self, mailbox: str | None = None) -> None:
        store = self._check()
        name = normalize(mailbox) if mailbox is not None else None
        await store.run(store.index.reset_urlauth_keys, name)

    async def close(self) -> None:
        if self._closed:
            return
        for view in list(self._views):
            await view.close()
        self._closed = True
        await self._storage._release(self._store)


# ---------------------------------------------------------------------- view


class ObOxMailboxView(MailboxView):
    """A selected mailbox: its messages' UIDs, modseqs and flags as columns (read at SELECT
    in one aggregated query, :meth:`MailIndex.load_view_light`); the unchanging rest of each
    row (:data:`Details`: guid, object path, dates, size) is read when first needed, for the
    whole mailbox at once when most of it is wanted (:meth:`preload`)."""

    def __init__(
        self,
        storage: ObOxStorage,
        store: _UserStore,
        snap: LightSnapshot,
        readonly: bool,
        on_close: Callable[[ObOxMailboxView], None],
    ) -> None:
        self._storage = storage
        self._store = store
        self._on_close = on_close
        self.readonly = readonly
        self._id = snap.mailbox.id
        self._uids: list[int] = snap.uids
        self._modseqs: list[int] = snap.modseqs
        self._flags: list[frozenset[str]] = snap.flags
        self._details: dict[int, Details] = snap.details
        self._keywords = list(snap.keywords)
        # Kept as a frozenset so recent_uids() costs nothing per call (FETCH asks per message).
        self._recent: frozenset[int] = frozenset()
        self._own: dict[int, int] = {}
        self._synced_version: int | None = None
        """The index's data version before the last sync's read: while it is unchanged,
        nothing was committed since and :meth:`sync` has nothing to read."""
        self._closed = False
        self._apply_mailbox(snap.mailbox)

    def _apply_mailbox(self, box: MailboxRow) -> None:
        self._box = box
        self.name = box.name
        self.guid = box.guid
        self.uidvalidity = box.uidvalidity
        self.uidnext = box.uidnext
        self.highestmodseq = box.highestmodseq
        if self.readonly:
            i = bisect.bisect_left(self._uids, box.first_recent_uid)
            self._recent = frozenset(self._uids[i:])

    def _check(self) -> _UserStore:
        if self._closed:
            raise StorageError("mailbox is closed")
        return self._store

    def _check_writable(self) -> _UserStore:
        store = self._check()
        if self.readonly:
            raise StorageError("Mailbox is read-only")
        return store

    async def claim_recent(self) -> None:
        """Take ownership of the \\Recent messages that nobody has claimed yet."""
        store = self._check()
        if self._box.first_recent_uid >= self.uidnext:
            # Everything below our UIDNEXT was already claimed when the snapshot was read; the
            # boundary only moves up, so the write transaction would find nothing to claim.
            return
        start = await store.run(store.index.claim_recent, self._id, self.uidnext)
        if start is not None:
            i = bisect.bisect_left(self._uids, start)
            self._recent = self._recent.union(self._uids[i:])

    # ------------------------------------------------------------------ snapshot

    def _index(self, uid: int) -> int | None:
        uids = self._uids
        i = bisect.bisect_left(uids, uid)
        return i if i < len(uids) and uids[i] == uid else None

    def _present(self, uids: Iterable[int]) -> list[tuple[int, int]]:
        """(uid, position) of the given UIDs that are in the view, ascending."""
        mine = self._uids
        wanted = uids if isinstance(uids, list) else list(uids)
        if not wanted:
            return []
        # mostly a run of the view's own UIDs (FETCH 1:*, a batch): compared in one go
        first = bisect.bisect_left(mine, wanted[0])
        if mine[first : first + len(wanted)] == wanted:
            return list(zip(wanted, range(first, first + len(wanted)), strict=True))
        if not all(a < b for a, b in itertools.pairwise(wanted)):
            wanted = sorted(set(wanted))
        out: list[tuple[int, int]] = []
        n = len(mine)
        i = 0
        left = bisect.bisect_left
        for uid in wanted:
            i = left(mine, uid, i)
            if i >= n:
                break
            if mine[i] == uid:
                out.append((uid, i))
        return out

    def _known(self, uids: Iterable[int]) -> list[int]:
        """The given UIDs that are in the view, ascending."""
        return [u for u, _i in self._present(uids)]

    def uids(self) -> Sequence[int]:
        return self._uids

    def records(self, uids: Iterable[int]) -> list[MessageRecord]:
        present = self._present(uids)
        details = self._details
        missing = [u for u, _i in present if u not in details]
        if missing:
            self._load_details_now(missing)
        return [self._record(u, i) for u, i in present if u in details]

    def _record(self, uid: int, i: int) -> MessageRecord:
        guid, _path, internal, saved, size = self._details[uid]
        return MessageRecord(
            uid=uid,
            guid=guid,
            modseq=self._modseqs[i],
            flags=self._flags[i],
            internaldate=datetime.fromisoformat(internal),
            savedate=datetime.fromisoformat(saved),
            size=size,
        )

    def flag_rows(self, uids: Iterable[int]) -> list[tuple[int, frozenset[str], int]]:
        flags = self._flags
        modseqs = self._modseqs
        return [(u, flags[i], modseqs[i]) for u, i in self._present(uids)]

    async def preload(self, uids: Iterable[int]) -> None:
        store = self._check()
        details = self._details
        missing = [u for u in self._known(uids) if u not in details]
        if not missing:
            return
        if len(missing) >= DETAILS_ALL_AT * max(len(self._uids), 1):
            got = await store.run(store.index.message_details, self._id, None)
            if details:
                details.update(got)
            else:
                self._details = got
            return
        for start in range(0, len(missing), DETAILS_CHUNK):
            chunk = missing[start : start + DETAILS_CHUNK]
            details.update(await store.run(store.index.message_details, self._id, chunk))

    def _load_details_now(self, uids: list[int]) -> None:
        """Read details for the synchronous :meth:`records` (callers that may want many call
        :meth:`preload` first): a short read on a connection of its own, on the event loop,
        since the store's connection may be busy with another job."""
        store = self._check()
        try:
            got = read_details(store.path, self._id, uids)
        except sqlite3.Error as err:
            if is_corruption(err):
                raise StorageCorrupted(f"mail index is damaged: {err}") from err
            raise StorageTemporaryError(f"mail index temporarily unavailable: {err}") from err
        self._details.update(got)

    def recent_uids(self) -> frozenset[int]:
        return self._recent

    def keywords(self) -> list[str]:
        return list(self._keywords)

    def _set_row(self, row: MessageRow, i: int) -> None:
        self._modseqs[i] = row.modseq
        self._flags[i] = row.flags
        self._details[row.uid] = _details_of(row)

    async def sync(self) -> SyncChanges:
        store = self._check()
        version = store.data_version()
        if version is not None and version == self._synced_version:
            return SyncChanges()  # no commit by anyone since the last sync
        self._synced_version = None
        delta = await store.run(
            store.index.sync, self._id, self.guid, self.highestmodseq, self.uidnext
        )
        expunged = [u for u in delta.expunged if self._index(u) is not None]
        if expunged:
            gone = set(expunged)
            keep = [i for i, u in enumerate(self._uids) if u not in gone]
            self._uids = [self._uids[i] for i in keep]
            self._modseqs = [self._modseqs[i] for i in keep]
            self._flags = [self._flags[i] for i in keep]
            for uid in expunged:
                self._details.pop(uid, None)
            self._recent = self._recent - gone
        changed: list[MessageRecord] = []
        for row in delta.changed:
            i = self._index(row.uid)
            if i is None:
                continue
            self._set_row(row, i)
            if self._own.get(row.uid) != row.modseq:
                changed.append(_record(row))
        added = [r.uid for r in delta.added]
        for row in delta.added:
            self._uids.append(row.uid)
            self._modseqs.append(row.modseq)
            self._flags.append(row.flags)
            self._details[row.uid] = _details_of(row)
        self._own.clear()
        self._synced_version = version
        self._keywords = delta.keywords
        self._apply_mailbox(delta.mailbox)
        if not self.readonly and added:
            await self.claim_recent()
        return SyncChanges(tuple(expunged), tuple(added), tuple(changed))

    async def wait_for_changes(self, timeout: float) -> bool:
        store = self._check()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        watch = store.watch
        while True:
            generation = watch.generation if watch is not None else 0
            state = await store.run(store.index.mailbox_state, self._id, self.guid)
            if state != (self.highestmodseq, self.uidnext):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if watch is None:
                await asyncio.sleep(min(remaining, 0.15))
            else:
                await watch.wait(generation, remaining)

    async def vanished_since(self, modseq: int) -> list[int]:
        store = self._check()
        uids = await store.run(store.index.vanished_since, self._id, modseq)
        return [u for u in uids if self._index(u) is None]

    # ------------------------------------------------------------------ message data

    async def _row(self, uid: int) -> MessageRow | None:
        """The message's full index row as this view knows it (None: not in the view, or
        gone from the index before its details were read)."""
        i = self._index(uid)
        if i is None:
            return None
        if uid not in self._details:
            await self.preload([uid])
        got = self._details.get(uid)
        if got is None:
            return None
        guid, path, internal, saved, size = got
        return MessageRow(uid, guid, path, self._modseqs[i], self._flags[i], internal, saved, size)

    async def read_message(self, uid: int) -> bytes:
        store = self._check()
        row = await self._row(uid)
        if row is None:
            raise MessageExpunged(f"UID {uid} is not in the mailbox")
        try:
            return await store.fs.read(row.object_path)
        except FsNotFound as err:
            raise MessageExpunged(f"UID {uid} has been expunged") from err
        except FsError as err:
            raise _fs_error(err, "reading message") from err
        except OSError as err:
            raise StorageTemporaryError(f"reading message: {err}") from err

    async def _cached(self, uids: Iterable[int]) -> dict[int, tuple[str, bytes]]:
        store = self._check()
        wanted = self._known(uids)
        if not wanted:
            return {}
        return await store.run(store.index.cached, self._id, wanted)

    async def parsed(self, uid: int) -> ParsedMessage:
        got = await self.parsed_many([uid])
        if uid not in got:
            raise MessageExpunged(f"UID {uid} has been expunged")
        return got[uid]

    async def parsed_many(self, uids: Iterable[int]) -> dict[int, ParsedMessage]:
        store = self._check()
        wanted = self._known(uids)
        if not wanted:
            return {}

        def load() -> dict[int, ParsedMessage]:
            raw = store.index.cached(self._id, wanted)
            out: dict[int, ParsedMessage] = {}
            for uid, (text, header) in raw.items():
                try:
                    out[uid] = _decode_parsed(text, header)
                except (ValueError, TypeError, KeyError, IndexError) as err:
                    raise StorageCorrupted(
                        f"mail index: the cached parse of UID {uid} can't be decoded ({err})"
                    ) from err
            return out

        return await store.run(load)

    async def header_bytes(self, uid: int) -> bytes:
        got = await self.header_bytes_many([uid])
        if uid not in got:
            raise MessageExpunged(f"UID {uid} has been expunged")
        return got[uid]

    async def header_bytes_many(self, uids: Iterable[int]) -> dict[int, bytes]:
        return {u: h for u, (_p, h) in (await self._cached(uids)).items()}

    async def header_matches(
        self, uids: Iterable[int], field: str, value: str
    ) -> tuple[list[int], list[int]]:
        """Decided from the header blocks in the index
        (:meth:`MailIndex.header_matches`), :data:`HEADER_SCAN` messages per index job."""
        store = self._check()
        needle = HeaderNeedle(field, value)
        wanted = self._known(uids)
        matched: list[int] = []
        unsure: list[int] = []
        for start in range(0, len(wanted), HEADER_SCAN):
            chunk = wanted[start : start + HEADER_SCAN]
            got, undecided = await store.run(store.index.header_matches, self._id, chunk, needle)
            matched.extend(got)
            unsure.extend(undecided)
        return matched, unsure

    async def sort_keys_many(
        self, uids: Iterable[int], fields: Sequence[str]
    ) -> dict[str, dict[int, object]]:
        """The keys stored at save, read with one indexed query per :data:`SORT_KEYS_READ`
        messages; messages indexed before the keys were stored get them computed and stored,
        :data:`SORT_KEYS_FILL` per index job."""
        store = self._check()
        wanted = self._known(uids)
        names = tuple(fields)
        if not wanted or not names:
            return {f: {} for f in names}
        found: dict[str, dict[int, object]] = {f: {} for f in names}
        missing: list[int] = []
        for start in range(0, len(wanted), SORT_KEYS_READ):
            chunk = wanted[start : start + SORT_KEYS_READ]
            got, lacking = await store.run(store.index.sort_keys, self._id, chunk, names)
            for name in names:
                if found[name]:
                    found[name].update(got[name])
                else:
                    found[name] = got[name]
            missing.extend(lacking)
        for start in range(0, len(missing), SORT_KEYS_FILL):
            batch = missing[start : start + SORT_KEYS_FILL]
            more = await store.run(store.index.fill_sort_keys, self._id, batch, names)
            for name in names:
                found[name].update(more[name])
        return found

    # ------------------------------------------------------------------ changes

    async def store_flags(
        self,
        uids: Iterable[int],
        mode: StoreMode,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        store = self._check_writable()
        wanted = self._known(uids)
        flag_list = list(flags)
        outcome = await store.run(
            store.index.store_flags,
            self._id,
            self.guid,
            wanted,
            mode,
            flag_list,
            unchanged_since=unchanged_since,
        )
        for row in outcome.updated:
            i = self._index(row.uid)
            if i is not None:
                self._set_row(row, i)
            self._own[row.uid] = row.modseq
        self._keywords = outcome.keywords
        if outcome.updated:
            store.poke()
            self._storage.metacache.important_change(store.user, store.directory)
        return StoreResult(
            updated=tuple(_record(r) for r in outcome.updated),
            failed=tuple(outcome.failed),
            unchanged=tuple(_record(r) for r in outcome.unchanged),
        )

    async def expunge(self, uids: Iterable[int] | None = None) -> tuple[int, ...]:
        store = self._check_writable()
        wanted = list(self._uids) if uids is None else self._known(uids)
        if not wanted:
            return ()
        done, paths = await store.run(store.index.expunge, self._id, self.guid, wanted)
        if done:
            store.poke()
            await store.delete_objects(paths)
        return tuple(done)

    async def _transfer(self, uids: Iterable[int], dest: str, *, move: bool) -> CopyResult:
        store = self._check_writable() if move else self._check()
        name = normalize(dest)
        box = await store.run(store.index.get_mailbox, name)
        if box is None or not box.selectable:
            raise MailboxNotFound(f"Mailbox doesn't exist: {name}")
        present = self._present(uids)
        await self.preload([u for u, _i in present])
        rows = []
        for uid, i in present:
            got = self._details.get(uid)
            if got is not None:
                guid, path, internal, saved, size = got
                rows.append(
                    MessageRow(
                        uid, guid, path, self._modseqs[i], self._flags[i], internal, saved, size
                    )
                )
        if not rows:
            return CopyResult(box.uidvalidity, (), ())
        return await self._storage.transfer(store, self._box, rows, box, move=move)

    async def copy(self, uids: Iterable[int], dest: str) -> CopyResult:
        return await self._transfer(uids, dest, move=False)

    async def move(self, uids: Iterable[int], dest: str) -> CopyResult:
        return await self._transfer(uids, dest, move=True)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close(self)
