"""Event exporters: Dovecot's ``event_exporter NAME { }`` — a format plus a driver.

:func:`build_exporter` takes the block's settings by their short names::

    build_exporter("datalake", {
        "driver": "http-post", "http_post_url": "https://example.com/events",
        "http_post_timeout": "1s", "format": "json", "time_format": "rfc3339",
    })

Settings: ``driver`` = ``log`` (default) | ``file`` | ``unix`` | ``http-post`` | ``drop``;
``format`` = ``json`` (default) | ``tab-text`` | ``none``; ``time_format`` = ``rfc3339``
(default) | ``unix``; ``file_path`` (driver file); ``unix_path`` and
``unix_connect_timeout`` (driver unix, default 250 ms); ``http_post_url`` and
``http_post_timeout`` (driver http-post, default 250 ms).  Anything else is a
:class:`ValueError` naming the setting.

Drivers:

* ``log``: the payload is logged at INFO on the ``columba.events.export`` logger.
* ``file``: one line per event appended to ``file_path`` (created 0600); :meth:`Exporter.reopen`
  reopens it after rotation.
* ``unix``: one line per event to a stream socket, or one datagram per event to a
  datagram socket, at ``unix_path``; reconnects (at most once a second) after errors.
* ``http-post``: each payload POSTed (``Content-Type`` ``application/json`` or
  ``text/plain``) by one background thread, started on the first event; a queue of
  :data:`HTTP_POST_QUEUE_SIZE` payloads drops new events when the server falls behind.
* ``drop``: the event is formatted and thrown away (to switch an exporter off).

Export never raises: a failing driver drops the event and logs the error at most once
a minute.  Every payload is scrubbed of secrets (see :mod:`columba.events.output`).
"""

from __future__ import annotations

import errno
import logging
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final, Protocol

from columba.events.filter import parse_interval_msecs
from columba.events.model import Event
from columba.events.output import AppendLineFile, format_json, format_tab_text

__all__ = [
    "DRIVERS",
    "FORMATS",
    "HTTP_POST_QUEUE_SIZE",
    "SETTINGS",
    "TIME_FORMATS",
    "Exporter",
    "Transport",
    "build_exporter",
]

DRIVERS: Final = ("log", "file", "unix", "http-post", "drop")
FORMATS: Final = ("json", "tab-text", "none")
TIME_FORMATS: Final = ("rfc3339", "unix")
SETTINGS: Final = frozenset(
    {
        "driver",
        "format",
        "time_format",
        "file_path",
        "unix_path",
        "unix_connect_timeout",
        "http_post_url",
        "http_post_timeout",
    }
)
MIME_TYPES: Final = {
    "json": "application/json",
    "tab-text": "text/plain",
    "none": "application/octet-stream",
}
DEFAULT_TIMEOUT_MSECS: Final = 250
HTTP_POST_QUEUE_SIZE: Final = 1000
ERROR_LOG_INTERVAL: Final = 60.0
RECONNECT_INTERVAL: Final = 1.0

if TYPE_CHECKING:
    import urllib.request

_log = logging.getLogger(__name__)
_export_log = logging.getLogger("columba.events.export")


class Transport(Protocol):
    """Where serialized events go."""

    def send(self, payload: str) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class _ErrorLog:
    """Logs a transport's errors at most once per :data:`ERROR_LOG_INTERVAL` seconds."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last = -ERROR_LOG_INTERVAL
        self._suppressed = 0
        self._lock = threading.Lock()

    def error(self, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < ERROR_LOG_INTERVAL:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        more = f" ({suppressed} more errors suppressed)" if suppressed else ""
        _log.error("event exporter %s: %s%s", self.what, message, more)


class _LogTransport:
    def send(self, payload: str) -> None:
        _export_log.info("%s", payload)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class _DropTransport(_LogTransport):
    def send(self, payload: str) -> None:
        pass


class _FileTransport:
    def __init__(self, path: str) -> None:
        self._file = AppendLineFile(path)
        self._errors = _ErrorLog(f"file {path}")

    def send(self, payload: str) -> None:
        try:
            self._file.write_line(payload)
        except OSError as e:
            self._errors.error(f"write failed: {e}")

    def reopen(self) -> None:
        self._file.reopen()

    def close(self) -> None:
        self._file.close()


class _UnixTransport:
    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._datagram = False
        self._next_attempt = 0.0
        self._lock = threading.Lock()
        self._errors = _ErrorLog(f"unix socket {path}")

    def _connect(self) -> socket.socket | None:
        now = time.monotonic()
        if now < self._next_attempt:
            return None
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as e:
                sock.close()
                if kind == socket.SOCK_STREAM and e.errno == errno.EPROTOTYPE:
                    continue  # a datagram socket: try again as one
                self._next_attempt = now + RECONNECT_INTERVAL
                self._errors.error(f"connect failed: {e}")
                return None
            self._sock, self._datagram = sock, kind == socket.SOCK_DGRAM
            return sock
        return None

    def send(self, payload: str) -> None:
        data = payload.encode("utf-8", "backslashreplace")
        with self._lock:
            sock = self._sock if self._sock is not None else self._connect()
            if sock is None:
                return
            try:
                if self._datagram:
                    sock.send(data)
                else:
                    sock.sendall(data + b"\n")
            except OSError as e:
                self._errors.error(f"send failed: {e}")
                if not (self._datagram and e.errno == errno.EMSGSIZE):
                    self._close_locked()

    def _close_locked(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def reopen(self) -> None:
        pass  # as Dovecot: reopening concerns files, not sockets

    def close(self) -> None:
        with self._lock:
            self._close_locked()


_STOP: Final = object()


class _HttpPostTransport:
    def __init__(self, url: str, timeout: float, mime_type: str) -> None:
        self.url = url
        self.timeout = timeout
        self.mime_type = mime_type
        self._queue: queue.Queue[object] = queue.Queue(HTTP_POST_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._errors = _ErrorLog(f"http-post {url}")
        self._opener: urllib.request.OpenerDirector | None = None

    def send(self, payload: str) -> None:
        if self._closed:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="event-exporter-http-post", daemon=True
                    )
                    self._thread.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._errors.error("queue full, event dropped (server too slow?)")

    def _run(self) -> None:
        import urllib.request  # only exporters that post pay for importing it

        # no proxy from the environment: events go where the configuration says
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, str):
                self._post(item)

    def _post(self, payload: str) -> None:
        import urllib.error
        import urllib.request

        assert self._opener is not None
        request = urllib.request.Request(
            self.url,
            data=payload.encode("utf-8", "backslashreplace"),
            headers={"Content-Type": self.mime_type},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as e:
            self._errors.error(f"POST failed: {e.code} {e.reason}")
        except (OSError, ValueError) as e:
            self._errors.error(f"POST failed: {e}")

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        """Stop the thread after the queued events are sent (waits up to a few timeouts)."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=self.timeout)
        except queue.Full:
            return
        thread.join(timeout=max(1.0, 4 * self.timeout))


