"""APPEND with RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID, RFC 7889 APPENDLIMIT and literals
both synchronising and not (RFC 7888 LITERAL+/LITERAL-), literal8 (RFC 3516 BINARY) and
RFC 4469 CATENATE (URL parts resolved by :mod:`.cmd_urlauth`).

The codec decides each literal's fate before its data comes (``+ OK``, ``NO [TRYCREATE]``
for a missing mailbox, ``NO [TOOBIG]`` past APPENDLIMIT; see
:meth:`~columba.imap.session.ImapSession.literal_requested`); messages too big to keep inline
arrive as streamed chunks the session collects. All messages of one APPEND are saved in one
storage transaction: all or none.
"""

from __future__ import annotations

from columba.imap.cmd_urlauth import UrlFailure, resolve_catenate_url
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
        if message.catenate is not None:
            data = await _catenate(session, cmd.tag, message.catenate)
        elif data is None and message.streamed:
            data = session.take_stream(cmd.tag, message.index)
        if data is None:
            raise CommandError("BAD", "Message data missing.")
        if session.append_limit is not None and len(data) > session.append_limit:
            return Reply("NO", "Message too large.", "TOOBIG")
        if message.utf8 and not session.utf8:
            # RFC 6855 §4: the UTF8 data extension needs ENABLE UTF8=ACCEPT first
            raise CommandError("BAD", "UTF8 APPEND needs ENABLE UTF8=ACCEPT.")
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
    target = session.mailbox_arg(cmd.mailbox)  # NFC with UTF-8 names (RFC 9051 §5.1)
    try:
        results = await user.append(target, requests)
    except StorageError as exc:
        if exc.imap_code == "NONEXISTENT":
            return Reply("NO", f"Mailbox doesn't exist: {target}", "TRYCREATE")
        raise
    session.counters["appended"] += len(results)
    if not results:
        return Reply("OK", "Append completed.")
    uids = SequenceSet.of(*(r.uid for r in results))
    code = ResponseCode("APPENDUID", results[0].uidvalidity, Atom(str(uids)))
    return Reply("OK", "Append completed.", code)


async def _catenate(session: ImapSession, tag: str, parts: tuple[c.CatenatePart, ...]) -> bytes:
    """RFC 4469: the message a CATENATE list builds; ``NO [BADURL url]`` for a URL that
    can't be used, ``NO [TOOBIG]`` past APPENDLIMIT."""
    out = bytearray()
    for part in parts:
        if part.url is not None:
            try:
                out += await resolve_catenate_url(session, part.url)
            except UrlFailure as exc:
                text = part.url.replace("]", "%5D")
                raise CommandError("NO", str(exc), ResponseCode("BADURL", Atom(text))) from None
        else:
            data = part.data
            if data is None and part.streamed:
                data = session.take_stream(tag, part.stream_index)
            if data is None:
                raise CommandError("BAD", "Message data missing.")
            out += data
        if session.append_limit is not None and len(out) > session.append_limit:
            raise CommandError("NO", "Message too large.", "TOOBIG")
    return bytes(out)
