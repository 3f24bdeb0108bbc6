"""IDLE (RFC 2177): ``+ idling``, then changes to the selected mailbox as they happen (woken by
:meth:`MailboxView.wait_for_changes`, so a delivery or flag change by another process shows
within about a second), ``* OK Still here`` every ``imap_idle_notify_interval``, until the
client sends ``DONE``. Expunges may be announced while idling.

Hibernation (``imap_hibernate_timeout``, Dovecot's setting; 0 = never): after that long in
IDLE with nothing pending, the session closes its mailbox view and its user, so the process
can let the user's index go (its SQLite connection, page cache and prepared statements are
most of what an idle user costs), and waits on a :class:`~columba.storage.api.ChangeWatch`
taken *before* its last look at the mailbox, so no commit can slip in between. When the
watch moves or the client speaks, the session reopens the user and mailbox, announces what
changed meanwhile (expunges, new messages, flag changes: messages whose MODSEQ passed the old
HIGHESTMODSEQ) exactly as a sync would have, and idles on normally. A session holding
``\\Recent`` messages (IMAP4rev1) is never hibernated: a reopened view could not give them
back. Unlike Dovecot's imap-hibernate this stays in the process; the client sees no
difference.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from columba.imap.condstore import highestmodseq_due
from columba.imap.session import ConnectionDone, ImapSession, Reply, log_event
from columba.proto.imap import commands as c
from columba.proto.imap.events import IdleDone, ParserEvent, ProtocolError
from columba.proto.imap.response import ResponseCode, bye, continuation
from columba.storage.api import ChangeWatch, MailUser, StorageError, SyncChanges

__all__ = ["idle"]

CHANGE_POLL = 30.0
"""Longest single wait_for_changes() call (re-armed; keepalives are timed separately)."""
NEVER = float("inf")


@dataclass(eq=False)
class _Hibernation:
    """What a hibernated session remembers of its user and selected mailbox."""

    watch: ChangeWatch
    generation: int
    user: MailUser
    """The closed user (logout logging and cleanup still see it)."""
    mailbox: str | None = None
    """The selected mailbox's name (None: nothing was selected)."""
    uidvalidity: int = 0
    highestmodseq: int = 0


async def idle(session: ImapSession, cmd: c.IdleCommand) -> Reply:
    session.write(continuation("idling"))
    session.push_events(session.parser.expect_idle_done())
    if session.selected is not None:
        await session.notify_changes(allow_expunges=True)
        _announce_highestmodseq(session)
    await session.flush()
    loop = asyncio.get_running_loop()
    keepalive_at = loop.time() + session.idle_notify_interval
    hibernate_after = session.hibernate_timeout or NEVER
    hibernate_at = loop.time() + hibernate_after
    hibernated: _Hibernation | None = None
    reader: asyncio.Task[ParserEvent | None] | None = None
    waiter: asyncio.Task[bool] | None = None
    try:
        while True:
            if reader is None:
                reader = asyncio.ensure_future(session.next_event(timeout=None))
            if hibernated is None and loop.time() >= hibernate_at:
                hibernated = await _hibernate(session)
                hibernate_at = NEVER if hibernated is not None else loop.time() + hibernate_after
            wait = max(0.0, min(keepalive_at - loop.time(), CHANGE_POLL))
            sel = session.selected
            if hibernated is not None:
                waiter = asyncio.ensure_future(hibernated.watch.wait(hibernated.generation, wait))
            elif sel is not None:
                wait = max(0.0, min(wait, hibernate_at - loop.time()))
                waiter = asyncio.ensure_future(sel.view.wait_for_changes(wait))
            else:
                wait = max(0.0, min(wait, hibernate_at - loop.time()))
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
                if hibernated is not None:
                    # the client spoke: back to a live session before anything is answered
                    await _wake(session, hibernated)
                    hibernated = None
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
            if hibernated is not None:
                if changed:
                    await _wake(session, hibernated)
                    hibernated = None
                    hibernate_at = loop.time() + hibernate_after
                    await session.flush()
            elif changed and session.selected is not None:
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
        if hibernated is not None:
            hibernated.watch.close()


