"""Metacache: the per-user SQLite index packed into bundles in object storage, and pulled back.

Bundles live under ``<user>/idx/`` of the ``metacache { fs … }`` stack (reference §1.6.4-§1.6.6)
and are never overwritten; every name is new:

* **base** ``bundle.<secs hex8>.<usecs hex5>.<random>`` — a consistent snapshot of the whole index
  file taken with SQLite's online backup API (compression and encryption are the stack's job);
* **diff** ``<base name>-<secs hex8>.<usecs hex5>.<random>`` — a small SQLite file holding what
  changed since that base: every row that is new or different (``SELECT * … EXCEPT SELECT * …``
  against the local copy of the base, ``columba-metacache-base.db``), the primary keys of rows
  that are gone (``_bundle_deletes``) and the AUTOINCREMENT counters (``_bundle_sequence``).
  Diffs are cumulative, so only the newest diff of a base matters.

**Merge rule** when several bundles exist (two backends, split brain, a crash between an upload
and its clean-up): the newest bundle by its own timestamp wins, together with its base; a
restored index is then reconciled with the dictmap listing (:mod:`columba.storage.rebuild`), so
deliveries and expunges made after that bundle are never lost. Older lineages are deleted by the
clean-up that follows a new base.

**Uploads** (``Metacache``, one per storage object in a process): an *important* change (flags)
schedules an upload within ``metacache_upload_interval``; releasing a user (session end, after
each delivery) schedules one ``metacache_close_delay`` after the *last* release: a user used
again within the delay (a stream of deliveries) postpones it, but never beyond
``metacache_upload_interval`` after the first pending release, so a busy user is not packed and
uploaded every couple of seconds (the dictmap keeps every delivery durable meanwhile).
``flushall`` (shutdown) uploads everything pending. An upload does nothing when the index's
``change_counter`` equals the one last uploaded. It writes a diff when a local base copy exists
and the diff is smaller than half of it, else a new base. The SQLite work of uploads (snapshot,
diff, file reads) runs on the metacache's own two threads, never on the default executor that
the delivery path's fscache and compression hops share.

**Opening** (``ensure_local``): when the user's index file is missing, the newest bundles are
pulled; without any, an empty index is created; in both cases it is then reconciled with the
dictmap listing and the objects' metadata. An existing local index is never replaced while the
server may have it open (``columba metacache pull -f`` does that, for a user not being served).

Local state lives beside the index: ``columba-metacache.json`` (base name, last bundle, uploaded
change counter) and the lock file ``columba-metacache.lock`` (flock: one restore or upload of a
user at a time across the backend's processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from columba.fs.api import Fs, FsError, FsNotFound, FsSpec, create_fs_stack
from columba.storage.api import StorageError, StorageTemporaryError, UserInfo
from columba.storage.index import INDEX_FILENAME

if TYPE_CHECKING:
    from columba.storage.factory import StorageSettings

__all__ = [
    "BASE_COPY",
    "LOCK_FILE",
    "STATE_FILE",
    "Bundle",
    "Metacache",
    "apply_diff",
    "choose_bundles",
    "file_lock",
    "list_bundles",
    "make_diff",
    "new_base_name",
    "new_diff_name",
    "parse_bundle",
    "pull",
    "snapshot",
    "upload",
]

log = logging.getLogger(__name__)

ReconcileFn = Callable[[Path], Awaitable[None]]
"""Brings a (restored or new, empty) index in line with the dictmap listing."""

STATE_FILE = "columba-metacache.json"
BASE_COPY = "columba-metacache-base.db"
LOCK_FILE = "columba-metacache.lock"
_DELETES = "_bundle_deletes"
_SEQUENCE = "_bundle_sequence"
_T = TypeVar("_T")
_THREADS = 2
_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The process's metacache threads (created on first use; a forked worker makes its own)."""
    global _executor
    if _executor is None or _executor[0] != os.getpid():
        _executor = (os.getpid(), ThreadPoolExecutor(_THREADS, thread_name_prefix="metacache"))
    return _executor[1]


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run blocking SQLite/file work of an upload on the metacache threads."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), fn, *args)


_NAME_RE = re.compile(
    r"^bundle\.([0-9a-f]{1,16})\.([0-9a-f]{1,8})\.([0-9a-z]+)"
    r"(?:-([0-9a-f]{1,16})\.([0-9a-f]{1,8})\.([0-9a-z]+))?$"
)


