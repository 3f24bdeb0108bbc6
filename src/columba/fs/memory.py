"""In-process object store for tests.

Settings: ``fs_memory_name`` (optional): stacks created with the same name in one process share
their objects, so a test can "reopen" a store.  Without it every instance is private.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsData,
    FsNotFound,
    FsSpec,
    FsStat,
    aiter_bytes,
    check_path,
    dir_prefix,
    register_fs,
)

__all__ = ["MemoryFs"]


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    metadata: dict[str, str]
    mtime: float


class _Store:
    def __init__(self) -> None:
        self.objects: dict[str, _Object] = {}
        self.paths: list[str] = []


_NAMED: dict[str, _Store] = {}


@register_fs("memory")
class MemoryFs(Fs):
    def __init__(self, spec: FsSpec) -> None:
        name = spec.settings.get("fs_memory_name", "")
        self._store = _NAMED.setdefault(name, _Store()) if name else _Store()

    def _get(self, path: str) -> _Object:
        check_path(path)
        obj = self._store.objects.get(path)
        if obj is None:
            raise FsNotFound(path)
        return obj

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        data = self._get(path).data
        for start in range(0, len(data), chunk_size):
            await asyncio.sleep(0)
            yield data[start : start + chunk_size]

    async def read(self, path: str) -> bytes:
        await asyncio.sleep(0)
        return self._get(path).data

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        check_path(path)
        parts = [chunk async for chunk in aiter_bytes(data)]
        store = self._store
        if path not in store.objects:
            bisect.insort(store.paths, path)
        store.objects[path] = _Object(b"".join(parts), dict(metadata or {}), time.time())

    async def stat(self, path: str) -> FsStat:
        await asyncio.sleep(0)
        obj = self._get(path)
        return FsStat(len(obj.data), obj.mtime)

    async def delete(self, path: str) -> None:
        await asyncio.sleep(0)
        self._get(path)
        del self._store.objects[path]
        del self._store.paths[bisect.bisect_left(self._store.paths, path)]

    async def copy(self, src: str, dst: str) -> None:
        obj = self._get(src)
        await self.write(dst, obj.data, obj.metadata)

    async def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        base = dir_prefix(prefix)
        paths = self._store.paths
        i = bisect.bisect_left(paths, base)
        while i < len(paths):
            path = paths[i]
            if not path.startswith(base):
                break
            i += 1
            if recursive or "/" not in path[len(base) :]:
                yield path
            await asyncio.sleep(0)
            # Re-find our position if the store changed while we were suspended.
            i = bisect.bisect_right(paths, path)

    async def get_metadata(self, path: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return dict(self._get(path).metadata)
