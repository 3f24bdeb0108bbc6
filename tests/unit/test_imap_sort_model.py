"""Property tests: SORT, THREAD, ESORT and CONTEXT=SEARCH/SORT against simple reference models
written plainly here, over random mailboxes (subjects with Re:/Fwd:/[tags]/(fwd), dates that
may be missing or broken, addresses with and without display names, sizes) and random changes.

The SORT and THREAD models work on the same header blocks the server caches at save; the
CONTEXT test drives real sessions in-process (one updating, one changing the mailbox) and
replays every ESEARCH ADDTO/REMOVEFROM, EXPUNGE and EXISTS on a client-side copy of the result,
which must equal a fresh search or sort after each round.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
import tempfile
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.imap.cmd_sort import columns_for, order_by_columns, spec_fields
from columba.imap.cmd_thread import (
    ThreadMessage,
    format_threads,
    orderedsubject,
    references,
)
from columba.imap.sort_keys import compute_fields
from tests.unit.test_imap_session import PASSWORD, USER, serving

# -- random messages ---------------------------------------------------------------------------

_WORDS = ["alpha", "Beta", "gamma", "a_b", "zeta", "x", "Delta"]
_PREFIXES = ["", "", "Re: ", "RE: re: ", "Fwd: ", "fw: ", "[list] ", "[a] Re: ", "Re [b]: "]
_TRAILERS = ["", "", " (fwd)", "  "]
BASE = dt.datetime(2001, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    word = draw(st.sampled_from(_WORDS))
    subject = draw(st.sampled_from(_PREFIXES)) + word + draw(st.sampled_from(_TRAILERS))
    if draw(st.booleans()) and draw(st.booleans()):
        subject = f"[Fwd: {subject}]"
    local = draw(st.sampled_from(["ann", "Bob", "carl", "_dan", "eve"]))
    name = draw(st.sampled_from([None, "Zoe", "adam", "Mia Q"]))
    frm = f"{name} <{local}@ex.com>" if name else f"{local}@ex.com"
    to_local = draw(st.sampled_from(["t1", "T2", "u3"]))
    offset = draw(st.integers(0, 30)) * 3600
    date_kind = draw(st.sampled_from(["ok", "ok", "missing", "broken"]))
    return {
        "subject": subject if draw(st.integers(0, 9)) else None,
        "word": word,
        "from": frm,
        "from_local": local,
        "from_name": name,
        "to": f"{to_local}@ex.com",
        "to_local": to_local,
        "date": BASE + dt.timedelta(seconds=offset) if date_kind == "ok" else None,
        "date_header": date_kind,
        "arrival": 1_000_000_000 + draw(st.integers(0, 50)) * 1800,
        "size": draw(st.integers(10, 60)),
    }


def header_block(m: dict[str, Any]) -> bytes:
    lines = [f"From: {m['from']}", f"To: {m['to']}"]
    if m["subject"] is not None:
        lines.append(f"Subject: {m['subject']}")
    if m["date_header"] == "ok":
        lines.append(f"Date: {format_datetime(m['date'])}")
    elif m["date_header"] == "broken":
        lines.append("Date: not a date")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- the reference model -----------------------------------------------------------------------


def model_base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1 over ASCII, with regular expressions."""
    if subject is None:
        return ""
    s = re.sub(r"[ \t]+", " ", subject).upper()
    while True:
        s = re.sub(r"( |\(FWD\))+$", "", s)
        while True:
            t = re.sub(r"^ ", "", s)
            t = re.sub(r"^(\[[^\[\]]*\] ?)*(RE|FWD|FW) ?(\[[^\[\]]*\] ?)?:", "", t)
            blob = re.match(r"^\[[^\[\]]*\] ?", t)
            if blob and t[blob.end() :]:
                t = t[blob.end() :]
            if t == s:
                break
            s = t
        if s.startswith("[FWD:") and s.endswith("]"):
            s = s[5:-1]
            continue
        return s


def model_key(m: dict[str, Any], key: str) -> Any:
    if key == "ARRIVAL":
        return m["arrival"]
    if key == "SIZE":
        return m["size"]
    if key == "DATE":
        return int(m["date"].timestamp()) if m["date"] is not None else m["arrival"]
    if key == "SUBJECT":
        return model_base_subject(m["subject"])
    if key == "FROM":
        return m["from_local"].upper()
    if key == "TO":
        return m["to_local"].upper()
    if key == "CC":
        return ""
    if key == "DISPLAYFROM":
        return (m["from_name"] or f"{m['from_local']}@ex.com").upper()
    return f"{m['to_local']}@ex.com".upper()  # DISPLAYTO


def model_sort(msgs: list[dict[str, Any]], spec: tuple[tuple[str, bool], ...]) -> list[int]:
    def cmp(a: int, b: int) -> int:
        for key, reverse in spec:
            ka, kb = model_key(msgs[a - 1], key), model_key(msgs[b - 1], key)
            if ka != kb:
                return (1 if ka > kb else -1) * (-1 if reverse else 1)
        return a - b

    return sorted(range(1, len(msgs) + 1), key=functools.cmp_to_key(cmp))