# ---------------------------------------------------------------------- names


def _stamp() -> str:
    now = time.time_ns() // 1000
    return f"{now // 1_000_000:08x}.{now % 1_000_000:05x}.{uuid.uuid4().hex[:16]}"


def new_base_name() -> str:
    return f"bundle.{_stamp()}"


def new_diff_name(base: str) -> str:
    return f"{base}-{_stamp()}"


@dataclass(frozen=True, order=True)
class Bundle:
    """A parsed bundle name; ``when`` orders bundles (newest last)."""

    when: tuple[int, int, str]
    name: str
    base: str
    """The base's name (itself for a base)."""

    @property
    def is_diff(self) -> bool:
        return self.name != self.base


def parse_bundle(name: str) -> Bundle | None:
    m = _NAME_RE.match(name)
    if m is None:
        return None
    base = name.split("-", 1)[0]
    if m.group(4) is None:
        return Bundle((int(m.group(1), 16), int(m.group(2), 16), m.group(3)), name, base)
    return Bundle((int(m.group(4), 16), int(m.group(5), 16), m.group(6)), name, base)


def choose_bundles(names: list[str]) -> tuple[str, str | None] | None:
    """(base, newest diff of it or None) of the lineage holding the newest bundle."""
    bundles = [b for b in (parse_bundle(n) for n in names) if b is not None]
    bases = {b.name for b in bundles if not b.is_diff}
    usable = [b for b in bundles if b.base in bases]
    if not usable:
        return None
    newest = max(usable)
    if not newest.is_diff:
        return newest.name, None
    return newest.base, newest.name


def _idx_dir(username: str) -> str:
    return f"{username}/idx/"


async def list_bundles(fs: Fs, username: str) -> list[str]:
    """Names of the user's root bundles (sorted), from the fs listing (dictmap: the dict)."""
    prefix = _idx_dir(username)
    names = []
    async for path in fs.iter_files(prefix, recursive=False):
        name = path[len(prefix) :]
        if parse_bundle(name) is not None:
            names.append(name)
    return sorted(names)


# ---------------------------------------------------------------------- locks


@contextlib.asynccontextmanager
async def file_lock(path: Path, timeout: float = 60.0) -> AsyncIterator[None]:
    """An exclusive flock on `path` (created), polled without blocking the event loop."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageTemporaryError(f"timed out waiting for lock {path.name}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- SQLite work


def snapshot(db: Path, dest: Path) -> int:
    """Copy `db` consistently into `dest` (replaced); return the snapshot's change counter."""
    dest.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")
        finally:
            out.close()
    finally:
        src.close()
    return change_counter(dest)


def change_counter(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'change_counter'").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return 0 if row is None else int(row[0])


def _tables(conn: sqlite3.Connection, schema: str) -> dict[str, str]:
    rows = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_bundle_%'"
    )
    return {str(r[0]): str(r[1]) for r in rows}


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> tuple[list[str], list[str]]:
    info = conn.execute(f'PRAGMA {schema}.table_info("{table}")').fetchall()
    cols = [str(r[1]) for r in info]
    pks = [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: int(r[5]))]
    return cols, pks


_KEYED_TABLES: dict[str, tuple[str, ...]] = {"message_cache": (), "sort_keys": ("version",)}
"""Tables whose rows never change under their key (besides the columns named, compared too):
a diff compares keys rather than whole rows."""


