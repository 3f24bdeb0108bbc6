"""Fault-injection wrapper (Dovecot's ``randomfail``): operations fail with `FsTemporaryError`.

Settings: ``fs_randomfail_ops`` as a Dovecot string list flattened to
``fs_randomfail_ops/<op> = <percent>`` keys, or the 2.3 form ``fs_randomfail_ops = read=100,
write=50``.  Ops: ``read`` (read, read_stream), ``write``, ``stat``, ``exists``, ``delete``,
``copy``, ``iter`` (iter_files, iter_dirs), ``metadata`` (get_metadata), and ``all`` for every op
without its own value.  Percent may be fractional.  ``fs_randomfail_seed`` makes the failure
sequence reproducible (Columba-specific).

Streamed reads and writes fail either before the first byte or part-way through, so callers'
cleanup of half-done streams is exercised too.  A failed write never reaches the parent's commit
point (the parent's ``write`` is interrupted, not completed).  Tests can change probabilities at
run time with `RandomFailFs.set_probability`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsData,
    FsError,
    FsSpec,
    FsStat,
    FsTemporaryError,
    FsWrapper,
    aclose,
    aiter_bytes,
    register_fs,
)

__all__ = ["OPS", "RandomFailFs"]

OPS = ("read", "write", "stat", "exists", "delete", "copy", "iter", "metadata")


def parse_ops(settings: Mapping[str, str]) -> dict[str, float]:
    raw: dict[str, str] = {}
    inline = settings.get("fs_randomfail_ops", "").strip()
    if inline:
        for item in inline.replace(" ", ",").split(","):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep:
                raise FsError(f"fs_randomfail_ops: expected op=percent, got {item!r}")
            raw[name.strip()] = value.strip()
    for key, value in settings.items():
        if key.startswith("fs_randomfail_ops/"):
            raw[key.split("/", 1)[1]] = value
    probs: dict[str, float] = {}
    for name, value in raw.items():
        if name != "all" and name not in OPS:
            raise FsError(f"fs_randomfail_ops: unknown op {name!r}")
        try:
            pct = float(value)
        except ValueError:
            raise FsError(f"fs_randomfail_ops/{name}: not a number: {value!r}") from None
        if not 0 <= pct <= 100:
            raise FsError(f"fs_randomfail_ops/{name}: percent out of range: {value!r}")
        probs[name] = pct
    default = probs.pop("all", 0.0)
    return {op: probs.get(op, default) for op in OPS}


@register_fs("randomfail")
class RandomFailFs(FsWrapper):
    def __init__(self, spec: FsSpec, parent: Fs) -> None:
        super().__init__(parent)
        self.percent = parse_ops(spec.settings)
        seed = spec.settings.get("fs_randomfail_seed", "")
        self.random = random.Random(seed) if seed else random.Random()
        self.failures = 0

    def set_probability(self, op: str, percent: float) -> None:
        """Change one op's failure percent (``all`` changes every op)."""
        for name in OPS if op == "all" else (op,):
            if name not in OPS:
                raise ValueError(f"unknown op {op!r}")
            self.percent[name] = percent

    def _hit(self, op: str) -> bool:
        pct = self.percent[op]
        return pct > 0 and self.random.random() * 100 < pct

    def _maybe_fail(self, op: str, path: str) -> None:
        if self._hit(op):
            self.failures += 1
            raise FsTemporaryError(f"randomfail: injected {op} failure: {path}")

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        fail = self._hit("read")
        fail_before = fail and self.random.random() < 0.5
        if fail_before:
            self.failures += 1
            raise FsTemporaryError(f"randomfail: injected read failure: {path}")
        source = self.parent.read_stream(path, chunk_size)
        try:
            async for chunk in source:
                if fail:
                    self.failures += 1
                    cut = self.random.randrange(len(chunk) + 1)
                    if cut:
                        yield chunk[:cut]
                    raise FsTemporaryError(f"randomfail: injected read failure: {path}")
                yield chunk
            if fail:
                self.failures += 1
                raise FsTemporaryError(f"randomfail: injected read failure: {path}")
        finally:
            await aclose(source)

    async def read(self, path: str) -> bytes:
        self._maybe_fail("read", path)
        return await self.parent.read(path)

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        if not self._hit("write"):
            await self.parent.write(path, data, metadata)
            return
        self.failures += 1
        if self.random.random() < 0.5:
            raise FsTemporaryError(f"randomfail: injected write failure: {path}")

        # Fail part-way: the parent sees a stream that breaks before its end.
        async def broken() -> AsyncIterator[bytes]:
            async for chunk in aiter_bytes(data):
                if self.random.random() < 0.5:
                    yield chunk[: len(chunk) // 2]
                    break
                yield chunk
            raise FsTemporaryError(f"randomfail: injected write failure: {path}")

        await self.parent.write(path, broken(), metadata)
        raise FsTemporaryError(f"randomfail: injected write failure: {path}")  # pragma: no cover

    async def stat(self, path: str) -> FsStat:
        self._maybe_fail("stat", path)
        return await self.parent.stat(path)

    async def exists(self, path: str) -> bool:
        self._maybe_fail("exists", path)
        return await self.parent.exists(path)

    async def delete(self, path: str) -> None:
        self._maybe_fail("delete", path)
        await self.parent.delete(path)

    async def copy(self, src: str, dst: str) -> None:
        self._maybe_fail("copy", src)
        await self.parent.copy(src, dst)

    async def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        self._maybe_fail("iter", prefix)
        source = self.parent.iter_files(prefix, recursive=recursive)
        try:
            async for path in source:
                yield path
        finally:
            await aclose(source)

    async def iter_dirs(self, prefix: str = "") -> list[str]:
        self._maybe_fail("iter", prefix)
        return await self.parent.iter_dirs(prefix)

    async def get_metadata(self, path: str) -> dict[str, str]:
        self._maybe_fail("metadata", path)
        return await self.parent.get_metadata(path)
