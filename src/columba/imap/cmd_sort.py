"""SORT and UID SORT (RFC 5256) with every sort key, DISPLAYFROM/DISPLAYTO (RFC 5957), ESORT
``RETURN`` options (RFC 5267 §3: MIN/MAX/ALL/COUNT in sort order, SAVE), CONTEXT=SORT
(``UPDATE``/``CONTEXT``) and PARTIAL (RFC 9394).

The messages are chosen by the SEARCH evaluator (:mod:`columba.imap.cmd_search`; ``ALL`` is a
shortcut over the view). Sort keys come from :mod:`columba.imap.sort_keys`: computed once per
message when it is saved and stored in the index, read for all the messages of a command in
one query (:meth:`MailboxView.sort_keys_many`; no header is parsed) and kept in the worker's
key cache. The sort turns every row into one integer (each criterion in its own
bit field, string keys as their rank among the distinct values, the position in the lowest
bits) and sorts those.

All of it runs in the event loop as sliced computations (:data:`Steps`, generators that
yield every :data:`STEP` items): :func:`cooperate` steps aside (:func:`pause`) once the task
has run :data:`SLICE` seconds, so the worker's other sessions wait a few milliseconds at most
while a SORT or THREAD over 100 000 messages is computed; big temporaries are freed a slice
at a time too (:func:`release_steps`). ``bench/bench_sort_thread.py`` measures it.

Ties are broken by sequence number (RFC 5256), whatever REVERSE says; a key named twice
counts once (as Dovecot). Like Dovecot, a SORT by sequence number gets no EXPUNGE responses.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from columba.imap import search_context
from columba.imap.cmd_search import esearch_line, run_search, saved_result
from columba.imap.session import ImapSession, Reply
from columba.imap.sort_keys import key_cache
from columba.proto.imap import commands as c
from columba.proto.imap.search import SearchAll, SearchKey
from columba.storage.api import MailboxView

__all__ = [
    "SortSpec",
    "ensure_fields",
    "ensure_records",
    "matching",
    "sort",
    "sort_matches",
    "sort_spec",
]

_T = TypeVar("_T")
_U = TypeVar("_U")

CHUNK = 16384
"""Largest list sorted in one call; bigger ones are sorted in slices and merged."""

_STRING_FIELDS = {
    "SUBJECT": "subject",
    "FROM": "from",
    "TO": "to",
    "CC": "cc",
    "DISPLAYFROM": "displayfrom",
    "DISPLAYTO": "displayto",
}

SortSpec = tuple[tuple[str, bool], ...]
"""``((KEY, reverse), ...)`` with each key once."""


def sort_spec(criteria: Sequence[c.SortCriterion]) -> SortSpec:
    """The criteria without repeated keys (the first one wins, as in Dovecot)."""
    seen: set[str] = set()
    out: list[tuple[str, bool]] = []
    for crit in criteria:
        if crit.key not in seen:
            seen.add(crit.key)
            out.append((crit.key, crit.reverse))
    return tuple(out)


# -- cooperative slicing ---------------------------------------------------------------------

SLICE = 0.005
"""Longest run (seconds) of sort/thread work between two returns to the event loop."""

STEP = 1024
"""Items handled between two checks of the clock by the sliced loops."""

Steps = Generator[None, None, _T]
"""A computation that yields now and then: at each yield it may be paused so the event loop
runs other sessions (:func:`cooperate`), or simply resumed (:func:`run_steps`)."""


def run_steps(steps: Steps[_T]) -> _T:
    """Run a sliced computation to its end without pausing."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


_resumed: contextvars.ContextVar[float] = contextvars.ContextVar("_resumed", default=0.0)
"""When the current task last came back from :func:`pause` (a task's own value)."""


def due(budget: float = SLICE) -> bool:
    """Whether the current task has run *budget* seconds since its last :func:`pause` (the
    budget is shared by consecutive sliced computations of a command)."""
    return time.perf_counter() - _resumed.get() >= budget


async def pause() -> None:
    """Let the other tasks of the event loop run, including the ones whose socket or timer
    becomes ready at the next poll. (After ``sleep(0)`` this task would be first in line
    again, ahead of them: a socket or timer wakes its task one loop iteration later. Resuming
    through a timer due now puts this task behind them.)"""
    loop = asyncio.get_running_loop()
    wake = loop.create_future()
    loop.call_at(loop.time(), _wake, wake)
    await wake
    _resumed.set(time.perf_counter())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def cooperate(steps: Steps[_T], budget: float = SLICE) -> _T:
    """Run a sliced computation in the event loop, giving other tasks their turn
    (:func:`pause`) whenever the task has run *budget* seconds since its last turn."""
    clock = time.perf_counter
    resumed = _resumed.get()
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if clock() - resumed >= budget:
            await pause()
            resumed = _resumed.get()


