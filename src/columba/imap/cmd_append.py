"""APPEND with RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID, RFC 7889 APPENDLIMIT and literals
both synchronising and not (RFC 7888 LITERAL+/LITERAL-).

The codec decides each literal's fate before its data comes (``+ OK``, ``NO [TRYCREATE]``
for a missing mailbox, ``NO [TOOBIG]`` past APPENDLIMIT; see
:meth:`~columba.imap.session.ImapSession.literal_requested`); messages too big to keep inline
arrive as streamed chunks the session collects. All messages of one APPEND are saved in one
storage transaction: all or none.
"""

from __future__ import annotations

from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.response import Atom, ResponseCode
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import AppendRequest, StorageError

__all__ = ["append"]


async def append(session: ImapSession, cmd: c.AppendCommand) -> Reply:
    user = session.require_user()
    requests: list[AppendRequest] = []
    for message in cmd.messages:
        data = message.data
        if data is None and message.streamed:
            data = session.take_stream(cmd.tag, message.index)
        if data is None:
            raise CommandError("BAD", "Message data missing.")
        if session.append_limit is not None and len(data) > session.append_limit:
            return Reply("NO", "Message too large.", "TOOBIG")
        if "\\Recent" in message.flags:
            raise CommandError("BAD", "Invalid system flag \\Recent.")
        requests.append(
            AppendRequest(
                data=data,
                flags=frozenset(message.flags),
                internaldate=message.internal_date,
            )
        )
    if not requests:
        raise CommandError("BAD", "Missing message.")
    try:
        results = await user.append(cmd.mailbox, requests)
    except StorageError as exc:
        if exc.imap_code == "NONEXISTENT":
            return Reply("NO", f"Mailbox doesn't exist: {cmd.mailbox}", "TRYCREATE")
        raise
    session.counters["appended"] += len(results)
    if not results:
        return Reply("OK", "Append completed.")
    uids = SequenceSet.of(*(r.uid for r in results))
    code = ResponseCode("APPENDUID", results[0].uidvalidity, Atom(str(uids)))
    return Reply("OK", "Append completed.", code)
