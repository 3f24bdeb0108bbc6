"""Terminal fs driver storing each object as a file under ``fs_posix_prefix``.

Durability: ``write`` creates ``.columba-tmp.<random>`` in the target directory, writes and
fsyncs it, renames it over the target, and fsyncs the directory (and every directory it had to
create), so an object is complete and durable when ``write`` returns and a crash leaves either
the old object or the new one, plus at worst an invisible temp file. ``delete`` does not fsync
the directory (as Dovecot's expunge doesn't): after a power loss a deleted object may be back;
nothing durable points at it any more (the dictmap row's delete is durable, and an index that
lost the expunge too shows the message again, as a maildir would), and ``columba obox cleanup``
removes such leftovers.

Metadata is stored in extended attributes ``user.columba.<key>`` set on the temp file before the
rename, so data and metadata change in one atomic step (ext4, xfs, btrfs and tmpfs on Linux 6.6+
support user xattrs; on a filesystem without them a write with metadata raises `FsError`).

Settings: ``fs_posix_prefix`` (root directory, required), ``fs_posix_mode`` (octal file mode,
default ``0600``), ``fs_posix_fsync`` (default ``yes``; ``no`` only for throwaway test data),
``fs_posix_autodelete_empty_directories`` (default ``yes``: a delete removes the directories it
emptied, up to the prefix; a concurrent write into such a directory recreates it and retries).

All file I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat as stat_mod
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TypeVar

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    RESERVED_PREFIX,
    Fs,
    FsData,
    FsError,
    FsNoSpace,
    FsNotFound,
    FsSpec,
    FsStat,
    FsTemporaryError,
    check_path,
    dir_prefix,
    register_fs,
    setting_bool,
)

__all__ = ["PosixFs"]

_T = TypeVar("_T")

TEMP_PREFIX = RESERVED_PREFIX + "tmp."
XATTR_PREFIX = "user.columba."

_NOSPACE = {errno.ENOSPC, errno.EDQUOT}
_TEMPORARY = {errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY}
_NOTFOUND = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def _map_os_error(err: OSError, path: str, *, missing_ok_notfound: bool = True) -> FsError:
    code = err.errno
    if code in _NOSPACE:
        return FsNoSpace(f"{path}: {err.strerror}")
    if code in _TEMPORARY:
        return FsTemporaryError(f"{path}: {err.strerror}")
    if missing_ok_notfound and code in _NOTFOUND:
        return FsNotFound(path)
    return FsError(f"{path}: {err.strerror or err}")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


@register_fs("posix")
class PosixFs(Fs):
    def __init__(self, spec: FsSpec) -> None:
        prefix = spec.settings.get("fs_posix_prefix", "")
        if not prefix:
            raise FsError("posix fs: fs_posix_prefix is not set")
        self.root = os.path.abspath(prefix)
        try:
            self.mode = int(spec.settings.get("fs_posix_mode", "") or "0600", 8)
        except ValueError:
            raise FsError("fs_posix_mode: not an octal number") from None
        self.fsync = setting_bool(spec.settings, "fs_posix_fsync", True)
        self.autodelete_dirs = setting_bool(
            spec.settings, "fs_posix_autodelete_empty_directories", True
        )

    # ------------------------------------------------------------------ helpers (thread side)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path))

    def _sync_dir(self, path: str) -> None:
        if self.fsync:
            _fsync_dir(path)

    def _makedirs(self, directory: str) -> None:
        """Create `directory` and missing parents, fsyncing each new entry's parent."""
        if os.path.isdir(directory):
            return
        missing: list[str] = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
        for m in reversed(missing):
            try:
                os.mkdir(m, 0o700)
            except FileExistsError:
                if not os.path.isdir(m):
                    raise NotADirectoryError(errno.ENOTDIR, "a parent is a file", m) from None
                continue
            self._sync_dir(os.path.dirname(m))

    def _open_temp(self, full: str) -> tuple[int, str]:
        directory = os.path.dirname(full)
        if os.path.isdir(full):
            raise IsADirectoryError(errno.EISDIR, "is a directory", full)
        tmp = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for attempt in range(10):
            self._makedirs(directory)
            try:
                # Once the temp file exists its directory is not empty, so a concurrent
                # autodelete can't remove it before our rename.
                return os.open(tmp, flags, self.mode), tmp
            except FileNotFoundError:
                if attempt == 9:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(self, fd: int, tmp: str, full: str, metadata: Mapping[str, str] | None) -> None:
        """Seal the temp file and rename it into place.  Always closes `fd`."""
        try:
            if metadata:
                self._set_xattrs(fd, metadata)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, full)
        self._sync_dir(os.path.dirname(full))

    @staticmethod
    def _set_xattrs(fd: int, metadata: Mapping[str, str]) -> None:
        for key, value in metadata.items():
            if not key or "\0" in key or "\0" in value:
                raise FsError(f"invalid metadata key or value {key!r}")
            try:
                os.setxattr(fd, XATTR_PREFIX + key, value.encode())
            except OSError as err:
                if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise FsError("posix fs: filesystem has no user xattrs for metadata") from err
                raise

    @staticmethod
    def _abort(fd: int | None, tmp: str | None) -> None:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _write_bytes(self, full: str, data: bytes, metadata: Mapping[str, str] | None) -> None:
        fd, tmp = self._open_temp(full)
        try:
            _write_all(fd, data)
        except BaseException:
            self._abort(fd, tmp)
            raise
        try:
            self._finish(fd, tmp, full, metadata)
        except BaseException:
            self._abort(None, tmp)
            raise

    def _read_all(self, full: str) -> bytes:
        with open(full, "rb") as f:
            return f.read()

    def _open_read(self, full: str) -> int:
        fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if stat_mod.S_ISDIR(os.fstat(fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", full)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _stat(self, full: str) -> FsStat:
        st = os.stat(full)
        if not stat_mod.S_ISREG(st.st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a file", full)
        return FsStat(st.st_size, st.st_mtime)

    def _delete(self, full: str) -> None:
        if os.path.isdir(full):
            raise FileNotFoundError(errno.ENOENT, "not a file", full)
        os.unlink(full)
        directory = os.path.dirname(full)
        if self.autodelete_dirs:
            while directory != self.root and directory.startswith(self.root + os.sep):
                try:
                    os.rmdir(directory)  # fails (harmlessly) unless empty
                except OSError:
                    break
                directory = os.path.dirname(directory)
                self._sync_dir(directory)

    def _get_metadata(self, full: str) -> dict[str, str]:
        fd = self._open_read(full)
        try:
            return self._read_xattrs(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _read_xattrs(fd: int) -> dict[str, str]:
        try:
            names = os.listxattr(fd)
        except OSError as err:
            if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return {}
            raise
        out: dict[str, str] = {}
        for name in names:
            if name.startswith(XATTR_PREFIX):
                out[name[len(XATTR_PREFIX) :]] = os.getxattr(fd, name).decode()
        return out

    def _copy(self, src: str, dst: str) -> None:
        sfd = self._open_read(src)
        fd: int | None = None
        tmp: str | None = None
        try:
            metadata = self._read_xattrs(sfd)
            fd, tmp = self._open_temp(dst)
            while True:
                block = os.read(sfd, 1 << 20)
                if not block:
                    break
                _write_all(fd, block)
            sealing, fd = fd, None
            self._finish(sealing, tmp, dst, metadata)
        except BaseException:
            self._abort(fd, tmp)
            raise
        finally:
            os.close(sfd)

    def _list(self, base: str, recursive: bool) -> list[str]:
        out: list[str] = []

        def walk(rel: str) -> None:
            directory = os.path.join(self.root, rel) if rel else self.root
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                return
            # Sorting dirs as "name/" makes the walk produce full paths in code point order.
            keyed = []
            for entry in entries:
                if entry.name.startswith(RESERVED_PREFIX):
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if is_dir and not recursive:
                    continue
                if not is_dir and not entry.is_file(follow_symlinks=False):
                    continue
                keyed.append((entry.name + "/" if is_dir else entry.name, is_dir))
            keyed.sort()
            for key, is_dir in keyed:
                if is_dir:
                    walk(rel + key)
                else:
                    out.append(rel + key)

        walk(base)
        return out

    # ------------------------------------------------------------------ async API

    async def _call(self, path: str, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return await asyncio.to_thread(fn, *args)
        except FsError:
            raise
        except OSError as err:
            raise _map_os_error(err, path) from err

    async def read(self, path: str) -> bytes:
        full = self._full(path)
        return await self._call(path, self._read_all, full)

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        full = self._full(path)
        fd = await self._call(path, self._open_read, full)
        try:
            while True:
                chunk = await self._call(path, os.read, fd, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            os.close(fd)

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        full = self._full(path)
        if isinstance(data, bytes | bytearray | memoryview):
            await self._call(path, self._write_bytes, full, bytes(data), metadata)
            return
        fd: int | None = None
        tmp: str | None = None
        try:
            opened_fd, tmp = await self._call(path, self._open_temp, full)
            fd = opened_fd
            async for chunk in data:
                if chunk:
                    await self._call(path, _write_all, opened_fd, chunk)
            sealing, fd = opened_fd, None
            await self._call(path, self._finish, sealing, tmp, full, metadata)
        except BaseException:
            # Quick local cleanup; done inline so cancellation can't skip it.
            self._abort(fd, tmp)
            raise

    async def stat(self, path: str) -> FsStat:
        return await self._call(path, self._stat, self._full(path))

    async def exists(self, path: str) -> bool:
        full = self._full(path)
        return await self._call(path, os.path.isfile, full)

    async def delete(self, path: str) -> None:
        await self._call(path, self._delete, self._full(path))

    async def copy(self, src: str, dst: str) -> None:
        await self._call(src, self._copy, self._full(src), self._full(dst))

    async def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        base = dir_prefix(prefix)
        paths = await self._call(prefix, self._list, base, recursive)
        for path in paths:
            yield path

    async def get_metadata(self, path: str) -> dict[str, str]:
        return await self._call(path, self._get_metadata, self._full(path))
