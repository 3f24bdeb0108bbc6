"""SEARCH and UID SEARCH: every RFC 3501 key, RFC 4731 ESEARCH (``RETURN (MIN MAX ALL
COUNT)``), RFC 5182 SEARCHRES (``RETURN (SAVE)`` and ``$``), RFC 5032 WITHIN, RFC 8514
SAVEDATE keys, RFC 8474 EMAILID/THREADID, MODSEQ.

The search is a set operation over the selected mailbox: records (flags, dates, sizes) come
from the view at once; cached parses (headers) are fetched in one index query per batch only
when a key needs them; message objects are read only for BODY and TEXT.

String keys are case-insensitive substring matches over decoded (RFC 2047) header values or
decoded text; dates compare the date part only (DESIGN.md §9). The CHARSET was checked by the
codec (``NO [BADCHARSET (UTF-8 US-ASCII)]`` for others).
"""

from __future__ import annotations

import bisect
import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.search import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchFuzzy,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSaveDateSupported,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchWithin,
)
from columba.proto.imap.sequence import SequenceSet
from columba.storage.api import MessageExpunged, MessageRecord
from columba.storage.mime import ParsedMessage, decode_rfc2047

__all__ = ["evaluate", "search"]

BATCH = 512


@dataclass
class _Message:
    seq: int
    record: MessageRecord
    parsed: ParsedMessage | None = None
    raw: bytes | None = None
    _text: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    recent: frozenset[int]
    sets: dict[int, frozenset[int]]
    now: _dt.datetime


def _walk(key: SearchKey) -> Iterable[SearchKey]:
    stack = [key]
    while stack:
        k = stack.pop()
        yield k
        if isinstance(k, SearchAnd):
            stack.extend(k.keys)
        elif isinstance(k, SearchOr):
            stack.extend((k.left, k.right))
        elif isinstance(k, SearchNot | SearchFuzzy):
            stack.append(k.key)


def _needs(key: SearchKey) -> tuple[bool, bool]:
    parsed = raw = False
    for k in _walk(key):
        if isinstance(k, SearchHeader):
            parsed = True
        elif isinstance(k, SearchText):
            parsed = raw = True
        elif isinstance(k, SearchDate) and k.field == "SENTDATE":
            parsed = True
    return parsed, raw


def _fold(text: str) -> str:
    return text.casefold()


def _header_values(m: _Message, name: str) -> list[str]:
    assert m.parsed is not None
    return m.parsed.decoded_header(name)


def _header_text(m: _Message) -> str:
    cached = m._text.get("header")
    if cached is None:
        assert m.parsed is not None
        cached = _fold(
            "\n".join(
                f.name.decode("utf-8", "replace") + ": " + decode_rfc2047(f.value)
                for f in m.parsed.header_fields
            )
        )
        m._text["header"] = cached
    return cached


def _body_text(m: _Message) -> str:
    cached = m._text.get("body")
    if cached is None:
        assert m.parsed is not None
        try:
            cached = _fold(m.parsed.text_for_search(m.raw)) if m.raw is not None else ""
        except Exception:
            cached = ""
        m._text["body"] = cached
    return cached


def _date_matches(value: _dt.date, relation: str, wanted: _dt.date) -> bool:
    if relation == "BEFORE":
        return value < wanted
    if relation == "ON":
        return value == wanted
    return value >= wanted


def evaluate(key: SearchKey, m: _Message, ctx: _Context) -> bool:
    """Whether message *m* matches *key*."""
    if isinstance(key, SearchAll | SearchSaveDateSupported):
        return True
    if isinstance(key, SearchAnd):
        return all(evaluate(k, m, ctx) for k in key.keys)
    if isinstance(key, SearchOr):
        return evaluate(key.left, m, ctx) or evaluate(key.right, m, ctx)
    if isinstance(key, SearchNot):
        return not evaluate(key.key, m, ctx)
    if isinstance(key, SearchFuzzy):
        return evaluate(key.key, m, ctx)
    record = m.record
    if isinstance(key, SearchFlag):
        if key.flag == "\\Recent":
            has = record.uid in ctx.recent
        elif key.flag.startswith("\\"):
            has = key.flag in record.flags
        else:
            wanted = key.flag.casefold()
            has = any(f.casefold() == wanted for f in record.flags)
        return has == key.present
    if isinstance(key, SearchSequence):
        numbers = ctx.sets[id(key)]
        if key.sequence_set.saved or key.uid:
            return record.uid in numbers
        return m.seq in numbers
    if isinstance(key, SearchSize):
        if key.relation == "LARGER":
            return record.size > key.size
        return record.size < key.size
    if isinstance(key, SearchDate):
        if key.field == "INTERNALDATE":
            day = record.internaldate.date()
        elif key.field == "SAVEDATE":
            day = record.savedate.date()
        else:
            assert m.parsed is not None
            sent = m.parsed.date
            day = sent.date() if sent is not None else record.internaldate.date()
        return _date_matches(day, key.relation, key.date)
    if isinstance(key, SearchWithin):
        age = (ctx.now - record.internaldate).total_seconds()
        if key.relation == "OLDER":
            return age >= key.seconds
        return age < key.seconds
    if isinstance(key, SearchHeader):
        values = _header_values(m, key.field)
        if not key.value:
            return bool(values)
        wanted = _fold(key.value)
        return any(wanted in _fold(v) for v in values)
    if isinstance(key, SearchText):
        wanted = _fold(key.value)
        if key.where == "TEXT" and wanted in _header_text(m):
            return True
        return wanted in _body_text(m)
    if isinstance(key, SearchModSeq):
        return record.modseq >= key.modseq
    if isinstance(key, SearchObjectId):
        if key.kind == "EMAILID":
            return record.guid == key.value
        return record.threadid is not None and record.threadid == key.value
    raise CommandError("BAD", f"Unsupported search key {type(key).__name__}.")


