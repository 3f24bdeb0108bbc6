"""SEARCH keys, FETCH attributes and IMAP dates in detail."""

from __future__ import annotations

import datetime as dt

import pytest

from columba.proto.imap import commands as c
from columba.proto.imap import dates
from columba.proto.imap.events import ProtocolError
from columba.proto.imap.fetch import FetchAttribute, Section
from columba.proto.imap.parser import ImapParser
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


@pytest.fixture(autouse=True)
def _strict_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImapParser, "_raise_internal_errors", True)


def search(keys: bytes) -> SearchKey:
    (ev,) = ImapParser().feed(b"t SEARCH " + keys + b"\r\n")
    assert isinstance(ev, c.SearchCommand), ev
    return ev.criteria


def search_error(keys: bytes) -> ProtocolError:
    (ev,) = ImapParser().feed(b"t SEARCH " + keys + b"\r\n")
    assert isinstance(ev, ProtocolError), ev
    return ev


D = dt.date(1994, 2, 1)


@pytest.mark.parametrize(
    ("keys", "ast"),
    [
        (b"ALL", SearchAll()),
        (b"ANSWERED", SearchFlag("\\Answered")),
        (b"BCC x", SearchHeader("BCC", "x")),
        (b"BEFORE 1-Feb-1994", SearchDate("INTERNALDATE", "BEFORE", D)),
        (b'BODY "a b"', SearchText("BODY", "a b")),
        (b"CC x", SearchHeader("CC", "x")),
        (b"DELETED", SearchFlag("\\Deleted")),
        (b"DRAFT", SearchFlag("\\Draft")),
        (b"FLAGGED", SearchFlag("\\Flagged")),
        (b"FROM x", SearchHeader("FROM", "x")),
        (b'HEADER Message-ID ""', SearchHeader("Message-ID", "")),
        (b"KEYWORD $Junk", SearchFlag("$Junk")),
        (b"LARGER 1000", SearchSize("LARGER", 1000)),
        (b"NEW", SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False)))),
        (b"NOT SEEN", SearchNot(SearchFlag("\\Seen"))),
        (b"OLD", SearchFlag("\\Recent", False)),
        (b'ON "01-Feb-1994"', SearchDate("INTERNALDATE", "ON", D)),
        (b"OR SEEN DRAFT", SearchOr(SearchFlag("\\Seen"), SearchFlag("\\Draft"))),
        (b"RECENT", SearchFlag("\\Recent")),
        (b"SEEN", SearchFlag("\\Seen")),
        (b"SENTBEFORE 1-feb-1994", SearchDate("SENTDATE", "BEFORE", D)),
        (b"SENTON 1-Feb-1994", SearchDate("SENTDATE", "ON", D)),
        (b"SENTSINCE 1-Feb-1994", SearchDate("SENTDATE", "SINCE", D)),
        (b"SINCE 1-Feb-1994", SearchDate("INTERNALDATE", "SINCE", D)),
        (b"SMALLER 5", SearchSize("SMALLER", 5)),
        (b"SUBJECT {3+}\r\nabc", SearchHeader("SUBJECT", "abc")),
        (b"TEXT x", SearchText("TEXT", "x")),
        (b"TO x", SearchHeader("TO", "x")),
        (b"UID 1:*", SearchSequence(SequenceSet.parse("1:*"), uid=True)),
        (b"UNANSWERED", SearchFlag("\\Answered", False)),
        (b"UNDELETED", SearchFlag("\\Deleted", False)),
        (b"UNDRAFT", SearchFlag("\\Draft", False)),
        (b"UNFLAGGED", SearchFlag("\\Flagged", False)),
        (b"UNKEYWORD foo", SearchFlag("foo", False)),
        (b"UNSEEN", SearchFlag("\\Seen", False)),
        (b"2,4:*", SearchSequence(SequenceSet.parse("2,4:*"))),
        (b"$", SearchSequence(SequenceSet(saved=True))),
        (b"UID $", SearchSequence(SequenceSet(saved=True), uid=True)),
        (b"(SEEN)", SearchFlag("\\Seen")),
        (b"(SEEN DRAFT)", SearchAnd((SearchFlag("\\Seen"), SearchFlag("\\Draft")))),
        (b"OLDER 3600", SearchWithin("OLDER", 3600)),
        (b"YOUNGER 60", SearchWithin("YOUNGER", 60)),
        (b"SAVEDBEFORE 1-Feb-1994", SearchDate("SAVEDATE", "BEFORE", D)),
        (b"SAVEDON 1-Feb-1994", SearchDate("SAVEDATE", "ON", D)),
        (b"SAVEDSINCE 1-Feb-1994", SearchDate("SAVEDATE", "SINCE", D)),
        (b"SAVEDATESUPPORTED", SearchSaveDateSupported()),
        (b"MODSEQ 20070105", SearchModSeq(20070105)),
        (
            b'MODSEQ "/flags/\\\\draft" all 620162338',
            SearchModSeq(620162338, "/flags/\\draft", "all"),
        ),
        (b"EMAILID M6d99ac3275bb4e", SearchObjectId("EMAILID", "M6d99ac3275bb4e")),
        (b"THREADID T64b478a75b7ea9", SearchObjectId("THREADID", "T64b478a75b7ea9")),
        (b"FUZZY SUBJECT x", SearchFuzzy(SearchHeader("SUBJECT", "x"))),
        (
            b"OR (FROM a TO b) NOT OR SEEN 1:3",
            SearchOr(
                SearchAnd((SearchHeader("FROM", "a"), SearchHeader("TO", "b"))),
                SearchNot(SearchOr(SearchFlag("\\Seen"), SearchSequence(SequenceSet.parse("1:3")))),
            ),
        ),
    ],
)
def test_search_keys(keys: bytes, ast: SearchKey) -> None:
    assert search(keys) == ast


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (b"LARGER x", "Expected a number"),
        (b"OLDER 0", "Number out of range"),
        (b"UID", "Missing argument"),
        (b'MODSEQ "/bad" all 1', "Invalid MODSEQ entry name"),
        (b'MODSEQ "/flags/x" most 1', "Invalid MODSEQ entry type"),
        (b"EMAILID a+b", "Invalid object id"),
        (b"(SEEN", "Missing ')'"),
        (b"SEEN)", "Expected a space"),
        (b"ALL*", "Invalid search key"),
        (b'SUBJECT "\xff"', "String is not valid in the given charset"),
        (b"ON 32-Jan-2000", "Invalid date"),
    ],
)
def test_search_errors(keys: bytes, message: str) -> None:
    assert search_error(keys).message == message


