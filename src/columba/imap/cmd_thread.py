"""THREAD and UID THREAD (RFC 5256): REFERENCES, ORDEREDSUBJECT, and Dovecot's REFS.

The messages are chosen by the SEARCH evaluator; their Message-ID/References/In-Reply-To,
base subjects and sent dates come from the worker's key cache (:mod:`columba.imap.sort_keys`,
read from the keys the index stored at save, in one query). The algorithms are written after
Dovecot 2.3's (the oracle for exact answers) over integer arrays (messages as parallel
columns, nodes as indices, parents and children as index lists: no object per message or
link), as sliced computations run in the event loop by :func:`cmd_sort.cooperate`;
:func:`references`, :func:`refs` and :func:`orderedsubject` run them on
:class:`ThreadMessage` lists and give :class:`Tree` answers:

REFERENCES (RFC 5256 §3)
    (1) messages are linked in UID order: the References ids (or the first In-Reply-To id when
    there are no valid References) chain parent to child, the first link to a message wins,
    links that would make a loop are ignored, and the message becomes a child of its last
    reference (a conflicting earlier parent is dropped); a duplicate Message-ID gets a node
    of its own. (2)+(3) every message hangs under its nearest real ancestor, or under the
    top dummy when it has none; a top dummy without children disappears, one with a single
    child is replaced by it. (4) threads are ordered by the sent date of their root (a dummy:
    of its oldest child), then UID. (5) threads whose roots share a base subject are merged
    (a dummy or a non-reply takes the others as children; two non-replies get a new dummy
    parent), and re-ordered. (6) children are ordered by sent date, then UID.
ORDEREDSUBJECT
    messages sorted by base subject, then sent date; a thread per subject, its first message
    the parent of the others; threads ordered by their first message's date.
REFS
    the REFERENCES links without subject merging; threads ordered by their newest message.

"Sent date" is the Date header, or the internal date when it is missing or invalid. Nodes are
numbered in creation order (a message's own node, then the ids of its References), which
decides ties exactly as Dovecot's node order does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from columba.imap.cmd_sort import (
    STEP,
    Steps,
    cooperate,
    ensure_fields,
    map_steps,
    matching,
    release_steps,
    run_steps,
    sorted_steps,
)
from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c

__all__ = [
    "ALGORITHMS",
    "ThreadMessage",
    "Tree",
    "format_threads",
    "orderedsubject",
    "references",
    "refs",
    "thread",
]

ALGORITHMS = ("REFERENCES", "REFS", "ORDEREDSUBJECT")

_DATE_OFFSET = 1 << 40
_UID_SPAN = 1 << 32


@dataclass(frozen=True)
class ThreadMessage:
    """What threading needs of one message."""

    uid: int
    date: int
    """Sent date (UTC seconds), the internal date when the Date header is unusable."""
    message_id: str | None = None
    references: tuple[str, ...] = ()
    """References ids, or the first In-Reply-To id when there are none."""
    subject: str = ""
    """Base subject (case-mapped)."""
    reply: bool = False
    """The subject had a Re:/Fwd: leader or (fwd) trailer."""


@dataclass(eq=False)
class Tree:
    """A node of the answer: ``uid`` 0 is a dummy (never a leaf in an answer)."""

    uid: int
    children: list[Tree] = field(default_factory=list)


@dataclass(slots=True)
class _Input:
    """The messages as parallel columns, in ascending UID order."""

    uids: list[int]
    dates: list[int]
    ids: list[str | None]
    refs: list[tuple[str, ...]]
    subjects: list[str]
    replies: list[bool]

    @classmethod
    def of(cls, messages: Sequence[ThreadMessage]) -> _Input:
        ordered = sorted(messages, key=lambda m: m.uid)
        return cls(
            [m.uid for m in ordered],
            [m.date for m in ordered],
            [m.message_id for m in ordered],
            [m.references for m in ordered],
            [m.subject for m in ordered],
            [m.reply for m in ordered],
        )


class _Forest:
    """An answer as integer arrays: ``roots`` in order, each node's children from
    ``first[node]`` along ``next[child]`` (-1 ends), ``label[node]`` the message index
    (-1 for a dummy). Top-level dummies without children are already left out."""

    __slots__ = ("first", "label", "next", "roots")

    def __init__(self, roots: list[int], first: list[int], nxt: list[int], label: list[int]):
        self.roots = roots
        self.first = first
        self.next = nxt
        self.label = label


class _Graph:
    """Step 1 of REFERENCES/REFS: nodes (numbered in creation order, as Dovecot's) with
    their message (index into :class:`_Input`, -1 for a dummy), key ((date, uid) packed in
    one integer) and parent (-1 for none)."""

    __slots__ = ("key", "msg", "parent")

    def __init__(self) -> None:
        self.msg: list[int] = []
        self.key: list[int] = []
        self.parent: list[int] = []


def _link_steps(inp: _Input) -> Steps[_Graph]:
    """Step 1: the id table and the links."""
    g = _Graph()
    msg, key, parent = g.msg, g.key, g.parent
    by_id: dict[str, int] = {}

    def node_for(msgid: str) -> int:
        node = by_id.get(msgid)
        if node is None:
            node = by_id[msgid] = len(msg)
            msg.append(-1)
            key.append(0)
            parent.append(-1)
        return node

    def link(p: int, child: int) -> None:
        cur = p
        while cur >= 0:
            if cur == child:
                return  # a loop (or a self reference): ignored
            cur = parent[cur]
        if parent[child] < 0:
            parent[child] = p
        # otherwise the first parent stays

    uids, dates, ids, all_refs = inp.uids, inp.dates, inp.ids, inp.refs
    for start in range(0, len(uids), STEP):
        for i in range(start, min(len(uids), start + STEP)):
            mid = ids[i]
            node = by_id.get(mid, -1) if mid is not None else -1
            if node < 0 or msg[node] >= 0:
                node = len(msg)
                msg.append(-1)
                key.append(0)
                parent.append(-1)
                if mid is not None and mid not in by_id:
                    by_id[mid] = node
            msg[node] = i
            key[node] = (dates[i] + _DATE_OFFSET) * _UID_SPAN + uids[i]
            p = -1
            refs_ = all_refs[i]
            if refs_:
                p = node_for(refs_[0])
                for ref in refs_[1:]:
                    child = node_for(ref)
                    link(p, child)
                    p = child
            if parent[node] >= 0 and parent[node] != p:
                parent[node] = -1  # a conflicting parent from another message's References
            if p >= 0:
                link(p, node)
        yield
    yield from release_steps(by_id)
    return g


class _Shadows:
    """Steps 2-3: the roots (node numbers, in node order), each real non-root message's
    place (``up``: its nearest real ancestor, or the top dummy) and, for each dummy root's
    node, how many messages it holds and the first of them by (date, uid)."""

    __slots__ = ("best", "count", "roots", "up")

    def __init__(self, roots: list[int], up: list[int], count: list[int], best: list[int]):
        self.roots = roots
        self.up = up
        self.count = count
        self.best = best


def _shadow_steps(g: _Graph) -> Steps[_Shadows]:
    msg, key, parent = g.msg, g.key, g.parent
    n = len(msg)
    roots: list[int] = []
    up = [-1] * n
    count = [0] * n
    best = [-1] * n
    for start in range(0, n, STEP):
        for v in range(start, min(n, start + STEP)):
            p = parent[v]
            if p < 0:
                roots.append(v)
                continue
            if msg[v] < 0:
                continue  # inner dummies vanish
            while msg[p] < 0 and parent[p] >= 0:
                p = parent[p]
            up[v] = p
            if msg[p] < 0:  # a top dummy
                count[p] += 1
                b = best[p]
                if b < 0 or key[v] < key[b]:
                    best[p] = v
        yield
    return _Shadows(roots, up, count, best)


class _Roots:
    """The thread roots of REFERENCES as columns (index = root number)."""

    __slots__ = ("dummy", "ignore", "key", "node", "reply", "up")

    def __init__(self, nodes: list[int], msg: list[int]) -> None:
        self.node = nodes
        self.dummy = [msg[v] < 0 for v in nodes]
        self.ignore = [False] * len(nodes)
        self.reply = [False] * len(nodes)
        self.key = [0] * len(nodes)
        self.up = [-1] * len(nodes)
        """The root this one is merged into (by subject), -1 for none."""


def _sort_roots_steps(g: _Graph, sh: _Shadows, r: _Roots, order: list[int]) -> Steps[list[int]]:
    """The live roots of *order*, each keyed by its (date, uid) (a dummy: its first
    child's; a dummy with one child is replaced by it), sorted by it (stably)."""
    node, dummy, ignore, rkey = r.node, r.dummy, r.ignore, r.key
    count, best, key = sh.count, sh.best, g.key
    live: list[int] = []
    for start in range(0, len(order), STEP):
        for x in order[start : start + STEP]:
            if ignore[x]:
                continue
            v = node[x]
            if dummy[x]:
                c = count[v]
                if c == 0:
                    ignore[x] = True
                    continue
                b = best[v]
                if c == 1:
                    node[x] = b
                    dummy[x] = False
                rkey[x] = key[b]
            else:
                rkey[x] = key[v]
            live.append(x)
        yield
    bits = len(live).bit_length()
    packed = yield from _sliced(  # stable: ties by position
        lambda a, b: [rkey[live[pos]] << bits | pos for pos in range(a, b)], len(live)
    )
    ordered = yield from sorted_steps(packed)
    mask = (1 << bits) - 1
    return (yield from _sliced(lambda a, b: [live[k & mask] for k in ordered[a:b]], len(ordered)))


def _gather_subjects_steps(
    inp: _Input, g: _Graph, sh: _Shadows, r: _Roots, order: list[int]
) -> Steps[None]:
    table: dict[str, int] = {}
    subjects, replies, msg, best = inp.subjects, inp.replies, g.msg, sh.best
    node, dummy, rreply, rup = r.node, r.dummy, r.reply, r.up
    for start in range(0, len(order), STEP):
        for x in order[start : start + STEP]:
            v = node[x]
            i = msg[best[v]] if dummy[x] else msg[v]
            base = subjects[i]
            if not base:
                continue
            reply = replies[i]
            known = table.get(base)
            if known is None:
                table[base] = x
            elif not dummy[known] and (dummy[x] or (rreply[known] and not reply)):
                rup[known] = x
                table[base] = x
            else:
                rup[x] = known
            rreply[x] = reply
        yield


def _merge_subjects_steps(
    g: _Graph, sh: _Shadows, r: _Roots, order: list[int], moved: list[int]
) -> Steps[bool]:
    """Step 5's merges (appending new dummy roots to *order*); *moved* maps a dummy node
    whose children went to another node to that node."""
    node, dummy, ignore, rreply, rup = r.node, r.dummy, r.ignore, r.reply, r.up
    count, best, up, key, msg = sh.count, sh.best, sh.up, g.key, g.msg
    changed = False
    snapshot = list(order)  # new dummies wait for the next pass
    for start in range(0, len(snapshot), STEP):
        for cur in snapshot[start : start + STEP]:
            if rup[cur] < 0 or ignore[cur]:
                continue
            top = rup[cur]
            while rup[top] >= 0:
                top = rup[top]
            cn, tn = node[cur], node[top]
            if dummy[cur]:
                moved[cn] = tn
                count[tn] += count[cn]
                b = best[cn]
                if best[tn] < 0 or (b >= 0 and key[b] < key[best[tn]]):
                    best[tn] = b
                count[cn] = 0
                ignore[cur] = True
            elif dummy[top] or (rreply[cur] and not rreply[top]):
                up[cn] = tn
                count[tn] += 1
                if best[tn] < 0 or key[cn] < key[best[tn]]:
                    best[tn] = cn
                ignore[cur] = True
            else:
                d = len(msg)
                msg.append(-1)
                key.append(0)
                g.parent.append(-1)
                up.append(-1)
                moved.append(-1)
                count.append(2)
                best.append(tn if key[tn] < key[cn] else cn)
                up[tn] = up[cn] = d
                x = len(node)
                node.append(d)
                dummy.append(True)
                ignore.append(False)
                rreply.append(False)
                r.key.append(0)
                rup.append(-1)
                rup[top] = x
                ignore[top] = ignore[cur] = True
                order.append(x)
            changed = True
        yield
    return changed


def _forest_steps(
    g: _Graph, up: list[int], moved: list[int] | None, roots: list[int]
) -> Steps[_Forest]:
    """The answer: *roots* (node numbers; dummies without children are left out) and
    every message under its ``up`` node (through *moved*), children by (date, uid)."""
    msg, key = g.msg, g.key
    n = len(msg)
    bits = n.bit_length()
    packed = yield from _sliced(
        lambda a, b: [key[v] << bits | v for v in range(a, b) if msg[v] >= 0 and up[v] >= 0], n
    )
    ordered = yield from sorted_steps(packed)
    mask = (1 << bits) - 1
    first = [-1] * n
    nxt = [-1] * n
    for end in range(len(ordered), 0, -STEP):
        for k in reversed(ordered[max(0, end - STEP) : end]):
            v = k & mask
            p = up[v]
            if moved is not None:
                while moved[p] >= 0:
                    p = moved[p]
            nxt[v] = first[p]
            first[p] = v
        yield
    yield from release_steps(packed, ordered)
    kept = yield from _sliced(
        lambda a, b: [v for v in roots[a:b] if msg[v] >= 0 or first[v] >= 0], len(roots)
    )
    return _Forest(kept, first, nxt, msg)


def _references_steps(inp: _Input) -> Steps[_Forest]:
    g = yield from _link_steps(inp)
    sh = yield from _shadow_steps(g)
    r = _Roots(sh.roots, g.msg)
    order = yield from _sort_roots_steps(g, sh, r, list(range(len(sh.roots))))
    yield from _gather_subjects_steps(inp, g, sh, r, order)
    moved = [-1] * len(g.msg)
    if (yield from _merge_subjects_steps(g, sh, r, order, moved)):
        order = yield from _sort_roots_steps(g, sh, r, order)
    forest = yield from _forest_steps(g, sh.up, moved, [r.node[x] for x in order])
    yield from release_steps(g.key, g.parent, sh.up, sh.best, sh.count, moved, order)
    yield from release_steps(r.node, r.dummy, r.ignore, r.reply, r.key, r.up)
    return forest


def _refs_steps(inp: _Input) -> Steps[_Forest]:
    g = yield from _link_steps(inp)
    sh = yield from _shadow_steps(g)
    msg, parent = g.msg, g.parent
    dates = inp.dates
    n = len(msg)
    # each tree's newest message (0 at least), found through each node's top node
    top = [-1] * n
    newest = [0] * n
    path: list[int] = []
    for start in range(0, n, STEP):
        for v in range(start, min(n, start + STEP)):
            cur = v
            while top[cur] < 0 and parent[cur] >= 0:
                path.append(cur)
                cur = parent[cur]
            t = top[cur] if top[cur] >= 0 else cur
            top[cur] = t
            for x in path:
                top[x] = t
            path.clear()
            i = msg[v]
            if i >= 0 and dates[i] > newest[t]:
                newest[t] = dates[i]
        yield
    roots, count, uids = sh.roots, sh.count, inp.uids
    live = yield from _sliced(
        lambda a, b: [v for v in roots[a:b] if msg[v] >= 0 or count[v] > 0], len(roots)
    )
    bits = n.bit_length()
    packed = yield from _sliced(
        lambda a, b: [
            ((newest[v] + _DATE_OFFSET) * _UID_SPAN + (uids[msg[v]] if msg[v] >= 0 else 0)) << bits
            | pos
            for pos, v in enumerate(live[a:b], a)
        ],
        len(live),
    )
    ordered = yield from sorted_steps(packed)
    mask = (1 << bits) - 1
    tops = yield from _sliced(lambda a, b: [live[k & mask] for k in ordered[a:b]], len(ordered))
    yield from release_steps(top, newest, packed, ordered, live)
    forest = yield from _forest_steps(g, sh.up, None, tops)
    yield from release_steps(g.key, g.parent, sh.up, sh.best, sh.count)
    return forest


def _orderedsubject_steps(inp: _Input) -> Steps[_Forest]:
    n = len(inp.uids)
    if n == 0:
        return _Forest([], [], [], [])
    ranks = yield from _ranks_steps(inp.subjects)
    dates = inp.dates
    low = min(dates)
    bits = n.bit_length()
    date_bits = (max(dates) - low).bit_length()
    packed = yield from _sliced(
        lambda a, b: [
            (((ranks[i] << date_bits) | (dates[i] - low)) << bits) | i for i in range(a, b)
        ],
        n,
    )
    ordered = yield from sorted_steps(packed)
    mask = (1 << bits) - 1
    first = [-1] * n
    nxt = [-1] * n
    heads: list[int] = []
    prev_rank = -1
    head = last = -1
    for start in range(0, n, STEP):
        for k in ordered[start : start + STEP]:
            i = k & mask
            rank = ranks[i]
            if rank != prev_rank:
                heads.append(i)
                prev_rank = rank
                head = i
                last = -1
            elif last < 0:
                first[head] = i
                last = i
            else:
                nxt[last] = i
                last = i
        yield
    packed = yield from _sliced(
        lambda a, b: [((dates[i] - low) << bits) | i for i in heads[a:b]], len(heads)
    )
    ordered = yield from sorted_steps(packed)
    roots = yield from _sliced(lambda a, b: [k & mask for k in ordered[a:b]], len(ordered))
    yield from release_steps(ranks, packed, ordered, heads)
    return _Forest(roots, first, nxt, list(range(n)))


def _sliced(build: Callable[[int, int], list[int]], n: int) -> Steps[list[int]]:
    """``build(0, n)`` for a *build* giving the items of ``range(start, end)``, in slices."""
    out: list[int] = []
    for start in range(0, n, STEP):
        out.extend(build(start, min(n, start + STEP)))
        yield
    return out


def _ranks_steps(values: list[str]) -> Steps[list[int]]:
    seen: set[str] = set()
    for start in range(0, len(values), STEP):
        seen.update(values[start : start + STEP])
        yield
    distinct = list(seen)
    seen.clear()
    yield
    ordered = yield from sorted_steps(distinct)
    rank = {v: i for i, v in enumerate(ordered)}
    yield
    out: list[int] = []
    for start in range(0, len(values), STEP):
        out.extend([rank[v] for v in values[start : start + STEP]])
        yield
    yield from release_steps(distinct, ordered, rank)
    return out


def _trees(forest: _Forest, uids: list[int]) -> list[Tree]:
    first, nxt, label = forest.first, forest.next, forest.label
    out: list[Tree] = []
    for root in forest.roots:
        tree = Tree(uids[label[root]] if label[root] >= 0 else 0)
        out.append(tree)
        stack = [(root, tree)]
        while stack:
            v, t = stack.pop()
            kid = first[v]
            while kid >= 0:
                sub = Tree(uids[label[kid]])
                t.children.append(sub)
                if first[kid] >= 0:
                    stack.append((kid, sub))
                kid = nxt[kid]
    return out


def references(messages: Sequence[ThreadMessage]) -> list[Tree]:
    """RFC 5256 REFERENCES (Dovecot's reading)."""
    inp = _Input.of(messages)
    return _trees(run_steps(_references_steps(inp)), inp.uids)


def refs(messages: Sequence[ThreadMessage]) -> list[Tree]:
    """Dovecot's REFS: REFERENCES links, no subject merging, threads ordered by their
    newest message."""
    inp = _Input.of(messages)
    return _trees(run_steps(_refs_steps(inp)), inp.uids)


def orderedsubject(messages: Sequence[ThreadMessage]) -> list[Tree]:
    """RFC 5256 ORDEREDSUBJECT (*messages* in any order; numbers are their UIDs)."""
    inp = _Input.of(messages)
    return _trees(run_steps(_orderedsubject_steps(inp)), inp.uids)


# -- the answer ---------------------------------------------------------------------------------


def format_threads(trees: Sequence[Tree], numbers: dict[int, int] | None = None) -> str:
    """The thread list of a ``* THREAD`` response (Dovecot's layout: a lone child follows
    its parent, several children are each parenthesised). *numbers* maps UIDs to the
    numbers to print (sequence numbers for THREAD)."""

    def num(uid: int) -> str:
        return str(numbers[uid] if numbers is not None else uid)

    out: list[str] = []
    # work items: a string to emit, or (nodes, at top level)
    stack: list[str | tuple[Sequence[Tree], bool]] = [(trees, True)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        nodes, top = item
        todo: list[str | tuple[Sequence[Tree], bool]] = []
        if len(nodes) == 1 and not top:
            node = nodes[0]
            todo.append(num(node.uid))
            if node.children:
                todo.append(" ")
                todo.append((node.children, False))
        else:
            for node in nodes:
                if not node.children:
                    todo.append(f"({num(node.uid)})")
                    continue
                todo.append(f"({num(node.uid)} " if node.uid else "(")
                todo.append((node.children, False))
                todo.append(")")
        stack.extend(reversed(todo))
    return "".join(out)


def _format_steps(forest: _Forest, labels: list[str]) -> Steps[str]:
    """:func:`format_threads` of a :class:`_Forest`; *labels* are the numbers to print,
    by message index."""
    first, nxt, label = forest.first, forest.next, forest.label
    out: list[str] = []
    parts: list[str] = []  # out joined a slice at a time
    done = 0
    for root in forest.roots:
        lab = label[root]
        if first[root] < 0:
            out.append(f"({labels[lab]})")
            continue
        out.append(f"({labels[lab]} " if lab >= 0 else "(")
        # pending work: a string to emit, or the first of a list of children to write
        stack: list[str | int] = [first[root]]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
                continue
            c = item
            if nxt[c] < 0:  # a lone child follows its parent
                out.append(labels[label[c]])
                if first[c] >= 0:
                    out.append(" ")
                    stack.append(first[c])
                done += 1
                continue
            todo: list[str | int] = []
            while c >= 0:
                if first[c] < 0:
                    todo.append(f"({labels[label[c]]})")
                else:
                    todo.append(f"({labels[label[c]]} ")
                    todo.append(first[c])
                    todo.append(")")
                c = nxt[c]
                done += 1
            stack.extend(reversed(todo))
            if done >= STEP:
                done = 0
                parts.append("".join(out))
                out.clear()
                yield
        out.append(")")
        done += 1
        if done >= STEP:
            done = 0
            parts.append("".join(out))
            out.clear()
            yield
    parts.append("".join(out))
    return "".join(parts)


def _columns(inp: _Input) -> list[list[Any]]:
    return [inp.uids, inp.dates, inp.ids, inp.refs, inp.subjects, inp.replies]


def _labels(numbers: list[int]) -> list[str]:
    return [str(n) for n in numbers]


def _input_steps(
    uids: list[int],
    subjects: dict[int, object],
    dates: dict[int, object],
    ids: dict[int, object],
    arrival: dict[int, object],
) -> Steps[_Input]:
    inp = _Input([], [], [], [], [], [])
    no_subject = ("", False)
    no_ids: tuple[None, tuple[str, ...]] = (None, ())
    for start in range(0, len(uids), STEP):
        chunk = uids[start : start + STEP]
        inp.uids.extend(chunk)
        inp.dates.extend(
            [d if (d := dates.get(u)) is not None else arrival.get(u, 0) for u in chunk]  # type: ignore[misc]
        )
        subj: list[tuple[str, bool]] = [subjects.get(u, no_subject) for u in chunk]  # type: ignore[misc]
        inp.subjects.extend([s[0] for s in subj])
        inp.replies.extend([s[1] for s in subj])
        ident: list[tuple[str | None, tuple[str, ...]]] = [ids.get(u, no_ids) for u in chunk]  # type: ignore[misc]
        inp.ids.extend([i[0] for i in ident])
        inp.refs.extend([i[1] for i in ident])
        yield
    return inp


async def thread_input(session: ImapSession, uids: list[int]) -> _Input:
    """What threading needs of *uids* (ascending; cached keys, computed when missing)."""
    view = session.require_selected().view
    fields = ("subject", "date", "thread", "arrival")
    subjects, dates, ids, arrival = await ensure_fields(view, uids, fields)  # one query
    return await cooperate(_input_steps(uids, subjects, dates, ids, arrival))


_STEPS = {
    "REFERENCES": _references_steps,
    "REFS": _refs_steps,
    "ORDEREDSUBJECT": _orderedsubject_steps,
}


async def thread(session: ImapSession, cmd: c.ThreadCommand) -> Reply:
    algorithm = cmd.algorithm.upper()
    if algorithm not in ALGORITHMS:
        raise CommandError("BAD", "Unknown thread algorithm.")
    matches = await matching(session, cmd.search)
    uids = [u for _, u in matches]
    inp = await thread_input(session, uids)
    forest = await cooperate(_STEPS[algorithm](inp))
    numbers = uids if cmd.uid else [s for s, _ in matches]
    labels = await cooperate(map_steps(_labels, numbers))
    text = await cooperate(_format_steps(forest, labels))
    await cooperate(release_steps(forest.first, forest.next, forest.label, forest.roots, labels))
    await cooperate(release_steps(*_columns(inp), matches, uids, numbers))
    session.write(("* THREAD " + text if text else "* THREAD").encode("ascii") + b"\r\n")
    return Reply("OK", "Thread completed.")
