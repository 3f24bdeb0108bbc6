"""Wiring events to the configuration: ``log_path``, ``event_exporter`` and ``metric`` blocks.

:func:`configure_logging` (called at start and at every reload) subscribes a
:class:`~columba.events.output.LogSink` to the default bus so every event is one log line
(plain or JSON, ``log_format``), and, for each ``metric`` with an ``exporter``, sends the
events its ``filter`` matches to that ``event_exporter``. Every secret setting's value is
registered for masking first, so no configured password reaches a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from columba.config.resolve import SettingsView
from columba.config.types import StrList
from columba.events.exporter import build_exporter
from columba.events.filter import EventFilter, parse_filter
from columba.events.model import Event, FieldValue, default_bus, emit
from columba.events.output import LogSink, register_secret

_unsubscribe: list[Callable[[], None]] = []
_SECRET_ITEM_WORDS = ("password", "secret", "api_key", "token")


class LoggingConfigError(ValueError):
    """An exporter or metric filter is configured wrongly; the message names it."""


def _register_config_secrets(view: SettingsView) -> None:
    for block in view.block.walk():
        for name, assignment in block.settings.items():
            decl = view.schema.settings.get(name)
            value = assignment.value
            if decl is not None and decl.secret and isinstance(value, str) and value:
                register_secret(value)
            elif isinstance(value, StrList):
                for key, item in value.items:
                    if any(w in key.lower() for w in _SECRET_ITEM_WORDS) and "%{" not in item:
                        register_secret(item)


def configure_logging(view: SettingsView) -> None:
    """(Re)subscribe the log sink and exporters of this configuration.

    Everything is built before anything is swapped, so a bad configuration leaves the
    running subscriptions alone.
    """
    _register_config_secrets(view)
    log_path = view.get_str("log_path")
    try:
        sink = LogSink(log_path or "/dev/stderr", view.get_str("log_format"))
    except OSError as exc:
        raise LoggingConfigError(f"log_path = {log_path}: {exc.strerror or exc}") from exc
    subscriptions: list[tuple[EventFilter | None, Callable[[Event], None]]] = [(None, sink)]
    exporters = {block.name: block for block in view.filters("event_exporter")}
    for metric in view.filters("metric"):
        exporter_name = metric.get_str("metric_exporter")
        if not exporter_name:
            continue
        block = exporters.get(exporter_name)
        if block is None:
            raise LoggingConfigError(
                f"metric {metric.name}: exporter {exporter_name} is not defined"
            )
        settings = {
            short: str(block.get(f"event_exporter_{short}"))
            for short in (
                "driver",
                "format",
                "time_format",
                "file_path",
                "unix_path",
                "http_post_url",
            )
            if block.is_set(f"event_exporter_{short}")
        }
        try:
            exporter = build_exporter(block.name, settings)
            event_filter = parse_filter(metric.get_str("metric_filter"))
        except ValueError as exc:
            raise LoggingConfigError(f"metric {metric.name}: {exc}") from exc
        subscriptions.append((event_filter, exporter.export))
    for cancel in _unsubscribe:
        cancel()
    _unsubscribe.clear()
    for event_filter_or_none, target in subscriptions:
        _unsubscribe.append(default_bus.subscribe(event_filter_or_none, target))


def log_line(name: str, /, **fields: FieldValue) -> None:
    """Emit an instantaneous event (one log line)."""
    now = time.time()
    emit(Event(name, dict(fields), start_time=now, end_time=now))