def sorted_steps(items: list[_T]) -> Steps[list[_T]]:
    """``sorted(items)`` (of mutually comparable values, e.g. ints or strs) in slices: runs
    of :data:`CHUNK` sorted by themselves, then merged pairwise (sorting the concatenation
    of two sorted runs is a linear merge in timsort)."""
    if len(items) <= CHUNK:
        return sorted(items)  # type: ignore[type-var]
    runs: list[list[_T]] = []
    for i in range(0, len(items), CHUNK):
        runs.append(sorted(items[i : i + CHUNK]))  # type: ignore[type-var]
        yield
    while len(runs) > 1:
        merged: list[list[_T]] = []
        for i in range(0, len(runs) - 1, 2):
            pair = runs[i] + runs[i + 1]
            pair.sort()
            merged.append(pair)
            yield
        if len(runs) % 2:
            merged.append(runs[-1])
        runs = merged
    return runs[0]


def release_steps(*items: list[Any] | dict[Any, Any]) -> Steps[None]:
    """Empty big lists and dicts a slice at a time: freeing 100 000 objects at once takes
    milliseconds, which is better spread over slices than left to the end of a command."""
    for item in items:
        if isinstance(item, list):
            while item:
                del item[-8 * STEP :]
                yield
        else:
            while item:
                for _ in range(min(len(item), 4 * STEP)):
                    item.popitem()
                yield


def map_steps(fn: Callable[[list[_T]], list[_U]], items: list[_T]) -> Steps[list[_U]]:
    """``fn(items)`` for a list-to-list *fn*, in slices of :data:`STEP` items."""
    out: list[_U] = []
    for i in range(0, len(items), STEP):
        out.extend(fn(items[i : i + STEP]))
        yield
    return out


# -- data ---------------------------------------------------------------------------------------


async def ensure_fields(
    view: MailboxView, uids: Sequence[int], fields: Sequence[str]
) -> list[dict[int, object]]:
    """The cached values of *fields* (names from :data:`sort_keys.KEY_FIELDS`) for *uids*;
    the missing ones are read in one index query (:meth:`MailboxView.sort_keys_many`: the
    keys stored at save) and added to the worker's cache. Expunged UIDs stay missing."""
    if not fields:
        return []
    dicts = [key_cache.field(view.guid, view.uidvalidity, f) for f in fields]
    todo = await cooperate(map_steps(functools.partial(_missing_any, dicts), list(uids)))
    if todo:
        got = await view.sort_keys_many(todo, fields)
        await cooperate(_update_steps(dicts, [got.get(f, {}) for f in fields]))
        key_cache.added(len(todo) * len(fields))
    return dicts


def _update_steps(dicts: list[dict[int, object]], values: list[dict[int, object]]) -> Steps[None]:
    for into, got in zip(dicts, values, strict=True):
        into.update(got)
        yield


def _missing_any(dicts: list[dict[int, object]], uids: list[int]) -> list[int]:
    """The *uids* some of *dicts* lack, in order (one pass per dict: usually none, or all)."""
    missing = [u for u in uids if u not in dicts[0]]
    for values in dicts[1:]:
        if len(missing) == len(uids):
            break
        more = [u for u in uids if u not in values]
        if more:
            lacking = set(missing).union(more)
            missing = [u for u in uids if u in lacking]
    return missing


async def ensure_records(view: MailboxView, uids: Sequence[int]) -> tuple[dict[int, object], ...]:
    """``(arrival, size)``: internal dates (UTC seconds) and RFC822.SIZE of *uids*, cached
    like the header fields."""
    return tuple(await ensure_fields(view, uids, ("arrival", "size")))


async def matching(session: ImapSession, key: SearchKey) -> list[tuple[int, int]]:
    """``(seq, uid)`` of the messages *key* matches (SEARCH semantics), ascending."""
    if isinstance(key, SearchAll):
        sel = session.require_selected()
        gone = sel.pending_expunges
        uids = list(sel.uids)
        if not gone:
            return list(zip(range(1, len(uids) + 1), uids, strict=True))
        return [(i + 1, u) for i, u in enumerate(uids) if u not in gone]
    return await run_search(session, key)


# -- sorting ------------------------------------------------------------------------------------


def chunked_sorted(items: list[Any], key: Callable[[Any], Any] | None = None) -> list[Any]:
    """``sorted(items, key=key)`` (stable) in slices of :data:`CHUNK` merged by
    :func:`heapq.merge`."""
    if len(items) <= CHUNK:
        return sorted(items, key=key)
    runs = [sorted(items[i : i + CHUNK], key=key) for i in range(0, len(items), CHUNK)]
    return list(heapq.merge(*runs, key=key))


