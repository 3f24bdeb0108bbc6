"""NOTIFY (RFC 5465): which changes the server announces on its own, for which mailboxes.

``NOTIFY SET [STATUS] (filter events) ...`` replaces the session's settings, ``NOTIFY NONE``
ends them. Shapes follow Dovecot 2.3 (the oracle):

* the selected mailbox (``selected`` / ``selected-delayed``): MessageNew gives EXISTS (and
  RECENT) plus, with fetch attributes, ``* n FETCH (...)`` of each new message; FlagChange
  gives ``* n FETCH (FLAGS ...)``; without them (``NONE``, or no selected group at all) new
  messages and flag changes of the selected mailbox are not announced. Expunges are always
  announced under RFC 3501's timing rules (:mod:`.session`); with ``selected`` they are also
  sent while the client is quiet between commands, with ``selected-delayed`` only after a
  command that allows them.
* other mailboxes (``personal``, ``inboxes`` (treated as personal, like Dovecot),
  ``subscribed``, ``subtree``, ``mailboxes``): MessageNew/MessageExpunge give ``* STATUS name
  (MESSAGES n UIDNEXT n UNSEEN n)``, FlagChange ``(UNSEEN n)`` when \\Seen changed (plus
  HIGHESTMODSEQ with CONDSTORE enabled), a new UIDVALIDITY the four of them; MailboxName gives
  ``* LIST (attrs) "/" name`` for a created mailbox, ``(\\NonExistent)`` for a deleted one and
  ``("OLDNAME" (old))`` after a rename; SubscriptionChange gives LIST with or without
  ``\\Subscribed``. The selected mailbox never gets STATUS.
* ``STATUS``: before the tagged OK, ``* STATUS`` (MESSAGES UIDNEXT UIDVALIDITY UNSEEN, and
  HIGHESTMODSEQ when FlagChange is asked anywhere) of every selectable mailbox a group with
  message events covers, except the selected one.
* AnnotationChange, MailboxMetadataChange and ServerMetadataChange (and unknown events) are
  refused with ``NO [BADEVENT (the supported events)]``; more than
  :data:`MAX_NAMES` names in one filter with ``NO [NOTIFICATIONOVERFLOW]``, and a burst of
  more than :data:`MAX_BURST` notifications ends NOTIFY with ``* OK [NOTIFICATIONOVERFLOW]``.

How changes are seen: :meth:`MailUser.wait_for_change` wakes on any commit to the user's
index, by this process or another (:mod:`columba.storage.notify`, within ~0.15 s); the
session then compares the mailbox list and the STATUS of the watched mailboxes with what it
last saw. While NOTIFY is set, :attr:`ImapSession.between_commands` makes the session wait for
its next command through :func:`listen`, so notifications also reach a client that is quiet
between commands; queued pipelined commands are run first. IDLE gets the same
notifications (:func:`idle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from columba.imap import cmd_idle
from columba.imap.condstore import highestmodseq_due
from columba.imap.session import CommandError, ConnectionDone, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.events import IdleDone, ParserEvent, ProtocolError
from columba.proto.imap.fetch import FetchAttribute
from columba.proto.imap.response import ResponseCode, continuation, encode_mailbox, encode_string
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import MailboxInfo, MailboxStatus, MailUser, StorageError

__all__ = [
    "MAX_BURST",
    "MAX_NAMES",
    "SUPPORTED_EVENTS",
    "NotifyState",
    "idle",
    "listen",
    "notify",
    "state_of",
]

_logger = logging.getLogger("columba.imap")

MESSAGE_NEW = "MessageNew"
MESSAGE_EXPUNGE = "MessageExpunge"
FLAG_CHANGE = "FlagChange"
MAILBOX_NAME = "MailboxName"
SUBSCRIPTION_CHANGE = "SubscriptionChange"
SUPPORTED_EVENTS = (MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, MAILBOX_NAME, SUBSCRIPTION_CHANGE)
"""In the order BADEVENT lists them."""
MESSAGE_EVENTS = frozenset({MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE})
MAX_NAMES = 100
"""Mailbox names one filter kind may list (Dovecot's limit)."""
MAX_BURST = 1000
"""Notifications one change may produce before NOTIFY gives up with NOTIFICATIONOVERFLOW."""
WAIT_SLICE = 30.0
"""Longest single wait for a change (re-armed)."""


@dataclass(frozen=True)
class Group:
    """One non-selected event group: ``kind`` personal/subscribed/subtree/mailboxes."""

    kind: str
    names: tuple[str, ...]
    events: frozenset[str]

    def covers(self, info: MailboxInfo, separator: str) -> bool:
        if self.kind == "personal":
            return True
        if self.kind == "subscribed":
            return info.subscribed
        if self.kind == "subtree":
            return any(info.name == n or info.name.startswith(n + separator) for n in self.names)
        return info.name in self.names


@dataclass
class NotifyState:
    """A session's NOTIFY settings and what it last saw of the other mailboxes."""

    groups: list[Group]
    selected_events: frozenset[str] = frozenset()
    immediate_expunges: bool = False
    fetch_atts: tuple[FetchAttribute, ...] = ()
    boxes: dict[str, MailboxInfo] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)
    statuses: dict[str, MailboxStatus] = field(default_factory=dict)
    generation: int = 0

    def events_for(self, info: MailboxInfo, separator: str) -> frozenset[str]:
        out: set[str] = set()
        for group in self.groups:
            if group.covers(info, separator):
                out |= group.events
        return frozenset(out)

    @property
    def watches_mailboxes(self) -> bool:
        return bool(self.groups)


