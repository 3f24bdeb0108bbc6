"""COPY and MOVE (RFC 6851), by sequence number or UID, answered with RFC 4315 COPYUID.

A missing destination is ``NO [TRYCREATE]``; with UTF-8 names (UTF8=ACCEPT, IMAP4rev2) the
destination is taken in NFC (RFC 9051 §5.1). MOVE sends ``* OK [COPYUID ...]`` first, then
the EXPUNGE responses of the moved messages (the sync after the command), then the tagged OK.
"""

from __future__ import annotations

from columba.imap.session import ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.response import Atom, ResponseCode
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import CopyResult, StorageError

__all__ = ["copy", "move"]


def _copyuid(result: CopyResult) -> ResponseCode | None:
    if not result.source_uids:
        return None
    return ResponseCode(
        "COPYUID",
        result.uidvalidity,
        Atom(_ordered_set(result.source_uids)),
        Atom(_ordered_set(result.dest_uids)),
    )


def _ordered_set(uids: tuple[int, ...]) -> str:
    """A uid-set keeping the order of *uids* (COPYUID pairs them up by position)."""
    if list(uids) == sorted(uids):
        return str(SequenceSet.of(*uids))
    return ",".join(str(u) for u in uids)


def _trycreate(exc: StorageError, mailbox: str) -> Reply | None:
    if exc.imap_code == "NONEXISTENT":
        return Reply("NO", f"Mailbox doesn't exist: {mailbox}", "TRYCREATE")
    return None


async def copy(session: ImapSession, cmd: c.CopyCommand) -> Reply:
    sel = session.require_selected()
    pairs = session.resolve(cmd.sequence_set, uid=cmd.uid)
    target = session.mailbox_arg(cmd.mailbox)
    if not pairs:
        return Reply("OK", "No messages found." if cmd.uid else "Copy completed.")
    try:
        result = await sel.view.copy([u for _, u in pairs], target)
    except StorageError as exc:
        refused = _trycreate(exc, target)
        if refused is None:
            raise
        return refused
    session.counters["copied"] += len(result.dest_uids)
    if len(result.source_uids) < len(pairs) and sel.pending_expunges:
        return Reply("NO", "Some of the requested messages no longer exist.", "EXPUNGEISSUED")
    return Reply("OK", "Copy completed.", _copyuid(result))


async def move(session: ImapSession, cmd: c.MoveCommand) -> Reply:
    sel = session.require_selected()
    pairs = session.resolve(cmd.sequence_set, uid=cmd.uid)
    target = session.mailbox_arg(cmd.mailbox)
    if sel.readonly:
        return Reply("NO", "Mailbox is read-only.", "CANNOT")
    if not pairs:
        return Reply("OK", "No messages found." if cmd.uid else "Move completed.")
    try:
        result = await sel.view.move([u for _, u in pairs], target)
    except StorageError as exc:
        refused = _trycreate(exc, target)
        if refused is None:
            raise
        return refused
    session.counters["moved"] += len(result.dest_uids)
    code = _copyuid(result)
    if code is not None:
        session.untagged_ok("Moved UIDs.", code)
    return Reply("OK", "Move completed.")
