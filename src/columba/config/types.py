"""Setting value types of the dovecot.conf language: parsing text into typed values and back.

Types follow Dovecot's settings types: boolean, unsigned number, size, time (seconds or
milliseconds), string, enumeration, boolean list and string list. Boolean and string lists
have two write forms, a replacing one (``mail_plugins = a b``) and an updating one
(``mail_plugins { a = yes }``); a value remembers which, so that filters can update their
parent's list instead of replacing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

UNLIMITED = -1
"""The value of ``unlimited`` sizes and numbers and of ``infinite`` times."""


class SettingType(Enum):
    """The kinds of values a declared setting holds."""

    BOOL = "boolean"
    UINT = "unsigned integer"
    PORT = "port"
    SIZE = "size"
    TIME = "time"
    TIME_MSECS = "time (milliseconds)"
    STR = "string"
    FILE = "file"
    ENUM = "enumeration"
    BOOLLIST = "boolean list"
    STRLIST = "string list"


class SettingValueError(ValueError):
    """A value that does not fit its setting's type; the message names the problem."""


@dataclass(frozen=True)
class BoolList:
    """A boolean list value: ``replace`` is the ``a = b c`` form, else an update."""

    items: tuple[tuple[str, bool], ...] = ()
    replace: bool = True

    def enabled(self) -> list[str]:
        """The names switched on, in order."""
        return [name for name, on in self.items if on]

    def merged(self, update: BoolList) -> BoolList:
        """This value with ``update`` applied on top."""
        if update.replace:
            return update
        values = dict(self.items)
        for name, on in update.items:
            values[name] = on
        if self.replace:
            # A replaced list only needs what is switched on.
            return BoolList(tuple((n, True) for n, on in values.items() if on), True)
        return BoolList(tuple(values.items()), False)


@dataclass(frozen=True)
class StrList:
    """A string list value (``key { k = v }``); ``replace`` when it was cleared with ``key =``."""

    items: tuple[tuple[str, str], ...] = ()
    replace: bool = False

    def as_dict(self) -> dict[str, str]:
        return dict(self.items)

    def merged(self, update: StrList) -> StrList:
        if update.replace:
            return update
        values = dict(self.items)
        for name, value in update.items:
            values[name] = value
        return StrList(tuple(values.items()), self.replace)


Value = bool | int | str | BoolList | StrList

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_TIME_RE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_TIME_UNITS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("milliseconds", "msecs", "ms"), 1),
    (("seconds", "secs", "s"), 1000),
    (("minutes", "mins", "m"), 60_000),
    (("hours", "h"), 3_600_000),
    (("days", "d"), 86_400_000),
    (("weeks", "w"), 7 * 86_400_000),
)
_TIME_PRINT_NAME = {
    "milliseconds": "ms",
    "seconds": "secs",
    "minutes": "mins",
    "hours": "hours",
    "days": "days",
    "weeks": "weeks",
}
_LIST_SPLIT = re.compile(r"[\s,]+")
MAX_UINT = (1 << 63) - 1


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "y", "1", "true"):
        return True
    if value in ("no", "n", "0", "false"):
        return False
    raise SettingValueError(f"Invalid boolean value '{text}' (use yes or no)")


def parse_uint(text: str) -> int:
    value = text.strip()
    if value.lower() == "unlimited":
        return UNLIMITED
    if not value.isdigit():
        raise SettingValueError(f"Invalid number '{text}'")
    number = int(value)
    if number > MAX_UINT:
        raise SettingValueError(f"Number too large: '{text}'")
    return number


def parse_port(text: str) -> int:
    number = parse_uint(text)
    if not 0 <= number <= 65535:
        raise SettingValueError(f"Invalid port number '{text}' (0..65535)")
    return number


def parse_size(text: str) -> int:
    if text.strip().lower() == "unlimited":
        return UNLIMITED
    match = _SIZE_RE.match(text)
    if not match:
        raise SettingValueError(f"Invalid size '{text}' (use a number with B, K, M, G or T)")
    number = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if number > MAX_UINT:
        raise SettingValueError(f"Size too large: '{text}'")
    return number