_states: weakref.WeakKeyDictionary[ImapSession, NotifyState] = weakref.WeakKeyDictionary()


def state_of(session: ImapSession) -> NotifyState | None:
    """The session's NOTIFY state (None when NOTIFY isn't set)."""
    return _states.get(session)


# ---------------------------------------------------------------------- the command


def _canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


def _build(cmd: c.NotifyCommand, separator: str) -> NotifyState:
    """Validate the event groups (BAD/NO as Dovecot and RFC 5465 §5 say)."""
    state = NotifyState(groups=[])
    selected_seen = False
    used: set[str] = set()
    names_per_kind: dict[str, set[str]] = {}
    for group in cmd.groups:
        events = group.events or ()
        names = [e.name for e in events]
        used.update(names)
        if group.filter in ("selected", "selected-delayed"):
            if selected_seen:
                raise CommandError("BAD", "Duplicate selected filter")
            selected_seen = True
            chosen = frozenset(names)
            if (MESSAGE_NEW in chosen) != (MESSAGE_EXPUNGE in chosen):
                raise CommandError("BAD", "MessageNew and MessageExpunge must be together")
            if chosen & {FLAG_CHANGE, "AnnotationChange"} and MESSAGE_EXPUNGE not in chosen:
                raise CommandError("BAD", "FlagChange requires MessageNew and MessageExpunge")
            state.selected_events = chosen
            state.immediate_expunges = group.filter == "selected"
            for event in events:
                if event.name == MESSAGE_NEW:
                    state.fetch_atts = event.fetch_attributes
            continue
        for event in events:
            if event.fetch_attributes:
                raise CommandError("BAD", "Fetch attributes are only for the selected mailbox")
        if group.events is None:
            continue  # NONE is the default
        kind = "personal" if group.filter == "inboxes" else group.filter
        boxes = tuple(dict.fromkeys(_canonical(n.rstrip(separator) or n) for n in group.mailboxes))
        seen = names_per_kind.setdefault(kind, set())
        seen.update(boxes)
        if len(seen) > MAX_NAMES:
            raise CommandError("NO", "Too many mailbox names", "NOTIFICATIONOVERFLOW")
        state.groups.append(Group(kind, boxes, frozenset(names)))
    unsupported = used - set(SUPPORTED_EVENTS)
    if unsupported:
        raise CommandError(
            "NO",
            "Unsupported NOTIFY events.",
            ResponseCode("BADEVENT", list(_atoms(SUPPORTED_EVENTS))),
        )
    return state


def _atoms(names: tuple[str, ...]) -> list[object]:
    from columba.proto.imap.response import Atom

    return [Atom(n) for n in names]


async def notify(session: ImapSession, cmd: c.NotifyCommand) -> Reply:
    """``NOTIFY SET ...`` / ``NOTIFY NONE``."""
    user = session.require_user()
    if cmd.none:
        _activate(session, None)
        return Reply("OK", "NOTIFY completed.")
    state = _build(cmd, user.separator)
    generation = user.change_generation()
    await _snapshot(session, user, state)
    state.generation = generation
    if cmd.status:
        await _send_initial_status(session, user, state)
    _activate(session, state)
    return Reply("OK", "NOTIFY completed.")