class Exporter:
    """A configured ``event_exporter``; call it with an event (it is an event-bus sink)."""

    def __init__(
        self,
        name: str,
        driver: str,
        format: str,
        time_format: str,
        transport: Transport,
        *,
        hostname: str | None = None,
    ) -> None:
        self.name = name
        self.driver = driver
        self.format = format
        self.time_format = time_format
        self.mime_type = MIME_TYPES[format]
        self.transport = transport
        self.hostname = hostname

    def format_event(self, event: Event, include: Iterable[str] | None = None) -> str:
        if self.format == "json":
            return format_json(event, self.time_format, include, hostname=self.hostname)
        if self.format == "tab-text":
            return format_tab_text(event, self.time_format, include, hostname=self.hostname)
        return ""

    def export(self, event: Event, include: Iterable[str] | None = None) -> None:
        """Serialize and send ``event``; ``include`` as a metric's ``exporter_include``."""
        self.transport.send(self.format_event(event, include))

    def __call__(self, event: Event) -> None:
        self.export(event)

    def reopen(self) -> None:
        self.transport.reopen()

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"Exporter({self.name!r}, driver={self.driver!r}, format={self.format!r})"


def _choice(name: str, settings: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    value = settings.get(key) or choices[0]
    if value not in choices:
        raise ValueError(
            f"event_exporter {name}: {key} = {value!r} is not one of {', '.join(choices)}"
        )
    return value


def _required(name: str, settings: Mapping[str, str], key: str, driver: str) -> str:
    value = settings.get(key, "")
    if not value:
        raise ValueError(f"event_exporter {name}: driver {driver} needs {key}")
    return value


def _timeout(name: str, settings: Mapping[str, str], key: str) -> float:
    text = settings.get(key)
    if not text:
        return DEFAULT_TIMEOUT_MSECS / 1000
    msecs = parse_interval_msecs(text.strip())
    if not msecs:
        raise ValueError(
            f"event_exporter {name}: {key} = {text!r} is not a time interval "
            "above zero (e.g. 250ms, 1s)"
        )
    return msecs / 1000


def build_exporter(
    name: str, settings: Mapping[str, str], *, hostname: str | None = None
) -> Exporter:
    """Build ``event_exporter name { settings }``; a bad setting is a ValueError naming it."""
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ValueError(
            f"event_exporter {name}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(SETTINGS))}"
        )
    driver = _choice(name, settings, "driver", DRIVERS)
    fmt = _choice(name, settings, "format", FORMATS)
    time_format = _choice(name, settings, "time_format", TIME_FORMATS)
    transport: Transport
    if driver == "log":
        transport = _LogTransport()
    elif driver == "drop":
        transport = _DropTransport()
    elif driver == "file":
        transport = _FileTransport(_required(name, settings, "file_path", driver))
    elif driver == "unix":
        path = _required(name, settings, "unix_path", driver)
        transport = _UnixTransport(path, _timeout(name, settings, "unix_connect_timeout"))
    else:
        url = _required(name, settings, "http_post_url", driver)
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"event_exporter {name}: http_post_url = {url!r} is not an http(s) URL"
            )
        timeout = _timeout(name, settings, "http_post_timeout")
        transport = _HttpPostTransport(url, timeout, MIME_TYPES[fmt])
    return Exporter(name, driver, fmt, time_format, transport, hostname=hostname)
