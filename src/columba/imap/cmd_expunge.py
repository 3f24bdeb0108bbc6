"""EXPUNGE and UID EXPUNGE (RFC 4315).

The storage removes the messages; the untagged EXPUNGE responses come from the sync the
session runs after the command (with any expunges other sessions made that were still queued).
"""

from __future__ import annotations

from columba.imap.session import ImapSession, Reply
from columba.proto.imap import commands as c

__all__ = ["expunge"]


async def expunge(session: ImapSession, cmd: c.ExpungeCommand) -> Reply:
    sel = session.require_selected()
    if sel.readonly:
        return Reply("NO", "Mailbox is read-only.")
    if cmd.uid and cmd.sequence_set is not None:
        pairs = session.resolve(cmd.sequence_set, uid=True)
        if not pairs:
            return Reply("OK", "Expunge completed.")
        done = await sel.view.expunge([u for _, u in pairs])
    else:
        done = await sel.view.expunge()
    session.counters["expunged"] += len(done)
    return Reply("OK", "Expunge completed.")