def _int_column(values: list[Any]) -> Steps[list[int]]:
    """Integers ordered as *values*: string values become their rank among the distinct
    values, integers stay."""
    if not values or not isinstance(values[0], str):
        return values
    distinct = list(set(values))
    yield
    ordered = yield from sorted_steps(distinct)
    rank = {v: i for i, v in enumerate(ordered)}
    yield
    return (yield from map_steps(functools.partial(_ranked, rank), values))


def _ranked(rank: dict[Any, int], values: list[Any]) -> list[int]:
    return [rank[v] for v in values]


def order_steps(
    columns: Sequence[tuple[list[Any], bool]], n: int, ties: list[int] | None = None
) -> Steps[list[int]]:
    """Positions ``0..n-1`` of the *n* rows ordered by the key *columns* (each with its
    REVERSE flag), ties by *ties* ascending (non-negative integers, one per row), else by
    position.

    Every row becomes one integer: each column's value shifted to ``0..span`` (``span - v``
    when reversed) in its own bit field, the first column in the highest bits, the
    tie-breaker and the position in the lowest; the integers are sorted in slices
    (:func:`sorted_steps`)."""
    if n == 0:
        return []
    pos_bits = n.bit_length()
    combined: list[int] = list(range(n))
    shift = pos_bits
    if ties is not None:
        combined = [t << pos_bits | i for i, t in enumerate(ties)]
        shift += max(ties).bit_length()
    yield
    for values, reverse in reversed(columns):  # the first column in the highest bits
        ints = yield from _int_column(values)
        owned = [ints] if ints is not values else []
        low, high = min(ints), max(ints)
        yield
        if high == low:
            yield from release_steps(*owned)
            continue
        if reverse:
            part = yield from map_steps(functools.partial(_reversed_field, high, shift), ints)
        else:
            part = yield from map_steps(functools.partial(_field, low, shift), ints)
        added = yield from _add_fields(combined, part)
        yield from release_steps(combined, part, *owned)
        combined = added
        shift += (high - low).bit_length()
    ordered = yield from sorted_steps(combined)
    yield from release_steps(combined)
    mask = (1 << pos_bits) - 1
    positions = yield from map_steps(functools.partial(_positions, mask), ordered)
    yield from release_steps(ordered)
    return positions


def _field(low: int, shift: int, values: list[int]) -> list[int]:
    return [(v - low) << shift for v in values]


def _reversed_field(high: int, shift: int, values: list[int]) -> list[int]:
    return [(high - v) << shift for v in values]


def _positions(mask: int, keys: list[int]) -> list[int]:
    return [k & mask for k in keys]


def _add_fields(keys: list[int], part: list[int]) -> Steps[list[int]]:
    out: list[int] = []
    for i in range(0, len(keys), STEP):
        out.extend([a | b for a, b in zip(keys[i : i + STEP], part[i : i + STEP], strict=True)])
        yield
    return out


def order_by_columns(columns: Sequence[tuple[list[Any], bool]], uids: Sequence[int]) -> list[int]:
    """*uids* ordered by the key columns (each with its REVERSE flag), ties by UID
    ascending."""
    order = run_steps(order_steps(columns, len(uids), list(uids)))
    return [uids[i] for i in order]


def columns_steps(
    spec: SortSpec,
    uids: list[int],
    fields: dict[str, dict[int, object]],
    arrival: dict[int, object],
    size: dict[int, object],
) -> Steps[list[tuple[list[Any], bool]]]:
    """One value list per criterion, aligned with *uids* (missing data sorts as empty/0)."""
    columns: list[tuple[list[Any], bool]] = []
    for key, reverse in spec:
        pick: Callable[[list[int]], list[Any]]
        if key == "ARRIVAL":
            pick = functools.partial(_plain, arrival, 0)
        elif key == "SIZE":
            pick = functools.partial(_plain, size, 0)
        elif key == "DATE":
            pick = functools.partial(_dates, fields["date"], arrival)
        elif key == "SUBJECT":
            pick = functools.partial(_subjects, fields["subject"])
        else:
            pick = functools.partial(_plain, fields[_STRING_FIELDS[key]], "")
        values = yield from map_steps(pick, uids)
        columns.append((values, reverse))
    return columns


def _plain(values: dict[int, object], default: object, uids: list[int]) -> list[Any]:
    return [values.get(u, default) for u in uids]


