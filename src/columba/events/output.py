"""Event output: plain log lines, Dovecot's JSON and tab-text formats, secret scrubbing.

Every formatter scrubs first (:func:`scrub_event`), so no output format can carry a secret:

* a field whose *name* looks secret (``password``, ``pass``, ``secret``, ``token``, ``key``,
  ``api_key``, ``authorization``, ``credentials``, ``cookie``, ... in any case and in
  ``snake_case``, ``kebab-case`` or ``camelCase`` words; but not ``keywords``) has its value
  replaced by ``<hidden>``;
* the value of such a field is also masked wherever else it appears in the same event
  (an ``error`` text that quotes the password, say), when it is at least
  :data:`MIN_INLINE_SECRET_LENGTH` characters long;
* every value given to :func:`register_secret` (a configured master password, an API
  token) is masked wherever it appears, in any string and in the finished line.

Formats (one line each, no trailing newline):

* :func:`format_plain`: ``<time> <event name> key=value ... duration=<n>us``; values that
  are empty or hold spaces, quotes, ``=`` or control characters are JSON-quoted.
* :func:`format_json`: exactly Dovecot's ``{"event":..,"hostname":..,"start_time":..,
  "end_time":..,"categories":[..],"fields":{..}}`` without whitespace.
* :func:`format_tab_text`: Dovecot's ``event:NAME<TAB>hostname:..<TAB>start_time:..<TAB>
  end_time:..<TAB>category:..<TAB>field:key=value``, values tab-escaped (``\\x01`` + ``0 1 t r n``).

Times are ``rfc3339`` (``2019-06-19T10:38:25.422744Z``, UTC) or ``unix``
(``1560940705.422744``).  :class:`LogSink` writes one formatted line per event to a
stream, a file (append mode, line buffered) or syslog.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import logging.handlers
import math
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Final, TextIO

from columba.events.model import Event, FieldValue

__all__ = [
    "HIDDEN",
    "INCLUDE_ALL",
    "LOG_FORMATS",
    "MIN_INLINE_SECRET_LENGTH",
    "TIME_FORMATS",
    "AppendLineFile",
    "LogSink",
    "clear_secrets",
    "format_json",
    "format_plain",
    "format_tab_text",
    "format_time",
    "is_secret_field",
    "register_secret",
    "scrub_event",
    "set_hostname",
    "unregister_secret",
]

HIDDEN: Final = "<hidden>"
TIME_FORMATS: Final = ("rfc3339", "unix")
LOG_FORMATS: Final = ("plain", "json", "tab-text")
INCLUDE_ALL: Final = frozenset({"name", "hostname", "timestamps", "categories", "fields"})
MIN_INLINE_SECRET_LENGTH: Final = 3

# ---------------------------------------------------------------------------
# Secrets

# A field name is split into words ("userPassword" -> user, password; "X-Api-Key" -> x, api,
# key); it is secret when a word is one of these ...
_SECRET_WORDS: Final = frozenset(
    {"pass", "pwd", "pw", "key", "apikey", "pin", "otp", "totp", "cred", "creds", "psk"}
)
# ... or contains one of these ...
_SECRET_PARTS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "credential",
    "cookie",
    "privkey",
)
# ... or the whole name is one of these (fields known to carry secrets under other names:
# SASL responses hold the password, base64-encoded).
SENSITIVE_FIELDS: Final = frozenset(
    {"resp", "initial_resp", "initial_response", "sasl_resp", "sasl_response", "auth_response"}
)
_WORD_RE: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


@functools.lru_cache(maxsize=4096)
def is_secret_field(name: str) -> bool:
    """Does a field called ``name`` hold a secret (so its value is never output)?"""
    if name.lower() in SENSITIVE_FIELDS:
        return True
    for word in _WORD_RE.findall(name):
        lower = word.lower()
        if lower in _SECRET_WORDS or any(part in lower for part in _SECRET_PARTS):
            return True
    return False


_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_secrets_re: re.Pattern[str] | None = None


def _secret_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(values), key=lambda v: (-len(v), v))  # longest first
    if not ordered:
        return None
    return re.compile("|".join(map(re.escape, ordered)))


def register_secret(value: str) -> None:
    """Mask ``value`` in every event output from now on (empty values are ignored)."""
    global _secrets, _secrets_re
    if not value:
        return
    with _secrets_lock:
        _secrets = _secrets | {value}
        _secrets_re = _secret_pattern(_secrets)


def unregister_secret(value: str) -> None:
    global _secrets, _secrets_re
    with _secrets_lock:
        _secrets = _secrets - {value}
        _secrets_re = _secret_pattern(_secrets)


def clear_secrets() -> None:
    """Forget every registered secret (for tests and configuration reloads)."""
    global _secrets, _secrets_re
    with _secrets_lock:
        _secrets = frozenset()
        _secrets_re = None


def _field_strings(value: FieldValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _unmasked(text: str) -> str:
    return text


def _scrub(event: Event) -> tuple[Event, Callable[[str], str]]:
    """A scrubbed copy of ``event`` and the masking function for the finished line."""
    if _secrets_re is None and not any(map(is_secret_field, event.fields)):
        # nothing to hide (no registered secrets, no secret-named field): the event as is
        return event, _unmasked
    local = {
        s
        for key, value in event.fields.items()
        if is_secret_field(key)
        for s in _field_strings(value)
        if len(s) >= MIN_INLINE_SECRET_LENGTH
    }
    pattern = _secret_pattern(_secrets | local) if local else _secrets_re

    def mask(text: str) -> str:
        return pattern.sub(HIDDEN, text) if pattern is not None else text

    fields: dict[str, FieldValue] = {}
    for key, value in event.fields.items():
        out: FieldValue
        if is_secret_field(key):
            out = HIDDEN
        elif isinstance(value, str):
            out = mask(value)
        elif isinstance(value, list | tuple):
            out = [mask(v if isinstance(v, str) else str(v)) for v in value]
        elif isinstance(value, int | float):
            text = _scalar_text(value)
            out = value if pattern is None or pattern.search(text) is None else mask(text)
        else:
            out = mask(str(value))
        fields[mask(key)] = out
    scrubbed = Event(
        name=mask(event.name),
        fields=fields,
        categories=[mask(c) for c in event.categories],
        start_time=event.start_time,
        end_time=event.end_time,
        source_location=mask(event.source_location),
    )
    return scrubbed, mask


def scrub_event(event: Event) -> Event:
    """A copy of ``event`` with secret fields hidden and registered secrets masked."""
    scrubbed = _scrub(event)[0]
    if scrubbed is event:
        scrubbed = dataclasses.replace(
            event, fields=dict(event.fields), categories=list(event.categories)
        )
    return scrubbed


# ---------------------------------------------------------------------------
# Values and times

_hostname: str | None = None


def set_hostname(name: str | None) -> None:
    """Set the hostname written by the formatters (None: ask the system again)."""
    global _hostname
    _hostname = name


def _get_hostname() -> str:
    global _hostname
    if _hostname is None:
        _hostname = socket.gethostname()
    return _hostname


def _clean(text: str) -> str:
    """Replace lone surrogates (undecodable bytes) so the text can be written as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _check_time_format(time_format: str) -> None:
    if time_format not in TIME_FORMATS:
        raise ValueError(
            f"time_format must be one of {', '.join(TIME_FORMATS)}, not {time_format!r}"
        )


