"""IMAP ``date`` and ``date-time`` (RFC 3501 §9), both directions.

- ``date-text``: ``d-Mon-yyyy`` (day one or two digits), month name case-insensitive;
- ``date-time``: ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` where the day is two digits or a space and
  a digit; a timezone-aware :class:`datetime.datetime` comes out. A leap second ``:60`` is
  read as ``:59`` (Python can't hold it).

Month names are always English, whatever the locale: ``strftime`` is never used.
"""

from __future__ import annotations

import datetime as _dt
import re

__all__ = ["DateError", "format_date", "format_datetime", "parse_date", "parse_datetime"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}

_DATE_RE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATETIME_RE = re.compile(
    rb"( [0-9]|[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


class DateError(ValueError):
    """Not a valid IMAP date or date-time."""


def _month(name: bytes) -> int:
    month = _MONTH_NUM.get(name.decode("ascii").upper())
    if month is None:
        raise DateError("invalid month name")
    return month


def parse_date(value: bytes | str) -> _dt.date:
    """Parse ``date-text`` (without the optional quotes)."""
    data = value.encode("latin-1", "replace") if isinstance(value, str) else value
    m = _DATE_RE.fullmatch(data)
    if not m:
        raise DateError("invalid date")
    try:
        return _dt.date(int(m.group(3)), _month(m.group(2)), int(m.group(1)))
    except ValueError as exc:
        raise DateError("invalid date") from exc


def parse_datetime(value: bytes | str) -> _dt.datetime:
    """Parse a ``date-time`` body (without the surrounding quotes)."""
    data = value.encode("latin-1", "replace") if isinstance(value, str) else value
    m = _DATETIME_RE.fullmatch(data)
    if not m:
        raise DateError("invalid date-time")
    day = int(m.group(1).strip())
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
    zh, zm = int(m.group(8)), int(m.group(9))
    if hour > 23 or minute > 59 or second > 60 or zm > 59:
        raise DateError("invalid date-time")
    second = min(second, 59)
    offset = _dt.timedelta(hours=zh, minutes=zm)
    if m.group(7) == b"-":
        offset = -offset
    try:
        return _dt.datetime(
            int(m.group(3)),
            _month(m.group(2)),
            day,
            hour,
            minute,
            second,
            tzinfo=_dt.timezone(offset),
        )
    except ValueError as exc:
        raise DateError("invalid date-time") from exc


def format_date(value: _dt.date) -> str:
    """``d-Mon-yyyy`` as SEARCH and the ``date`` production want."""
    return f"{value.day}-{MONTHS[value.month - 1]}-{value.year:04d}"


def format_datetime(value: _dt.datetime) -> str:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` (no quotes), e.g. for INTERNALDATE.

    A naive datetime is taken as UTC.
    """
    offset = value.utcoffset() or _dt.timedelta(0)
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return (
        f"{value.day:02d}-{MONTHS[value.month - 1]}-{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f"{sign}{total // 60:02d}{total % 60:02d}"
    )