def make_diff(snap: Path, base: Path, out: Path) -> bool:
    """Write into `out` what changed from `base` to `snap`; False when a base is needed instead
    (the schemas differ or a table has no primary key)."""
    out.unlink(missing_ok=True)
    conn = sqlite3.connect(out, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS s", (str(snap),))
        conn.execute("ATTACH DATABASE ? AS b", (str(base),))
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE main.{_DELETES} (tbl TEXT NOT NULL, pk TEXT NOT NULL)")
        conn.execute(f"CREATE TABLE main.{_SEQUENCE} (name TEXT PRIMARY KEY, seq INTEGER)")
        base_tables = _tables(conn, "b")
        for table, sql in _tables(conn, "s").items():
            cols, pks = _columns(conn, "s", table)
            if not pks:
                return False
            conn.execute(sql)  # into main: the diff file holds the same tables
            q = f'"{table}"'
            if table not in base_tables:
                conn.execute(f"INSERT INTO main.{q} SELECT * FROM s.{q}")
                continue
            if _columns(conn, "b", table) != (cols, pks):
                return False
            match = " AND ".join(f'x."{c}" IS y."{c}"' for c in pks)
            if table in _KEYED_TABLES:  # immutable per key: compare keys, not blobs
                same = " AND ".join([match, *(f'x."{c}" IS y."{c}"' for c in _KEYED_TABLES[table])])
                conn.execute(
                    f"INSERT INTO main.{q} SELECT * FROM s.{q} AS x "
                    f"WHERE NOT EXISTS (SELECT 1 FROM b.{q} AS y WHERE {same})"
                )
            else:
                conn.execute(f"INSERT INTO main.{q} SELECT * FROM s.{q} EXCEPT SELECT * FROM b.{q}")
            keys = ", ".join(f'x."{c}"' for c in pks)
            conn.execute(
                f"INSERT INTO main.{_DELETES} SELECT ?, json_array({keys}) FROM b.{q} AS x "
                f"WHERE NOT EXISTS (SELECT 1 FROM s.{q} AS y WHERE {match})",
                (table,),
            )
        with contextlib.suppress(sqlite3.OperationalError):  # no AUTOINCREMENT table yet
            conn.execute(f"INSERT INTO main.{_SEQUENCE} SELECT name, seq FROM s.sqlite_sequence")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE s")
        conn.execute("DETACH DATABASE b")
        conn.execute("VACUUM")
        return True
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def apply_diff(db: Path, diff: Path) -> None:
    """Apply a diff bundle to a restored base (one transaction)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS d", (str(diff),))
        conn.execute("BEGIN IMMEDIATE")
        mine = _tables(conn, "main")
        theirs = _tables(conn, "d")
        for table, sql in theirs.items():
            if table not in mine:
                conn.execute(sql)
        deletes = conn.execute(f"SELECT tbl, pk FROM d.{_DELETES}").fetchall()
        for table, key in deletes:
            if table not in theirs:
                continue
            _cols, pks = _columns(conn, "main", str(table))
            where = " AND ".join(f'"{c}" IS ?' for c in pks)
            conn.execute(f'DELETE FROM main."{table}" WHERE {where}', json.loads(str(key)))
        for table in theirs:
            conn.execute(f'INSERT OR REPLACE INTO main."{table}" SELECT * FROM d."{table}"')
        seqs = conn.execute(f"SELECT name, seq FROM d.{_SEQUENCE}").fetchall()
        for name, seq in seqs:
            updated = conn.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, name)
            ).rowcount
            if not updated:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


# ---------------------------------------------------------------------- local state


@dataclass
class LocalState:
    base: str = ""
    last: str = ""
    counter: int = -1

    @classmethod
    def load(cls, directory: Path) -> LocalState:
        try:
            raw = json.loads((directory / STATE_FILE).read_text())
            return cls(str(raw.get("base", "")), str(raw.get("last", "")), int(raw["counter"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, directory: Path) -> None:
        tmp = directory / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"base": self.base, "last": self.last, "counter": self.counter}))
        os.replace(tmp, directory / STATE_FILE)


def local_index_exists(directory: Path) -> bool:
    path = directory / INDEX_FILENAME
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------- upload / pull


def _bundle_metadata(username: str, name: str, size: int) -> dict[str, str]:
    return {"username": username, "fname": name, "size": str(size)}


async def upload(fs: Fs, directory: Path, username: str, *, force_base: bool = False) -> str | None:
    """Upload the user's index as a diff or base bundle; the new name, or None if unchanged."""
    async with file_lock(directory / LOCK_FILE):
        index = directory / INDEX_FILENAME
        if not local_index_exists(index.parent):
            return None
        state = LocalState.load(directory)
        current = await _in_thread(change_counter, index)
        if current == state.counter and state.base and not force_base:
            return None
        snap = directory / f".columba-metacache-snap.{os.getpid()}.db"
        diff = directory / f".columba-metacache-diff.{os.getpid()}.db"
        base_copy = directory / BASE_COPY
        try:
            counter = await _in_thread(snapshot, index, snap)
            use_diff = False
            if state.base and base_copy.exists() and not force_base:
                use_diff = await _in_thread(make_diff, snap, base_copy, diff)
                if use_diff and diff.stat().st_size * 2 > base_copy.stat().st_size:
                    use_diff = False
            if use_diff:
                name = new_diff_name(state.base)
                data = await _in_thread(diff.read_bytes)
                await fs.write(
                    _idx_dir(username) + name, data, _bundle_metadata(username, name, len(data))
                )
                previous = state.last
                state.last, state.counter = name, counter
                state.save(directory)
                if previous != state.base and previous:
                    await _delete_quietly(fs, _idx_dir(username) + previous)
                return name
            name = new_base_name()
            data = await _in_thread(snap.read_bytes)
            await fs.write(
                _idx_dir(username) + name, data, _bundle_metadata(username, name, len(data))
            )
            os.replace(snap, base_copy)
            LocalState(name, name, counter).save(directory)
            await clean_remote(fs, username, keep=name)
            return name
        finally:
            snap.unlink(missing_ok=True)
            diff.unlink(missing_ok=True)


async def _delete_quietly(fs: Fs, path: str) -> None:
    try:
        await fs.delete(path)
    except FsNotFound:
        pass
    except FsError as err:
        log.warning("metacache: failed to delete old bundle %s: %s", path, err)


async def clean_remote(fs: Fs, username: str, keep: str | None = None) -> list[str]:
    """Delete every bundle but the chosen lineage (`keep`'s, or the newest); the deleted names."""
    names = await list_bundles(fs, username)
    choice = choose_bundles(names)
    if keep is not None:
        keep_set = {keep}
    elif choice is None:
        return []
    else:
        keep_set = {choice[0], *(x for x in choice[1:] if x)}
    gone = [n for n in names if n not in keep_set]
    for name in gone:
        await _delete_quietly(fs, _idx_dir(username) + name)
    return gone


async def pull(fs: Fs, directory: Path, username: str) -> str | None:
    """Restore the index file from the newest bundles (replacing any local file).

    Returns the bundle restored, or None when the user has none. The caller holds the lock and
    makes sure no process has the index open."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = directory / f".columba-metacache-pull.{os.getpid()}.db"
    tmp_diff = directory / f".columba-metacache-pulldiff.{os.getpid()}.db"
    try:
        for attempt in range(3):
            choice = choose_bundles(await list_bundles(fs, username))
            if choice is None:
                return None
            base, diff = choice
            try:
                data = await fs.read(_idx_dir(username) + base)
                extra = await fs.read(_idx_dir(username) + diff) if diff else None
            except FsNotFound:
                if attempt == 2:
                    raise
                continue  # cleaned up under us: list again
            break
        await asyncio.to_thread(tmp.write_bytes, data)
        await asyncio.to_thread(_check_sqlite, tmp)
        base_copy_tmp = directory / f".{BASE_COPY}.{os.getpid()}"
        await asyncio.to_thread(base_copy_tmp.write_bytes, data)
        if extra is not None:
            await asyncio.to_thread(tmp_diff.write_bytes, extra)
            await asyncio.to_thread(apply_diff, tmp, tmp_diff)
        counter = await asyncio.to_thread(change_counter, tmp)
        index = directory / INDEX_FILENAME
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, index)
        os.replace(base_copy_tmp, directory / BASE_COPY)
        LocalState(base, diff or base, counter).save(directory)
        return diff or base
    finally:
        tmp.unlink(missing_ok=True)
        tmp_diff.unlink(missing_ok=True)


def _check_sqlite(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise StorageError(f"metacache bundle is not an index: {err}") from err
    if ok is None or ok[0] != "ok":
        raise StorageError(f"metacache bundle is damaged: {ok}")


# ---------------------------------------------------------------------- per-process manager


class Metacache:
    """Restores indexes on open and schedules uploads for one storage object of a process."""

    def __init__(self, settings: StorageSettings) -> None:
        self.specs: Callable[[UserInfo], list[FsSpec]] | None = settings.metacache_specs
        self.upload_interval = settings.metacache_upload_interval
        self.close_delay = settings.metacache_close_delay
        self._due: dict[Path, tuple[float, UserInfo, asyncio.TimerHandle]] = {}
        self._limit: dict[Path, float] = {}
        """Per pending upload: the time a release may postpone it to at most."""
        self._running: dict[Path, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        return self.specs is not None

    def open_fs(self, user: UserInfo) -> Fs:
        if self.specs is None:
            raise StorageError("no metacache { fs … } stack is configured")
        try:
            return create_fs_stack(self.specs(user))
        except FsError as err:
            raise StorageError(f"metacache configuration: {err}") from err

    # ------------------------------------------------------------------ open

    async def ensure_local(
        self, user: UserInfo, directory: Path, obox_fs: Fs, run_reconcile: ReconcileFn
    ) -> None:
        """Make sure the user's index file exists: pull the newest bundles or rebuild."""
        if local_index_exists(directory):
            return
        async with file_lock(directory / LOCK_FILE):
            if local_index_exists(directory):
                return
            for name in (STATE_FILE, BASE_COPY):
                (directory / name).unlink(missing_ok=True)
            restored = None
            if self.enabled:
                fs = self.open_fs(user)
                try:
                    restored = await pull(fs, directory, user.username)
                except FsError as err:
                    raise StorageTemporaryError(f"metacache pull: {err}") from err
                finally:
                    await _close_quietly(fs)
            if restored:
                log.info("metacache: %s: restored index from %s", user.username, restored)
            await run_reconcile(directory)

    # ------------------------------------------------------------------ uploads

    def important_change(self, user: UserInfo, directory: Path) -> None:
        self._schedule(user, directory, self.upload_interval)

    def released(self, user: UserInfo, directory: Path) -> None:
        self._schedule(user, directory, self.close_delay, debounce=True)

    def _schedule(
        self, user: UserInfo, directory: Path, delay: float, *, debounce: bool = False
    ) -> None:
        """Upload ``directory`` at the latest ``delay`` seconds from now. *debounce* (a release):
        ``delay`` after this call even if an earlier upload was due, but no later than
        ``metacache_upload_interval`` after the first request still pending."""
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        when = now + max(delay, 0.0)
        current = self._due.get(directory)
        if current is None:
            handle = loop.call_at(when, self._fire, directory)
            self._due[directory] = (when, user, handle)
            self._limit[directory] = max(when, now + self.upload_interval)
            return
        limit = self._limit.get(directory, current[0])
        if debounce:
            when = min(when, limit)
        elif when >= current[0]:
            return
        if when == current[0]:
            return
        if when > current[0]:
            # Later: keep the timer, `_fire` re-arms it for the new time (no timer churn for a
            # user released after every delivery).
            self._due[directory] = (when, user, current[2])
            return
        current[2].cancel()
        handle = loop.call_at(when, self._fire, directory)
        self._due[directory] = (when, user, handle)
        self._limit[directory] = min(limit, max(when, now + self.upload_interval))

    def _fire(self, directory: Path) -> None:
        entry = self._due.get(directory)
        if entry is None:
            return
        loop = asyncio.get_running_loop()
        if entry[0] > loop.time() + 0.001:  # postponed meanwhile
            handle = loop.call_at(entry[0], self._fire, directory)
            self._due[directory] = (entry[0], entry[1], handle)
            return
        del self._due[directory]
        self._limit.pop(directory, None)
        user = entry[1]
        if directory in self._running:  # one upload at a time: run again afterwards
            self._schedule(user, directory, 0.5)
            return
        task = loop.create_task(self._upload_task(user, directory))
        self._running[directory] = task

    async def _upload_task(self, user: UserInfo, directory: Path) -> None:
        try:
            await self.flush(user, directory)
        except Exception as err:
            log.warning("metacache: upload of %s failed (retrying): %s", user.username, err)
            self._running.pop(directory, None)
            self._schedule(user, directory, min(self.upload_interval, 30.0))
        finally:
            if self._running.get(directory) is asyncio.current_task():
                del self._running[directory]

    async def flush(
        self, user: UserInfo, directory: Path, *, force_base: bool = False
    ) -> str | None:
        fs = self.open_fs(user)
        try:
            name = await upload(fs, directory, user.username, force_base=force_base)
        finally:
            await _close_quietly(fs)
        if name:
            log.info("metacache: %s: uploaded %s", user.username, name)
        return name

    async def flushall(self) -> None:
        """Upload every user with pending changes now (shutdown)."""
        pending = list(self._due.items())
        self._due.clear()
        self._limit.clear()
        for _when, _user, handle in (v for _k, v in pending):
            handle.cancel()
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for directory, (_when, user, _handle) in pending:
            try:
                await self.flush(user, directory)
            except Exception as err:
                log.warning("metacache: final upload of %s failed: %s", user.username, err)


async def _close_quietly(fs: Fs) -> None:
    try:
        await fs.close()
    except FsError as err:
        log.warning("metacache: closing fs stack: %s", err)
