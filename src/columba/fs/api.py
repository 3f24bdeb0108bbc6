"""The fs (object storage) API: abstract `Fs`, errors, wrapper base and the driver registry.

A storage stack is built from `FsSpec`s, outermost first, the way Dovecot's ordered
`fs NAME { }` blocks are: ``[compress, dictmap, posix]`` makes a compress wrapper whose parent is
a dictmap wrapper whose parent is the terminal posix driver.

Contract shared by every driver (tests/contract/test_fs_contract.py checks it):

* Paths are relative, ``/``-separated, non-empty, without empty, ``.`` or ``..`` components, NUL,
  or a component starting with the reserved ``.columba-`` prefix. Anything else raises `FsError`.
* ``write`` replaces the whole object atomically and is durable when it returns.  Readers see the
  old or the new object, never a mix.  ``metadata`` replaces the object's metadata.
* ``read``/``read_stream``/``stat``/``get_metadata``/``delete``/``copy`` raise `FsNotFound` for a
  missing path.  Errors of ``read_stream`` are raised at the first iteration.
* ``iter_files(prefix)`` yields the full paths of the files below the directory ``prefix``
  (``""`` is the root; a trailing ``/`` is optional), sorted by code point; ``recursive=False``
  yields only the files directly in that directory.
* `FsTemporaryError` is retryable (IMAP ``NO [UNAVAILABLE]``, LMTP ``451``); `FsNoSpace` means the
  store is full; other `FsError`s are permanent for that request.

Settings are Dovecot setting names with values already variable-expanded by the caller
(``storage_objectid_prefix = %{user}/mails/`` arrives as ``alice/mails/``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

if TYPE_CHECKING:
    from columba.dict.api import Dict

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "RESERVED_PREFIX",
    "Fs",
    "FsCorrupt",
    "FsData",
    "FsError",
    "FsNoSpace",
    "FsNotFound",
    "FsSpec",
    "FsStat",
    "FsTemporaryError",
    "FsWrapper",
    "aclose",
    "aiter_bytes",
    "check_path",
    "create_fs_stack",
    "dir_prefix",
    "fs_drivers",
    "register_fs",
]

DEFAULT_CHUNK_SIZE = 256 * 1024
RESERVED_PREFIX = ".columba-"


class FsError(Exception):
    """A storage operation failed; permanent for this request unless a subclass says otherwise."""


class FsNotFound(FsError):  # noqa: N818 - the name the API documents
    """The path does not exist."""


class FsCorrupt(FsError):  # noqa: N818 - reads as the condition
    """The object exists but its bytes can't be turned back into what was written
    (truncated, a broken crypt header or chunk, a broken compressed stream)."""


class FsTemporaryError(FsError):
    """A retryable failure (backend unreachable, timeout, injected fault)."""


class FsNoSpace(FsError):  # noqa: N818 - the name the API documents
    """The store is out of space or over its quota (ENOSPC, EDQUOT)."""


@dataclass(frozen=True, slots=True)
class FsStat:
    """Size in bytes of the object as read through this fs; mtime in seconds since the epoch."""

    size: int
    mtime: float


FsData = bytes | bytearray | memoryview | AsyncIterable[bytes]


def check_path(path: str) -> str:
    """Validate an object path (see the module docstring); return it unchanged."""
    if not isinstance(path, str) or not path:
        raise FsError(f"invalid path {path!r}: empty")
    if "\0" in path:
        raise FsError(f"invalid path {path!r}: NUL byte")
    if path.startswith("/") or path.startswith("\\"):
        raise FsError(f"invalid path {path!r}: absolute")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise FsError(f"invalid path {path!r}: empty, '.' or '..' component")
        if part.startswith(RESERVED_PREFIX):
            raise FsError(f"invalid path {path!r}: reserved name")
    return path


def dir_prefix(prefix: str) -> str:
    """Normalise an iteration prefix to ``""`` or ``"a/b/"``; validate it like a path."""
    stripped = prefix.strip("/") if prefix else ""
    if prefix.startswith("/"):
        raise FsError(f"invalid prefix {prefix!r}: absolute")
    if not stripped:
        return ""
    check_path(stripped)
    return stripped + "/"


async def aiter_bytes(data: FsData, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Iterate `data` (bytes-like or an async iterable of bytes) as non-empty bytes chunks."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
        return
    async for chunk in data:
        if chunk:
            yield bytes(chunk)


async def aclose(iterator: AsyncIterator[bytes] | AsyncIterator[str]) -> None:
    """Close an async generator early (runs its ``finally``: files, connections)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