def test_search_charset_forms() -> None:
    (ev,) = ImapParser().feed(b't SEARCH CHARSET "US-ASCII" ALL\r\n')
    assert isinstance(ev, c.SearchCommand) and ev.charset == "US-ASCII"
    (ev,) = ImapParser().feed(b't SEARCH CHARSET UTF-8 SUBJECT "\xc3\xa9"\r\n')
    assert isinstance(ev, c.SearchCommand) and ev.criteria == SearchHeader("SUBJECT", "é")
    err = search_error(b"RETURN (FOO) ALL")
    assert err.message == "Unknown RETURN option FOO"


def test_sort_and_thread_charset_checked() -> None:
    (ev,) = ImapParser().feed(b"t SORT (DATE) BIG5 ALL\r\n")
    assert isinstance(ev, ProtocolError) and ev.status == "NO"
    assert ev.code == "BADCHARSET (UTF-8 US-ASCII)"


# -- FETCH ------------------------------------------------------------------------------------


def fetch(atts: bytes) -> tuple[FetchAttribute, ...]:
    (ev,) = ImapParser().feed(b"t FETCH 1 " + atts + b"\r\n")
    assert isinstance(ev, c.FetchCommand), ev
    return ev.attributes


@pytest.mark.parametrize(
    ("att", "expected", "response_name"),
    [
        (b"BODY[]", FetchAttribute("BODY", Section()), "BODY[]"),
        (
            b"body.peek[]<10.20>",
            FetchAttribute("BODY", Section(), (10, 20), peek=True),
            "BODY[]<10>",
        ),
        (b"BODY[HEADER]", FetchAttribute("BODY", Section((), "HEADER")), "BODY[HEADER]"),
        (b"BODY[TEXT]", FetchAttribute("BODY", Section((), "TEXT")), "BODY[TEXT]"),
        (b"BODY[1]", FetchAttribute("BODY", Section((1,))), "BODY[1]"),
        (b"BODY[1.2.3]", FetchAttribute("BODY", Section((1, 2, 3))), "BODY[1.2.3]"),
        (b"BODY[4.2.MIME]", FetchAttribute("BODY", Section((4, 2), "MIME")), "BODY[4.2.MIME]"),
        (b"BODY[3.HEADER]", FetchAttribute("BODY", Section((3,), "HEADER")), "BODY[3.HEADER]"),
        (
            b'BODY[2.header.fields.not (Subject "X-Y")]',
            FetchAttribute("BODY", Section((2,), "HEADER.FIELDS.NOT", ("Subject", "X-Y"))),
            "BODY[2.HEADER.FIELDS.NOT (Subject X-Y)]",
        ),
        (b"BINARY[]", FetchAttribute("BINARY", Section()), "BINARY[]"),
        (b"BINARY[1]<0.5>", FetchAttribute("BINARY", Section((1,)), (0, 5)), "BINARY[1]<0>"),
        (b"BINARY.SIZE[2]", FetchAttribute("BINARY.SIZE", Section((2,))), "BINARY.SIZE[2]"),
        (b"BODY", FetchAttribute("BODY"), "BODY"),
        (b"BODYSTRUCTURE", FetchAttribute("BODYSTRUCTURE"), "BODYSTRUCTURE"),
        (b"ENVELOPE", FetchAttribute("ENVELOPE"), "ENVELOPE"),
        (b"rfc822.header", FetchAttribute("RFC822.HEADER"), "RFC822.HEADER"),
        (b"MODSEQ", FetchAttribute("MODSEQ"), "MODSEQ"),
        (b"EMAILID", FetchAttribute("EMAILID"), "EMAILID"),
        (b"THREADID", FetchAttribute("THREADID"), "THREADID"),
        (b"SAVEDATE", FetchAttribute("SAVEDATE"), "SAVEDATE"),
        (b"PREVIEW", FetchAttribute("PREVIEW"), "PREVIEW"),
        (b"(PREVIEW (LAZY))", FetchAttribute("PREVIEW", lazy=True), "PREVIEW"),
    ],
)
def test_fetch_att(att: bytes, expected: FetchAttribute, response_name: str) -> None:
    (got,) = fetch(att)
    assert got == expected
    assert got.response_name() == response_name