def _activate(session: ImapSession, state: NotifyState | None) -> None:
    """Install *state* (None: NOTIFY NONE, which like Dovecot also leaves the selected
    mailbox without new-message and flag announcements)."""
    if state is None:
        _states.pop(session, None)
        session.announce_new = session.announce_flags = False
        session.between_commands = None
        return
    _states[session] = state
    session.announce_new = MESSAGE_NEW in state.selected_events
    session.announce_flags = FLAG_CHANGE in state.selected_events
    session.between_commands = listen
    _install()


async def _send_initial_status(session: ImapSession, user: MailUser, state: NotifyState) -> None:
    flags_used = any(FLAG_CHANGE in g.events for g in state.groups) or (
        FLAG_CHANGE in state.selected_events
    )
    selected = session.selected.view.name if session.selected is not None else None
    for name, info in state.boxes.items():
        if not info.selectable or name == selected:
            continue
        if not state.events_for(info, user.separator) & MESSAGE_EVENTS:
            continue
        st = state.statuses.get(name)
        if st is None:
            continue
        items: list[tuple[str, int]] = [
            ("MESSAGES", st.messages),
            ("UIDNEXT", st.uidnext),
            ("UIDVALIDITY", st.uidvalidity),
            ("UNSEEN", st.unseen),
        ]
        if flags_used:
            items.append(("HIGHESTMODSEQ", st.highestmodseq))
        session.write(_status_line(session, name, items))


# ---------------------------------------------------------------------- state and changes


async def _snapshot(session: ImapSession, user: MailUser, state: NotifyState) -> None:
    """Read the mailbox list and the STATUS of every mailbox a message event watches."""
    infos = await user.list_mailboxes()
    state.boxes = {i.name: i for i in infos if i.exists}
    state.subscribed = {i.name for i in infos if i.subscribed}
    state.statuses = await _statuses(user, state, state.boxes)


async def _statuses(
    user: MailUser, state: NotifyState, boxes: dict[str, MailboxInfo]
) -> dict[str, MailboxStatus]:
    out: dict[str, MailboxStatus] = {}
    for name, info in boxes.items():
        if not info.selectable or not state.events_for(info, user.separator) & MESSAGE_EVENTS:
            continue
        try:
            out[name] = await user.status(name)
        except StorageError:
            continue  # deleted meanwhile: the next look reports it
    return out


def _status_line(session: ImapSession, name: str, items: list[tuple[str, int]]) -> bytes:
    body = " ".join(f"{k} {v}" for k, v in items).encode("ascii")
    return b"* STATUS " + encode_mailbox(name, utf8=session.utf8) + b" (" + body + b")\r\n"


def _list_line(
    session: ImapSession,
    name: str,
    attrs: list[str],
    separator: str,
    old_name: str | None = None,
) -> bytes:
    line = (
        b"* LIST ("
        + " ".join(attrs).encode("ascii")
        + b") "
        + encode_string(separator)
        + b" "
        + encode_mailbox(name, utf8=session.utf8)
    )
    if old_name is not None:
        line += b' ("OLDNAME" (' + encode_mailbox(old_name, utf8=session.utf8) + b"))"
    return line + b"\r\n"


def _attrs(info: MailboxInfo, subscribed: bool) -> list[str]:
    out: list[str] = []
    if subscribed:
        out.append("\\Subscribed")
    if not info.selectable:
        out.append("\\Noselect")
    out.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
    return out


def _status_change(
    old: MailboxStatus, new: MailboxStatus, events: frozenset[str], condstore: bool
) -> list[tuple[str, int]]:
    """The STATUS items Dovecot sends for this change (empty: nothing to send)."""
    if old == new:
        return []
    if new.uidvalidity != old.uidvalidity:
        if not events & MESSAGE_EVENTS:
            return []
        wanted = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
    else:
        appended = new.uidnext != old.uidnext
        expunged = new.messages < old.messages + (new.uidnext - old.uidnext)
        seen = new.unseen != old.unseen and not appended and not expunged
        modseq = new.highestmodseq != old.highestmodseq and not appended and not expunged
        triggered = (
            (appended and MESSAGE_NEW in events)
            or (expunged and MESSAGE_EXPUNGE in events)
            or ((seen or modseq) and FLAG_CHANGE in events)
        )
        if not triggered:
            return []
        wanted = []
        if appended or expunged:
            wanted = ["MESSAGES", "UIDNEXT", "UNSEEN"]
        elif seen:
            wanted = ["UNSEEN"]
    if condstore:
        wanted.append("HIGHESTMODSEQ")
    values = {
        "MESSAGES": new.messages,
        "UIDNEXT": new.uidnext,
        "UIDVALIDITY": new.uidvalidity,
        "UNSEEN": new.unseen,
        "HIGHESTMODSEQ": new.highestmodseq,
    }
    return [(k, values[k]) for k in wanted]


