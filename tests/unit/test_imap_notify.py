"""NOTIFY (RFC 5465) without a server: argument checks, the STATUS items a change gives, and
the LIST/STATUS lines found by comparing two looks at a user's mailboxes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from columba.imap import cmd_notify as n
from columba.imap.session import CommandError, ImapSession
from columba.proto.imap import commands as c
from columba.proto.imap.parser import ImapParser
from columba.storage.api import MailboxInfo, MailboxStatus


def parse(line: bytes) -> c.NotifyCommand:
    events = ImapParser().feed(line)
    assert len(events) == 1 and isinstance(events[0], c.NotifyCommand), events
    return events[0]


def build(line: bytes) -> n.NotifyState:
    return n._build(parse(line), "/")


def test_build_groups_and_selected() -> None:
    state = build(
        b"a NOTIFY SET (selected-delayed (MessageNew (UID) MessageExpunge FlagChange)) "
        b"(inboxes (MessageNew MessageExpunge)) (subtree (Lists inbox/) (MailboxName)) "
        b"(mailboxes x NONE)\r\n"
    )
    assert state.selected_events == {"MessageNew", "MessageExpunge", "FlagChange"}
    assert not state.immediate_expunges
    assert [a.name for a in state.fetch_atts] == ["UID"]
    assert [(g.kind, g.names) for g in state.groups] == [
        ("personal", ()),
        ("subtree", ("Lists", "INBOX")),
    ]
    box = MailboxInfo(name="Lists/a", guid="g")
    assert state.events_for(box, "/") == {"MessageNew", "MessageExpunge", "MailboxName"}
    assert state.events_for(replace(box, name="Listsx"), "/") == {
        "MessageNew",
        "MessageExpunge",
    }


@pytest.mark.parametrize(
    ("line", "status", "code"),
    [
        (b"a NOTIFY SET (selected (MessageNew))\r\n", "BAD", None),
        (b"a NOTIFY SET (selected (MessageExpunge FlagChange))\r\n", "BAD", None),
        (b"a NOTIFY SET (selected (FlagChange))\r\n", "BAD", None),
        (b"a NOTIFY SET (selected NONE) (selected NONE)\r\n", "BAD", None),
        (b"a NOTIFY SET (personal (MessageNew (UID) MessageExpunge))\r\n", "BAD", None),
        (b"a NOTIFY SET (personal (AnnotationChange))\r\n", "NO", "BADEVENT"),
        (b"a NOTIFY SET (personal (ServerMetadataChange))\r\n", "NO", "BADEVENT"),
        (b"a NOTIFY SET (personal (NoSuchEvent))\r\n", "NO", "BADEVENT"),
    ],
)
def test_build_refusals(line: bytes, status: str, code: str | None) -> None:
    with pytest.raises(CommandError) as info:
        build(line)
    reply = info.value.reply
    assert reply.status == status
    if code is None:
        assert reply.code is None
    else:
        assert not isinstance(reply.code, str) and reply.code is not None
        assert reply.code.encode() == (
            b"[BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
        )


def test_too_many_names_overflow() -> None:
    names = b" ".join(b"m%d" % i for i in range(n.MAX_NAMES + 1))
    with pytest.raises(CommandError) as info:
        build(b"a NOTIFY SET (mailboxes (" + names + b") (MessageNew MessageExpunge))\r\n")
    assert info.value.reply.code == "NOTIFICATIONOVERFLOW"


def st(**kw: int) -> MailboxStatus:
    base = {
        "messages": 2,
        "recent": 0,
        "uidnext": 3,
        "uidvalidity": 7,
        "unseen": 1,
        "size": 10,
        "deleted": 0,
        "highestmodseq": 5,
    }
    base.update(kw)
    return MailboxStatus(mailboxid="m", **base)


ALL = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})


def test_status_change_items() -> None:
    old = st()
    assert n._status_change(old, old, ALL, False) == []
    appended = st(messages=3, uidnext=4, unseen=2, highestmodseq=6)
    assert n._status_change(old, appended, ALL, False) == [
        ("MESSAGES", 3),
        ("UIDNEXT", 4),
        ("UNSEEN", 2),
    ]
    assert n._status_change(old, appended, frozenset({"MessageExpunge"}), False) == []
    expunged = st(messages=1, highestmodseq=6)
    assert n._status_change(old, expunged, frozenset({"MessageExpunge"}), True) == [
        ("MESSAGES", 1),
        ("UIDNEXT", 3),
        ("UNSEEN", 1),
        ("HIGHESTMODSEQ", 6),
    ]
    seen = st(unseen=0, highestmodseq=6)
    assert n._status_change(old, seen, ALL, False) == [("UNSEEN", 0)]
    assert n._status_change(old, seen, frozenset({"MessageNew"}), False) == []
    flagged = st(highestmodseq=6)  # a flag other than \\Seen: only CONDSTORE tells
    assert n._status_change(old, flagged, ALL, False) == []
    assert n._status_change(old, flagged, ALL, True) == [("HIGHESTMODSEQ", 6)]
    recreated = st(uidvalidity=8, messages=0, uidnext=1, unseen=0)
    assert [k for k, _ in n._status_change(old, recreated, ALL, False)] == [
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
    ]


class FakeUser:
    separator = "/"

    def __init__(self) -> None:
        self.boxes: list[MailboxInfo] = []
        self.statuses: dict[str, MailboxStatus] = {}

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return list(self.boxes)

    async def status(self, name: str) -> MailboxStatus:
        return self.statuses[name]

    def change_generation(self) -> int:
        return 0


class FakeSession:
    utf8 = False
    condstore = False
    selected: Any = None

    def __init__(self, user: FakeUser) -> None:
        self.user = user

    def require_user(self) -> FakeUser:
        return self.user


def test_changes_of_mailboxes() -> None:
    user = FakeUser()
    user.boxes = [
        MailboxInfo(name="INBOX", guid="i"),
        MailboxInfo(name="a", guid="ga"),
        MailboxInfo(name="b", guid="gb", subscribed=True),
        MailboxInfo(name="c", guid="gc"),
    ]
    user.statuses = {b.name: st() for b in user.boxes}
    session = cast(ImapSession, FakeSession(user))
    state = build(
        b"a NOTIFY SET (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))\r\n"
    )
    asyncio.run(n._snapshot(session, cast(Any, user), state))
    assert asyncio.run(n.changes_of_mailboxes(session, state)) == []

    # a renamed to a2 (same guid), b unsubscribed, c deleted, d created, INBOX got mail
    user.boxes = [
        MailboxInfo(name="INBOX", guid="i"),
        MailboxInfo(name="a2", guid="ga"),
        MailboxInfo(name="b", guid="gb"),
        MailboxInfo(name="d", guid="gd", subscribed=True),
    ]
    user.statuses = {b.name: st() for b in user.boxes}
    user.statuses["INBOX"] = st(messages=3, uidnext=4, unseen=2)
    lines = asyncio.run(n.changes_of_mailboxes(session, state))
    assert lines == [
        b'* LIST (\\NonExistent) "/" c\r\n',
        b'* LIST (\\HasNoChildren) "/" a2 ("OLDNAME" (a))\r\n',
        b'* LIST (\\Subscribed \\HasNoChildren) "/" d\r\n',
        b'* LIST (\\HasNoChildren) "/" b\r\n',
        b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UNSEEN 2)\r\n",
    ]
    assert asyncio.run(n.changes_of_mailboxes(session, state)) == []

    # the selected mailbox never gets STATUS
    class Sel:
        class view:  # noqa: N801 - mimics SelectedMailbox.view
            name = "INBOX"

    cast(Any, session).selected = Sel
    user.statuses["INBOX"] = st(messages=4, uidnext=5, unseen=3)
    assert asyncio.run(n.changes_of_mailboxes(session, state)) == []


def test_mailbox_filter_limits_events() -> None:
    user = FakeUser()
    user.boxes = [MailboxInfo(name="INBOX", guid="i"), MailboxInfo(name="x", guid="gx")]
    user.statuses = {b.name: st() for b in user.boxes}
    session = cast(ImapSession, FakeSession(user))
    state = build(b"a NOTIFY SET (mailboxes x (MessageNew MessageExpunge))\r\n")
    asyncio.run(n._snapshot(session, cast(Any, user), state))
    assert set(state.statuses) == {"x"}  # only watched mailboxes are looked at
    user.statuses = {"INBOX": st(messages=9, uidnext=10), "x": st(messages=3, uidnext=4)}
    user.boxes.append(MailboxInfo(name="y", guid="gy"))
    lines = asyncio.run(n.changes_of_mailboxes(session, state))
    assert lines == [b"* STATUS x (MESSAGES 3 UIDNEXT 4 UNSEEN 1)\r\n"]
