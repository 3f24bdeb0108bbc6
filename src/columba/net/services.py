"""Service handler registry: which coroutine serves a connection accepted for a service.

Service names are Dovecot's (``imap-login``, ``imap``, ``lmtp``, ...). Protocol packages
register a handler with ``@register_service("imap-login")``; the worker's accept loop looks it up
with ``get_service``. A service without a handler gets ``unavailable_reply`` and is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from columba.net.connection import ConnectionInfo

ConnectionHandler: TypeAlias = (
    "Callable[[asyncio.StreamReader, asyncio.StreamWriter, ConnectionInfo], Awaitable[None]]"
)

#: Dovecot's service names that Columba knows about.
KNOWN_SERVICES: tuple[str, ...] = (
    "imap-login",
    "imap",
    "pop3-login",
    "pop3",
    "submission-login",
    "submission",
    "lmtp",
    "managesieve-login",
    "managesieve",
    "doveadm",
    "stats",
    "auth",
)

_handlers: dict[str, ConnectionHandler] = {}


def register_service(name: str) -> Callable[[ConnectionHandler], ConnectionHandler]:
    """Decorator: make ``handler`` serve connections on listeners of service ``name``."""
    if not name or name != name.strip():
        raise ValueError(f"invalid service name {name!r}")

    def decorate(handler: ConnectionHandler) -> ConnectionHandler:
        current = _handlers.get(name)
        if current is not None and current is not handler:
            raise ValueError(f"service {name!r} already has a handler")
        _handlers[name] = handler
        return handler

    return decorate


def get_service(name: str) -> ConnectionHandler | None:
    """The handler registered for ``name``, or None."""
    return _handlers.get(name)


def unregister_service(name: str) -> None:
    """Forget the handler for ``name`` (tests)."""
    _handlers.pop(name, None)


def registered_services() -> list[str]:
    return sorted(_handlers)


_UNAVAILABLE_REPLIES: dict[str, bytes] = {
    "imap-login": b"* BYE [UNAVAILABLE] Service not available.\r\n",
    "imap": b"* BYE [UNAVAILABLE] Service not available.\r\n",
    "pop3-login": b"-ERR [SYS/TEMP] Service not available.\r\n",
    "pop3": b"-ERR [SYS/TEMP] Service not available.\r\n",
    "submission-login": b"421 4.3.0 Service not available.\r\n",
    "submission": b"421 4.3.0 Service not available.\r\n",
    "lmtp": b"421 4.3.0 Service not available.\r\n",
    "managesieve-login": b'BYE "Service not available."\r\n',
    "managesieve": b'BYE "Service not available."\r\n',
}


def unavailable_reply(service: str) -> bytes:
    """What to tell a plaintext client of ``service`` before closing because nothing serves it
    (empty for services without a greeting, such as doveadm and stats)."""
    return _UNAVAILABLE_REPLIES.get(service, b"")
