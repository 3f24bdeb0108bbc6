"""Local, size-limited cache of plaintext objects (Dovecot Pro's ``fscache``).

It sits outermost in a stack (above compress and crypt), so the cache holds what callers read:
plaintext.  That is Dovecot's documented trade-off between speed and security: protect the cache
directory like the mail itself.

Settings: ``fs_fscache_path`` (required; the cache directory, already expanded per user, e.g.
``/var/cache/mails/%{user | sha1 % 4}`` -> ``/var/cache/mails/2``), ``fs_fscache_size`` (default
``512M``; ``K``/``M``/``G`` suffixes), ``fs_fscache_fsync`` (default ``no``: the cache is not
needed for durability; entries carry their length, so a file cut short by a crash is detected
and dropped).

Behaviour:

* Reads are read-through: a hit streams from the cache file without touching the parent; a
  miss streams from the parent while a copy goes to a temp file that is renamed into the cache
  when the whole object was read.  Objects larger than the cache are not cached.
* Writes are write-through: the entry is dropped first, the data goes to the parent (teed into a
  temp file on the way), and only after the parent's write succeeded is the temp file renamed
  into place.  A whole-object write (bytes, e.g. a delivery) drops the entry and writes the
  temp file in one thread job *while* the parent writes, and renames on the event loop: no
  thread hops on the write's critical path besides that overlapped one.  ``delete`` and
  ``copy`` drop the entry before and after the parent operation (``copy`` then hard-links the
  source's entry, if cached, to the target).  A cache failure (disk full, permissions) never
  fails the operation: the cache is skipped (and when an entry can't even be removed, this
  instance stops using the cache, so it never serves stale data).
* Metadata, ``stat``, ``exists`` and listings always come from the parent.
* Eviction is LRU by access time: a hit sets the entry file's mtime to now (atime is unreliable
  with ``relatime``/``noatime``), and when the size accounting exceeds ``fs_fscache_size`` the
  directory is scanned and the least recently used entries are deleted down to 90 %.
* No state is needed beyond the directory: the accounting is rebuilt by a scan at first use and
  at every eviction, and `FscacheFs.rescan` (``columba fscache rescan``) recounts, deletes
  damaged entries and stale temp files, and evicts.
* Several processes may share one cache directory: entries only appear by atomic rename and
  disappear by unlink (an open reader keeps its file).  Each process keeps its own size
  estimate, refreshed from disk at each eviction, so - as in Dovecot - the limit is not strict
  when several processes write at once; ``rescan`` restores it.  Within a process a read-through
  or write that was overtaken by a later write or delete of the same path never installs its
  copy.  Across processes, concurrent *overwrites* of one path may leave the slower writer's
  copy in the cache; Columba's stacks never overwrite objects (mail and index bundles have
  unique names), which is the workload fscache is for.

Layout: ``<path>/<hh>/<sha256(path)>`` files holding ``b"CFC1"`` + the data length (u64 BE) +
the data; ``<path>/tmp/`` for temp files being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from columba.config.types import SettingValueError, parse_size
from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    RESERVED_PREFIX,
    Fs,
    FsData,
    FsError,
    FsSpec,
    FsWrapper,
    aclose,
    aiter_bytes,
    check_path,
    register_fs,
    setting_bool,
)

__all__ = ["CacheStats", "FscacheFs"]

log = logging.getLogger(__name__)

_MAGIC = b"CFC1"
_HEADER = struct.Struct(">4sQ")
_TMP_DIR = "tmp"
_TMP_PREFIX = RESERVED_PREFIX + "tmp."
_STALE_TMP_SECONDS = 3600.0
_THREAD_THRESHOLD = 64 * 1024
_LOW_WATER = 0.9


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Result of a scan: entries and bytes kept, entries evicted or dropped as damaged."""

    files: int
    bytes: int
    evicted: int
    damaged: int


class _Slot:
    """In-process bookkeeping of one path while operations on it are in flight."""

    __slots__ = ("users", "version")

    def __init__(self) -> None:
        self.users = 0
        self.version = 0


