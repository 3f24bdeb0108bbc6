"""SORT/THREAD building blocks: RFC 5256 base subjects (with Dovecot's reading of the ABNF),
the i;unicode-casemap keys, address/date/message-id keys, the thread algorithms on the RFC's
shapes, the ESEARCH/PARTIAL encoding and the RETURN option grammar."""

from __future__ import annotations

import pytest

from columba.imap.cmd_search import esearch_line, ordered_set, partial_slice, saved_result
from columba.imap.cmd_sort import chunked_sorted, order_by_columns, sort_spec
from columba.imap.cmd_thread import (
    ThreadMessage,
    Tree,
    format_threads,
    orderedsubject,
    references,
    refs,
)
from columba.imap.sort_keys import (
    address_key,
    base_subject,
    compute_fields,
    display_key,
    extract_headers,
    first_message_id,
    message_ids,
    sent_date,
    titlecase_decomposed,
)
from columba.proto.imap import commands as c
from columba.proto.imap.events import ProtocolError
from columba.proto.imap.parser import ImapParser

# -- base subject ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        (b"hello", "HELLO", False),
        (b"Re: hello", "HELLO", True),
        (b"RE: Re: re: hello", "HELLO", True),
        (b"Fwd: hello", "HELLO", True),
        (b"Fw: hello", "HELLO", True),
        (b"hello (fwd)", "HELLO", True),
        (b"hello (fwd) (FWD)  ", "HELLO", True),
        (b"[Fwd: hello]", "HELLO", True),
        (b"[fwd: Re: [list] hello (fwd)]", "HELLO", True),
        (b"[list] hello", "HELLO", False),
        (b"[list] Re: hello", "HELLO", True),
        (b"Re: [list] hello", "HELLO", True),
        (b"Re [list]: hello", "HELLO", True),
        (b"[a][b] re: c", "C", True),
        (b"[a] [b]", "[B]", False),  # a blob is kept when nothing follows it
        (b"[only]", "[ONLY]", False),
        (b"Re:", "", True),
        (b"   ", "", False),
        (b"a \t  b\r\n c", "A B C", False),
        (b"Re:hello", "HELLO", True),
        (b"Ref: hello", "REF: HELLO", False),
        (b"=?utf-8?q?Re=3A_caf=C3=A9?=", "CAFE\u0301", True),
        (b"=?iso-8859-1?q?=E9t=E9?= (fwd)", "E\u0301TE\u0301", True),
    ],
)
def test_base_subject(subject: bytes, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_base_subject_missing_header() -> None:
    assert base_subject(None) == ("", False)


def test_titlecase_decomposed() -> None:
    assert titlecase_decomposed("abc xyz_[]") == "ABC XYZ_[]"
    assert titlecase_decomposed("é") == "E\u0301"  # titlecase, then canonical decomposition
    assert titlecase_decomposed("ﬁ") == "fi"  # compatibility decomposition, not titlecased
    assert titlecase_decomposed("ß") == "ß"  # no simple titlecase mapping
    assert titlecase_decomposed("ǆ") == "ǅ"  # titlecase letters are not decomposed
    assert titlecase_decomposed("Ａ") == "A"
    assert titlecase_decomposed("\uac01") == "\u1100\u1161\u11a8"  # Hangul syllable


def test_casemap_order_is_upper_case_order() -> None:
    # upper-casing puts "_" after the letters (Dovecot compares titlecased UTF-8)
    assert titlecase_decomposed("a") < titlecase_decomposed("_")
    assert titlecase_decomposed("é") > titlecase_decomposed("ez")


# -- addresses, dates, ids ---------------------------------------------------------------------


def test_address_keys() -> None:
    assert address_key(b'"Zed" <zed@a.com>, b@c') == "ZED"
    assert address_key(b"undisclosed-recipients:;") == "UNDISCLOSED-RECIPIENTS"
    assert address_key(b"") == ""
    assert address_key(None) == ""
    assert display_key(b'"Zed Z" <zed@a.com>') == "ZED Z"
    assert display_key(b"=?utf-8?q?=C3=89mile?= <e@b.com>") == "E\u0301MILE"
    assert display_key(b"bob@example.org") == "BOB@EXAMPLE.ORG"
    assert display_key(b"grp: a@b;") == "GRP"


def test_sent_date() -> None:
    assert sent_date(b"Mon, 7 Feb 1994 21:52:25 -0800") == 760686745
    assert sent_date(b"7 Feb 1994 21:52:25") == 760657945  # no zone: UTC
    assert sent_date(b"garbage") is None
    assert sent_date(None) is None
    assert sent_date(b"Thu, 1 Jan 1970 00:00:00 +0000") is None  # the epoch counts as none


def test_message_ids() -> None:
    assert message_ids("<a@b> <no-at> x <c @ d>") == ["a@b", "c@d"]
    assert message_ids('<"q x"@e> (comment) <f@g>') == ["q x@e", "f@g"]
    assert message_ids("") == []
    assert first_message_id(" <x@y> <z@w>") == "x@y"
    assert first_message_id("none") is None


def test_extract_and_compute_fields() -> None:
    block = (
        b"Subject: Re: one\r\n two\r\nFrom: A <a@x>\r\nSubject: second\r\n"
        b"References: <r1@x>\r\n <r2@x>\r\nIn-Reply-To: <i@x>\r\nMessage-Id: <m@x>\r\n\r\n"
    )
    assert extract_headers(block, (b"subject", b"from")) == {
        b"subject": b"Re: one two",
        b"from": b"A <a@x>",
    }
    subject, thread, frm = compute_fields(block, ["subject", "thread", "from"])
    assert subject == ("ONE TWO", True)  # the first Subject header
    assert thread == ("m@x", ("r1@x", "r2@x"))  # References win over In-Reply-To
    assert frm == "A"
    (thread,) = compute_fields(b"In-Reply-To: junk <i@x> <j@x>\r\n\r\n", ["thread"])
    assert thread == (None, ("i@x",))


# -- sorting -----------------------------------------------------------------------------------


def test_order_by_columns_ties_and_reverse() -> None:
    uids = [1, 2, 3, 4]
    subjects = (["B", "A", "B", "A"], False)
    dates = ([10, 20, 10, 5], True)
    assert order_by_columns([subjects], uids) == [2, 4, 1, 3]
    assert order_by_columns([subjects, dates], uids) == [2, 4, 1, 3]
    assert order_by_columns([dates], uids) == [2, 1, 3, 4]  # ties stay in UID order
    assert order_by_columns([(["B", "A", "B", "A"], True)], uids) == [1, 3, 2, 4]


def test_chunked_sort_is_a_stable_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    from columba.imap import cmd_sort

    monkeypatch.setattr(cmd_sort, "CHUNK", 7)
    items = [(i * 7919) % 31 for i in range(100)]
    assert chunked_sorted(list(enumerate(items)), key=lambda p: p[1]) == sorted(
        enumerate(items), key=lambda p: p[1]
    )


def test_sort_spec_drops_repeated_keys() -> None:
    crits = (
        c.SortCriterion(key="DATE"),
        c.SortCriterion(key="DATE", reverse=True),
        c.SortCriterion(key="SUBJECT", reverse=True),
    )
    assert sort_spec(crits) == (("DATE", False), ("SUBJECT", True))


# -- threads -----------------------------------------------------------------------------------


def _m(uid: int, date: int, mid: str | None, refs_: tuple[str, ...] = (), *, subject: str = "S",
       reply: bool = False) -> ThreadMessage:  # fmt: skip
    return ThreadMessage(uid, date, mid, refs_, subject, reply)


def test_format_threads_rfc_shape() -> None:
    # RFC 5256 §4: (2)(3 6 (4 23)(44 7 96))
    trees = [
        Tree(2),
        Tree(3, [Tree(6, [Tree(4, [Tree(23)]), Tree(44, [Tree(7, [Tree(96)])])])]),
    ]
    assert format_threads(trees) == "(2)(3 6 (4 23)(44 7 96))"
    assert format_threads([Tree(0, [Tree(3), Tree(5)])]) == "((3)(5))"
    assert format_threads([Tree(3, [Tree(6)])], {3: 1, 6: 2}) == "(1 2)"
    assert format_threads([]) == ""


def test_references_links_dummies_and_dates() -> None:
    msgs = [
        _m(1, 100, "a@x", subject="A"),
        _m(2, 300, "b@x", ("a@x",), subject="A", reply=True),
        _m(3, 200, "c@x", ("a@x",), subject="A", reply=True),
        _m(4, 50, "d@x", ("gone@x",), subject="D"),
        _m(5, 60, "e@x", ("gone@x",), subject="E"),
        _m(6, 10, "f@x", ("lost@x",), subject="F"),
    ]
    # 4 and 5 share a missing parent (a dummy with two children); 6's dummy has one child
    assert format_threads(references(msgs)) == "(6)((4)(5))(1 (3)(2))"


def test_references_merges_subjects() -> None:
    msgs = [
        _m(1, 100, "a@x", subject="TOPIC"),
        _m(2, 200, "b@x", subject="TOPIC", reply=True),
        _m(3, 300, "c@x", subject="TOPIC"),
    ]
    # a reply joins the non-reply; two non-replies get a dummy parent
    assert format_threads(references(msgs)) == "((1 2)(3))"


def test_references_loops_and_duplicates() -> None:
    msgs = [
        _m(1, 1, "a@x", ("b@x",), subject="L1"),
        _m(2, 2, "b@x", ("a@x",), subject="L2"),
        _m(3, 3, "a@x", subject="L3"),  # duplicate id: a node of its own
    ]
    assert format_threads(references(msgs)) == "(2 1)(3)"


def test_refs_orders_by_newest_message() -> None:
    msgs = [
        _m(1, 100, "a@x", subject="A"),
        _m(2, 900, "b@x", ("a@x",), subject="A"),
        _m(3, 500, "c@x", subject="C"),
    ]
    assert format_threads(refs(msgs)) == "(3)(1 2)"
    assert format_threads(references(msgs)) == "(1 2)(3)"


def test_orderedsubject() -> None:
    msgs = [
        _m(1, 300, None, subject="B"),
        _m(2, 100, None, subject="A"),
        _m(3, 200, None, subject="B"),
        _m(4, 150, None, subject="A"),
        _m(5, 50, None, subject="A"),
        _m(6, 10, None, subject="C"),
    ]
    assert format_threads(orderedsubject(msgs)) == "(6)(5 (2)(4))(3 1)"


# -- ESEARCH encoding --------------------------------------------------------------------------


def test_partial_slice() -> None:
    items = [10, 11, 12, 13, 14]
    assert partial_slice((1, 2), items) == [10, 11]
    assert partial_slice((4, 100), items) == [13, 14]
    assert partial_slice((6, 9), items) == []
    assert partial_slice((-1, -2), items) == [13, 14]
    assert partial_slice((-5, -9), items) == [10]
    assert partial_slice((-6, -9), items) == []


def test_ordered_set_keeps_sort_order() -> None:
    assert ordered_set([2, 3, 4, 5, 1]) == "2:5,1"
    assert ordered_set([5, 4, 3]) == "5,4,3"
    assert ordered_set([7]) == "7"


def test_esearch_line() -> None:
    line = esearch_line("t1", False, {"MIN", "MAX", "ALL", "COUNT"}, None, [9, 10, 1],
                        sorted_order=True)  # fmt: skip
    assert line == b'* ESEARCH (TAG "t1") MIN 9 MAX 1 ALL 9:10,1 COUNT 3\r\n'
    line = esearch_line("t2", True, {"COUNT"}, (2, 4), [4, 8, 9, 10])
    assert line == b'* ESEARCH (TAG "t2") UID PARTIAL (2:4 8:10) COUNT 4\r\n'
    assert esearch_line("t3", False, set(), (5, 6), [1]) == (
        b'* ESEARCH (TAG "t3") PARTIAL (5:6 NIL)\r\n'
    )
    assert esearch_line("t4", False, {"ALL"}, None, []) == b'* ESEARCH (TAG "t4")\r\n'


def test_saved_result() -> None:
    uids = [5, 1, 3, 2]
    assert saved_result({"SAVE"}, None, uids) == uids
    assert saved_result({"SAVE", "MIN"}, None, uids) == [5]
    assert saved_result({"SAVE", "MIN", "COUNT"}, None, uids) == uids
    assert saved_result({"SAVE"}, (2, 3), uids) == [1, 3]
    assert saved_result({"SAVE", "MAX"}, (1, 1), uids) == [5, 2]


# -- grammar -----------------------------------------------------------------------------------


def _parse(line: bytes) -> object:
    (event,) = ImapParser().feed(line + b"\r\n")
    return event


def test_return_option_grammar() -> None:
    cmd = _parse(b"a UID SEARCH RETURN (PARTIAL -1:-100 UPDATE CONTEXT) ALL")
    assert isinstance(cmd, c.SearchCommand)
    assert cmd.partial == (-1, -100)
    assert cmd.return_options == ("PARTIAL", "UPDATE", "CONTEXT")
    cmd = _parse(b"a SORT RETURN (PARTIAL 9:3) (DATE) UTF-8 ALL")
    assert isinstance(cmd, c.SortCommand)
    assert cmd.partial == (3, 9)
    for bad in (
        b"a SEARCH RETURN (PARTIAL 1:5 ALL) ALL",
        b"a SEARCH RETURN (PARTIAL 0:5) ALL",
        b"a SEARCH RETURN (PARTIAL -1:5) ALL",
        b"a SEARCH RETURN (PARTIAL 1:*) ALL",
        b"a SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL",
        b"a SEARCH RETURN (UPDATE UPDATE) ALL",
        b"a CANCELUPDATE",
    ):
        event = _parse(bad)
        assert isinstance(event, ProtocolError) and event.status == "BAD", bad
    cancel = _parse(b'a CANCELUPDATE "b1" "b2"')
    assert isinstance(cancel, c.CancelUpdateCommand)
    assert cancel.tags == ("b1", "b2")
