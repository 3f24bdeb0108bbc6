"""CONDSTORE and QRESYNC (RFC 7162) state shared by the command handlers.

CONDSTORE is enabled for the rest of the connection by ``ENABLE CONDSTORE`` or by the first
command that uses it (SELECT/EXAMINE ``(CONDSTORE)``, ``STATUS (HIGHESTMODSEQ)``, FETCH of
``MODSEQ`` or with ``CHANGEDSINCE``, ``SEARCH MODSEQ``, ``STORE (UNCHANGEDSINCE)``); from then
on every untagged FETCH a STORE or another session causes carries ``MODSEQ``. Enabled while a
mailbox is selected, it is announced with ``* OK [HIGHESTMODSEQ n]`` (as Dovecot does).

``ENABLE QRESYNC`` implies CONDSTORE; from then on expunges are announced as ``* VANISHED
uid-set`` instead of ``* n EXPUNGE``, unsolicited FETCH responses carry ``UID``, and when the
mailbox's HIGHESTMODSEQ moved past what the client could learn from MODSEQ items (expunges,
new mail) the tagged OK of the command gets ``[HIGHESTMODSEQ n]`` (an untagged OK during IDLE).

obox keeps a modseq for every message and an expunge log, so ``[NOMODSEQ]`` is never sent and
``VANISHED (EARLIER)`` is exact: the QRESYNC message-sequence match data is not needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from columba.proto.imap.response import ResponseCode
from columba.proto.imap.search import (
    SearchAnd,
    SearchFuzzy,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
)
from columba.proto.imap.sequence import SequenceSet

if TYPE_CHECKING:
    from columba.imap.session import ImapSession, Reply, SelectedMailbox
    from columba.proto.imap.commands import QResyncParams

RESYNC_SLICE = 4096
"""FETCH responses a QRESYNC resync builds before letting other sessions run."""

__all__ = [
    "enable_condstore",
    "enable_qresync",
    "highestmodseq_due",
    "mark_announced",
    "note_modseq",
    "qresync_select",
    "uses_modseq",
    "vanished_line",
]


def enable_condstore(session: ImapSession) -> bool:
    """Turn CONDSTORE on (True when it was off); a selected mailbox's HIGHESTMODSEQ is sent."""
    if "CONDSTORE" in session.enabled:
        return False
    session.enabled.add("CONDSTORE")
    sel = session.selected
    if sel is not None:
        session.untagged_ok("Highest", ResponseCode("HIGHESTMODSEQ", sel.view.highestmodseq))
        mark_announced(sel)
    return True


def enable_qresync(session: ImapSession) -> bool:
    """Turn QRESYNC (and so CONDSTORE) on; True when QRESYNC was off."""
    enable_condstore(session)
    if "QRESYNC" in session.enabled:
        return False
    session.enabled.add("QRESYNC")
    if session.selected is not None:
        mark_announced(session.selected)  # later changes are what the client must learn
    return True


def vanished_line(uids: Iterable[int], *, earlier: bool = False) -> bytes:
    """``* VANISHED [(EARLIER) ]uid-set`` (empty bytes for no UIDs)."""
    wanted = sorted(set(uids))
    if not wanted:
        return b""
    head = b"* VANISHED (EARLIER) " if earlier else b"* VANISHED "
    return head + str(SequenceSet.of(*wanted)).encode("ascii") + b"\r\n"


def note_modseq(sel: SelectedMailbox | None, modseq: int) -> None:
    """A MODSEQ value was sent to the client (it may update its HIGHESTMODSEQ from it)."""
    if sel is not None and modseq > sel.fetched_modseq:
        sel.fetched_modseq = modseq


def mark_announced(sel: SelectedMailbox) -> None:
    """The client knows the mailbox's current HIGHESTMODSEQ."""
    sel.announced_modseq = sel.view.highestmodseq
    sel.fetched_modseq = 0


def highestmodseq_due(session: ImapSession) -> int | None:
    """With QRESYNC: the HIGHESTMODSEQ to tell the client after a sync, when it moved past
    both the last announced value and every MODSEQ sent since (Dovecot's rule)."""
    sel = session.selected
    if sel is None or "QRESYNC" not in session.enabled:
        return None
    current = sel.view.highestmodseq
    due = current > sel.announced_modseq and current > sel.fetched_modseq
    sel.announced_modseq = max(sel.announced_modseq, current)
    sel.fetched_modseq = 0
    return current if due else None


def with_highestmodseq(session: ImapSession, reply: Reply) -> Reply:
    """The tagged reply with ``[HIGHESTMODSEQ n]`` when one is due (an OK without a code),
    or the reply unchanged after an untagged ``* OK [HIGHESTMODSEQ n]``."""
    from columba.imap.session import Reply

    modseq = highestmodseq_due(session)
    if modseq is None:
        return reply
    code = ResponseCode("HIGHESTMODSEQ", modseq)
    if reply.status == "OK" and reply.code is None:
        return Reply("OK", reply.text, code)
    session.untagged_ok("Highest", code)
    return reply


def uses_modseq(key: SearchKey) -> bool:
    """Whether a search program has a MODSEQ key (its answer then carries ``(MODSEQ n)``)."""
    stack = [key]
    while stack:
        k = stack.pop()
        if isinstance(k, SearchModSeq):
            return True
        if isinstance(k, SearchAnd):
            stack.extend(k.keys)
        elif isinstance(k, SearchOr):
            stack.extend((k.left, k.right))
        elif isinstance(k, SearchNot | SearchFuzzy):
            stack.append(k.key)
    return False


async def qresync_select(session: ImapSession, sel: SelectedMailbox, params: QResyncParams) -> None:
    """RFC 7162 §3.2.5: after SELECT/EXAMINE's answers, ``* VANISHED (EARLIER)`` for the UIDs
    expunged since ``params.modseq`` and ``* n FETCH (UID FLAGS MODSEQ)`` for every message
    changed since then, both limited to the known UIDs when given (as Dovecot does). The
    expunge log is complete, so the sequence-match data is not needed."""
    view = sel.view
    known = params.known_uids
    largest = max(view.uidnext - 1, 1)

    def is_known(uid: int) -> bool:
        return known is None or known.contains(uid, largest)

    vanished = [u for u in await view.vanished_since(params.modseq) if is_known(u)]
    session.write(vanished_line(vanished, earlier=True))
    from columba.imap.flag_text import FlagText

    since = params.modseq
    flag_text = FlagText(session)
    changed = [r for r in view.flag_rows(sel.uids) if r[2] > since and is_known(r[0])]
    for start in range(0, len(changed), RESYNC_SLICE):
        out = bytearray()
        for uid, flags, modseq in changed[start : start + RESYNC_SLICE]:
            seq = sel.seq_of(uid)
            if seq is None:
                continue
            note_modseq(sel, modseq)
            out += b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (
                seq,
                uid,
                flag_text(uid, flags),
                modseq,
            )
        await session.send(bytes(out))
        if start + RESYNC_SLICE < len(changed):
            await session.flush()
            await asyncio.sleep(0)  # a big resync lets the worker's other sessions run