def test_fetch_att_str_round_trips() -> None:
    src = b"(BODY.PEEK[1.HEADER.FIELDS (A B)]<0.9> BINARY[2] UID PREVIEW (LAZY))"
    atts = fetch(src)
    again = fetch(b"(" + " ".join(str(a) for a in atts).encode() + b")")
    assert again == atts


def test_sets_seen() -> None:
    seen = {
        str(a): a.sets_seen
        for a in fetch(
            b"(BODY[] BODY.PEEK[] BINARY[] BINARY.PEEK[] RFC822 RFC822.TEXT RFC822.HEADER "
            b"BODY ENVELOPE BINARY.SIZE[])"
        )
    }
    assert seen == {
        "BODY[]": True,
        "BODY.PEEK[]": False,
        "BINARY[]": True,
        "BINARY.PEEK[]": False,
        "RFC822": True,
        "RFC822.TEXT": True,
        "RFC822.HEADER": False,
        "BODY": False,
        "ENVELOPE": False,
        "BINARY.SIZE[]": False,
    }


@pytest.mark.parametrize(
    ("att", "message"),
    [
        (b"BODY[0]", "Invalid section part number"),
        (b"BODY[1.]", "Invalid section"),
        (b"BODY[FOO]", "Invalid section text FOO"),
        (b"BODY[HEADER.FIELDS (A:B)]", "Invalid header field name"),
        (b"BINARY.SIZE[1]<0.1>", "BINARY.SIZE takes no partial range"),
        (b"FLAGS[]", "Invalid fetch attribute FLAGS"),
        (b"FOO", "Invalid fetch attribute FOO"),
        (b"PREVIEW (FAST)", "Unknown PREVIEW modifier FAST"),
        (b"BODY[]<1>", "Expected '.'"),
    ],
)
def test_fetch_errors(att: bytes, message: str) -> None:
    (ev,) = ImapParser().feed(b"t FETCH 1 " + att + b"\r\n")
    assert isinstance(ev, ProtocolError)
    assert ev.message == message


# -- dates ------------------------------------------------------------------------------------


def test_datetime_forms() -> None:
    tz = dt.timezone(dt.timedelta(hours=-8))
    assert dates.parse_datetime(b"17-Jul-1996 02:44:25 -0800") == dt.datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=tz
    )
    assert dates.parse_datetime(" 7-jul-1996 02:44:60 +0000").second == 59
    assert dates.parse_datetime("7-Jul-1996 02:44:25 +0530").utcoffset() == dt.timedelta(
        hours=5, minutes=30
    )
    for bad in (
        "17-Jul-1996 24:00:00 +0000",
        "17-Jul-1996 02:44 +0000",
        "30-Feb-2000 00:00:00 +0000",
        "17-Jul-96 02:44:25 +0000",
        "17-Jul-1996 02:44:25 +0060",
        "17-Jul-1996",
    ):
        with pytest.raises(dates.DateError):
            dates.parse_datetime(bad)


def test_date_forms() -> None:
    assert dates.parse_date("1-Feb-1994") == dt.date(1994, 2, 1)
    assert dates.parse_date(b"01-FEB-1994") == dt.date(1994, 2, 1)
    for bad in ("1-Feb-94", "1 Feb 1994", "001-Feb-1994", "29-Feb-2001"):
        with pytest.raises(dates.DateError):
            dates.parse_date(bad)


def test_format() -> None:
    value = dt.datetime(
        2024, 3, 5, 6, 7, 8, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    )
    assert dates.format_datetime(value) == "05-Mar-2024 06:07:08 -0330"
    assert dates.parse_datetime(dates.format_datetime(value)) == value
    assert dates.format_datetime(dt.datetime(2024, 1, 1)) == "01-Jan-2024 00:00:00 +0000"
    assert dates.format_date(dt.date(2024, 3, 5)) == "5-Mar-2024"