KEYS = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(messages(), min_size=0, max_size=25),
    st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1, max_size=3, unique_by=lambda k: k[0]),
)  # fmt: skip
def test_sort_matches_model(msgs: list[dict[str, Any]], spec: list[tuple[str, bool]]) -> None:
    uids = list(range(1, len(msgs) + 1))
    names = spec_fields(tuple(spec))
    fields: dict[str, dict[int, object]] = {n: {} for n in names}
    for uid, m in zip(uids, msgs, strict=True):
        for name, value in zip(names, compute_fields(header_block(m), names), strict=True):
            fields[name][uid] = value
    arrival: dict[int, object] = {u: m["arrival"] for u, m in zip(uids, msgs, strict=True)}
    size: dict[int, object] = {u: m["size"] for u, m in zip(uids, msgs, strict=True)}
    got = order_by_columns(columns_for(tuple(spec), uids, fields, arrival, size), uids)
    assert got == model_sort(msgs, tuple(spec))


@settings(max_examples=300, deadline=None)
@given(st.lists(messages(), min_size=0, max_size=25))
def test_orderedsubject_matches_model(msgs: list[dict[str, Any]]) -> None:
    thread_msgs = []
    for uid, m in enumerate(msgs, 1):
        subject, date = compute_fields(header_block(m), ["subject", "date"])
        assert isinstance(subject, tuple)
        stamp = date if isinstance(date, int) else m["arrival"]
        thread_msgs.append(ThreadMessage(uid, stamp, None, (), subject[0], subject[1]))
    # the model: sort by (base subject, date, uid), one thread per subject
    order = model_sort(msgs, (("SUBJECT", False), ("DATE", False)))
    groups: dict[str, list[int]] = {}
    for uid in order:
        groups.setdefault(model_base_subject(msgs[uid - 1]["subject"]), []).append(uid)
    firsts = sorted(groups.values(), key=lambda g: (model_key(msgs[g[0] - 1], "DATE"), g[0]))
    expected = "".join(
        f"({g[0]})" if len(g) == 1 else f"({g[0]} {g[1]})" if len(g) == 2
        else f"({g[0]} " + "".join(f"({u})" for u in g[1:]) + ")"
        for g in firsts
    )  # fmt: skip
    assert format_threads(orderedsubject(thread_msgs)) == expected


@st.composite
def forests(draw: st.DrawFn) -> list[tuple[int | None, int]]:
    """(parent index or None, date) per message; parents come earlier."""
    out: list[tuple[int | None, int]] = []
    for i in range(draw(st.integers(0, 30))):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        out.append((parent, draw(st.integers(0, 20))))
    return out


@settings(max_examples=300, deadline=None)
@given(forests())
def test_references_matches_model_on_reply_trees(forest: list[tuple[int | None, int]]) -> None:
    """Well-formed replies (References = the whole ancestor chain, one subject per thread):
    REFERENCES must give exactly the reply tree, roots and children by (date, uid)."""
    msgs: list[ThreadMessage] = []
    root_of: list[int] = []
    for i, (parent, date) in enumerate(forest):
        chain: list[str] = []
        p = parent
        while p is not None:
            chain.insert(0, f"m{p}@x")
            p = forest[p][0]
        root_of.append(i if parent is None else root_of[parent])
        msgs.append(
            ThreadMessage(
                i + 1, date, f"m{i}@x", tuple(chain), f"T{root_of[i]}", parent is not None
            )
        )
    kids: dict[int | None, list[int]] = {}
    for i, (parent, _date) in enumerate(forest):
        kids.setdefault(parent, []).append(i)

    def ordered(items: list[int]) -> list[int]:
        return sorted(items, key=lambda i: (forest[i][1], i))

    def write(nodes: list[int], top: bool) -> str:
        if len(nodes) == 1 and not top:
            i = nodes[0]
            sub = ordered(kids.get(i, []))
            return str(i + 1) + (" " + write(sub, False) if sub else "")
        out = ""
        for i in nodes:
            sub = ordered(kids.get(i, []))
            out += f"({i + 1} " + write(sub, False) + ")" if sub else f"({i + 1})"
        return out

    assert format_threads(references(msgs)) == write(ordered(kids.get(None, [])), True)


# -- CONTEXT=SEARCH / CONTEXT=SORT over real sessions -------------------------------------------