def _split_time(t: float) -> tuple[int, int]:
    usecs = round(t * 1_000_000) if math.isfinite(t) else 0
    return divmod(usecs, 1_000_000)


def format_time(t: float, time_format: str = "rfc3339") -> str:
    """``rfc3339``: ``2019-06-19T10:38:25.422744Z``; ``unix``: ``1560940705.422744``."""
    _check_time_format(time_format)
    sec, usec = _split_time(t)
    if time_format == "rfc3339":
        try:
            d = datetime.datetime.fromtimestamp(sec, datetime.UTC)
        except (OverflowError, OSError, ValueError):
            pass  # outside what a calendar date can show: fall back to the number
        else:
            return (
                f"{d.year:04d}-{d.month:02d}-{d.day:02d}T"
                f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}.{usec:06d}Z"
            )
    return f"{sec}.{usec:06d}"


def _event_end(event: Event) -> float:
    return event.end_time if event.end_time is not None else event.start_time


def _scalar_text(value: float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return repr(value) if math.isfinite(value) else str(value)


def _check_include(include: Iterable[str] | None) -> frozenset[str]:
    if include is None:
        return INCLUDE_ALL
    chosen = frozenset(include)
    unknown = chosen - INCLUDE_ALL
    if unknown:
        raise ValueError(
            f"include: unknown part(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(INCLUDE_ALL))}"
        )
    return chosen


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------
# plain

_PLAIN_SAFE: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/@+-,*%#[]()<>"
)