async def changes_of_mailboxes(session: ImapSession, state: NotifyState) -> list[bytes]:
    """Compare the other mailboxes with what the session last saw: the notification lines
    (the state moves on; the caller took the generation before)."""
    user = session.require_user()
    sep = user.separator
    infos = await user.list_mailboxes()
    boxes = {i.name: i for i in infos if i.exists}
    subscribed = {i.name for i in infos if i.subscribed}
    statuses = await _statuses(user, state, boxes)
    old_boxes, old_subscribed, old_statuses = state.boxes, state.subscribed, state.statuses
    state.boxes, state.subscribed, state.statuses = boxes, subscribed, statuses
    selected = session.selected.view.name if session.selected is not None else None
    out: list[bytes] = []

    gone = [n for n in old_boxes if n not in boxes]
    new = [n for n in boxes if n not in old_boxes]
    new_by_guid = {boxes[n].guid: n for n in new if boxes[n].guid}
    renamed: dict[str, str] = {}  # new name -> old name
    for old_name in gone:
        guid = old_boxes[old_name].guid
        if guid and guid in new_by_guid:
            renamed[new_by_guid.pop(guid)] = old_name
    touched = set(gone) | set(new)
    for name in gone:
        if name in renamed.values():
            continue
        if MAILBOX_NAME in state.events_for(old_boxes[name], sep):
            out.append(_list_line(session, name, ["\\NonExistent"], sep))
    for name in new:
        info = boxes[name]
        if MAILBOX_NAME not in state.events_for(info, sep):
            continue
        attrs = _attrs(info, name in subscribed)
        out.append(_list_line(session, name, attrs, sep, renamed.get(name)))
    for name in sorted((subscribed ^ old_subscribed) - touched):
        info = boxes.get(name) or MailboxInfo(
            name=name, guid="", subscribed=True, selectable=False, exists=False
        )
        if SUBSCRIPTION_CHANGE not in state.events_for(info, sep):
            continue
        if name in boxes:
            attrs = _attrs(info, name in subscribed)
        else:
            attrs = (["\\Subscribed"] if name in subscribed else []) + ["\\NonExistent"]
        out.append(_list_line(session, name, attrs, sep))
    for name, st in statuses.items():
        before = old_statuses.get(name)
        if before is None or name == selected:
            continue
        items = _status_change(before, st, state.events_for(boxes[name], sep), session.condstore)
        if items:
            out.append(_status_line(session, name, items))
    return out


async def announce(session: ImapSession, *, idling: bool = False) -> None:
    """Send what changed: the selected mailbox (as NOTIFY asks), then the others."""
    state = state_of(session)
    if state is None:
        return
    state.generation = session.require_user().change_generation()
    sel = session.selected
    if sel is not None and (idling or state.selected_events):
        await session.notify_changes(allow_expunges=idling or state.immediate_expunges)
        modseq = highestmodseq_due(session)
        if modseq is not None:
            session.untagged_ok("Highest", ResponseCode("HIGHESTMODSEQ", modseq))
    if not state.watches_mailboxes:
        return
    lines = await changes_of_mailboxes(session, state)
    if len(lines) > MAX_BURST:
        _activate(session, None)
        session.untagged_ok("Too many notifications, NOTIFY ended.", "NOTIFICATIONOVERFLOW")
        return
    for line in lines:
        session.write(line)


# ---------------------------------------------------------------------- waiting


