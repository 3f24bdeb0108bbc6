"""STORE and UID STORE: ``FLAGS``, ``+FLAGS``, ``-FLAGS`` and their ``.SILENT`` forms
(``UNCHANGEDSINCE`` answered with ``[MODIFIED ...]``).

Unless silent, every message the command names gets an untagged FETCH with its new FLAGS (and
its UID for UID STORE), whether or not the flags changed. Flag changes by other sessions are
announced by the sync after the command; expunges wait (RFC 3501 §7.4.1).
"""

from __future__ import annotations

from columba.imap.condstore import enable_condstore
from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.response import Atom, ResponseCode
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import MessageRecord, StoreMode

__all__ = ["store"]

_MODES = {"set": StoreMode.REPLACE, "add": StoreMode.ADD, "remove": StoreMode.REMOVE}
MAX_KEYWORD_LENGTH = 50


async def store(session: ImapSession, cmd: c.StoreCommand) -> Reply:
    sel = session.require_selected()
    pairs = session.resolve(cmd.sequence_set, uid=cmd.uid)
    if sel.readonly:
        return Reply("NO", "Mailbox is read-only.")
    for flag in cmd.flags:
        if flag == "\\Recent":
            raise CommandError("BAD", "Invalid system flag \\Recent.")
        if not flag.startswith("\\") and len(flag) > MAX_KEYWORD_LENGTH:
            raise CommandError("BAD", "Keyword is too long.")
    if cmd.unchangedsince is not None:
        enable_condstore(session)  # a CONDSTORE enabling command (RFC 7162 §3.1)
    if not pairs:
        return Reply("OK", "Store completed.")
    seq_of = {u: s for s, u in pairs}
    result = await sel.view.store_flags(
        [u for _, u in pairs],
        _MODES[cmd.action],
        cmd.flags,
        unchanged_since=cmd.unchangedsince,
    )
    session.counters["stored"] += len(result.updated)
    if not cmd.silent:
        records: dict[int, MessageRecord] = {r.uid: r for r in result.unchanged}
        records.update((r.uid, r) for r in result.updated)
        for uid in sorted(records):
            line = b"* %d FETCH (" % seq_of[uid] + session.fetch_ids(records[uid], uid=cmd.uid)
            line += b"FLAGS " + session.flags_of(records[uid]) + b")\r\n"
            await session.send(line)
    elif session.condstore:
        # RFC 7162 §3.2: even .SILENT reports the new MODSEQ of each changed message
        for record in sorted(result.updated, key=lambda r: r.uid):
            ids = session.fetch_ids(record, uid=cmd.uid).rstrip(b" ")
            await session.send(b"* %d FETCH (%s)\r\n" % (seq_of[record.uid], ids))
    if result.failed:
        if cmd.uid:
            failed = SequenceSet.of(*result.failed)
        else:
            failed = SequenceSet.of(*(seq_of[u] for u in result.failed if u in seq_of))
        return Reply("OK", "Conditional store failed.", ResponseCode("MODIFIED", Atom(str(failed))))
    if sel.pending_expunges and any(u in sel.pending_expunges for _, u in pairs):
        return Reply("NO", "Some messages were expunged.", "EXPUNGEISSUED")
    return Reply("OK", "Store completed.")
