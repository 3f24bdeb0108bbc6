"""The dict (key/value) API: abstract `Dict`, `DictTransaction`, errors and the driver registry.

Contract shared by every driver (tests/contract/test_dict_contract.py checks it):

* Keys start with ``shared/`` (one namespace for everyone) or ``priv/`` (per user: the `Dict`
  was created with a ``username``; the same ``priv/`` key of another user is another row).
  Keys and values are ``str``; keys contain no NUL.
* ``iterate(prefix)`` returns ``(key, value)`` pairs ordered by key (code point order, which is
  UTF-8 byte order), for keys starting with the plain string `prefix`:
  ``recurse=False`` keeps only keys with no ``/`` after the prefix (direct children);
  ``exact_depth=True`` keeps only the key equal to `prefix` (Dovecot's
  ``DICT_ITERATE_FLAG_EXACT_KEY``); ``after``/``limit`` page through big listings.
* A transaction buffers ``set``/``unset``/``atomic_inc``/``set_if`` and applies them atomically at
  ``commit()``, in order.  ``commit()`` is durable when it returns.
  ``atomic_inc`` on a missing key creates it with the increment; on a non-integer value the
  commit fails with `DictError`.
  ``set_if(key, expected, value)`` is compare-and-set: at commit time, after the earlier
  operations of the same transaction, the key's value must equal `expected` (``None`` = the key
  must not exist), then it becomes `value` (``None`` = unset).  **If any condition fails the whole
  transaction is rolled back and ``commit()`` raises `DictConflict`** (it never returns a status).
* Errors: `DictConflict` (a CAS condition failed, nothing applied), `DictTemporaryError`
  (retryable: busy, unreachable), `DictError` (anything else).  ``err.uncertain`` is true when the
  driver cannot tell whether a failed commit was applied (a lost reply from a remote store);
  callers must then not undo side effects that a committed row would point at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, TypeVar

__all__ = [
    "Dict",
    "DictConflict",
    "DictError",
    "DictOp",
    "DictTemporaryError",
    "DictTransaction",
    "check_key",
    "create_dict",
    "dict_drivers",
    "prefix_upper_bound",
    "register_dict",
]


class DictError(Exception):
    """A dict operation failed."""

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class DictTemporaryError(DictError):
    """Retryable failure (database busy, server unreachable, timeout)."""


class DictConflict(DictError):  # noqa: N818 - the name the API documents
    """A `set_if` condition did not hold at commit; the transaction was not applied."""


def check_key(key: str) -> str:
    if not isinstance(key, str):
        raise DictError(f"invalid key {key!r}: not a string")
    if not (key.startswith("shared/") or key.startswith("priv/")):
        raise DictError(f"invalid key {key!r}: must start with shared/ or priv/")
    if "\0" in key:
        raise DictError(f"invalid key {key!r}: NUL byte")
    return key


def _check_value(value: str) -> str:
    if not isinstance(value, str):
        raise DictError(f"invalid value {value!r}: not a string")
    return value


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound).

    Used for indexed range scans ``key >= prefix AND key < upper`` instead of LIKE.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates can't be stored as UTF-8
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


@dataclass(frozen=True, slots=True)
class DictOp:
    """One buffered transaction operation.  kind: set | unset | inc | set_if."""

    kind: str
    key: str
    value: str | None = None
    expected: str | None = None
    diff: int = 0


class DictTransaction(ABC):
    """Buffered operations applied atomically by `commit`.  Also an async context manager:
    commits on normal exit, rolls back on an exception."""

    def __init__(self, owner: Dict) -> None:
        self._owner = owner
        self.ops: list[DictOp] = []
        self._done = False

    def _add(self, op: DictOp) -> None:
        if self._done:
            raise DictError("transaction already committed or rolled back")
        self._owner.check_key(op.key)
        self.ops.append(op)

    def set(self, key: str, value: str) -> None:
        self._add(DictOp("set", key, _check_value(value)))

    def unset(self, key: str) -> None:
        self._add(DictOp("unset", key))

    def atomic_inc(self, key: str, diff: int) -> None:
        if not isinstance(diff, int):
            raise DictError(f"atomic_inc: diff must be int, not {diff!r}")
        self._add(DictOp("inc", key, diff=diff))

    def set_if(self, key: str, expected: str | None, value: str | None) -> None:
        """Compare-and-set; see the module docstring."""
        if expected is not None:
            _check_value(expected)
        if value is not None:
            _check_value(value)
        self._add(DictOp("set_if", key, value, expected))

    async def commit(self) -> None:
        if self._done:
            raise DictError("transaction already committed or rolled back")
        self._done = True
        if self.ops:
            await self._commit(self.ops)

    def rollback(self) -> None:
        self._done = True
        self.ops = []

    @abstractmethod
    async def _commit(self, ops: list[DictOp]) -> None:
        """Apply `ops` atomically and durably, or raise and apply nothing."""

    async def __aenter__(self) -> DictTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if not self._done:
                await self.commit()
        else:
            self.rollback()


class Dict(ABC):
    """A key/value store with ordered prefix iteration and atomic transactions.

    `username` owns the ``priv/`` keys; without it ``priv/`` keys raise `DictError`.
    Instances are used from one event loop.
    """

    name: ClassVar[str] = ""

    def __init__(self, settings: Mapping[str, str], username: str | None = None) -> None:
        self.settings = dict(settings)
        self.username = username

    def check_key(self, key: str) -> str:
        check_key(key)
        if key.startswith("priv/") and not self.username:
            raise DictError(f"priv/ key {key!r} used without a username")
        return key

    def owner_of(self, key: str) -> str:
        """The row owner: ``""`` for shared/ keys, the username for priv/ keys."""
        return (self.username or "") if key.startswith("priv/") else ""

    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def iterate(
        self,
        prefix: str,
        *,
        recurse: bool = True,
        exact_depth: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, str]]:
        """Pairs with keys starting with `prefix`, ordered by key, strictly after `after`."""

    @abstractmethod
    def transaction(self) -> DictTransaction: ...

    async def set(self, key: str, value: str) -> None:
        """One-operation transaction."""
        t = self.transaction()
        t.set(key, value)
        await t.commit()

    async def unset(self, key: str) -> None:
        t = self.transaction()
        t.unset(key)
        await t.commit()

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    async def __aenter__(self) -> Dict:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def filter_iteration(
    items: list[tuple[str, str]],
    prefix: str,
    *,
    recurse: bool,
    exact_depth: bool,
) -> list[tuple[str, str]]:
    """Apply the recurse / exact_depth rules to candidate pairs already matching `prefix`."""
    if exact_depth:
        return [kv for kv in items if kv[0] == prefix]
    if not recurse:
        n = len(prefix)
        return [kv for kv in items if "/" not in kv[0][n:]]
    return items


# --------------------------------------------------------------------------- registry

_DRIVERS: dict[str, type[Dict]] = {}

_D = TypeVar("_D", bound=type[Dict])


def register_dict(name: str) -> Callable[[_D], _D]:
    """Class decorator registering a dict driver, constructed as ``cls(settings, username)``."""

    def decorate(cls: _D) -> _D:
        if name in _DRIVERS and _DRIVERS[name] is not cls:
            raise ValueError(f"dict driver {name!r} already registered")
        cls.name = name
        _DRIVERS[name] = cls
        return cls

    return decorate


def _load_builtin_drivers() -> None:
    from columba.dict import cassandra, memory, postgresql, sqlite  # noqa: F401


def dict_drivers() -> list[str]:
    _load_builtin_drivers()
    return sorted(_DRIVERS)


def create_dict(
    driver: str, settings: Mapping[str, str] | None = None, *, username: str | None = None
) -> Dict:
    """Construct a registered dict driver.  Constructors do no I/O; connections open lazily."""
    _load_builtin_drivers()
    try:
        cls = _DRIVERS[driver]
    except KeyError:
        raise DictError(f"unknown dict driver {driver!r}") from None
    return cls(settings or {}, username)
