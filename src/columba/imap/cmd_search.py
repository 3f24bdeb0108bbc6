"""SEARCH and UID SEARCH: every RFC 3501 key, RFC 4731 ESEARCH (``RETURN (MIN MAX ALL
COUNT)``), RFC 5182 SEARCHRES (``RETURN (SAVE)`` and ``$``), RFC 5032 WITHIN, RFC 8514
SAVEDATE keys, RFC 8474 EMAILID/THREADID, MODSEQ.

The search is a set operation over the selected mailbox: flags and modseqs come from the
view's columns, records (dates, sizes) only when a key needs them; header keys (HEADER, FROM,
SUBJECT, ...) are decided by the storage for the whole set at once from the header blocks in
the index (:meth:`MailboxView.header_matches`), and a program of header keys, ALL, AND, OR
and NOT is then answered with set operations; cached parses are fetched (one index query per
batch) only for what is still undecided or for keys that need them (SENTDATE, BODY, TEXT);
message objects are read only for BODY and TEXT.

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
from columba.storage.api import MailboxView, MessageExpunged, MessageRecord, StorageError
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
ROWS_SLICE = 16384
"""Messages whose flags and modseqs are collected before other sessions get a turn."""

_logger = logging.getLogger("columba.imap")
_T = TypeVar("_T")


@dataclass
class _Message:
    seq: int
    uid: int
    flags: frozenset[str]
    modseq: int
    record: MessageRecord | None = None
    """Only when the program has a key that needs more than flags and modseq."""
    parsed: ParsedMessage | None = None
    raw: bytes | None = None
    _text: dict[str, str] = field(default_factory=dict)


@dataclass
class _Context:
    recent: frozenset[int]
    sets: dict[int, frozenset[int]]
    now: _dt.datetime
    headers: dict[int, tuple[frozenset[int], frozenset[int]]] = field(default_factory=dict)
    """Per header key (by id): the UIDs that match and the UIDs the storage left undecided
    (:meth:`MailboxView.header_matches`); a key missing here is answered from the parse."""


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


def _needs_parse_besides_headers(key: SearchKey) -> bool:
    return any(
        isinstance(k, SearchText) or (isinstance(k, SearchDate) and k.field == "SENTDATE")
        for k in _walk(key)
    )


def _needs_record(key: SearchKey) -> bool:
    """Whether a key needs more of a message's record than its UID, flags and modseq."""
    return any(
        isinstance(k, SearchSize | SearchDate | SearchWithin | SearchObjectId) for k in _walk(key)
    )


async def _flag_rows(view: MailboxView, uids: list[int]) -> list[tuple[int, frozenset[str], int]]:
    """:meth:`MailboxView.flag_rows` of many UIDs, a slice at a time (other sessions run in
    between)."""
    rows: list[tuple[int, frozenset[str], int]] = []
    for start in range(0, len(uids), ROWS_SLICE):
        if start:
            await asyncio.sleep(0)
        rows.extend(view.flag_rows(uids[start : start + ROWS_SLICE]))
    return rows


async def _header_sets(
    view: MailboxView, key: SearchKey, uids: Sequence[int]
) -> dict[int, tuple[frozenset[int], frozenset[int]]]:
    """Every header key of the program decided over *uids* at once by the storage."""
    out: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
    for k in _walk(key):
        if isinstance(k, SearchHeader) and id(k) not in out:
            matched, unsure = await view.header_matches(uids, k.field, k.value)
            out[id(k)] = (frozenset(matched), frozenset(unsure))
    return out


