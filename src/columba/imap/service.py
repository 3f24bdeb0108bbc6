"""The ``imap-login`` and ``imap`` connection handlers.

In the all-in-one server both run the whole protocol in-process: the pre-auth greeting,
STARTTLS / implicit TLS (``ConnectionInfo.ssl``), LOGIN / AUTHENTICATE, then the authenticated
and selected states on the process's storage. Settings are the ``imap`` protocol's as the
connection sees them (``local``/``remote`` filters applied).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from columba.imap import dispatch
from columba.imap.session import ImapSession, log_event
from columba.net.connection import ConnectionInfo
from columba.net.services import register_service
from columba.proto.imap.response import bye

if TYPE_CHECKING:
    from columba.auth.service import Authenticator
    from columba.context import ServiceContext
    from columba.storage.api import MailStorage

__all__ = ["serve_imap", "session_for"]

assert dispatch.COMMANDS  # importing dispatch installs the command table

_logger = logging.getLogger("columba.imap")


def _tls_context(context: ServiceContext, info: ConnectionInfo) -> ssl.SSLContext | None:
    from columba.net.tls import TlsConfigError, TlsSettings, server_context, tls_enabled

    view = context.view("imap", local_ip=info.local_ip, remote_ip=info.remote_ip)
    if not tls_enabled(view) and not info.ssl:
        return None
    try:
        return server_context(TlsSettings.from_view(view))
    except TlsConfigError as exc:
        log_event("imap_tls_error", error=str(exc), session=info.session_id)
        return None


def session_for(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    info: ConnectionInfo,
    context: ServiceContext,
) -> ImapSession:
    """A session with the settings, authenticator, storage and TLS of *context*."""
    view = context.view("imap", local_ip=info.local_ip, remote_ip=info.remote_ip)
    authenticator: Authenticator | None
    try:
        authenticator = context.authenticator_for("imap")
    except Exception as exc:
        log_event("imap_auth_setup_failed", error=str(exc), session=info.session_id)
        authenticator = None
    storage: MailStorage | None
    try:
        storage = context.storage
    except Exception as exc:
        log_event("imap_storage_setup_failed", error=str(exc), session=info.session_id)
        storage = None
    return ImapSession(
        reader,
        writer,
        info,
        settings=view,
        authenticator=authenticator,
        storage=storage,
        tls_context=_tls_context(context, info),
    )


async def serve_imap(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: ConnectionInfo
) -> None:
    from columba.context import current_context

    try:
        context = current_context()
        session = session_for(reader, writer, info, context)
    except Exception:
        _logger.exception("IMAP session setup failed")
        if not info.ssl:
            writer.write(bye("Internal error occurred.", code="UNAVAILABLE"))
            await writer.drain()
        return
    await session.run()


register_service("imap-login")(serve_imap)
register_service("imap")(serve_imap)


def _preload() -> None:
    """Import what the first login of a worker would: the master imports this module before
    it forks, so the workers share these modules' pages instead of each loading its own copy
    (for PSS, one copy instead of one per worker)."""
    import sqlite3  # noqa: F401

    import columba.context
    import columba.storage.from_config
    import columba.storage.notify
    import columba.storage.obox  # noqa: F401
    from columba.dict.api import dict_drivers
    from columba.fs.api import fs_drivers

    fs_drivers()  # imports the built-in fs and dict drivers
    dict_drivers()


_preload()
