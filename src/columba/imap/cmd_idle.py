"""IDLE (RFC 2177): ``+ idling``, then changes to the selected mailbox as they happen (woken by
:meth:`MailboxView.wait_for_changes`, so a delivery or flag change by another process shows
within about a second), ``* OK Still here`` every ``imap_idle_notify_interval``, until the
client sends ``DONE``. Expunges may be announced while idling."""

from __future__ import annotations

import asyncio
import contextlib

from columba.imap.condstore import highestmodseq_due
from columba.imap.session import ConnectionDone, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.events import IdleDone, ParserEvent, ProtocolError
from columba.proto.imap.response import ResponseCode, continuation

__all__ = ["idle"]

CHANGE_POLL = 30.0
"""Longest single wait_for_changes() call (re-armed; keepalives are timed separately)."""


async def idle(session: ImapSession, cmd: c.IdleCommand) -> Reply:
    session.write(continuation("idling"))
    session.push_events(session.parser.expect_idle_done())
    if session.selected is not None:
        await session.notify_changes(allow_expunges=True)
        _announce_highestmodseq(session)
    await session.flush()
    loop = asyncio.get_running_loop()
    keepalive_at = loop.time() + session.idle_notify_interval
    reader: asyncio.Task[ParserEvent | None] | None = None
    waiter: asyncio.Task[bool] | None = None
    try:
        while True:
            if reader is None:
                reader = asyncio.ensure_future(session.next_event(timeout=None))
            wait = max(0.0, min(keepalive_at - loop.time(), CHANGE_POLL))
            sel = session.selected
            if sel is not None:
                waiter = asyncio.ensure_future(sel.view.wait_for_changes(wait))
            else:
                waiter = asyncio.ensure_future(_sleep_false(wait))
            done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
                waiter = None
                event = reader.result()
                reader = None
                if event is None:
                    raise ConnectionDone
                if isinstance(event, IdleDone):
                    if event.ok:
                        return Reply("OK", "Idle completed.")
                    return Reply("BAD", "Expected DONE.")
                if isinstance(event, ProtocolError):
                    return Reply("BAD", event.message)
                # any other event: put it back and end IDLE
                session.push_events([event])
                return Reply("BAD", "Expected DONE.")
            changed = waiter.result()
            waiter = None
            if changed and session.selected is not None:
                await session.notify_changes(allow_expunges=True)
                _announce_highestmodseq(session)
                await session.flush()
            if loop.time() >= keepalive_at:
                session.untagged_ok("Still here")
                await session.flush()
                keepalive_at = loop.time() + session.idle_notify_interval
    finally:
        for task in (reader, waiter):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def _announce_highestmodseq(session: ImapSession) -> None:
    """QRESYNC: ``* OK [HIGHESTMODSEQ n]`` after changes the client can't learn it from
    (there is no tagged reply to carry it while idling)."""
    modseq = highestmodseq_due(session)
    if modseq is not None:
        session.untagged_ok("Highest", ResponseCode("HIGHESTMODSEQ", modseq))


async def _sleep_false(seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return False
