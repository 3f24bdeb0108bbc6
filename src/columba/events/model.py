"""The event model: one structured event per finished operation, and the bus that carries it.

An :class:`Event` has a name (``imap_command_finished``), fields, categories, start and end
times and the source location that created it.  Code times an operation with
:func:`emit_event`::

    with emit_event("imap_command_finished", cmd_name="LIST") as ev:
        ...
        ev.fields["tagged_reply_state"] = "OK"

The event is emitted on the bus when the block ends.  If an exception escapes the block,
the event gets ``error`` (the message) and ``error_type`` (the exception class) fields,
unless the block already set ``error``, and the exception goes on.

Subscribers attach to an :class:`EventBus` with an optional filter; :data:`default_bus`
is the process-wide bus.  A failing sink is logged and skipped: emitting never raises.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from columba.events.filter import EventFilter

__all__ = [
    "Event",
    "EventBus",
    "EventTimer",
    "FieldValue",
    "Sink",
    "default_bus",
    "emit",
    "emit_event",
]

FieldValue = str | int | float | list[str]
Sink = Callable[["Event"], None]

_log = logging.getLogger(__name__)

MAX_EMIT_DEPTH: Final = 4
"""A sink that emits events itself may do so this many levels deep; deeper events drop."""


@dataclass
class Event:
    """A named, timed record of one operation.  Times are seconds since the Unix epoch."""

    name: str
    fields: dict[str, FieldValue] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    source_location: str = ""

    @property
    def duration_usecs(self) -> int:
        """Microseconds from start to end; 0 while the event has not ended."""
        if self.end_time is None:
            return 0
        return max(0, round((self.end_time - self.start_time) * 1_000_000))


@dataclass(frozen=True, eq=False)
class _Subscription:
    filter: EventFilter | None
    sink: Sink


class EventBus:
    """Delivers each emitted event to every subscriber whose filter matches it.

    Thread-safe; :meth:`emit` reads an immutable snapshot of the subscriptions, so
    subscribing or unsubscribing from a sink is allowed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[_Subscription, ...] = ()
        self._local = threading.local()

    def subscribe(self, filter: EventFilter | None, sink: Sink) -> Callable[[], None]:
        """Deliver events matching ``filter`` (every event when None) to ``sink``.

        Returns a function that cancels the subscription.
        """
        sub = _Subscription(filter, sink)
        with self._lock:
            self._subscriptions = (*self._subscriptions, sub)

        def unsubscribe() -> None:
            with self._lock:
                self._subscriptions = tuple(s for s in self._subscriptions if s is not sub)

        return unsubscribe

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscriptions)

    def emit(self, event: Event) -> None:
        subscriptions = self._subscriptions
        if not subscriptions:
            return
        depth: int = getattr(self._local, "depth", 0)
        if depth >= MAX_EMIT_DEPTH:
            return  # a sink emitting events that reach itself: stop the loop here
        self._local.depth = depth + 1
        try:
            for sub in subscriptions:
                try:
                    if sub.filter is None or sub.filter.match(event):
                        sub.sink(event)
                except Exception:
                    _log.warning("event sink %r failed on %s", sub.sink, event.name, exc_info=True)
        finally:
            self._local.depth = depth


default_bus: Final = EventBus()


def emit(event: Event, bus: EventBus | None = None) -> None:
    """Emit ``event`` on ``bus`` (default: :data:`default_bus`)."""
    (bus if bus is not None else default_bus).emit(event)


class EventTimer:
    """Context manager returned by :func:`emit_event`; ``with`` yields the :class:`Event`."""

    def __init__(self, event: Event, bus: EventBus | None) -> None:
        self.event = event
        self._bus = bus

    def __enter__(self) -> Event:
        self.event.start_time = time.time()
        return self.event

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        event = self.event
        event.end_time = time.time()
        if exc is not None:
            event.fields.setdefault("error", str(exc) or type(exc).__name__)
            event.fields.setdefault("error_type", type(exc).__name__)
        emit(event, self._bus)


def emit_event(
    name: str,
    /,
    *,
    categories: Iterable[str] = (),
    bus: EventBus | None = None,
    **fields: FieldValue,
) -> EventTimer:
    """Time the ``with`` block as event ``name`` with the given fields; emit it at the end.

    ``source_location`` is the caller's ``file.py:line``.
    """
    frame = sys._getframe(1)
    location = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
    event = Event(name, dict(fields), list(categories), source_location=location)
    return EventTimer(event, bus)
