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

import asyncio
import bisect
import datetime as _dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from columba.imap.condstore import enable_condstore, uses_modseq
from columba.imap.session import (
    SERVERBUG_TEXT,
    CommandError,
    ImapSession,
    Reply,
    storage_error_reply,
)
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
from columba.storage.api import MessageExpunged, MessageRecord, StorageError
from columba.storage.mime import ParsedMessage, decode_rfc2047

__all__ = [
    "esearch_line",
    "evaluate",
    "freeze_sets",
    "match_uids",
    "not_saved",
    "partial_slice",
    "saved_result",
    "search",
]

BATCH = 512

_logger = logging.getLogger("columba.imap")
_T = TypeVar("_T")


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


def uses_recent(key: SearchKey) -> bool:
    """Whether *key* names \\Recent (the NEW, OLD and RECENT keys)."""
    return any(isinstance(k, SearchFlag) and k.flag == "\\Recent" for k in _walk(key))


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
    if session.rev2 and uses_recent(key):
        # RFC 9051 §6.4.4 / Appendix E: no \Recent, so no NEW, OLD or RECENT search keys
        raise CommandError("BAD", "Unknown search key (NEW, OLD and RECENT aren't in IMAP4rev2).")
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
        if start:
            await asyncio.sleep(0)  # let other sessions of the worker run between batches
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
    if not saving:
        return await _search(session, cmd)
    try:
        return await _search(session, cmd)
    except Exception as exc:
        raise not_saved(session, exc) from exc


def not_saved(session: ImapSession, exc: Exception) -> Exception:
    """A ``RETURN (SAVE)`` command failed: ``$`` becomes empty (RFC 5182 §2.1) and a ``NO``
    answer carries ``[NOTSAVED]`` (RFC 9051 §7.1); a ``BAD`` stays as it is. Returns the
    exception to raise."""
    session.searchres = []
    if isinstance(exc, CommandError):
        if exc.reply.status != "NO":
            return exc
        text = exc.reply.text
    elif isinstance(exc, StorageError):
        text = storage_error_reply(exc).text
    else:
        _logger.exception("SEARCH RETURN (SAVE) failed")
        text = SERVERBUG_TEXT
    return CommandError("NO", text, "NOTSAVED")


async def _search(session: ImapSession, cmd: c.SearchCommand) -> Reply:
    options = cmd.return_options
    saving = options is not None and "SAVE" in options
    updating = options is not None and "UPDATE" in options
    if updating:
        from columba.imap.search_context import check_new_update

        check_new_update(session, cmd.tag)
    with_modseq = uses_modseq(cmd.criteria)
    if with_modseq:
        enable_condstore(session)  # a CONDSTORE enabling command (RFC 7162 §3.1)
    matches = await run_search(session, cmd.criteria)
    numbers = [u if cmd.uid else s for s, u in matches]
    if options is None and session.rev2:
        options = ()  # RFC 9051 §6.4.4: no RETURN is RETURN (ALL), answered by ESEARCH
    if options is None:
        tail = _modseq_tail(session, matches, None) if with_modseq else ""
        line = "* SEARCH" + "".join(f" {n}" for n in numbers) + (f" ({tail})" if tail else "")
        session.write((line + "\r\n").encode("ascii"))
        return Reply("OK", "Search completed.")
    opts = set(options) - {"CONTEXT"}
    if not opts:
        opts = {"ALL"}
    if saving:
        session.searchres = sorted(saved_result(opts, cmd.partial, [u for _, u in matches]))
    if opts != {"SAVE"}:
        answer = esearch_line(cmd.tag, cmd.uid, opts, cmd.partial, numbers)
        tail = _modseq_tail(session, matches, opts, cmd.partial) if with_modseq else ""
        if tail:
            answer = answer[:-2] + b" " + tail.encode("ascii") + b"\r\n"
        session.write(answer)
    if updating:
        from columba.imap.search_context import register

        await register(session, cmd.tag, uid=cmd.uid, key=cmd.criteria, spec=None, result=matches)
    return Reply("OK", "Search completed.")


def _modseq_tail(
    session: ImapSession,
    matches: list[tuple[int, int]],
    opts: set[str] | None,
    partial: tuple[int, int] | None = None,
) -> str:
    """RFC 7162 §3.1.5: ``MODSEQ n``, the highest mod-sequence of the messages returned (of
    MIN/MAX alone when only those are asked, of the PARTIAL page and MIN/MAX with PARTIAL,
    RFC 9394 §3.1); empty when nothing is returned."""
    uids = [u for _, u in matches]
    narrowed = opts is not None and (partial is not None or bool(opts & {"MIN", "MAX"}))
    if opts is not None and narrowed and not opts & {"ALL", "COUNT"}:
        uids = saved_result(opts, partial, uids)
    records = session.require_selected().view.records(uids)
    if not records:
        return ""
    return f"MODSEQ {max(r.modseq for r in records)}"


# -- ESEARCH encoding shared by SEARCH and SORT (RFC 4731, RFC 5267, RFC 9394) ----------------


