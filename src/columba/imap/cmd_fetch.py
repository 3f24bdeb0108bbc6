"""FETCH and UID FETCH: every RFC 3501 item (BODY[section]<partial>, BODY.PEEK, BODY,
BODYSTRUCTURE, ENVELOPE, RFC822, RFC822.HEADER, RFC822.TEXT, RFC822.SIZE, INTERNALDATE, FLAGS,
UID) plus MODSEQ, EMAILID/THREADID (RFC 8474), SAVEDATE (RFC 8514) and BINARY/BINARY.SIZE
(RFC 3516); the modifiers CHANGEDSINCE/VANISHED (RFC 7162) and PARTIAL (RFC 9394, UID FETCH).
RFC822, RFC822.HEADER and RFC822.TEXT stay answered in IMAP4rev2 sessions too (RFC 9051
deprecates them but keeps them in the grammar).

Speed: a FETCH of only UID, FLAGS and MODSEQ (``FETCH 1:* (FLAGS)`` of a big mailbox) is
answered from the view's flag columns, thousands of lines formatted into one buffer at a time
(:func:`_fetch_light`). Otherwise the set is handled in batches; each batch asks the storage
for all its records at once (their rows read beforehand with one :meth:`MailboxView.preload`)
and, when needed, for all cached parses (envelope, bodystructure, header block) in one index
query. A message object is read only when an item needs more than its header. Responses go
out in batches; big literals are streamed.

BODY[...] without .PEEK, RFC822 and RFC822.TEXT set ``\\Seen`` (not on a read-only mailbox);
when that changes a message's flags, FLAGS is added to its response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from columba.imap.cmd_binary import BinaryData, UnknownCte, binary_section, literal_prefix
from columba.imap.cmd_search import partial_slice
from columba.imap.condstore import enable_condstore, note_modseq, vanished_line
from columba.imap.flag_text import FlagText
from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.dates import format_datetime
from columba.proto.imap.fetch import FetchAttribute, Section
from columba.storage.api import MailboxView, MessageExpunged, MessageRecord, StoreMode
from columba.storage.mime import ParsedMessage

__all__ = ["fetch"]

BATCH = 256
READ_AHEAD = 8
"""Message objects read concurrently while answering (bounded: they are held in memory)."""

LIGHT_SLICE = 2048
"""Messages a FETCH of flags only formats before letting other sessions run (a few ms)."""
_LIGHT_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})
_LIGHT_FORMAT = {"UID": b"UID %d", "FLAGS": b"FLAGS %s", "MODSEQ": b"MODSEQ (%d)"}
_PARSED_ITEMS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE"})
_RAW_SIMPLE = frozenset({"RFC822", "RFC822.TEXT"})


def _header_only(section: Section) -> bool:
    return not section.part and section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT")


def _needs(atts: Sequence[FetchAttribute]) -> tuple[bool, bool]:
    """(needs the cached parse, needs the message object)."""
    parsed = raw = False
    for att in atts:
        if att.section is not None:
            parsed = True
            if att.name in ("BINARY", "BINARY.SIZE") or not _header_only(att.section):
                raw = True
        elif att.name in _PARSED_ITEMS or att.name == "RFC822.HEADER":
            parsed = True
        elif att.name in _RAW_SIMPLE:
            parsed = True
            raw = True
    return parsed, raw


def _section_spec(section: Section) -> str:
    return str(section)


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    origin, count = partial
    return data[origin : origin + count]


def _part_bytes(parsed: ParsedMessage, raw: bytes | None, section: Section) -> bytes:
    if _header_only(section):
        source = raw if raw is not None else parsed.header_bytes
        got = parsed.section_bytes(source, _section_spec(section))
        return got or b""
    if raw is None:
        return b""
    return parsed.section_bytes(raw, _section_spec(section)) or b""


def _binary_bytes(parsed: ParsedMessage, raw: bytes, section: Section) -> BinaryData:
    """Decoded content of a part (RFC 3516, :mod:`.cmd_binary`); ``NO [UNKNOWN-CTE]``."""
    try:
        return binary_section(parsed, raw, tuple(section.part))
    except UnknownCte:
        raise CommandError("NO", "Unknown Content-Transfer-Encoding.", "UNKNOWN-CTE") from None


async def fetch(session: ImapSession, cmd: c.FetchCommand) -> Reply:
    sel = session.require_selected()
    view = sel.view
    pairs = session.resolve(cmd.sequence_set, uid=cmd.uid)
    atts = list(cmd.attributes)
    for att in atts:
        if att.name == "PREVIEW":
            raise CommandError("BAD", "PREVIEW is not supported.")
    if cmd.uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, FetchAttribute("UID"))
    if cmd.changedsince is not None or any(a.name == "MODSEQ" for a in atts):
        pairs = await _condstore_fetch(session, cmd, pairs, atts)
    if cmd.partial is not None:
        # RFC 9394 §3.3: the n-th to m-th (or last) messages of the UID set, in UID order,
        # counting only messages that exist (and changed, with CHANGEDSINCE)
        gone = sel.pending_expunges
        pairs = partial_slice(cmd.partial, [p for p in pairs if p[1] not in gone])
    need_parsed, need_raw = _needs(atts)
    sets_seen = not sel.readonly and any(a.sets_seen for a in atts)
    if not sets_seen and all(a.section is None and a.name in _LIGHT_ITEMS for a in atts):
        if await _fetch_light(session, pairs, atts):
            return Reply("NO", "Some messages were expunged.", "EXPUNGEISSUED")
        return Reply("OK", "Fetch completed.")
    await view.preload([u for _, u in pairs])
    wants_flags = any(a.name == "FLAGS" for a in atts)
    wants_modseq = any(a.name == "MODSEQ" for a in atts)
    missing = False
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        uids = [u for _, u in chunk]
        records = {r.uid: r for r in view.records(uids)}
        seen_changed: set[int] = set()
        if sets_seen:
            unseen = [u for u in uids if u in records and "\\Seen" not in records[u].flags]
            if unseen:
                result = await view.store_flags(unseen, StoreMode.ADD, ["\\Seen"])
                for rec in result.updated:
                    records[rec.uid] = rec
                    seen_changed.add(rec.uid)
        parsed_map: dict[int, ParsedMessage] = {}
        if need_parsed and records:
            parsed_map = await view.parsed_many(list(records))
        for sub in range(0, len(chunk), READ_AHEAD):
            window = chunk[sub : sub + READ_AHEAD]
            bodies: dict[int, bytes | None] = {}
            if need_raw:
                wanted = [u for _, u in window if u in records]
                got = await asyncio.gather(*(_read(view, u) for u in wanted))
                bodies = dict(zip(wanted, got, strict=True))
            for seq, uid in window:
                record = records.get(uid)
                parsed = parsed_map.get(uid)
                raw = bodies.get(uid)
                if record is None or (need_parsed and parsed is None) or (need_raw and raw is None):
                    missing = True
                    continue
                await _write_message(
                    session,
                    seq=seq,
                    record=record,
                    parsed=parsed,
                    raw=raw,
                    atts=atts,
                    add_flags=uid in seen_changed and not wants_flags,
                    add_modseq=uid in seen_changed and session.condstore and not wants_modseq,
                )
                session.counters["fetched"] += 1
    if missing:
        return Reply("NO", "Some messages were expunged.", "EXPUNGEISSUED")
    return Reply("OK", "Fetch completed.")


async def _fetch_light(
    session: ImapSession, pairs: list[tuple[int, int]], atts: Sequence[FetchAttribute]
) -> bool:
    """FETCH of UID, FLAGS and MODSEQ only, from the view's flag columns: the lines of
    :data:`LIGHT_SLICE` messages are formatted into one buffer, then other sessions get a
    turn. The bytes are those :func:`_write_message` writes. True if some messages were
    expunged (not in the view)."""
    sel = session.require_selected()
    view = sel.view
    flag_text = FlagText(session)
    names = [a.name for a in atts]
    line = b"* %d FETCH (" + b" ".join(_LIGHT_FORMAT[n] for n in names) + b")\r\n"
    wants_modseq = "MODSEQ" in names
    top_modseq = 0
    missing = False
    sent = 0
    for start in range(0, len(pairs), LIGHT_SLICE):
        if start:
            await asyncio.sleep(0)
        chunk = pairs[start : start + LIGHT_SLICE]
        rows = view.flag_rows([u for _, u in chunk])
        count = len(rows)
        j = 0
        out: list[bytes] = []
        for seq, uid in chunk:
            if j >= count or rows[j][0] != uid:
                missing = True
                continue
            _uid, flags, modseq = rows[j]
            j += 1
            args: list[int | bytes] = [seq]
            for name in names:
                if name == "FLAGS":
                    args.append(flag_text(uid, flags))
                elif name == "UID":
                    args.append(uid)
                else:
                    args.append(modseq)
            if wants_modseq and modseq > top_modseq:
                top_modseq = modseq
            out.append(line % tuple(args))
        sent += j
        await session.send(b"".join(out))
    if wants_modseq:
        note_modseq(session.selected, top_modseq)
    session.counters["fetched"] += sent
    return missing


async def _condstore_fetch(
    session: ImapSession,
    cmd: c.FetchCommand,
    pairs: list[tuple[int, int]],
    atts: list[FetchAttribute],
) -> list[tuple[int, int]]:
    """RFC 7162: MODSEQ and CHANGEDSINCE enable CONDSTORE; CHANGEDSINCE keeps the messages
    changed since then and adds MODSEQ to the items; VANISHED (UID FETCH, QRESYNC) first
    answers ``* VANISHED (EARLIER)`` with the UIDs of the set expunged since then."""
    if cmd.vanished and not session.qresync:
        raise CommandError("BAD", "QRESYNC not enabled.")
    enable_condstore(session)
    since = cmd.changedsince
    if since is None:
        return pairs
    if not any(a.name == "MODSEQ" for a in atts):
        atts.append(FetchAttribute("MODSEQ"))
    sel = session.require_selected()
    if cmd.vanished:
        largest = max(sel.view.uidnext - 1, sel.uids[-1] if sel.uids else 0, 1)
        shown = set(sel.uids)
        gone = [
            u
            for u in await sel.view.vanished_since(since)
            if cmd.sequence_set.contains(u, largest) and u not in shown
        ]
        session.write(vanished_line(gone, earlier=True))
    modseqs = {uid: modseq for uid, _flags, modseq in sel.view.flag_rows(u for _, u in pairs)}
    return [(s, u) for s, u in pairs if modseqs.get(u, since + 1) > since]


async def _read(view: MailboxView, uid: int) -> bytes | None:
    try:
        return await view.read_message(uid)
    except MessageExpunged:
        return None


async def _write_message(
    session: ImapSession,
    *,
    seq: int,
    record: MessageRecord,
    parsed: ParsedMessage | None,
    raw: bytes | None,
    atts: Sequence[FetchAttribute],
    add_flags: bool,
    add_modseq: bool = False,
) -> None:
    """``* seq FETCH (...)``: small items are joined; literals are sent as they come."""
    pieces: list[bytes | tuple[bytes, bytes]] = []
    for att in atts:
        name = att.name
        if att.section is not None:
            assert parsed is not None
            head = att.response_name().encode("utf-8", "surrogateescape")
            if name == "BODY":
                data = _partial(_part_bytes(parsed, raw, att.section), att.partial)
                pieces.append((head, data))
            elif name == "BINARY.SIZE":
                assert raw is not None
                decoded = _binary_bytes(parsed, raw, att.section)
                pieces.append(head + b" " + str(len(decoded.data)).encode())
            else:  # BINARY
                assert raw is not None
                decoded = _binary_bytes(parsed, raw, att.section)
                data = _partial(decoded.data, att.partial)
                prefix = literal_prefix(data, decoded.converted or b"\x00" in data)
                pieces.append(head + b" " + prefix + data)
            continue
        if name == "UID":
            pieces.append(b"UID %d" % record.uid)
        elif name == "FLAGS":
            pieces.append(b"FLAGS " + session.flags_of(record))
        elif name == "INTERNALDATE":
            pieces.append(b'INTERNALDATE "' + format_datetime(record.internaldate).encode() + b'"')
        elif name == "RFC822.SIZE":
            pieces.append(b"RFC822.SIZE %d" % record.size)
        elif name == "ENVELOPE":
            assert parsed is not None
            pieces.append(b"ENVELOPE (" + _enc(parsed.envelope) + b")")
        elif name == "BODY":
            assert parsed is not None
            pieces.append(b"BODY (" + _enc(parsed.body) + b")")
        elif name == "BODYSTRUCTURE":
            assert parsed is not None
            pieces.append(b"BODYSTRUCTURE (" + _enc(parsed.bodystructure) + b")")
        elif name == "RFC822":
            assert raw is not None
            pieces.append((b"RFC822", raw))
        elif name == "RFC822.HEADER":
            assert parsed is not None
            pieces.append((b"RFC822.HEADER", parsed.header_bytes))
        elif name == "RFC822.TEXT":
            assert raw is not None and parsed is not None
            pieces.append((b"RFC822.TEXT", raw[len(parsed.header_bytes) :]))
        elif name == "MODSEQ":
            note_modseq(session.selected, record.modseq)
            pieces.append(b"MODSEQ (%d)" % record.modseq)
        elif name == "EMAILID":
            pieces.append(b"EMAILID (" + record.guid.encode("ascii", "replace") + b")")
        elif name == "THREADID":
            tid = record.threadid
            pieces.append(
                b"THREADID " + (b"(" + tid.encode("ascii", "replace") + b")" if tid else b"NIL")
            )
        elif name == "SAVEDATE":
            pieces.append(b'SAVEDATE "' + format_datetime(record.savedate).encode() + b'"')
        else:
            raise CommandError("BAD", f"Unsupported FETCH item {name}.")
    if add_flags:
        pieces.append(b"FLAGS " + session.flags_of(record))
    if add_modseq:  # RFC 7162 §3.1: a FETCH that set \\Seen reports the new MODSEQ
        note_modseq(session.selected, record.modseq)
        pieces.append(b"MODSEQ (%d)" % record.modseq)
    await session.send(b"* %d FETCH (" % seq)
    first = True
    for piece in pieces:
        if not first:
            await session.send(b" ")
        first = False
        if isinstance(piece, tuple):
            head, data = piece
            if data:
                await session.send(head + b" ")
                await session.send_literal(data)
            else:
                await session.send(head + b' ""')
        else:
            await session.send(piece)
    await session.send(b")\r\n")


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