class _Sink:
    """A temp file receiving a copy of an object; gives up quietly on any error."""

    def __init__(self, cache: FscacheFs) -> None:
        self.cache = cache
        self.file: BinaryIO | None = None
        self.tmp = ""
        self.size = 0
        self.ok = True

    def _open(self) -> None:
        self.tmp = self.cache._tmp_name()
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/discard
        self.file.write(_HEADER.pack(_MAGIC, 0))

    def _write(self, chunk: bytes) -> None:
        if self.file is None:
            self._open()
        assert self.file is not None
        self.file.write(chunk)

    async def feed(self, chunk: bytes) -> None:
        if not self.ok or self.cache.disabled:
            await self.discard()
            return
        self.size += len(chunk)
        if self.size > self.cache.limit:
            await self.discard()
            return
        try:
            if len(chunk) >= _THREAD_THRESHOLD or self.file is None:
                await asyncio.to_thread(self._write, chunk)
            else:
                self._write(chunk)
        except OSError as err:
            self.cache._warn("write", err)
            await self.discard()

    def _finish(self, target: str) -> None:
        if self.file is None:
            self._open()
        assert self.file is not None
        self.file.seek(0)
        self.file.write(_HEADER.pack(_MAGIC, self.size))
        self.file.flush()
        if self.cache.fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(self.tmp, target)
        self.tmp = ""

    async def install(self, path: str) -> None:
        """Rename the complete copy into the cache as the entry of `path`."""
        if not self.ok or self.cache.disabled:
            return
        try:
            await asyncio.to_thread(self._finish, self.cache._entry(path))
        except OSError as err:
            self.cache._warn("install", err)
            await self.discard()
            return
        self.ok = False
        await self.cache._added(_HEADER.size + self.size)

    def _discard(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = ""

    async def discard(self) -> None:
        self.ok = False
        if self.file is not None or self.tmp:
            await asyncio.to_thread(self._discard)


def _unlink_staged(staging: asyncio.Future[tuple[bool, str]]) -> None:
    """Remove the temp file of a staging job whose write was cancelled meanwhile."""
    if staging.cancelled() or staging.exception() is not None:
        return
    tmp = staging.result()[1]
    if tmp:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@register_fs("fscache")
class FscacheFs(FsWrapper):
    def __init__(self, spec: FsSpec, parent: Fs) -> None:
        super().__init__(parent)
        s = spec.settings
        self.root = s.get("fs_fscache_path", "").strip()
        if not self.root:
            raise FsError("fscache: fs_fscache_path is not set")
        self.root = os.path.abspath(self.root)
        raw_size = s.get("fs_fscache_size", "").strip() or "512M"
        try:
            self.limit = parse_size(raw_size)
        except SettingValueError as err:
            raise FsError(f"fs_fscache_size: {err}") from None
        self.fsync = setting_bool(s, "fs_fscache_fsync", False)
        self._total: int | None = None  # estimated bytes in the cache; None: not scanned yet
        self._slots: dict[str, _Slot] = {}
        self._evict_lock = asyncio.Lock()
        self._warned = False
        self.disabled = False  # set when the cache can't be kept coherent

    # ------------------------------------------------------------------ helpers

    def _entry(self, path: str) -> str:
        digest = hashlib.sha256(path.encode()).hexdigest()
        return os.path.join(self.root, digest[:2], digest)

    def _tmp_name(self) -> str:
        directory = os.path.join(self.root, _TMP_DIR)
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}")

    def _warn(self, what: str, err: BaseException) -> None:
        # Once per instance: a broken cache must not flood the log; operations go on.
        if not self._warned:
            self._warned = True
            log.warning("fscache %s: %s failed, continuing without cache: %s", self.root, what, err)

    def _acquire(self, path: str) -> _Slot:
        slot = self._slots.get(path)
        if slot is None:
            slot = self._slots[path] = _Slot()
        slot.users += 1
        return slot

    def _release(self, path: str, slot: _Slot) -> None:
        slot.users -= 1
        if slot.users == 0 and self._slots.get(path) is slot:
            del self._slots[path]

    def _open_hit(self, path: str) -> BinaryIO | None:
        """The entry of `path` opened and positioned at the data, or None (miss / damaged)."""
        if self.disabled:
            return None
        entry = self._entry(path)
        try:
            f = open(entry, "rb")  # noqa: SIM115 - returned to the caller
        except OSError:
            return None
        try:
            head = f.read(_HEADER.size)
            size = os.fstat(f.fileno()).st_size
            ok = len(head) == _HEADER.size
            if ok:
                magic, length = _HEADER.unpack(head)
                ok = magic == _MAGIC and length == size - _HEADER.size
            if not ok:
                f.close()
                with contextlib.suppress(OSError):
                    os.unlink(entry)
                return None
            with contextlib.suppress(OSError):
                os.utime(f.fileno())  # access time for LRU
            return f
        except OSError:
            f.close()
            return None

    def _drop(self, path: str) -> None:
        try:
            os.unlink(self._entry(path))
        except FileNotFoundError:
            pass

    async def _invalidate(self, path: str) -> None:
        try:
            await asyncio.to_thread(self._drop, path)
        except OSError as err:
            # An entry we can't remove could be served stale: stop using the cache at all.
            self._warn("invalidate", err)
            self.disabled = True

    async def _added(self, size: int) -> None:
        if self._total is None:
            await self._scan_and_evict(validate=False)
            return
        self._total += size
        if self._total > self.limit:
            await self._scan_and_evict(validate=False)

    # ------------------------------------------------------------------ scanning

    def _scan(self, validate: bool) -> CacheStats:
        entries: list[tuple[float, int, str]] = []
        damaged = 0
        now = time.time()
        try:
            tops = list(os.scandir(self.root))
        except FileNotFoundError:
            return CacheStats(0, 0, 0, 0)
        for top in tops:
            if top.name == _TMP_DIR:
                for tmp in os.scandir(top.path):
                    with contextlib.suppress(OSError):
                        if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                            os.unlink(tmp.path)
                continue
            if len(top.name) != 2 or not top.is_dir(follow_symlinks=False):
                continue
            for item in os.scandir(top.path):
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if validate and not self._valid_file(item.path, st.st_size):
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
                    damaged += 1
                    continue
                entries.append((st.st_mtime, st.st_size, item.path))
        total = sum(size for _, size, _ in entries)
        evicted = 0
        if total > self.limit:
            target = int(self.limit * _LOW_WATER)
            entries.sort()
            for _, size, entry in entries:
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry)
                total -= size
                evicted += 1
        return CacheStats(len(entries) - evicted, total, evicted, damaged)

    @staticmethod
    def _valid_file(path: str, size: int) -> bool:
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER.size)
        except OSError:
            return False
        if len(head) != _HEADER.size:
            return False
        magic, length = _HEADER.unpack(head)
        return bool(magic == _MAGIC and length == size - _HEADER.size)

    async def _scan_and_evict(self, validate: bool) -> CacheStats:
        async with self._evict_lock:
            try:
                stats = await asyncio.to_thread(self._scan, validate)
            except OSError as err:
                self._warn("scan", err)
                return CacheStats(0, self._total or 0, 0, 0)
            self._total = stats.bytes
            return stats

    async def rescan(self) -> CacheStats:
        """Recount the cache from disk, drop damaged entries and stale temp files, evict to the
        limit (``columba fscache rescan``)."""
        return await self._scan_and_evict(validate=True)

    async def cached_bytes(self) -> int:
        """The current size accounting (scans on first use)."""
        if self._total is None:
            await self._scan_and_evict(validate=False)
        return self._total or 0

    # ------------------------------------------------------------------ reads

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        check_path(path)
        hit = await asyncio.to_thread(self._open_hit, path)
        if hit is not None:
            try:
                while True:
                    chunk = await asyncio.to_thread(hit.read, chunk_size)
                    if not chunk:
                        return
                    yield chunk
            finally:
                hit.close()
        slot = self._acquire(path)
        version = slot.version
        sink = _Sink(self)
        source = self.parent.read_stream(path, chunk_size)
        complete = False
        try:
            async for chunk in source:
                await sink.feed(chunk)
                yield chunk
            complete = True
        finally:
            try:
                await aclose(source)
                if complete and slot.version == version:
                    await sink.install(path)
            finally:
                await sink.discard()
                self._release(path, slot)

    async def read(self, path: str) -> bytes:
        check_path(path)
        hit = await asyncio.to_thread(self._open_hit, path)
        if hit is not None:
            try:
                return await asyncio.to_thread(hit.read)
            finally:
                hit.close()
        slot = self._acquire(path)
        version = slot.version
        try:
            data = await self.parent.read(path)
            if slot.version == version and len(data) <= self.limit:
                await self._store(path, data)
            return data
        finally:
            self._release(path, slot)

    async def _store(self, path: str, data: bytes) -> None:
        sink = _Sink(self)
        try:
            await sink.feed(data)
            await sink.install(path)
        finally:
            await sink.discard()

    # ------------------------------------------------------------------ writes

    async def _tee(self, data: FsData, sink: _Sink) -> AsyncIterator[bytes]:
        async for chunk in aiter_bytes(data):
            await sink.feed(chunk)
            yield chunk

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        check_path(path)
        slot = self._acquire(path)
        slot.version += 1
        version = slot.version
        sink = _Sink(self)
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                await self._write_bytes(path, bytes(data), metadata, slot, version)
                return
            await self._invalidate(path)
            await self.parent.write(path, self._tee(data, sink), metadata)
            if slot.version == version:
                await sink.install(path)
        finally:
            await sink.discard()
            self._release(path, slot)

    def _drop_and_stage(self, path: str, data: bytes | None) -> tuple[bool, str]:
        """Drop the entry of `path` and (if `data`) write its new entry to a temp file; one
        thread job running while the parent writes. Returns (dropped, temp file or "")."""
        try:
            self._drop(path)
        except OSError:
            return False, ""
        if data is None:
            return True, ""
        tmp = ""
        try:
            tmp = self._tmp_name()
            with open(tmp, "wb") as f:
                f.write(_HEADER.pack(_MAGIC, len(data)))
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.makedirs(os.path.dirname(self._entry(path)), exist_ok=True)
        except OSError as err:
            self._warn("write", err)
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            return True, ""
        return True, tmp

    async def _write_bytes(
        self,
        path: str,
        data: bytes,
        metadata: Mapping[str, str] | None,
        slot: _Slot,
        version: int,
    ) -> None:
        """A whole-object write: dropping the old entry and staging the new one overlap the
        parent's write (one thread hop, not three on the write's critical path); the staged
        entry is renamed into place only once the parent's write succeeded and no later
        write or delete of the path started meanwhile."""
        cache = len(data) <= self.limit and not self.disabled
        staging = asyncio.ensure_future(
            asyncio.to_thread(self._drop_and_stage, path, data if cache else None)
        )
        written = False
        try:
            await self.parent.write(path, data, metadata)
            written = True
        finally:
            # Whatever the outcome, the old entry must be gone before this returns.
            try:
                dropped, tmp = await asyncio.shield(staging)
            except asyncio.CancelledError:
                staging.add_done_callback(_unlink_staged)
                raise
            except Exception:
                dropped, tmp = False, ""
            if not dropped:
                # An entry we can't remove could be served stale: stop using the cache at all.
                self._warn("invalidate", OSError(f"can't remove the entry of {path}"))
                self.disabled = True
            if tmp and not (written and slot.version == version and not self.disabled):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                tmp = ""
        if not tmp:
            return
        try:
            os.rename(tmp, self._entry(path))  # one metadata operation: no thread hop
        except OSError as err:
            self._warn("install", err)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        await self._added(_HEADER.size + len(data))

    async def delete(self, path: str) -> None:
        check_path(path)
        slot = self._acquire(path)
        slot.version += 1
        try:
            await self._invalidate(path)
            await self.parent.delete(path)
            await self._invalidate(path)
        finally:
            self._release(path, slot)

    def _link(self, src: str, dst: str) -> bool:
        tmp = self._tmp_name()
        try:
            os.link(self._entry(src), tmp)
        except FileNotFoundError:
            return False
        try:
            target = self._entry(dst)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    async def copy(self, src: str, dst: str) -> None:
        check_path(src)
        check_path(dst)
        slot = self._acquire(dst)
        slot.version += 1
        version = slot.version
        try:
            await self._invalidate(dst)
            await self.parent.copy(src, dst)
            await self._invalidate(dst)
            if slot.version == version and src != dst:
                try:
                    await asyncio.to_thread(self._link, src, dst)
                except OSError as err:
                    self._warn("copy", err)
        finally:
            self._release(dst, slot)