def parse_time_msecs(text: str, *, default_unit_ms: int) -> int:
    """A time in milliseconds; a bare number counts in ``default_unit_ms``."""
    if text.strip().lower() in ("infinite", "unlimited"):
        return UNLIMITED
    match = _TIME_RE.match(text)
    if not match:
        raise SettingValueError(f"Invalid time interval '{text}'")
    number, unit = int(match.group(1)), match.group(2).lower()
    if not unit:
        factor = default_unit_ms
    else:
        factor = 0
        for names, ms in _TIME_UNITS:
            # Dovecot accepts any prefix of the unit names ("sec", "min", "hour").
            if any(name.startswith(unit) for name in names) and (unit != "m" or ms == 60_000):
                factor = ms
                break
        if factor == 0:
            raise SettingValueError(f"Invalid time interval unit '{unit}' in '{text}'")
    if factor < default_unit_ms and number * factor % default_unit_ms:
        raise SettingValueError(f"Time interval '{text}' is not a whole number of seconds")
    total = number * factor
    if total > MAX_UINT:
        raise SettingValueError(f"Time interval too large: '{text}'")
    return total


def parse_boollist(text: str) -> BoolList:
    names = [name for name in _LIST_SPLIT.split(text.strip()) if name]
    return BoolList(tuple((name, True) for name in dict.fromkeys(names)), replace=True)


def format_size(value: int) -> str:
    if value == UNLIMITED:
        return "unlimited"
    for suffix, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value and value % factor == 0:
            return f"{value // factor}{suffix}"
    return f"{value}B" if value else "0"


def format_time_msecs(value: int, *, msecs: bool) -> str:
    if value == UNLIMITED:
        return "infinite"
    if value == 0:
        return "0"
    for names, factor in reversed(_TIME_UNITS):
        if value % factor == 0 and (msecs or factor >= 1000):
            return f"{value // factor} {_TIME_PRINT_NAME[names[0]]}"
    return f"{value} ms"


@dataclass(frozen=True)
class SettingDecl:
    """One declared setting: everything else (parser, defaults, dump, docs) derives from it."""

    name: str
    type: SettingType
    default: str
    doc: str
    roles: frozenset[str] = frozenset({"proxy", "backend", "controller"})
    choices: tuple[str, ...] = ()
    secret: bool = False
    parsed_default: Value = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed_default", parse_value(self, self.default))


def parse_value(decl: SettingDecl, text: str) -> Value:
    """Parse ``text`` as a value of ``decl``; raise SettingValueError naming what is wrong."""
    kind = decl.type
    if kind is SettingType.BOOL:
        return parse_bool(text)
    if kind is SettingType.UINT:
        return parse_uint(text)
    if kind is SettingType.PORT:
        return parse_port(text)
    if kind is SettingType.SIZE:
        return parse_size(text)
    if kind is SettingType.TIME:
        return parse_time_msecs(text, default_unit_ms=1000) // 1000 if text.strip() else 0
    if kind is SettingType.TIME_MSECS:
        return parse_time_msecs(text, default_unit_ms=1) if text.strip() else 0
    if kind is SettingType.ENUM:
        value = text.strip()
        if value not in decl.choices:
            allowed = ", ".join(decl.choices)
            raise SettingValueError(f"Invalid value '{text}' (allowed: {allowed})")
        return value
    if kind is SettingType.BOOLLIST:
        return parse_boollist(text)
    if kind is SettingType.STRLIST:
        if text.strip():
            raise SettingValueError(
                "A string list is set with a { } block; only an empty value clears it"
            )
        return StrList((), replace=True)
    return text


def format_value(decl: SettingDecl, value: Value) -> str:
    """The canonical text of ``value`` (lists in their replacing form)."""
    kind = decl.type
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, BoolList):
        return " ".join(value.enabled())
    if isinstance(value, StrList):
        return ""
    if isinstance(value, int):
        if kind is SettingType.SIZE:
            return format_size(value)
        if kind is SettingType.TIME:
            return (
                format_time_msecs(value * 1000, msecs=False) if value != UNLIMITED else "infinite"
            )
        if kind is SettingType.TIME_MSECS:
            return format_time_msecs(value, msecs=True)
        return "unlimited" if value == UNLIMITED else str(value)
    return value


def merge_values(old: Value | None, new: Value) -> Value:
    """``new`` applied on top of ``old``: lists in update form merge, everything else replaces."""
    if isinstance(new, BoolList) and isinstance(old, BoolList):
        return old.merged(new)
    if isinstance(new, StrList) and isinstance(old, StrList):
        return old.merged(new)
    return new
