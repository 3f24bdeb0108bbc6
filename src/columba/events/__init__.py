"""Columba events package: one structured event per operation, Dovecot's event filter
language, and log/JSON/tab-text output with secret scrubbing.

* :mod:`columba.events.model`: :class:`Event`, :func:`emit_event`, :class:`EventBus`.
* :mod:`columba.events.filter`: :func:`parse_filter`, :class:`EventFilter`.
* :mod:`columba.events.output`: formatters, :func:`register_secret`, :class:`LogSink`.
* :mod:`columba.events.exporter`: :func:`build_exporter` (``event_exporter { }``).
"""

from columba.events.exporter import Exporter, build_exporter
from columba.events.filter import EventFilter, EventFilterError, parse_filter
from columba.events.model import Event, EventBus, default_bus, emit, emit_event
from columba.events.output import (
    LogSink,
    format_json,
    format_plain,
    format_tab_text,
    register_secret,
    scrub_event,
)

__all__ = [
    "Event",
    "EventBus",
    "EventFilter",
    "EventFilterError",
    "Exporter",
    "LogSink",
    "build_exporter",
    "default_bus",
    "emit",
    "emit_event",
    "format_json",
    "format_plain",
    "format_tab_text",
    "parse_filter",
    "register_secret",
    "scrub_event",
]