async def _wait_change(session: ImapSession, timeout: float) -> bool:
    state = state_of(session)
    user = session.user
    if state is None or user is None:
        await asyncio.sleep(timeout)
        return False
    return await user.wait_for_change(state.generation, timeout)


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def listen(session: ImapSession) -> ParserEvent | None:
    """Wait for the client's next input while announcing changes (the session's
    :attr:`~ImapSession.between_commands` hook while NOTIFY is set)."""
    reader: asyncio.Future[Any] = asyncio.ensure_future(session.next_event())
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            if state_of(session) is None:
                event: ParserEvent | None = await reader
                return event
            waiter = asyncio.ensure_future(_wait_change(session, WAIT_SLICE))
            done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                result: ParserEvent | None = reader.result()
                return result
            changed = waiter.result()
            waiter = None
            if changed:
                await _announce_safely(session)
                await session.flush()
    finally:
        await _cancel(waiter)
        await _cancel(reader)


async def _announce_safely(session: ImapSession, *, idling: bool = False) -> None:
    try:
        await announce(session, idling=idling)
    except (ConnectionDone, ConnectionError, asyncio.CancelledError):
        raise
    except StorageError as exc:
        _logger.info("NOTIFY: looking for changes failed: %s", exc)
        if exc.imap_code == "NONEXISTENT" and session.selected is not None:
            session.write(b"* BYE Selected mailbox was deleted, have to disconnect.\r\n")
            await session.flush()
            raise ConnectionDone from exc
    except Exception:
        _logger.exception("NOTIFY: looking for changes failed")


async def idle(session: ImapSession, cmd: c.IdleCommand) -> Reply:
    """IDLE (RFC 2177) that also sends the NOTIFY notifications; plain IDLE without NOTIFY."""
    if state_of(session) is None:
        return await cmd_idle.idle(session, cmd)
    session.write(continuation("idling"))
    session.push_events(session.parser.expect_idle_done())
    await _announce_safely(session, idling=True)
    await session.flush()
    loop = asyncio.get_running_loop()
    keepalive_at = loop.time() + session.idle_notify_interval
    reader: asyncio.Future[Any] | None = None
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            if reader is None:
                reader = asyncio.ensure_future(session.next_event(timeout=None))
            wait = max(0.0, min(keepalive_at - loop.time(), WAIT_SLICE))
            waiter = asyncio.ensure_future(_wait_change(session, wait))
            done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                await _cancel(waiter)
                waiter = None
                event = reader.result()
                reader = None
                if event is None:
                    raise ConnectionDone
                if isinstance(event, IdleDone):
                    return Reply("OK", "Idle completed.") if event.ok else _expected_done()
                if isinstance(event, ProtocolError):
                    return Reply("BAD", event.message)
                session.push_events([event])
                return _expected_done()
            changed = waiter.result()
            waiter = None
            if changed:
                await _announce_safely(session, idling=True)
                await session.flush()
            if loop.time() >= keepalive_at:
                session.untagged_ok("Still here")
                await session.flush()
                keepalive_at = loop.time() + session.idle_notify_interval
    finally:
        await _cancel(waiter)
        await _cancel(reader)


def _expected_done() -> Reply:
    return Reply("BAD", "Expected DONE.")


# ---------------------------------------------------------------------- MessageNew fetch-att

_INSTALLED = "_columba_notify"
Notify = Callable[..., Awaitable[None]]


def _install() -> None:
    """Wrap :meth:`ImapSession.notify_changes` once: after new messages of the selected
    mailbox were announced, send the FETCH the client asked for with MessageNew."""
    original: Notify = ImapSession.notify_changes
    if getattr(original, _INSTALLED, False):
        return

    async def notify_changes(self: ImapSession, *, allow_expunges: bool) -> None:
        state = state_of(self)
        sel = self.selected
        if state is None or not state.fetch_atts or sel is None or not self.announce_new:
            await original(self, allow_expunges=allow_expunges)
            return
        last = sel.uids[-1] if sel.uids else 0
        await original(self, allow_expunges=allow_expunges)
        if self.selected is not sel:
            return
        new = [i + 1 for i, u in enumerate(sel.uids) if u > last]
        if new:
            await _fetch_new(self, new, state.fetch_atts)

    setattr(notify_changes, _INSTALLED, True)
    setattr(ImapSession, "notify_changes", notify_changes)  # noqa: B010


async def _fetch_new(
    session: ImapSession, seqs: list[int], atts: tuple[FetchAttribute, ...]
) -> None:
    from columba.imap.cmd_fetch import fetch

    cmd = c.FetchCommand(tag="*", name="FETCH", sequence_set=SequenceSet.of(*seqs), attributes=atts)
    try:
        await fetch(session, cmd)
    except CommandError as exc:
        _logger.info("NOTIFY: MessageNew FETCH failed: %s", exc)
