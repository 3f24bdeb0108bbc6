"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): ``RETURN (UPDATE)`` keeps a search or sort
result live, reporting changes as unsolicited ``ESEARCH (TAG "t") [UID] REMOVEFROM (...)`` and
``ADDTO (...)`` responses until CANCELUPDATE or until the mailbox is closed.

A context remembers its search program (sequence numbers and ``$`` frozen to UIDs when the
command ran), its sort program (None for SEARCH) and its result in result order. When the
session announces mailbox changes (after every command, during IDLE), the messages that
arrived or whose flags changed are evaluated again, and announced expunges leave the result:

* removals are reported *before* the EXPUNGE responses (their sequence numbers are still
  valid then), additions *after* the EXISTS response (RFC 5267 §4.3.3, §4.3.4); a message
  expunged elsewhere stays in the result until its EXPUNGE is sent;
* for SEARCH the context position is 0 and the sets are in mailbox order, one line per kind
  (Dovecot's form); for SORT every pair carries the 1-based position of its first message in
  the result as it stands when the pair is applied (REMOVEFROM pairs from the front, then
  ADDTO pairs by final position), so a client applying them in order keeps the sort order.

At most :data:`MAX_UPDATES` contexts per session (Dovecot's limit); another UPDATE is refused
with ``* NO [NOUPDATE "tag"]`` while the command still answers. UPDATE with a tag already in
use is a BAD (RFC 5267 §4.3). The session's change announcement is wrapped once
(:func:`install`, done by :mod:`columba.imap.dispatch`); sessions without contexts go
straight to the original.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from columba.imap.cmd_search import freeze_sets, match_uids, ordered_set
from columba.imap.session import CommandError, ImapSession, Reply, SelectedMailbox
from columba.proto.imap import commands as c
from columba.proto.imap.search import SearchKey
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import SyncChanges

__all__ = [
    "MAX_UPDATES",
    "UpdateContext",
    "cancelupdate",
    "check_new_update",
    "contexts_of",
    "install",
    "register",
]

MAX_UPDATES = 10

_logger = logging.getLogger("columba.imap")

SortSpec = tuple[tuple[str, bool], ...]


@dataclass
class UpdateContext:
    tag: str
    uid: bool
    key: SearchKey
    sets: dict[int, frozenset[int]]
    spec: SortSpec | None
    order: list[int]
    """The result's UIDs in result order (mailbox order for SEARCH)."""
    members: set[int] = field(default_factory=set)


@dataclass
class _Registry:
    sel: SelectedMailbox
    contexts: dict[str, UpdateContext] = field(default_factory=dict)


_registries: weakref.WeakKeyDictionary[ImapSession, _Registry] = weakref.WeakKeyDictionary()


def _active(session: ImapSession) -> _Registry | None:
    reg = _registries.get(session)
    if reg is None:
        return None
    if session.selected is not reg.sel:
        del _registries[session]
        return None
    return reg


def contexts_of(session: ImapSession) -> dict[str, UpdateContext]:
    """The session's live contexts by tag (empty when none)."""
    reg = _active(session)
    return dict(reg.contexts) if reg is not None else {}


def check_new_update(session: ImapSession, tag: str) -> None:
    """BAD when *tag* already names a live context (before the command runs)."""
    reg = _active(session)
    if reg is not None and tag in reg.contexts:
        raise CommandError("BAD", "Duplicate search update tag.")


async def register(
    session: ImapSession,
    tag: str,
    *,
    uid: bool,
    key: SearchKey,
    spec: SortSpec | None,
    result: Sequence[tuple[int, int]],
) -> None:
    """Start updates for a searching command whose ``(seq, uid)`` result (in result order)
    was just sent."""
    sel = session.require_selected()
    reg = _active(session)
    if reg is None:
        reg = _registries[session] = _Registry(sel)
    if len(reg.contexts) >= MAX_UPDATES:
        session.write(b'* NO [NOUPDATE "%s"] Too many updating contexts\r\n' % tag.encode())
        return
    order = [u for _, u in result]
    reg.contexts[tag] = UpdateContext(tag, uid, key, freeze_sets(session, key), spec, order)
    reg.contexts[tag].members = set(order)
    install()


async def cancelupdate(session: ImapSession, cmd: c.CancelUpdateCommand) -> Reply:
    """CANCELUPDATE "tag" ...: stop the named contexts (``NO Unknown tag.`` for one that
    isn't live; the ones before it are cancelled, as in Dovecot)."""
    reg = _active(session)
    for tag in cmd.tags:
        if reg is None or tag not in reg.contexts:
            return Reply("NO", "Unknown tag.")
        del reg.contexts[tag]
    return Reply("OK", "Updates cancelled.")


# -- sort order of single messages ------------------------------------------------------------


class _Rev:
    """Reverses the order of a value inside a key tuple."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and bool(self.value == other.value)

    def __lt__(self, other: _Rev) -> bool:
        return bool(other.value < self.value)

    __hash__ = None  # type: ignore[assignment]


async def _row_keys(
    session: ImapSession, spec: SortSpec, uids: Sequence[int]
) -> Callable[[int], tuple[Any, ...]]:
    """A key function giving each of *uids* its sort tuple (the same order as SORT)."""
    from columba.imap.cmd_sort import columns_for, ensure_fields, ensure_records, spec_fields

    view = session.require_selected().view
    names = spec_fields(spec)
    dicts = await ensure_fields(view, uids, names)
    fields = dict(zip(names, dicts, strict=True))
    arrival, size = await ensure_records(view, uids)

    def key(uid: int) -> tuple[Any, ...]:
        cols = columns_for(spec, [uid], fields, arrival, size)
        return (*[(_Rev(v[0]) if rev else v[0]) for v, rev in cols], uid)

    return key


# -- the change hook -----------------------------------------------------------------------------


def _esearch(ctx: UpdateContext, item: str, body: str) -> bytes:
    uid = " UID" if ctx.uid else ""
    return f'* ESEARCH (TAG "{ctx.tag}"){uid} {item} ({body})\r\n'.encode("ascii")


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Consecutive position runs as ``(start index, end index)`` into *positions*."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(positions):
        j = i
        while j + 1 < len(positions) and positions[j + 1] == positions[j] + 1:
            j += 1
        out.append((i, j))
        i = j + 1
    return out


async def _context_changes(
    session: ImapSession,
    ctx: UpdateContext,
    before: list[int],
    announced: set[int],
    candidates: list[int],
) -> tuple[bytes, bytes]:
    """``(REMOVEFROM line, ADDTO line)`` for one context (empty when nothing changed), and
    the context brought up to date."""
    sel = session.require_selected()
    matched = set(await match_uids(session, ctx.key, candidates, ctx.sets)) if candidates else set()
    removed = {u for u in announced if u in ctx.members}
    removed.update(u for u in candidates if u in ctx.members and u not in matched)
    added = [u for u in candidates if u not in ctx.members and u in matched]
    removes = b""
    adds = b""

    def old_number(uid: int) -> int:
        return uid if ctx.uid else bisect.bisect_left(before, uid) + 1

    def new_number(uid: int) -> int:
        return uid if ctx.uid else bisect.bisect_left(sel.uids, uid) + 1

    if removed:
        if ctx.spec is None:
            nums = sorted(old_number(u) for u in removed)
            removes = _esearch(ctx, "REMOVEFROM", f"0 {SequenceSet.of(*nums)}")
            ctx.order = [u for u in ctx.order if u not in removed]
        else:
            positions = [i + 1 for i, u in enumerate(ctx.order) if u in removed]
            pairs: list[str] = []
            shift = 0
            for a, b in _runs(positions):
                run = [ctx.order[p - 1] for p in positions[a : b + 1]]
                pairs.append(f"{positions[a] - shift} {ordered_set([old_number(u) for u in run])}")
                shift += b - a + 1
            removes = _esearch(ctx, "REMOVEFROM", " ".join(pairs))
            ctx.order = [u for u in ctx.order if u not in removed]
        ctx.members -= removed
    if added:
        if ctx.spec is None:
            for uid in added:
                bisect.insort(ctx.order, uid)
            nums = [new_number(u) for u in added]
            adds = _esearch(ctx, "ADDTO", f"0 {SequenceSet.of(*nums)}")
        else:
            key = await _row_keys(session, ctx.spec, [*ctx.order, *added])
            for uid in added:
                at = bisect.bisect_right(ctx.order, key(uid), key=key)
                ctx.order.insert(at, uid)
            new = set(added)
            positions = [i + 1 for i, u in enumerate(ctx.order) if u in new]
            pairs = []
            for a, b in _runs(positions):
                run = [ctx.order[p - 1] for p in positions[a : b + 1]]
                pairs.append(f"{positions[a]} {ordered_set([new_number(u) for u in run])}")
            adds = _esearch(ctx, "ADDTO", " ".join(pairs))
        ctx.members.update(added)
    return removes, adds


Notify = Callable[..., Awaitable[None]]


async def _notify_with_updates(
    session: ImapSession, reg: _Registry, original: Notify, allow_expunges: bool
) -> None:
    sel = reg.sel
    view = sel.view
    captured: list[SyncChanges] = []
    real_sync = view.sync

    async def capturing_sync() -> SyncChanges:
        changes = await real_sync()
        captured.append(changes)
        return changes

    setattr(view, "sync", capturing_sync)  # noqa: B010 - an instance-level wrapper
    before = list(sel.uids)
    pending_before = set(sel.pending_expunges)
    out = session._out
    mark = len(out)
    try:
        await original(session, allow_expunges=allow_expunges)
    finally:
        with contextlib.suppress(AttributeError):
            delattr(view, "sync")
    if session.selected is not sel or (not captured and not pending_before):
        return
    expunged = set(pending_before)
    changed: set[int] = set()
    for changes in captured:
        expunged.update(changes.expunged)
        changed.update(changes.added)
        changed.update(r.uid for r in changes.flags_changed)
    announced = expunged - sel.pending_expunges if allow_expunges else set()
    candidates = sorted(u for u in changed if u not in expunged)
    if not announced and not candidates:
        return
    removes = bytearray()
    adds = bytearray()
    for ctx in list(reg.contexts.values()):
        try:
            r, a = await _context_changes(session, ctx, before, announced, candidates)
        except Exception:
            _logger.exception("CONTEXT update of %s failed", ctx.tag)
            continue
        removes += r
        adds += a
    if removes:
        out[mark:mark] = removes
    session.write(bytes(adds))


_INSTALLED = "_columba_search_context"


def install() -> None:
    """Wrap :meth:`ImapSession.notify_changes` once so live contexts see every change."""
    original = ImapSession.notify_changes
    if getattr(original, _INSTALLED, False):
        return

    async def notify_changes(self: ImapSession, *, allow_expunges: bool) -> None:
        reg = _active(self)
        if reg is None or not reg.contexts:
            await original(self, allow_expunges=allow_expunges)
            return
        await _notify_with_updates(self, reg, original, allow_expunges)

    setattr(notify_changes, _INSTALLED, True)
    setattr(ImapSession, "notify_changes", notify_changes)  # noqa: B010