def _set_eval(key: SearchKey, ctx: _Context, universe: frozenset[int]) -> frozenset[int] | None:
    """The UIDs of *universe* matching *key* computed as set operations, when every key in
    it allows that (ALL, decided header keys, AND/OR/NOT); None otherwise."""
    if isinstance(key, SearchAll | SearchSaveDateSupported):
        return universe
    if isinstance(key, SearchFuzzy):
        return _set_eval(key.key, ctx, universe)
    if isinstance(key, SearchHeader):
        known = ctx.headers.get(id(key))
        if known is None or not known[1].isdisjoint(universe):
            return None
        return known[0] & universe
    if isinstance(key, SearchNot):
        inner = _set_eval(key.key, ctx, universe)
        return None if inner is None else universe - inner
    if isinstance(key, SearchOr):
        left = _set_eval(key.left, ctx, universe)
        right = None if left is None else _set_eval(key.right, ctx, universe)
        return None if left is None or right is None else left | right
    if isinstance(key, SearchAnd):
        result = universe
        for k in key.keys:
            part = _set_eval(k, ctx, universe)
            if part is None:
                return None
            result = result & part
        return result
    return None


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
    if isinstance(key, SearchFlag):
        if key.flag == "\\Recent":
            has = m.uid in ctx.recent
        elif key.flag.startswith("\\"):
            has = key.flag in m.flags
        else:
            wanted = key.flag.casefold()
            has = any(f.casefold() == wanted for f in m.flags)
        return has == key.present
    if isinstance(key, SearchSequence):
        numbers = ctx.sets[id(key)]
        if key.sequence_set.saved or key.uid:
            return m.uid in numbers
        return m.seq in numbers
    if isinstance(key, SearchModSeq):
        return m.modseq >= key.modseq
    if isinstance(key, SearchHeader):
        known = ctx.headers.get(id(key))
        if known is not None and m.uid not in known[1]:
            return m.uid in known[0]
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
    record = m.record
    if record is None:  # every key that reads the record makes _needs_record() true
        raise CommandError("BAD", f"Unsupported search key {type(key).__name__}.")
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
    ctx = _Context(
        recent=sel.view.recent_uids(),
        sets=_resolve_sets(session, key),
        now=_dt.datetime.now(_dt.UTC),
    )
    return await _matching(session, key, ctx, list(enumerate(sel.uids, start=1)))


async def _matching(
    session: ImapSession, key: SearchKey, ctx: _Context, pairs: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Which ``(seq, uid)`` pairs (ascending) match *key*: keys the storage can answer for
    the whole set at once (header keys) are asked first; messages are then looked at in
    batches, their cached parse read only when a key still needs it."""
    view = session.require_selected().view
    need_parsed, need_raw = _needs(key)
    in_view = frozenset(view.uids())
    present = [u for _, u in pairs if u in in_view]
    if need_parsed:
        ctx.headers = await _header_sets(view, key, present)
        if not need_raw:
            chosen = _set_eval(key, ctx, frozenset(present))
            if chosen is not None:
                return [(s, u) for s, u in pairs if u in chosen]
    rows = await _flag_rows(view, present)
    parse_all = _needs_parse_besides_headers(key)
    parse_some: set[int] = set()
    if need_parsed and not parse_all:
        header_keys = [k for k in _walk(key) if isinstance(k, SearchHeader)]
        for k in header_keys:
            parse_some.update(ctx.headers[id(k)][1])
    with_record = _needs_record(key)
    if with_record:
        await view.preload(present)
    found = {u: (f, m) for u, f, m in rows}
    matches: list[tuple[int, int]] = []
    for start in range(0, len(pairs), BATCH):
        if start:
            await asyncio.sleep(0)  # let other sessions of the worker run between batches
        chunk = [(s, u) for s, u in pairs[start : start + BATCH] if u in found]
        uids = [u for _, u in chunk]
        records: dict[int, MessageRecord] = {}
        if with_record:
            records = {r.uid: r for r in view.records(uids)}
        to_parse = uids if parse_all else [u for u in uids if u in parse_some]
        parsed_map: dict[int, ParsedMessage] = {}
        if to_parse:
            parsed_map = await view.parsed_many(to_parse)
        for seq, uid in chunk:
            flags, modseq = found[uid]
            m = _Message(seq, uid, flags, modseq, records.get(uid), parsed_map.get(uid))
            if with_record and m.record is None:
                continue  # gone from the index before its record was read
            if (parse_all or uid in parse_some) and m.parsed is None:
                continue
            if need_raw:
                try:
                    m.raw = await view.read_message(uid)
                except MessageExpunged:
                    continue
            if evaluate(key, m, ctx):
                matches.append((seq, uid))
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
    rows = session.require_selected().view.flag_rows(uids)
    if not rows:
        return ""
    return f"MODSEQ {max(modseq for _uid, _flags, modseq in rows)}"


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
    view = session.require_selected().view
    ctx = _Context(recent=view.recent_uids(), sets=sets, now=_dt.datetime.now(_dt.UTC))
    # sequence-number keys were frozen to UIDs: evaluate with seq = uid
    found = await _matching(session, key, ctx, [(u, u) for u in uids])
    return [u for _, u in found]