def _plain_word(text: str) -> str:
    if text and all(c in _PLAIN_SAFE for c in text):
        return text
    return _json_str(text)


def _plain_value(value: FieldValue) -> str:
    if isinstance(value, str):
        return _plain_word(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_str(str(v)) for v in value) + "]"
    if isinstance(value, int | float):
        return _scalar_text(value)
    return _plain_word(str(value))


def format_plain(event: Event, time_format: str = "rfc3339") -> str:
    """``<end time> <name> key=value ... duration=<usecs>us`` on one line."""
    _check_time_format(time_format)
    ev, mask = _scrub(event)
    parts = [format_time(_event_end(ev), time_format), _plain_word(ev.name)]
    parts.extend(f"{_plain_word(k)}={_plain_value(v)}" for k, v in ev.fields.items())
    parts.append(f"duration={event.duration_usecs}us")
    return mask(" ".join(parts))


# ---------------------------------------------------------------------------
# JSON

# line breaks that json.dumps(ensure_ascii=False) leaves raw but str.splitlines() breaks on
_JSON_EXTRA_ESCAPES: Final = str.maketrans(
    {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _json_str(text: str) -> str:
    return json.dumps(_clean(text), ensure_ascii=False).translate(_JSON_EXTRA_ESCAPES)


def _json_value(value: FieldValue) -> str:
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_str(str(v)) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return _json_str(str(value))
    if isinstance(value, int | float):
        return _scalar_text(value)
    return _json_str(str(value))


def _json_time(t: float, time_format: str) -> str:
    text = format_time(t, time_format)
    return f'"{text}"' if time_format == "rfc3339" else text


def format_json(
    event: Event,
    time_format: str = "rfc3339",
    include: Iterable[str] | None = None,
    *,
    hostname: str | None = None,
) -> str:
    """Dovecot's JSON event export: ``{"event":..,"hostname":..,"start_time":..,
    "end_time":..,"categories":[..],"fields":{..}}``, one line, no whitespace.

    ``include`` picks parts as ``metric { exporter_include }`` does: any of ``name
    hostname timestamps categories fields`` (default: all).
    """
    _check_time_format(time_format)
    parts_wanted = _check_include(include)
    ev, mask = _scrub(event)
    parts: list[str] = []
    if "name" in parts_wanted:
        parts.append(f'"event":{_json_str(ev.name)}')
    if "hostname" in parts_wanted:
        parts.append(f'"hostname":{_json_str(mask(hostname or _get_hostname()))}')
    if "timestamps" in parts_wanted:
        parts.append(f'"start_time":{_json_time(ev.start_time, time_format)}')
        parts.append(f'"end_time":{_json_time(_event_end(ev), time_format)}')
    if "categories" in parts_wanted:
        parts.append('"categories":[' + ",".join(map(_json_str, _unique(ev.categories))) + "]")
    if "fields" in parts_wanted:
        fields = ",".join(f"{_json_str(k)}:{_json_value(v)}" for k, v in ev.fields.items())
        parts.append('"fields":{' + fields + "}")
    return mask("{" + ",".join(parts) + "}")


# ---------------------------------------------------------------------------
# tab-text

_TAB_ESCAPES: Final = str.maketrans(
    {"\x00": "\x010", "\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
)


def _tabescape(text: str) -> str:
    return _clean(text).translate(_TAB_ESCAPES)


def _tab_value(value: FieldValue) -> str:
    if isinstance(value, str):
        return _tabescape(value)
    if isinstance(value, list | tuple):
        # as Dovecot: the items tab-escaped and TAB-joined, then the whole escaped again
        return _tabescape("\t".join(_tabescape(str(v)) for v in value))
    if isinstance(value, int | float):
        return _scalar_text(value)
    return _tabescape(str(value))


def format_tab_text(
    event: Event,
    time_format: str = "rfc3339",
    include: Iterable[str] | None = None,
    *,
    hostname: str | None = None,
) -> str:
    """Dovecot's tab-text event export: TAB-separated ``event:``, ``hostname:``,
    ``start_time:``, ``end_time:``, ``category:`` (each) and ``field:key=value`` (each)."""
    _check_time_format(time_format)
    parts_wanted = _check_include(include)
    ev, mask = _scrub(event)
    cols: list[str] = []
    if "name" in parts_wanted:
        cols.append("event:" + _tabescape(ev.name))
    if "hostname" in parts_wanted:
        cols.append("hostname:" + _tabescape(mask(hostname or _get_hostname())))
    if "timestamps" in parts_wanted:
        cols.append("start_time:" + format_time(ev.start_time, time_format))
        cols.append("end_time:" + format_time(_event_end(ev), time_format))
    if "categories" in parts_wanted:
        cols.extend("category:" + _tabescape(c) for c in _unique(ev.categories))
    if "fields" in parts_wanted:
        cols.extend(f"field:{_tabescape(k)}={_tab_value(v)}" for k, v in ev.fields.items())
    return mask("\t".join(cols))


# ---------------------------------------------------------------------------
# Writing lines


class AppendLineFile:
    """A file written one line at a time: opened for appending (mode 0600 when it is
    created), line buffered.  After a write error, or :meth:`reopen` (log rotation), the
    next write opens the path again."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: TextIO | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            self._ensure_open()

    def _ensure_open(self) -> TextIO:
        if self._file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._file = open(  # noqa: SIM115 - kept open until close()/reopen()
                fd, "a", buffering=1, encoding="utf-8", errors="backslashreplace"
            )
        return self._file

    def write_line(self, line: str) -> None:
        with self._lock:
            fh = self._ensure_open()
            try:
                fh.write(line + "\n")
            except OSError:
                self._close_locked()
                raise

    def _close_locked(self) -> None:
        fh, self._file = self._file, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass  # the data is lost either way; the next write reopens

    def reopen(self) -> None:
        with self._lock:
            self._close_locked()

    def close(self) -> None:
        self.reopen()


_Formatter = Callable[[Event], str]


def _formatter(
    format: str, time_format: str, hostname: str | None, include: Iterable[str] | None = None
) -> _Formatter:
    _check_time_format(time_format)
    if format == "plain":
        return functools.partial(format_plain, time_format=time_format)
    if format == "json":
        return functools.partial(
            format_json, time_format=time_format, include=include, hostname=hostname
        )
    if format == "tab-text":
        return functools.partial(
            format_tab_text, time_format=time_format, include=include, hostname=hostname
        )
    raise ValueError(f"format must be one of {', '.join(LOG_FORMATS)}, not {format!r}")


class LogSink:
    """An event sink writing one formatted line per event.

    ``path_or_stream`` follows Dovecot's ``log_path``: ``"syslog"`` sends to syslog
    (facility mail), ``"/dev/stderr"`` (the default) writes to the current
    ``sys.stderr``, any other path is a file opened in append mode, line buffered; or
    give an open text stream.
    """

    def __init__(
        self,
        path_or_stream: str | os.PathLike[str] | TextIO = "/dev/stderr",
        format: str = "plain",
        time_format: str = "rfc3339",
        *,
        hostname: str | None = None,
        syslog_address: str | tuple[str, int] | None = None,
        syslog_facility: int = logging.handlers.SysLogHandler.LOG_MAIL,
        syslog_ident: str = "columba: ",
    ) -> None:
        self.format = format
        self._format = _formatter(format, time_format, hostname)
        self._lock = threading.Lock()
        self._stream: TextIO | None = None
        self._file: AppendLineFile | None = None
        self._syslog: logging.handlers.SysLogHandler | None = None
        if isinstance(path_or_stream, str | os.PathLike):
            path = os.fspath(path_or_stream)
            if path == "syslog":
                if syslog_address is None:
                    syslog_address = (
                        "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
                    )
                self._syslog = logging.handlers.SysLogHandler(syslog_address, syslog_facility)
                self._syslog.ident = syslog_ident
            elif path != "/dev/stderr":
                self._file = AppendLineFile(path)
                self._file.open()
        else:
            self._stream = path_or_stream

    def __call__(self, event: Event) -> None:
        self.write(self._format(event))

    def write(self, line: str) -> None:
        """Write an already formatted line."""
        if self._file is not None:
            self._file.write_line(line)
        elif self._syslog is not None:
            record = logging.LogRecord("columba.events", logging.INFO, "", 0, line, None, None)
            self._syslog.handle(record)
        else:
            stream = self._stream if self._stream is not None else sys.stderr
            with self._lock:
                stream.write(line + "\n")
                stream.flush()

    def reopen(self) -> None:
        """Reopen the file (after log rotation); a no-op for streams and syslog."""
        if self._file is not None:
            self._file.reopen()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._syslog is not None:
            self._syslog.close()