class Fs(ABC):
    """An object store.  Instances are used from one event loop."""

    name: ClassVar[str] = ""

    @abstractmethod
    def read_stream(self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Stream the object's bytes in chunks of at most about `chunk_size` bytes."""

    async def read(self, path: str) -> bytes:
        """The whole object."""
        parts = [chunk async for chunk in self.read_stream(path)]
        return b"".join(parts)

    @abstractmethod
    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Create or replace the object atomically; durable when this returns."""

    @abstractmethod
    async def stat(self, path: str) -> FsStat: ...

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except FsNotFound:
            return False
        return True

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Remove the object; `FsNotFound` if it does not exist."""

    async def copy(self, src: str, dst: str) -> None:
        """Copy `src` with its metadata to `dst` (replacing `dst`)."""
        metadata = await self.get_metadata(src)
        await self.write(dst, self.read_stream(src), metadata)

    @abstractmethod
    def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        """Full paths of the files below directory `prefix`, sorted."""

    async def iter_dirs(self, prefix: str = "") -> list[str]:
        """Names (one component, sorted) of the subdirectories directly below `prefix`."""
        base = dir_prefix(prefix)
        names: set[str] = set()
        async for path in self.iter_files(base):
            rest = path[len(base) :]
            if "/" in rest:
                names.add(rest.split("/", 1)[0])
        return sorted(names)

    @abstractmethod
    async def get_metadata(self, path: str) -> dict[str, str]: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, threads).  The fs is unusable afterwards."""

    async def __aenter__(self) -> Fs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class FsWrapper(Fs):
    """Base of wrapper drivers: every operation passes to `parent` unless overridden."""

    def __init__(self, parent: Fs) -> None:
        self.parent = parent

    def read_stream(self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        return self.parent.read_stream(path, chunk_size)

    async def read(self, path: str) -> bytes:
        return await self.parent.read(path)

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        await self.parent.write(path, data, metadata)

    async def stat(self, path: str) -> FsStat:
        return await self.parent.stat(path)

    async def exists(self, path: str) -> bool:
        return await self.parent.exists(path)

    async def delete(self, path: str) -> None:
        await self.parent.delete(path)

    async def copy(self, src: str, dst: str) -> None:
        await self.parent.copy(src, dst)

    def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        return self.parent.iter_files(prefix, recursive=recursive)

    async def iter_dirs(self, prefix: str = "") -> list[str]:
        return await self.parent.iter_dirs(prefix)

    async def get_metadata(self, path: str) -> dict[str, str]:
        return await self.parent.get_metadata(path)

    async def close(self) -> None:
        await self.parent.close()


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FsSpec:
    """One ``fs NAME { }`` block: driver name, its settings, and how to get a dict if it needs one.

    `dict_factory` is called once by drivers that need a dict (dictmap); the driver owns and closes
    what it returns.  Without it, dictmap creates one from its ``dict_driver`` setting.
    """

    driver: str
    settings: Mapping[str, str] = field(default_factory=dict)
    dict_factory: Callable[[], Dict] | None = None


TerminalFactory = Callable[[FsSpec], Fs]
WrapperFactory = Callable[[FsSpec, Fs], Fs]


@dataclass(frozen=True)
class _Driver:
    cls: type[Fs]
    wrapper: bool


_DRIVERS: dict[str, _Driver] = {}

_F = TypeVar("_F", bound=type[Fs])


def register_fs(name: str) -> Callable[[_F], _F]:
    """Class decorator registering an fs driver under `name`.

    Terminal drivers are constructed as ``cls(spec)``; `FsWrapper` subclasses as
    ``cls(spec, parent)``.
    """

    def decorate(cls: _F) -> _F:
        if name in _DRIVERS and _DRIVERS[name].cls is not cls:
            raise ValueError(f"fs driver {name!r} already registered")
        cls.name = name
        _DRIVERS[name] = _Driver(cls, issubclass(cls, FsWrapper))
        return cls

    return decorate


def _load_builtin_drivers() -> None:
    # Importing the modules registers the drivers.
    from columba.fs import (  # noqa: F401
        compress,
        crypt,
        dictmap,
        fscache,
        memory,
        posix,
        randomfail,
        s3,
    )


def fs_drivers() -> dict[str, bool]:
    """Registered driver names → whether the driver is a wrapper."""
    _load_builtin_drivers()
    return {name: d.wrapper for name, d in sorted(_DRIVERS.items())}


def create_fs_stack(specs: list[FsSpec]) -> Fs:
    """Build a stack from specs listed outermost first; the last one must be a terminal driver."""
    _load_builtin_drivers()
    if not specs:
        raise FsError("empty fs stack")
    for spec in specs:
        if spec.driver not in _DRIVERS:
            raise FsError(f"unknown fs driver {spec.driver!r}")
    last = specs[-1]
    if _DRIVERS[last.driver].wrapper:
        raise FsError(f"fs driver {last.driver!r} is a wrapper and can't end the stack")
    # Constructors do no I/O (drivers open files and connections lazily), so a failure here
    # leaves nothing to clean up.
    fs: Fs = _DRIVERS[last.driver].cls(last)  # type: ignore[call-arg]
    for spec in reversed(specs[:-1]):
        driver = _DRIVERS[spec.driver]
        if not driver.wrapper:
            raise FsError(f"fs driver {spec.driver!r} is terminal and must come last")
        fs = driver.cls(spec, fs)  # type: ignore[call-arg]
    return fs


def setting_int(settings: Mapping[str, str], key: str, default: int) -> int:
    raw = settings.get(key, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise FsError(f"{key}: not a number: {raw!r}") from None


def setting_bool(settings: Mapping[str, str], key: str, default: bool) -> bool:
    raw = settings.get(key, "").strip().lower()
    if raw == "":
        return default
    if raw in ("yes", "true", "1", "on"):
        return True
    if raw in ("no", "false", "0", "off"):
        return False
    raise FsError(f"{key}: not a boolean: {raw!r}")