def apply_updates(lines: list[bytes], tag: str, result: list[int], uid: bool) -> None:
    """What a client does with unsolicited responses to keep an UPDATE result."""
    for line in lines:
        m = re.match(rb"\* (\d+) EXPUNGE", line)
        if m and not uid:
            n = int(m.group(1))
            assert n not in result, "REMOVEFROM must come before the EXPUNGE"
            result[:] = [x - 1 if x > n else x for x in result]
            continue
        m = re.match(rb'\* ESEARCH \(TAG "' + tag.encode() + rb'"\)( UID)? (ADDTO|REMOVEFROM) \((.*)\)', line)  # fmt: skip
        if not m:
            continue
        words = m.group(3).decode().split(" ")
        for pos_text, seqset in zip(words[::2], words[1::2], strict=True):
            pos = int(pos_text)
            nums: list[int] = []
            for part in seqset.split(","):
                a, _, b = part.partition(":")
                nums.extend(range(int(a), int(b or a) + 1))
            if m.group(2) == b"REMOVEFROM":
                if pos == 0:
                    result[:] = [x for x in result if x not in nums]
                else:
                    assert result[pos - 1 : pos - 1 + len(nums)] == nums
                    del result[pos - 1 : pos - 1 + len(nums)]
            elif pos == 0:
                result[:] = sorted({*result, *nums})
            else:
                result[pos - 1 : pos - 1] = nums


COMMANDS = [
    ("SEARCH", "UNSEEN"),
    ("UID SEARCH", "UNSEEN"),
    ("SEARCH", "ALL"),
    ("SORT", "(SUBJECT) UTF-8 UNSEEN"),
    ("UID SORT", "(REVERSE DATE SUBJECT) UTF-8 ALL"),
    ("SORT", "(REVERSE ARRIVAL) UTF-8 NOT FLAGGED"),
    ("UID SORT", "(FROM REVERSE SIZE) UTF-8 UNSEEN"),
]

changes = st.lists(
    st.one_of(
        st.tuples(st.just("append"), messages()),
        st.tuples(st.just("seen"), st.integers(1, 30)),
        st.tuples(st.just("unseen"), st.integers(1, 30)),
        st.tuples(st.just("flag"), st.integers(1, 30)),
        st.tuples(st.just("expunge"), st.integers(1, 30)),
    ),
    max_size=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip
@given(
    st.lists(messages(), min_size=0, max_size=12),
    st.sampled_from(COMMANDS),
    st.lists(changes, min_size=1, max_size=3),
)
def test_context_updates_match_fresh_results(
    initial: list[dict[str, Any]],
    command: tuple[str, str],
    rounds: list[list[tuple[str, Any]]],
) -> None:
    async def main(tmp: Path) -> None:
        async with serving(tmp) as (connect, _sessions):
            watcher, changer = await connect(), await connect()
            await watcher.line()
            await changer.line()
            for client in (watcher, changer):
                await client.cmd(f"LOGIN {USER} {PASSWORD}")
            for m in initial:
                await append(changer, m)
            await watcher.cmd("SELECT INBOX")
            await changer.cmd("SELECT INBOX")
            name, rest = command
            uid = name.startswith("UID")
            base = f"{name} RETURN (ALL) {rest}"
            lines = await watcher.cmd(base.replace("RETURN (ALL)", "RETURN (UPDATE ALL)"))
            tag = f"c{watcher.n}"
            result = parse_all(lines)
            for changes_ in rounds:
                for kind, arg in changes_:
                    await change(changer, kind, arg)
                apply_updates(await watcher.cmd("NOOP"), tag, result, uid)
                fresh = parse_all(await watcher.cmd(base))
                if "SORT" in name:
                    assert result == fresh
                else:
                    assert sorted(result) == fresh

    asyncio.run(main(Path(tempfile.mkdtemp(prefix="ctx-"))))


def parse_all(lines: list[bytes]) -> list[int]:
    for line in lines:
        m = re.match(rb"\* ESEARCH \(TAG \"[^\"]+\"\)(?: UID)?(?: ALL (\S+))?\r\n", line)
        if m:
            out: list[int] = []
            for part in (m.group(1) or b"").decode().split(","):
                if part:
                    a, _, b = part.partition(":")
                    out.extend(range(int(a), int(b or a) + 1))
            return out
    raise AssertionError(lines)


async def append(client: Any, m: dict[str, Any]) -> None:
    data = header_block(m) + b"x" * m["size"] + b"\r\n"
    when = dt.datetime.fromtimestamp(m["arrival"], dt.UTC).strftime("%d-%b-%Y %H:%M:%S +0000")
    client.n += 1
    await client.send(
        f'c{client.n} APPEND INBOX "{when}" {{{len(data)}+}}\r\n'.encode() + data + b"\r\n"
    )
    await client.until(f"c{client.n}")


async def change(client: Any, kind: str, arg: Any) -> None:
    if kind == "append":
        await append(client, arg)
    elif kind == "seen":
        await client.cmd(f"STORE {arg}:* +FLAGS.SILENT (\\Seen)".replace(":*", ""))
    elif kind == "unseen":
        await client.cmd(f"STORE {arg} -FLAGS.SILENT (\\Seen)")
    elif kind == "flag":
        await client.cmd(f"STORE {arg} +FLAGS.SILENT (\\Flagged)")
    else:
        await client.cmd(f"STORE {arg} +FLAGS.SILENT (\\Deleted)")
        await client.cmd("EXPUNGE")