def partial_slice(partial: tuple[int, int], items: Sequence[_T]) -> list[_T]:
    """The results a PARTIAL range selects: ``(1, 100)`` the first hundred, ``(-1, -100)``
    the last hundred (in the results' own order; RFC 9394 §3.1, also the UID FETCH
    modifier's messages, §3.3)."""
    lo, hi = partial
    count = len(items)
    if lo > 0:
        return list(items[lo - 1 : hi])
    start = max(count + hi, 0)
    end = count + lo + 1
    return list(items[start:end]) if end > 0 else []


def ordered_set(numbers: Sequence[int]) -> str:
    """Numbers in the given order as a sequence set; only ascending runs become ranges
    (RFC 5267 §3.2: ``2:5,1``)."""
    out: list[str] = []
    i = 0
    count = len(numbers)
    while i < count:
        j = i
        while j + 1 < count and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(f"{numbers[i]}:{numbers[j]}" if j > i else str(numbers[i]))
        i = j + 1
    return ",".join(out)


def saved_result(opts: set[str], partial: tuple[int, int] | None, uids: Sequence[int]) -> list[int]:
    """What ``RETURN (SAVE ...)`` saves as ``$`` (RFC 5182, RFC 9394 §3.2): everything, or
    with MIN/MAX (and no ALL/COUNT) only those, or with PARTIAL (no COUNT) the partial
    results plus MIN/MAX. *uids* are in result order (mailbox or sort order)."""
    if "ALL" in opts or "COUNT" in opts or not uids:
        return list(uids)
    chosen: list[int] = []
    if partial is not None:
        chosen.extend(partial_slice(partial, uids))
    elif not opts & {"MIN", "MAX"}:
        return list(uids)
    if "MIN" in opts:
        chosen.append(uids[0])
    if "MAX" in opts:
        chosen.append(uids[-1])
    return list(dict.fromkeys(chosen))


def esearch_line(
    tag: str,
    uid: bool,
    opts: set[str],
    partial: tuple[int, int] | None,
    numbers: Sequence[int],
    *,
    sorted_order: bool = False,
) -> bytes:
    """``* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [ALL set] [PARTIAL (range set)] [COUNT n]``.
    For SORT (*sorted_order*) MIN/MAX are the first/last sorted results and sets keep the
    sort order."""
    parts = [f'* ESEARCH (TAG "{tag}")']
    if uid:
        parts.append("UID")
    if numbers and "MIN" in opts:
        parts.append(f"MIN {numbers[0]}")
    if numbers and "MAX" in opts:
        parts.append(f"MAX {numbers[-1]}")
    if numbers and "ALL" in opts:
        parts.append(f"ALL {ordered_set(numbers) if sorted_order else SequenceSet.of(*numbers)}")
    if partial is not None:
        lo, hi = partial
        page = partial_slice(partial, numbers)
        if not page:
            shown = "NIL"
        else:
            shown = ordered_set(page) if sorted_order else str(SequenceSet.of(*page))
        parts.append(f"PARTIAL ({lo}:{hi} {shown})")
    if "COUNT" in opts:
        parts.append(f"COUNT {len(numbers)}")
    return (" ".join(parts) + "\r\n").encode("ascii")


# -- evaluation of a few messages (CONTEXT=SEARCH updates) -----------------------------------


def freeze_sets(session: ImapSession, key: SearchKey) -> dict[int, frozenset[int]]:
    """The sequence-set keys of *key* resolved to UIDs now (RFC 5267 evaluates message
    numbers and ``$`` when the searching command runs); use with :func:`match_uids`."""
    sel = session.require_selected()
    out: dict[int, frozenset[int]] = {}
    for ident, numbers in _resolve_sets(session, key).items():
        out[ident] = numbers
    for k in _walk(key):
        if isinstance(k, SearchSequence) and not (k.uid or k.sequence_set.saved):
            out[id(k)] = frozenset(sel.uids[n - 1] for n in out[id(k)] if n <= len(sel.uids))
    return out


async def match_uids(
    session: ImapSession, key: SearchKey, uids: Sequence[int], sets: dict[int, frozenset[int]]
) -> list[int]:
    """Which of *uids* (ascending, in the view) match *key*, with sequence sets frozen by
    :func:`freeze_sets`."""
    sel = session.require_selected()
    view = sel.view
    ctx = _Context(recent=view.recent_uids(), sets=sets, now=_dt.datetime.now(_dt.UTC))
    need_parsed, need_raw = _needs(key)
    out: list[int] = []
    for start in range(0, len(uids), BATCH):
        if start:
            await asyncio.sleep(0)
        records = view.records(uids[start : start + BATCH])
        parsed_map: dict[int, ParsedMessage] = {}
        if need_parsed and records:
            parsed_map = await view.parsed_many([r.uid for r in records])
        for record in records:
            # sequence-number keys were frozen to UIDs: evaluate with seq = uid
            m = _Message(seq=record.uid, record=record, parsed=parsed_map.get(record.uid))
            if need_parsed and m.parsed is None:
                continue
            if need_raw:
                try:
                    m.raw = await view.read_message(record.uid)
                except MessageExpunged:
                    continue
            if evaluate(key, m, ctx):
                out.append(record.uid)
    return out
