"""IMAP codec: golden parses of every command, literal flows, errors, pauses, bounds.

Every golden input is also fed byte by byte and must give the same events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

import pytest

from columba.proto.imap import commands as c
from columba.proto.imap.events import (
    AuthenticateLine,
    ConnectionClose,
    IdleDone,
    LiteralChunk,
    LiteralEnd,
    LiteralStart,
    LiteralTooBig,
    NeedContinuation,
    ParserEvent,
    ProtocolError,
)
from columba.proto.imap.fetch import FetchAttribute, Section
from columba.proto.imap.parser import ImapParser
from columba.proto.imap.search import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchNot,
    SearchSequence,
    SearchText,
)
from columba.proto.imap.sequence import SequenceSet

# -- harness ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _strict_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    # internal bugs must surface as exceptions in tests, not as a generic BAD
    monkeypatch.setattr(ImapParser, "_raise_internal_errors", True)


def respond(parser: ImapParser, event: ParserEvent) -> list[ParserEvent]:
    """What a well-behaved server does after a pausing event."""
    if isinstance(event, NeedContinuation):
        return parser.accept_literal()
    if isinstance(event, c.IdleCommand):
        return parser.expect_idle_done()
    if isinstance(event, c.AuthenticateCommand) and event.initial_response is None:
        return parser.expect_raw_line()
    return parser.resume()


def drive(parser: ImapParser, chunks: Iterable[bytes]) -> list[ParserEvent]:
    """Feed *chunks*, answering every pause like a server that accepts everything."""
    out: list[ParserEvent] = []
    for chunk in chunks:
        pending = parser.feed(chunk)
        while pending:
            event = pending.pop(0)
            out.append(event)
            if not pending and parser.paused:
                pending.extend(respond(parser, event))
    return out


def merge_chunks(events: list[ParserEvent]) -> list[ParserEvent]:
    """Join adjacent LiteralChunks (their boundaries follow the input)."""
    out: list[ParserEvent] = []
    for ev in events:
        prev = out[-1] if out else None
        if (
            isinstance(ev, LiteralChunk)
            and isinstance(prev, LiteralChunk)
            and (prev.tag, prev.index) == (ev.tag, ev.index)
        ):
            out[-1] = LiteralChunk(tag=ev.tag, index=ev.index, data=prev.data + ev.data)
        else:
            out.append(ev)
    return out


def bytewise(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def parse_all(data: bytes, **kw: object) -> list[ParserEvent]:
    """Parse whole and byte by byte; both must agree."""
    whole = merge_chunks(drive(ImapParser(**kw), [data]))  # type: ignore[arg-type]
    split = merge_chunks(drive(ImapParser(**kw), bytewise(data)))  # type: ignore[arg-type]
    assert whole == split
    return whole


def one(data: bytes, **kw: object) -> ParserEvent:
    events = parse_all(data, **kw)
    assert len(events) == 1, events
    return events[0]


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


# -- golden parses ----------------------------------------------------------------------------

UTC1 = dt.timezone(dt.timedelta(hours=1))

GOLDEN: list[tuple[bytes, ParserEvent]] = [
    (b"a CAPABILITY\r\n", c.CapabilityCommand(tag="a", name="CAPABILITY")),
    (b"a noop\r\n", c.NoopCommand(tag="a", name="NOOP")),
    (b"a LOGOUT\r\n", c.LogoutCommand(tag="a", name="LOGOUT")),
    (b"a STARTTLS\r\n", c.StartTlsCommand(tag="a", name="STARTTLS")),
    (b"a NAMESPACE\r\n", c.NamespaceCommand(tag="a", name="NAMESPACE")),
    (b"a CHECK\r\n", c.CheckCommand(tag="a", name="CHECK")),
    (b"a CLOSE\r\n", c.CloseCommand(tag="a", name="CLOSE")),
    (b"a UNSELECT\r\n", c.UnselectCommand(tag="a", name="UNSELECT")),
    (b"a EXPUNGE\r\n", c.ExpungeCommand(tag="a", name="EXPUNGE")),
    (
        b"a UID EXPUNGE 3:5,9\r\n",
        c.ExpungeCommand(tag="a", name="EXPUNGE", uid=True, sequence_set=seq("3:5,9")),
    ),
    (b"A]1 IDLE\r\n", c.IdleCommand(tag="A]1", name="IDLE")),
    (
        b"a AUTHENTICATE plain\r\n",
        c.AuthenticateCommand(tag="a", name="AUTHENTICATE", mechanism="PLAIN"),
    ),
    (
        b"a AUTHENTICATE PLAIN AGZyZWQAc2VjcmV0\r\n",
        c.AuthenticateCommand(
            tag="a", name="AUTHENTICATE", mechanism="PLAIN", initial_response=b"\0fred\0secret"
        ),
    ),
    (
        b"a AUTHENTICATE EXTERNAL =\r\n",
        c.AuthenticateCommand(
            tag="a", name="AUTHENTICATE", mechanism="EXTERNAL", initial_response=b""
        ),
    ),
    (
        b'a LOGIN fred "pa ss\\"\\\\"\r\n',
        c.LoginCommand(tag="a", name="LOGIN", username="fred", password='pa ss"\\'),
    ),
    (
        b"a LOGIN {4+}\r\nfred {3+}\r\nabc\r\n",
        c.LoginCommand(tag="a", name="LOGIN", username="fred", password="abc"),
    ),
    (b"a SELECT inbox\r\n", c.SelectCommand(tag="a", name="SELECT", mailbox="INBOX")),
    (
        b"a EXAMINE INBOX.Sent (CONDSTORE)\r\n",
        c.SelectCommand(
            tag="a", name="EXAMINE", mailbox="INBOX.Sent", readonly=True, condstore=True
        ),
    ),
    (
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
        c.SelectCommand(
            tag="a",
            name="SELECT",
            mailbox="INBOX",
            qresync=c.QResyncParams(
                uidvalidity=67890007,
                modseq=20050715194045000,
                known_uids=seq("41,43:211,214:541"),
            ),
        ),
    ),
    (
        b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000 "
        b"4964,7456,8990)))\r\n",
        c.SelectCommand(
            tag="a",
            name="SELECT",
            mailbox="INBOX",
            qresync=c.QResyncParams(
                uidvalidity=67890007,
                modseq=90060115194045000,
                known_uids=seq("1:29997"),
                known_sequence_set=seq("5000,7500,9000"),
                known_uid_set=seq("4964,7456,8990"),
            ),
        ),
    ),
    (
        b"a SELECT INBOX (QRESYNC (1 2 (1,2 3,4)) CONDSTORE)\r\n",
        c.SelectCommand(
            tag="a",
            name="SELECT",
            mailbox="INBOX",
            condstore=True,
            qresync=c.QResyncParams(
                uidvalidity=1,
                modseq=2,
                known_sequence_set=seq("1,2"),
                known_uid_set=seq("3,4"),
            ),
        ),
    ),
    (
        b"a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n",
        c.CreateCommand(tag="a", name="CREATE", mailbox="~peter/mail/台北/日本語"),
    ),
    (
        b"a CREATE Drafts (USE (\\drafts \\Foo))\r\n",
        c.CreateCommand(
            tag="a", name="CREATE", mailbox="Drafts", special_use=("\\Drafts", "\\Foo")
        ),
    ),
    (b'a DELETE "a b"\r\n', c.DeleteCommand(tag="a", name="DELETE", mailbox="a b")),
    (
        b"a RENAME Inbox Old\r\n",
        c.RenameCommand(tag="a", name="RENAME", mailbox="INBOX", new_mailbox="Old"),
    ),
    (b"a SUBSCRIBE x\r\n", c.SubscribeCommand(tag="a", name="SUBSCRIBE", mailbox="x")),
    (b"a UNSUBSCRIBE x\r\n", c.UnsubscribeCommand(tag="a", name="UNSUBSCRIBE", mailbox="x")),
    (
        b'a LIST "" *\r\n',
        c.ListCommand(tag="a", name="LIST", reference="", patterns=("*",)),
    ),
    (
        b'a LIST "" ""\r\n',
        c.ListCommand(tag="a", name="LIST", reference="", patterns=("",)),
    ),
    (
        b"a LIST ~/Mail/ %]x\r\n",
        c.ListCommand(tag="a", name="LIST", reference="~/Mail/", patterns=("%]x",)),
    ),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "&ZeVnLIqe-*") RETURN (CHILDREN '
        b"SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))\r\n",
        c.ListCommand(
            tag="a",
            name="LIST",
            reference="",
            patterns=("%", "日本語*"),
            selection=("SUBSCRIBED", "RECURSIVEMATCH"),
            return_options=("CHILDREN", "SPECIAL-USE"),
            return_status=("MESSAGES", "UNSEEN", "SIZE"),
            extended=True,
        ),
    ),
    (
        b'a LIST (SPECIAL-USE) "" *\r\n',
        c.ListCommand(
            tag="a",
            name="LIST",
            reference="",
            patterns=("*",),
            selection=("SPECIAL-USE",),
            extended=True,
        ),
    ),
    (
        b'a LIST "" % RETURN ()\r\n',
        c.ListCommand(tag="a", name="LIST", reference="", patterns=("%",), extended=True),
    ),
    (
        b'a LSUB "#news." "comp.mail.*"\r\n',
        c.LsubCommand(tag="a", name="LSUB", reference="#news.", pattern="comp.mail.*"),
    ),
    (
        b"a STATUS blurdybloop (UIDNEXT MESSAGES deleted SIZE HIGHESTMODSEQ APPENDLIMIT "
        b"MAILBOXID RECENT UIDVALIDITY UNSEEN)\r\n",
        c.StatusCommand(
            tag="a",
            name="STATUS",
            mailbox="blurdybloop",
            items=(
                "UIDNEXT",
                "MESSAGES",
                "DELETED",
                "SIZE",
                "HIGHESTMODSEQ",
                "APPENDLIMIT",
                "MAILBOXID",
                "RECENT",
                "UIDVALIDITY",
                "UNSEEN",
            ),
        ),
    ),
    (
        b'a APPEND saved-messages (\\Seen $Forwarded) " 7-Feb-1994 21:52:25 +0100" {5+}\r\n'
        b"hello\r\n",
        c.AppendCommand(
            tag="a",
            name="APPEND",
            mailbox="saved-messages",
            messages=(
                c.AppendMessage(
                    index=0,
                    flags=("\\Seen", "$Forwarded"),
                    internal_date=dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=UTC1),
                    size=5,
                    data=b"hello",
                ),
            ),
        ),
    ),
    (
        b"a APPEND INBOX {3}\r\nabc ()  {0}\r\n\r\n".replace(b"  ", b" "),
        c.AppendCommand(
            tag="a",
            name="APPEND",
            mailbox="INBOX",
            messages=(
                c.AppendMessage(index=0, size=3, data=b"abc"),
                c.AppendMessage(index=1, size=0, data=b""),
            ),
        ),
    ),
    (
        b"a APPEND INBOX UTF8 (~{3+}\r\n\xc3\xa9!) (\\Draft) ~{2}\r\n\x00x\r\n",
        c.AppendCommand(
            tag="a",
            name="APPEND",
            mailbox="INBOX",
            messages=(
                c.AppendMessage(index=0, size=3, data=b"\xc3\xa9!", binary=True, utf8=True),
                c.AppendMessage(index=1, flags=("\\Draft",), size=2, data=b"\0x", binary=True),
            ),
        ),
    ),
    (
        b"a APPEND {5}\r\nINBOX {2}\r\nhi\r\n",
        c.AppendCommand(
            tag="a",
            name="APPEND",
            mailbox="INBOX",
            messages=(c.AppendMessage(index=0, size=2, data=b"hi"),),
        ),
    ),
    (
        b'a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
        c.SearchCommand(
            tag="a",
            name="SEARCH",
            criteria=SearchAnd(
                (
                    SearchFlag("\\Flagged"),
                    SearchDate("INTERNALDATE", "SINCE", dt.date(1994, 2, 1)),
                    SearchNot(SearchHeader("FROM", "Smith")),
                )
            ),
        ),
    ),
    (
        b"a UID SEARCH RETURN (MIN max SAVE) CHARSET utf-8 TEXT {5+}\r\n\xc3\xa9t\xc3\xa9\r\n",
        c.SearchCommand(
            tag="a",
            name="SEARCH",
            uid=True,
            criteria=SearchText("TEXT", "été"),
            charset="utf-8",
            return_options=("MIN", "MAX", "SAVE"),
        ),
    ),
    (
        b"a SEARCH RETURN () $\r\n",
        c.SearchCommand(
            tag="a",
            name="SEARCH",
            criteria=SearchSequence(SequenceSet(saved=True)),
            return_options=(),
        ),
    ),
    (
        b"a FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
        c.FetchCommand(
            tag="a",
            name="FETCH",
            sequence_set=seq("2:4"),
            attributes=(
                FetchAttribute("FLAGS"),
                FetchAttribute("BODY", Section((), "HEADER.FIELDS", ("DATE", "FROM"))),
            ),
        ),
    ),
    (
        b"a UID FETCH 1:* fast (CHANGEDSINCE 12345 VANISHED)\r\n",
        c.FetchCommand(
            tag="a",
            name="FETCH",
            uid=True,
            sequence_set=seq("1:*"),
            attributes=(
                FetchAttribute("FLAGS"),
                FetchAttribute("INTERNALDATE"),
                FetchAttribute("RFC822.SIZE"),
            ),
            macro="FAST",
            changedsince=12345,
            vanished=True,
        ),
    ),
    (
        b"a FETCH $ BINARY.PEEK[1.2]<0.1024>\r\n",
        c.FetchCommand(
            tag="a",
            name="FETCH",
            sequence_set=SequenceSet(saved=True),
            attributes=(FetchAttribute("BINARY", Section((1, 2)), (0, 1024), peek=True),),
        ),
    ),
    (
        b"a STORE 2:4 +FLAGS (\\Deleted)\r\n",
        c.StoreCommand(
            tag="a", name="STORE", sequence_set=seq("2:4"), action="add", flags=("\\Deleted",)
        ),
    ),
    (
        b"a UID STORE 1 (UNCHANGEDSINCE 320162338) -flags.silent \\Seen $Junk\r\n",
        c.StoreCommand(
            tag="a",
            name="STORE",
            uid=True,
            sequence_set=seq("1"),
            action="remove",
            silent=True,
            flags=("\\Seen", "$Junk"),
            unchangedsince=320162338,
        ),
    ),
    (
        b"a STORE 1 FLAGS ()\r\n",
        c.StoreCommand(tag="a", name="STORE", sequence_set=seq("1"), action="set", flags=()),
    ),
    (
        b"a COPY 2:4 MEETING\r\n",
        c.CopyCommand(tag="a", name="COPY", sequence_set=seq("2:4"), mailbox="MEETING"),
    ),
    (
        b"a UID MOVE 42:69 foo\r\n",
        c.MoveCommand(tag="a", name="MOVE", uid=True, sequence_set=seq("42:69"), mailbox="foo"),
    ),
    (
        b'a ID ("name" "sodr" "version" "19.34" "vendor" NIL)\r\n',
        c.IdCommand(
            tag="a",
            name="ID",
            params=(("name", "sodr"), ("version", "19.34"), ("vendor", None)),
        ),
    ),
    (b"a ID NIL\r\n", c.IdCommand(tag="a", name="ID", params=None)),
    (
        b"a ENABLE CONDSTORE qresync\r\n",
        c.EnableCommand(tag="a", name="ENABLE", capabilities=("CONDSTORE", "QRESYNC")),
    ),
    (b'a GETQUOTA ""\r\n', c.GetQuotaCommand(tag="a", name="GETQUOTA", root="")),
    (
        b"a GETQUOTAROOT INBOX\r\n",
        c.GetQuotaRootCommand(tag="a", name="GETQUOTAROOT", mailbox="INBOX"),
    ),
    (
        b'a SETQUOTA "" (STORAGE 512 message 10)\r\n',
        c.SetQuotaCommand(
            tag="a", name="SETQUOTA", root="", limits=(("STORAGE", 512), ("MESSAGE", 10))
        ),
    ),
    (
        b"a SORT (REVERSE DATE subject) UTF-8 ALL\r\n",
        c.SortCommand(
            tag="a",
            name="SORT",
            criteria=(
                c.SortCriterion(key="DATE", reverse=True),
                c.SortCriterion(key="SUBJECT"),
            ),
            charset="UTF-8",
            search=SearchAll(),
        ),
    ),
    (
        b"a UID SORT RETURN (COUNT) (ARRIVAL) US-ASCII UNSEEN\r\n",
        c.SortCommand(
            tag="a",
            name="SORT",
            uid=True,
            criteria=(c.SortCriterion(key="ARRIVAL"),),
            charset="US-ASCII",
            search=SearchFlag("\\Seen", False),
            return_options=("COUNT",),
        ),
    ),
    (
        b"a THREAD REFERENCES UTF-8 SINCE 5-MAR-2000\r\n",
        c.ThreadCommand(
            tag="a",
            name="THREAD",
            algorithm="REFERENCES",
            charset="UTF-8",
            search=SearchDate("INTERNALDATE", "SINCE", dt.date(2000, 3, 5)),
        ),
    ),
    (
        b"a ESEARCH IN (mailboxes (foo INBOX) subtree-one bar personal) RETURN (COUNT) DELETED\r\n",
        c.EsearchCommand(
            tag="a",
            name="ESEARCH",
            criteria=SearchFlag("\\Deleted"),
            sources=(
                ("mailboxes", ("foo", "INBOX")),
                ("subtree-one", ("bar",)),
                ("personal", ()),
            ),
            return_options=("COUNT",),
        ),
    ),
    (
        b'a GETMETADATA (MAXSIZE 1024 DEPTH infinity) "" (/shared/comment /private/x)\r\n',
        c.GetMetadataCommand(
            tag="a",
            name="GETMETADATA",
            mailbox="",
            entries=("/shared/comment", "/private/x"),
            maxsize=1024,
            depth="infinity",
        ),
    ),
    (
        b"a GETMETADATA INBOX /shared/comment\r\n",
        c.GetMetadataCommand(
            tag="a", name="GETMETADATA", mailbox="INBOX", entries=("/shared/comment",)
        ),
    ),
    (
        b'a SETMETADATA INBOX (/shared/comment "hi" /private/x NIL /shared/b ~{2+}\r\n\x00\x01)\r\n',
        c.SetMetadataCommand(
            tag="a",
            name="SETMETADATA",
            mailbox="INBOX",
            entries=(
                ("/shared/comment", b"hi"),
                ("/private/x", None),
                ("/shared/b", b"\x00\x01"),
            ),
        ),
    ),
    (
        b"a NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) messageexpunge)) "
        b"(subtree (Lists INBOX) NONE) (personal (MailboxName))\r\n",
        c.NotifyCommand(
            tag="a",
            name="NOTIFY",
            status=True,
            groups=(
                c.NotifyEventGroup(
                    filter="selected",
                    events=(
                        c.NotifyEvent(
                            name="MessageNew",
                            fetch_attributes=(FetchAttribute("UID"), FetchAttribute("FLAGS")),
                        ),
                        c.NotifyEvent(name="MessageExpunge"),
                    ),
                ),
                c.NotifyEventGroup(filter="subtree", mailboxes=("Lists", "INBOX")),
                c.NotifyEventGroup(filter="personal", events=(c.NotifyEvent(name="MailboxName"),)),
            ),
        ),
    ),
    (b"a notify none\r\n", c.NotifyCommand(tag="a", name="NOTIFY", none=True)),
    (b"a COMPRESS deflate\r\n", c.CompressCommand(tag="a", name="COMPRESS", algorithm="DEFLATE")),
    (b"a noop\n", c.NoopCommand(tag="a", name="NOOP")),  # bare LF is accepted
    (b"a RESETKEY\r\n", c.ResetKeyCommand(tag="a", name="RESETKEY")),
    (
        b"a RESETKEY INBOX internal\r\n",
        c.ResetKeyCommand(tag="a", name="RESETKEY", mailbox="INBOX", mechanisms=("INTERNAL",)),
    ),
    (
        b'a GENURLAUTH "imap://u@h/INBOX/;UID=1;URLAUTH=anonymous" INTERNAL\r\n',
        c.GenUrlAuthCommand(
            tag="a",
            name="GENURLAUTH",
            requests=(("imap://u@h/INBOX/;UID=1;URLAUTH=anonymous", "INTERNAL"),),
        ),
    ),
    (
        b'a URLFETCH imap://u@h/X/;UID=1 ("imap://u@h/Y/;UID=2" BINARY BODYPARTSTRUCTURE)\r\n',
        c.UrlFetchCommand(
            tag="a",
            name="URLFETCH",
            urls=(
                ("imap://u@h/X/;UID=1", ()),
                ("imap://u@h/Y/;UID=2", ("BINARY", "BODYPARTSTRUCTURE")),
            ),
        ),
    ),
    (
        b'a APPEND INBOX (\\Seen) CATENATE (URL "/INBOX/;UID=1" TEXT {3+}\r\nabc TEXT ~{1}\r\n'
        b"\x00) {2}\r\nhi\r\n",
        c.AppendCommand(
            tag="a",
            name="APPEND",
            mailbox="INBOX",
            messages=(
                c.AppendMessage(
                    index=0,
                    flags=("\\Seen",),
                    catenate=(
                        c.CatenatePart(url="/INBOX/;UID=1"),
                        c.CatenatePart(data=b"abc", size=3, stream_index=-1),
                        c.CatenatePart(data=b"\x00", size=1, stream_index=-2, binary=True),
                    ),
                ),
                c.AppendMessage(index=1, size=2, data=b"hi"),
            ),
        ),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), GOLDEN, ids=[g[0][:40].decode("latin-1") for g in GOLDEN]
)
def test_golden(data: bytes, expected: ParserEvent) -> None:
    events = [e for e in parse_all(data) if not isinstance(e, NeedContinuation)]
    assert events == [expected]


def test_every_rfc3501_command_is_covered() -> None:
    names = {type(e).__name__ for _, e in GOLDEN}
    for cls in c.__all__:
        if cls.endswith("Command") and cls != "Command":
            assert cls in names, cls


def pipeline() -> tuple[bytes, list[ParserEvent]]:
    """Every golden command back to back (with the lines IDLE and AUTHENTICATE expect)."""
    data = b""
    expected: list[ParserEvent] = []
    for raw, event in GOLDEN:
        data += raw
        expected.append(event)
        if isinstance(event, c.IdleCommand):
            data += b"DONE\r\n"
            expected.append(IdleDone(ok=True))
        elif isinstance(event, c.AuthenticateCommand) and event.initial_response is None:
            data += b"=\r\n"
            expected.append(AuthenticateLine(line=b"="))
    return data, expected


def test_pipelined_commands_in_one_feed() -> None:
    data, expected = pipeline()
    events = [e for e in parse_all(data) if not isinstance(e, NeedContinuation)]
    assert events == expected


def test_byte_by_byte_equals_random_splits() -> None:
    import random

    data, _ = pipeline()
    whole = merge_chunks(drive(ImapParser(), [data]))
    rnd = random.Random(7)
    for _ in range(20):
        cuts = sorted(rnd.sample(range(1, len(data)), 30))
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert merge_chunks(drive(ImapParser(), parts)) == whole


def test_fetch_macros_and_body() -> None:
    ev = one(b"a FETCH 1 FULL\r\n")
    assert isinstance(ev, c.FetchCommand)
    assert ev.macro == "FULL"
    assert [a.name for a in ev.attributes] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
    ]
    ev = one(b"a FETCH 1 ALL\r\n")
    assert isinstance(ev, c.FetchCommand)
    assert [a.name for a in ev.attributes][-1] == "ENVELOPE"


def test_search_charset_unsupported_is_no_badcharset() -> None:
    ev = one(b"a SEARCH CHARSET KOI8-R TEXT x\r\n")
    assert ev == ProtocolError(
        tag="a",
        message="Unsupported charset KOI8-R",
        code="BADCHARSET (UTF-8 US-ASCII)",
        status="NO",
        command="SEARCH",
    )


def test_search_with_configured_charset_decodes() -> None:
    ev = one(b'a SEARCH CHARSET ISO-8859-1 SUBJECT "caf\xe9"\r\n', charsets=("UTF-8", "ISO-8859-1"))
    assert isinstance(ev, c.SearchCommand)
    assert ev.criteria == SearchHeader("SUBJECT", "café")


# -- literal flows ----------------------------------------------------------------------------


def test_sync_literal_needs_continuation_and_pauses() -> None:
    p = ImapParser()
    events = p.feed(b"a LOGIN {4}\r\nfred")
    assert events == [NeedContinuation(tag="a", size=4, command="LOGIN")]
    assert p.paused
    assert p.feed(b" {3}\r\n") == []  # held while paused
    events = p.accept_literal()
    assert events == [NeedContinuation(tag="a", size=3, command="LOGIN")]
    assert p.accept_literal() == []
    assert p.feed(b"abc\r\n") == [
        c.LoginCommand(tag="a", name="LOGIN", username="fred", password="abc")
    ]
    assert not p.paused


def test_append_continuation_carries_mailbox() -> None:
    p = ImapParser()
    events = p.feed(b"a APPEND Drafts (\\Draft) {10}\r\n")
    assert events == [
        NeedContinuation(tag="a", size=10, command="APPEND", append=True, mailbox="Drafts")
    ]


def test_reject_literal_drops_command() -> None:
    p = ImapParser()
    assert p.feed(b"a APPEND nosuch {10}\r\n")[0] == NeedContinuation(
        tag="a", size=10, command="APPEND", append=True, mailbox="nosuch"
    )
    assert p.reject_literal() == []
    assert p.feed(b"b NOOP\r\n") == [c.NoopCommand(tag="b", name="NOOP")]


def test_reject_literal_then_pipelined_data_is_a_new_command() -> None:
    p = ImapParser()
    p.feed(b"a APPEND nosuch {10}\r\nb NOOP\r\n")
    assert p.reject_literal() == [c.NoopCommand(tag="b", name="NOOP")]


def test_literal_minus_allows_4096_nonsync() -> None:
    data = b"a LOGIN fred {4096+}\r\n" + b"x" * 4096 + b"\r\n"
    ev = one(data, literal_plus=False)
    assert isinstance(ev, c.LoginCommand)
    assert ev.password == "x" * 4096


def test_literal_minus_over_4096_nonsync_closes() -> None:
    p = ImapParser(literal_plus=False)
    events = p.feed(b"a LOGIN fred {4097+}\r\n" + b"x" * 10)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionClose)
    assert events[0].tag == "a"
    assert events[0].code == "TOOBIG"
    assert p.closed
    assert p.feed(b"b NOOP\r\n") == []


def test_literal_minus_over_4096_sync_is_fine() -> None:
    p = ImapParser(literal_plus=False)
    assert p.feed(b"a APPEND INBOX {5000}\r\n") == [
        NeedContinuation(tag="a", size=5000, command="APPEND", append=True, mailbox="INBOX")
    ]


def test_append_over_appendlimit_sync_is_no_toobig_and_parser_goes_on() -> None:
    events = parse_all(b"a APPEND INBOX {101}\r\nb NOOP\r\n", append_limit=100)
    assert events == [
        LiteralTooBig(
            tag="a",
            message="Message too large (APPENDLIMIT=100)",
            code="TOOBIG",
            status="NO",
            command="APPEND",
            size=101,
            limit=100,
        ),
        c.NoopCommand(tag="b", name="NOOP"),
    ]
    assert isinstance(events[0], ProtocolError)


def test_append_over_appendlimit_nonsync_closes() -> None:
    events = parse_all(b"a APPEND INBOX {101+}\r\n" + b"x" * 101 + b"\r\n", append_limit=100)
    assert events == [
        ConnectionClose(tag="a", message="Message too large (APPENDLIMIT=100)", code="TOOBIG")
    ]


def test_non_append_literal_over_max_is_bad() -> None:
    events = parse_all(b"a LOGIN {70000}\r\nb NOOP\r\n")
    assert events == [
        ProtocolError(
            tag="a",
            message="Literal too large (max 65536 octets)",
            code="TOOBIG",
            command="LOGIN",
        ),
        c.NoopCommand(tag="b", name="NOOP"),
    ]


def test_non_append_literal_over_max_nonsync_closes() -> None:
    events = parse_all(b"a LOGIN {70000+}\r\n")
    assert len(events) == 1 and isinstance(events[0], ConnectionClose)


def test_inline_total_bound() -> None:
    p_kw = {"max_literal_size": 100, "max_inline_total": 150}
    data = b"a LOGIN {100+}\r\n" + b"u" * 100 + b" {60}\r\nb NOOP\r\n"
    events = parse_all(data, **p_kw)
    assert isinstance(events[0], ProtocolError) and events[0].code == "TOOBIG"
    assert events[1] == c.NoopCommand(tag="b", name="NOOP")


def test_big_append_streams_and_is_never_held() -> None:
    body = bytes(range(256)) * 1000  # 256000 octets
    p = ImapParser(append_inline_threshold=1000)
    header = b'a APPEND INBOX (\\Seen) "01-Jan-2024 00:00:00 +0000" {%d}\r\n' % len(body)
    events = p.feed(header)
    assert events == [
        NeedContinuation(tag="a", size=len(body), command="APPEND", append=True, mailbox="INBOX")
    ]
    events = p.accept_literal()
    start = LiteralStart(
        tag="a",
        command="APPEND",
        index=0,
        size=len(body),
        mailbox="INBOX",
        flags=("\\Seen",),
        internal_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(0))),
    )
    assert events == [start]
    got = bytearray()
    for i in range(0, len(body), 4096):
        for ev in p.feed(body[i : i + 4096]):
            assert isinstance(ev, LiteralChunk | LiteralEnd)
            if isinstance(ev, LiteralChunk):
                got += ev.data
        assert p.buffered_bytes < 70000
    assert bytes(got) == body
    events = p.feed(b"\r\n")
    assert events == [
        c.AppendCommand(
            tag="a",
            name="APPEND",
            mailbox="INBOX",
            messages=(
                c.AppendMessage(
                    index=0,
                    flags=("\\Seen",),
                    internal_date=start.internal_date,
                    size=len(body),
                    data=None,
                    streamed=True,
                ),
            ),
        )
    ]


def test_multiappend_streams_each_big_message() -> None:
    data = b"a APPEND INBOX {5+}\r\nsmall (\\Seen) {20+}\r\n" + b"B" * 20 + b" {3}\r\nend\r\n"
    events = parse_all(data, append_inline_threshold=10)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "LiteralStart",
        "LiteralChunk",
        "LiteralEnd",
        "NeedContinuation",
        "AppendCommand",
    ]
    start = events[0]
    assert isinstance(start, LiteralStart) and start.index == 1 and start.flags == ("\\Seen",)
    chunk = events[1]
    assert isinstance(chunk, LiteralChunk) and chunk.data == b"B" * 20
    cmd = events[-1]
    assert isinstance(cmd, c.AppendCommand)
    assert [(m.index, m.data, m.streamed) for m in cmd.messages] == [
        (0, b"small", False),
        (1, None, True),
        (2, b"end", False),
    ]


def test_multiappend_bad_later_message_reports_error_after_stream() -> None:
    data = b"a APPEND INBOX {20+}\r\n" + b"B" * 20 + b" junk {3+}\r\nabc\r\nb NOOP\r\n"
    events = parse_all(data, append_inline_threshold=10)
    assert [type(e).__name__ for e in events] == [
        "LiteralStart",
        "LiteralChunk",
        "LiteralEnd",
        "ProtocolError",
        "NoopCommand",
    ]
    err = events[3]
    assert isinstance(err, ProtocolError) and err.tag == "a"


def test_literal8_outside_binary_position_is_bad() -> None:
    events = parse_all(b"a LOGIN ~{3}\r\nb NOOP\r\n")
    assert events == [
        ProtocolError(tag="a", message="literal8 is not allowed here", command="LOGIN"),
        c.NoopCommand(tag="b", name="NOOP"),
    ]


def test_utf8_append_needs_literal8() -> None:
    events = parse_all(b"a APPEND INBOX UTF8 ({3+}\r\nabc)\r\n")
    assert len(events) == 1
    assert isinstance(events[0], ProtocolError)


def test_zero_length_sync_literal() -> None:
    events = parse_all(b'a LOGIN {0}\r\n ""\r\n')
    assert events[-1] == c.LoginCommand(tag="a", name="LOGIN", username="", password="")


# -- errors keep the parser usable ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "tag", "message"),
    [
        (b"+ NOOP", None, "Invalid tag"),
        (b"a", "a", "Missing command name"),
        (b"a FOO", "a", "Unknown command FOO"),
        (b"a UID NOOP", "a", "Unknown command UID NOOP"),
        (b"a NOOP extra", "a", "Unexpected extra arguments"),
        (b"a SELECT", "a", "Missing argument"),
        (b"a SELECT  INBOX", "a", "Expected mailbox name"),
        (b"a SELECT INBOX (FOO)", "a", "Unknown SELECT parameter FOO"),
        (b"a FETCH 0 FLAGS", "a", "Invalid sequence set"),
        (b"a FETCH 1:2:3 FLAGS", "a", "Invalid sequence set"),
        (b"a FETCH 4294967296 FLAGS", "a", "Invalid sequence set"),
        (b"a FETCH 1 (FLAGS", "a", "Missing ')'"),
        (b"a FETCH 1 ()", "a", "Expected a fetch attribute"),
        (b"a FETCH 1 BODY[MIME]", "a", "MIME needs a part number"),
        (b"a FETCH 1 BINARY[HEADER]", "a", "BINARY takes only a part number"),
        (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "a", "Expected header field name"),
        (b"a FETCH 1 BODY[]<0.0>", "a", "Number out of range"),
        (b"a FETCH 1 FLAGS (VANISHED)", "a", "VANISHED needs UID FETCH and CHANGEDSINCE"),
        (b"a STORE 1 FLAGS (\\Recent)", "a", "Invalid system flag \\Recent"),
        (b"a STORE 1 XFLAGS (\\Seen)", "a", "Invalid STORE item XFLAGS"),
        (b'a APPEND INBOX "31-Feb-2020 00:00:00 +0000" {1}', "a", "Invalid date-time"),
        (b"a SEARCH BEFORE 1-Foo-2020", "a", "Invalid date"),
        (b"a SEARCH FOO", "a", "Unknown search key FOO"),
        (b"a SEARCH", "a", "Missing argument"),
        (b"a SEARCH ()", "a", "Invalid search key"),
        (b"a SEARCH OR SEEN", "a", "Missing argument"),
        (b'a LIST (RECURSIVEMATCH) "" *', "a", "RECURSIVEMATCH needs another selection option"),
        (b'a LIST (FOO) "" *', "a", "Unknown LIST selection option FOO"),
        (b"a STATUS INBOX ()", "a", "Empty STATUS item list"),
        (b"a STATUS INBOX (FOO)", "a", "Unknown STATUS item FOO"),
        (b"a AUTHENTICATE PLAIN !!", "a", "Invalid SASL initial response"),
        (b"a AUTHENTICATE PLAIN AGZ", "a", "Invalid base64 in SASL initial response"),
        (b'a LOGIN "unterminated', "a", "Unterminated quoted string"),
        (b'a LOGIN "bad\\escape" x', "a", "Invalid escape in quoted string"),
        (b"a SORT () UTF-8 ALL", "a", "Empty sort criterion list"),
        (b"a SORT (REVERSE) UTF-8 ALL", "a", "REVERSE without a sort key"),
        (b"a SELECT INBOX (QRESYNC (1 2 1:*))", "a", "'*' is not allowed in known-uids"),
        (b"a COPY $x INBOX", "a", "Expected a space"),
        (b"a COPY 1,,2 INBOX", "a", "Invalid sequence set"),
    ],
)
def test_errors_are_bad_and_parser_goes_on(line: bytes, tag: str | None, message: str) -> None:
    events = parse_all(line + b"\r\nz NOOP\r\n")
    assert len(events) == 2, events
    err = events[0]
    assert isinstance(err, ProtocolError)
    assert (err.tag, err.message, err.status) == (tag, message, "BAD")
    assert events[1] == c.NoopCommand(tag="z", name="NOOP")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"a SELECT &Jjo", "unterminated '&' run"),
        (b"a SELECT &AGE-", "printable US-ASCII encoded in base64"),
        (b'a SELECT "\xff"', "character outside printable US-ASCII"),
        (b'a CREATE "bad&name"', "unterminated '&' run"),
    ],
)
def test_invalid_mutf7_names_are_no_and_parser_goes_on(line: bytes, message: str) -> None:
    # The command is well formed, only the name is unusable: NO (as Dovecot), not BAD.
    events = parse_all(line + b"\r\nz NOOP\r\n")
    assert len(events) == 2, events
    err = events[0]
    assert isinstance(err, ProtocolError)
    assert (err.tag, err.status) == ("a", "NO")
    assert err.message == f"Invalid mailbox name: not valid mUTF-7 ({message})"
    assert events[1] == c.NoopCommand(tag="z", name="NOOP")


def test_error_events_render_their_answer() -> None:
    (err,) = ImapParser().feed(b"a SEARCH CHARSET KOI8-R ALL\r\n")
    assert isinstance(err, ProtocolError)
    assert err.response() == b"a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset KOI8-R\r\n"
    (err,) = ImapParser().feed(b"+\r\n")
    assert isinstance(err, ProtocolError)
    assert err.response() == b"* BAD Invalid tag\r\n"
    (close,) = ImapParser(append_limit=1).feed(b"a APPEND INBOX {2+}\r\n")
    assert isinstance(close, ConnectionClose)
    assert close.response() == (
        b"a BAD [TOOBIG] Message too large (APPENDLIMIT=1)\r\n"
        b"* BYE Message too large (APPENDLIMIT=1)\r\n"
    )


def test_empty_line_is_untagged_bad() -> None:
    assert parse_all(b"\r\na NOOP\r\n") == [
        ProtocolError(tag=None, message="Empty command line"),
        c.NoopCommand(tag="a", name="NOOP"),
    ]


def test_nesting_bound() -> None:
    deep = b"a SEARCH " + b"(" * 40 + b"ALL" + b")" * 40 + b"\r\n"
    ev = one(deep)
    assert isinstance(ev, ProtocolError)
    assert "nested" in ev.message
    ok = b"a SEARCH " + b"(" * 10 + b"ALL" + b")" * 10 + b"\r\n"
    assert isinstance(one(ok), c.SearchCommand)


def test_search_operator_depth_bound_without_recursion_error() -> None:
    ev = one(b"a SEARCH " + b"NOT " * 5000 + b"ALL\r\n")
    assert isinstance(ev, ProtocolError)
    assert "nested too deeply" in ev.message
    ev = one(b"a SEARCH " + b"OR " * 90 + b"ALL" + b" SEEN" * 90 + b"\r\n")
    assert isinstance(ev, c.SearchCommand)


def test_argument_count_bound() -> None:
    ev = one(b"a SEARCH" + b" ALL" * 50 + b"\r\n", max_args=20)
    assert isinstance(ev, ProtocolError)
    assert ev.message == "Too many arguments (more than 20)"


def test_literal_count_bound() -> None:
    data = b"a SETMETADATA INBOX (" + b"/shared/x {1+}\r\nv " * 5 + b"/shared/y NIL)\r\nb NOOP\r\n"
    events = parse_all(data, max_literals=3)
    assert isinstance(events[0], ProtocolError)
    assert events[0].message == "Too many literals (more than 3)"
    assert events[-1] == c.NoopCommand(tag="b", name="NOOP")


def test_nonsync_literal_of_bad_command_is_skipped_not_executed() -> None:
    # The literal's data looks like a command; it must never run.
    data = b"a FETCH {14+}\r\nb DELETE INBOX\r\nc NOOP\r\n"
    events = parse_all(data)
    assert events == [
        ProtocolError(tag="a", message="Expected a sequence set", command="FETCH"),
        c.NoopCommand(tag="c", name="NOOP"),
    ]


def test_sync_literal_of_bad_command_gets_no_continuation() -> None:
    p = ImapParser()
    events = p.feed(b"a FETCH {14}\r\n")
    assert events == [ProtocolError(tag="a", message="Expected a sequence set", command="FETCH")]
    assert not p.paused


def test_literal_marker_inside_quoted_string_is_not_a_literal() -> None:
    for marker in (b"{3}", b"{3+}"):
        events = parse_all(b'a LOGIN "foo ' + marker + b"\r\nb NOOP\r\n")
        assert events == [
            ProtocolError(tag="a", message="Unterminated quoted string", command="LOGIN"),
            c.NoopCommand(tag="b", name="NOOP"),
        ]


def test_huge_literal_size_is_bad_or_closes() -> None:
    events = parse_all(b"a LOGIN {99999999999999999999}\r\nb NOOP\r\n")
    assert events[0] == ProtocolError(tag="a", message="Literal size out of range", command="LOGIN")
    assert events[1] == c.NoopCommand(tag="b", name="NOOP")
    events = parse_all(b"a LOGIN {99999999999999999999+}\r\nb NOOP\r\n")
    assert events == [ConnectionClose(tag="a", message="Literal size out of range")]


# -- line length ------------------------------------------------------------------------------


def test_line_too_long_is_bad_and_resynchronises() -> None:
    data = b"a SEARCH " + b"ALL " * 100 + b"\r\nb NOOP\r\n"
    events = parse_all(data, max_line_length=100)
    assert events == [
        ProtocolError(
            tag="a",
            message="Command line too long (imap_max_line_length=100)",
            command="SEARCH",
        ),
        c.NoopCommand(tag="b", name="NOOP"),
    ]


def test_line_too_long_with_nonsync_literal_skips_its_data() -> None:
    data = b"a SEARCH " + b"ALL " * 100 + b"TEXT {14+}\r\nb DELETE INBOX\r\nc NOOP\r\n"
    events = parse_all(data, max_line_length=100)
    assert [type(e).__name__ for e in events] == ["ProtocolError", "NoopCommand"]
    assert events[1] == c.NoopCommand(tag="c", name="NOOP")


def test_line_limit_counts_all_lines_of_a_command() -> None:
    data = b"a LOGIN {3+}\r\nabc " + b"x" * 200 + b"\r\nb NOOP\r\n"
    events = parse_all(data, max_line_length=100)
    assert isinstance(events[0], ProtocolError) and events[0].tag == "a"
    assert events[1] == c.NoopCommand(tag="b", name="NOOP")


def test_unterminated_line_is_bounded() -> None:
    p = ImapParser(max_line_length=1000)
    events: list[ParserEvent] = []
    for _ in range(1000):
        events += p.feed(b"x" * 100)
        assert p.buffered_bytes <= 1100
    assert [type(e).__name__ for e in events] == ["ProtocolError"]
    assert p.feed(b"\r\na NOOP\r\n") == [c.NoopCommand(tag="a", name="NOOP")]


def test_exact_line_limit_is_accepted() -> None:
    line = b"a LOGIN u " + b"p" * 90
    assert len(line) == 100
    assert isinstance(one(line + b"\r\n", max_line_length=100), c.LoginCommand)
    assert isinstance(one(line + b"p\r\n", max_line_length=100), ProtocolError)


# -- pauses: IDLE, AUTHENTICATE, STARTTLS, COMPRESS, ENABLE -----------------------------------


def test_idle_done_flow_pipelined() -> None:
    assert parse_all(b"a IDLE\r\nDONE\r\nb NOOP\r\n") == [
        c.IdleCommand(tag="a", name="IDLE"),
        IdleDone(ok=True),
        c.NoopCommand(tag="b", name="NOOP"),
    ]


def test_idle_pauses_until_told() -> None:
    p = ImapParser()
    assert p.feed(b"a IDLE\r\ndone\r\n") == [c.IdleCommand(tag="a", name="IDLE")]
    assert p.paused
    assert p.expect_idle_done() == [IdleDone(ok=True)]


def test_idle_wrong_line() -> None:
    assert parse_all(b"a IDLE\r\nb NOOP\r\nc NOOP\r\n") == [
        c.IdleCommand(tag="a", name="IDLE"),
        IdleDone(ok=False),
        c.NoopCommand(tag="c", name="NOOP"),
    ]


def test_idle_refused_then_resume() -> None:
    p = ImapParser()
    p.feed(b"a IDLE\r\nb NOOP\r\n")
    assert p.resume() == [c.NoopCommand(tag="b", name="NOOP")]


def test_authenticate_exchange() -> None:
    p = ImapParser()
    assert p.feed(b"a AUTHENTICATE PLAIN\r\n") == [
        c.AuthenticateCommand(tag="a", name="AUTHENTICATE", mechanism="PLAIN")
    ]
    assert p.expect_raw_line() == []
    events = p.feed(b"AGZyZWQAc2VjcmV0\r\nb NOOP\r\n")
    assert events == [AuthenticateLine(line=b"AGZyZWQAc2VjcmV0")]
    line = events[0]
    assert isinstance(line, AuthenticateLine)
    assert line.decode() == b"\0fred\0secret"
    assert not line.cancelled
    assert p.paused
    assert p.resume() == [c.NoopCommand(tag="b", name="NOOP")]


def test_authenticate_cancel_and_bad_base64() -> None:
    p = ImapParser()
    p.feed(b"a AUTHENTICATE LOGIN\r\n")
    p.expect_raw_line()
    (ev,) = p.feed(b"*\r\n")
    assert isinstance(ev, AuthenticateLine) and ev.cancelled
    p.resume()
    p.feed(b"b AUTHENTICATE LOGIN\r\n")
    p.expect_raw_line()
    (ev,) = p.feed(b"not base64!\r\n")
    assert isinstance(ev, AuthenticateLine)
    with pytest.raises(ValueError):
        ev.decode()


def test_authenticate_line_too_long() -> None:
    p = ImapParser(max_line_length=50)
    p.feed(b"a AUTHENTICATE PLAIN\r\n")
    p.expect_raw_line()
    events = p.feed(b"A" * 100 + b"\r\nb NOOP\r\n")
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert p.resume() == [c.NoopCommand(tag="b", name="NOOP")]


def test_starttls_holds_injected_plaintext() -> None:
    p = ImapParser()
    assert p.feed(b"a STARTTLS\r\nb LOGIN evil pass\r\n") == [
        c.StartTlsCommand(tag="a", name="STARTTLS")
    ]
    assert p.take_buffered() == b"b LOGIN evil pass\r\n"
    assert p.resume() == []
    assert p.feed(b"c NOOP\r\n") == [c.NoopCommand(tag="c", name="NOOP")]


def test_compress_hands_back_following_bytes() -> None:
    p = ImapParser()
    assert p.feed(b"a COMPRESS DEFLATE\r\n\x78\x9c")[0] == c.CompressCommand(
        tag="a", name="COMPRESS", algorithm="DEFLATE"
    )
    assert p.take_buffered() == b"\x78\x9c"


def test_enable_utf8_switches_mailbox_decoding() -> None:
    p = ImapParser()
    events = p.feed(b'a ENABLE UTF8=ACCEPT\r\nb SELECT "Entw\xc3\xbcrfe"\r\n')
    assert events == [c.EnableCommand(tag="a", name="ENABLE", capabilities=("UTF8=ACCEPT",))]
    p.utf8 = True
    assert p.resume() == [c.SelectCommand(tag="b", name="SELECT", mailbox="Entwürfe")]
    # UTF-8 mode: '&' is an ordinary character
    assert p.feed(b"c SELECT a&b\r\n") == [c.SelectCommand(tag="c", name="SELECT", mailbox="a&b")]


def test_input_while_paused_is_bounded() -> None:
    p = ImapParser(max_line_length=100)
    p.feed(b"a APPEND INBOX {10}\r\n")
    assert p.paused
    events = p.feed(b"x" * 200)
    assert len(events) == 1 and isinstance(events[0], ConnectionClose)
    assert p.closed


def test_login_password_hidden_from_repr() -> None:
    ev = one(b"a LOGIN fred hunter2\r\n")
    assert "hunter2" not in repr(ev)


def test_login_keeps_8bit_octets() -> None:
    ev = one(b"a LOGIN fred p\xe4ss\r\n".replace(b"p\xe4ss", b'"p\xe4ss"'))
    assert isinstance(ev, c.LoginCommand)
    assert ev.password.encode("utf-8", "surrogateescape") == b"p\xe4ss"


def test_uid_display_name() -> None:
    ev = one(b"a UID FETCH 1 UID\r\n")
    assert isinstance(ev, c.FetchCommand)
    assert ev.display_name == "UID FETCH"


def test_protocol_import_rule() -> None:
    """proto/ imports nothing from asyncio, socket, ssl or storage."""
    import ast
    import pathlib

    import columba.proto.imap as pkg

    root = pathlib.Path(pkg.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"asyncio", "socket", "ssl"}, (path, name)
                assert not name.startswith("columba.storage"), (path, name)