async def _hibernate(session: ImapSession) -> _Hibernation | None:
    """Close the session's view and user if nothing needs them; None if it can't be done."""
    user = session.user
    if user is None or session.storage is None or session.between_commands is not None:
        return None
    sel = session.selected
    if sel is not None and (sel.pending_expunges or (not session.rev2 and sel.view.recent_uids())):
        return None
    watch = user.change_watch()
    if watch is None:
        return None
    state = _Hibernation(watch, watch.generation, user)
    try:
        if sel is not None:
            # A last look after taking the generation: whatever commits from now on wakes us.
            await session.notify_changes(allow_expunges=True)
            _announce_highestmodseq(session)
            await session.flush()
            view = sel.view
            if sel.pending_expunges or (not session.rev2 and view.recent_uids()):
                watch.close()
                return None
            state.mailbox = view.name
            state.uidvalidity = view.uidvalidity
            state.highestmodseq = view.highestmodseq
            await view.close()
        await user.close()
    except BaseException:
        watch.close()
        raise
    session.hibernated = True
    return state


async def _wake(session: ImapSession, state: _Hibernation) -> None:
    """Reopen the user and mailbox of a hibernated session and announce what changed."""
    state.watch.close()
    session.hibernated = False
    storage = session.storage
    assert storage is not None
    sel = session.selected
    try:
        user = await storage.open_user(state.user.info)
    except StorageError as exc:
        await _give_up(session, "Temporary failure reopening the mailbox storage.", exc)
        raise ConnectionDone from exc
    session.user = user
    if sel is None or state.mailbox is None:
        return
    try:
        view = await user.open_mailbox(state.mailbox, readonly=sel.readonly)
    except StorageError as exc:
        if exc.imap_code == "NONEXISTENT":
            await _give_up(session, "Selected mailbox was deleted, have to disconnect.", exc)
        else:
            await _give_up(session, "Temporary failure reopening the mailbox.", exc)
        raise ConnectionDone from exc
    if view.uidvalidity != state.uidvalidity:
        # deleted and created again meanwhile: nothing the client knows is valid
        await view.close()
        await _give_up(session, "Selected mailbox was deleted, have to disconnect.", None)
        raise ConnectionDone
    sel.view = view
    present = set(view.uids())
    known = set(sel.uids)
    last = sel.uids[-1] if sel.uids else 0
    expunged = tuple(u for u in sel.uids if u not in present)
    added = tuple(u for u in view.uids() if u > last)
    # flag changes: what got a MODSEQ past the HIGHESTMODSEQ the session had seen
    moved = [
        uid
        for uid, _flags, modseq in view.flag_rows(present & known)
        if modseq > state.highestmodseq
    ]
    await view.preload(moved)
    changed = tuple(view.records(moved))
    session.announce_changes(SyncChanges(expunged, added, changed), allow_expunges=True)
    _announce_highestmodseq(session)


async def _give_up(session: ImapSession, text: str, exc: StorageError | None) -> None:
    log_event(
        "imap_unhibernate_failed",
        error=str(exc) if exc is not None else "uidvalidity changed",
        user=session.username,
        session=session.info.session_id,
    )
    code = "UNAVAILABLE" if exc is not None and exc.imap_code != "NONEXISTENT" else None
    session.write(bye(text, code=code))
    await session.flush()


def _announce_highestmodseq(session: ImapSession) -> None:
    """QRESYNC: ``* OK [HIGHESTMODSEQ n]`` after changes the client can't learn it from
    (there is no tagged reply to carry it while idling)."""
    modseq = highestmodseq_due(session)
    if modseq is not None:
        session.untagged_ok("Highest", ResponseCode("HIGHESTMODSEQ", modseq))


async def _sleep_false(seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return False