def _dates(dates: dict[int, object], arrival: dict[int, object], uids: list[int]) -> list[Any]:
    return [d if (d := dates.get(u)) is not None else arrival.get(u, 0) for u in uids]


def _subjects(subjects: dict[int, object], uids: list[int]) -> list[Any]:
    return [s[0] if (s := subjects.get(u)) is not None else "" for u in uids]  # type: ignore[index]


def columns_for(
    spec: SortSpec,
    uids: Sequence[int],
    fields: dict[str, dict[int, object]],
    arrival: dict[int, object],
    size: dict[int, object],
) -> list[tuple[list[Any], bool]]:
    """One value list per criterion, aligned with *uids* (missing data sorts as empty/0)."""
    return run_steps(columns_steps(spec, list(uids), fields, arrival, size))


def spec_fields(spec: SortSpec) -> list[str]:
    """The cached header fields a sort needs."""
    out: list[str] = []
    for key, _reverse in spec:
        name = "date" if key == "DATE" else _STRING_FIELDS.get(key)
        if name is not None and name not in out:
            out.append(name)
    return out


async def sort_columns(
    view: MailboxView, spec: SortSpec, uids: list[int]
) -> list[tuple[list[Any], bool]]:
    """The key columns of *spec* for *uids* (keys computed and cached when missing)."""
    names = spec_fields(spec)
    keys = [k for k, _ in spec]
    if ("ARRIVAL" in keys or "DATE" in keys) and "arrival" not in names:
        names.append("arrival")
    if "SIZE" in keys:
        names.append("size")
    dicts = await ensure_fields(view, uids, names)  # one query for what the cache lacks
    fields = dict(zip(names, dicts, strict=True))
    arrival = fields.get("arrival", {})
    size = fields.get("size", {})
    return await cooperate(columns_steps(spec, uids, fields, arrival, size))


async def sort_uids(view: MailboxView, spec: SortSpec, uids: Sequence[int]) -> list[int]:
    """*uids* (ascending) in the order of *spec*."""
    uid_list = list(uids)
    columns = await sort_columns(view, spec, uid_list)
    order = await cooperate(order_steps(columns, len(uid_list)))
    return await cooperate(map_steps(functools.partial(_picked, uid_list), order))


async def sort_matches(
    session: ImapSession, spec: SortSpec, matches: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``(seq, uid)`` pairs (ascending) in sort order; ties stay in sequence order."""
    sel = session.require_selected()
    pairs = list(matches)
    uids = await cooperate(map_steps(_second, pairs))
    columns = await sort_columns(sel.view, spec, uids)
    order = await cooperate(order_steps(columns, len(pairs)))
    return await cooperate(map_steps(functools.partial(_picked, pairs), order))


def _picked(items: list[_T], positions: list[int]) -> list[_T]:
    return [items[i] for i in positions]


def _first(pairs: list[tuple[int, int]]) -> list[int]:
    return [s for s, _ in pairs]


def _second(pairs: list[tuple[int, int]]) -> list[int]:
    return [u for _, u in pairs]


def _numbers_text(numbers: list[int]) -> list[str]:
    return ["".join([f" {n}" for n in numbers])]


async def number_list(numbers: list[int]) -> str:
    """``" n1 n2 ..."``, built in slices."""
    return "".join(await cooperate(map_steps(_numbers_text, numbers)))


# -- the command --------------------------------------------------------------------------------


async def sort(session: ImapSession, cmd: c.SortCommand) -> Reply:
    options = cmd.return_options
    saving = options is not None and "SAVE" in options
    updating = options is not None and "UPDATE" in options
    if updating:
        search_context.check_new_update(session, cmd.tag)
    spec = sort_spec(cmd.criteria)
    try:
        matches = await matching(session, cmd.search)
        ordered = await sort_matches(session, spec, matches)
    except Exception:
        if saving:
            session.searchres = []
        raise
    numbers = await cooperate(map_steps(_second if cmd.uid else _first, ordered))
    if options is None:
        session.write(("* SORT" + await number_list(numbers) + "\r\n").encode("ascii"))
        await cooperate(release_steps(matches, ordered, numbers))
        return Reply("OK", "Sort completed.")
    opts = set(options) - {"CONTEXT"}
    if not opts:
        opts = {"ALL"}
    if saving:
        session.searchres = sorted(saved_result(opts, cmd.partial, [u for _, u in ordered]))
    if opts != {"SAVE"}:
        session.write(esearch_line(cmd.tag, cmd.uid, opts, cmd.partial, numbers, sorted_order=True))
    if updating:
        await search_context.register(
            session, cmd.tag, uid=cmd.uid, key=cmd.search, spec=spec, result=ordered
        )
    return Reply("OK", "Sort completed.")