def _resolve_sets(session: ImapSession, key: SearchKey) -> dict[int, frozenset[int]]:
    sel = session.require_selected()
    out: dict[int, frozenset[int]] = {}
    count = len(sel.uids)
    largest_uid = sel.uids[-1] if sel.uids else 0
    for k in _walk(key):
        if not isinstance(k, SearchSequence):
            continue
        seqset: SequenceSet = k.sequence_set
        if seqset.saved:
            out[id(k)] = frozenset(session.searchres)
        elif k.uid:
            out[id(k)] = frozenset(
                u for lo, hi in seqset.resolve(largest_uid) for u in _uids_in(sel.uids, lo, hi)
            )
        else:
            out[id(k)] = frozenset(n for n in seqset.iter_numbers(count))
    return out


def _uids_in(uids: list[int], lo: int, hi: int) -> list[int]:
    return uids[bisect.bisect_left(uids, lo) : bisect.bisect_right(uids, hi)]


async def run_search(session: ImapSession, key: SearchKey) -> list[tuple[int, int]]:
    """``(seq, uid)`` of every matching message, ascending."""
    sel = session.require_selected()
    view = sel.view
    ctx = _Context(
        recent=view.recent_uids(),
        sets=_resolve_sets(session, key),
        now=_dt.datetime.now(_dt.UTC),
    )
    need_parsed, need_raw = _needs(key)
    matches: list[tuple[int, int]] = []
    uids = sel.uids
    for start in range(0, len(uids), BATCH):
        chunk = uids[start : start + BATCH]
        records = {r.uid: r for r in view.records(chunk)}
        parsed_map: dict[int, ParsedMessage] = {}
        if need_parsed and records:
            parsed_map = await view.parsed_many(list(records))
        for offset, uid in enumerate(chunk):
            record = records.get(uid)
            if record is None:
                continue  # expunged, not yet announced
            m = _Message(seq=start + offset + 1, record=record, parsed=parsed_map.get(uid))
            if need_parsed and m.parsed is None:
                continue
            if need_raw:
                try:
                    m.raw = await view.read_message(uid)
                except MessageExpunged:
                    continue
            if evaluate(key, m, ctx):
                matches.append((m.seq, uid))
    return matches


async def search(session: ImapSession, cmd: c.SearchCommand) -> Reply:
    options = cmd.return_options
    saving = options is not None and "SAVE" in options
    try:
        matches = await run_search(session, cmd.criteria)
    except Exception:
        if saving:
            session.searchres = []
        raise
    numbers = [u if cmd.uid else s for s, u in matches]
    if options is None:
        session.write(("* SEARCH" + "".join(f" {n}" for n in numbers) + "\r\n").encode("ascii"))
        return Reply("OK", "Search completed.")
    opts = set(options) or {"ALL"}
    if saving:
        wanted = opts & {"MIN", "MAX"}
        if wanted and not opts & {"ALL", "COUNT"}:
            chosen: list[int] = []
            if matches and "MIN" in wanted:
                chosen.append(matches[0][1])
            if matches and "MAX" in wanted:
                chosen.append(matches[-1][1])
            session.searchres = sorted(set(chosen))
        else:
            session.searchres = [u for _, u in matches]
        if opts == {"SAVE"}:
            return Reply("OK", "Search completed.")
    parts = [f'* ESEARCH (TAG "{cmd.tag}")']
    if cmd.uid:
        parts.append("UID")
    if numbers and "MIN" in opts:
        parts.append(f"MIN {numbers[0]}")
    if numbers and "MAX" in opts:
        parts.append(f"MAX {numbers[-1]}")
    if numbers and "ALL" in opts:
        parts.append(f"ALL {SequenceSet.of(*numbers)}")
    if "COUNT" in opts:
        parts.append(f"COUNT {len(numbers)}")
    session.write((" ".join(parts) + "\r\n").encode("ascii"))
    return Reply("OK", "Search completed.")
