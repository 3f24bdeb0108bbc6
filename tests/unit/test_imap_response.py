"""Response encoder: string form choice, NIL, lists, status lines, codes, mailbox names."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from columba.proto.imap import response as r
from columba.proto.imap.lexer import Cursor
from columba.proto.imap.sequence import SequenceSet


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("hello", b'"hello"'),
        ("", b'""'),
        ('say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        ("caf\xe9", b"{5}\r\ncaf\xc3\xa9"),
        (b"\x00nul", b"{4}\r\n\x80nul"),  # NUL can't be in a plain literal: 0x80 as Dovecot
        ("x" * 1024, b'"' + b"x" * 1024 + b'"'),
        ("x" * 1025, b"{1025}\r\n" + b"x" * 1025),
    ],
)
def test_encode_string(value: str | bytes, wire: bytes) -> None:
    assert r.encode_string(value) == wire


def test_utf8_quoted_when_enabled() -> None:
    assert r.encode_string("café", utf8=True) == b'"caf\xc3\xa9"'
    assert r.encode_string(b"caf\xe9", utf8=True) == b"{4}\r\ncaf\xe9"  # not UTF-8


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("a]b", b"a]b"),
        ("a b", b'"a b"'),
        ("nil", b'"nil"'),
        ("", b'""'),
        ("%", b'"%"'),
        ("x{", b'"x{"'),
    ],
)
def test_encode_astring(value: str, wire: bytes) -> None:
    assert r.encode_astring(value) == wire


def test_nstring() -> None:
    assert r.encode_nstring(None) == b"NIL"
    assert r.encode_nstring("NIL") == b'"NIL"'


def test_mailbox_names() -> None:
    assert r.encode_mailbox("inbox") == b"INBOX"
    assert r.encode_mailbox("~peter/mail/台北/日本語") == b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert r.encode_mailbox("A&B") == b"A&-B"
    assert r.encode_mailbox("a b") == b'"a b"'
    assert r.encode_mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'


def test_values_and_lists() -> None:
    value = [
        None,
        3,
        "s",
        r.Atom("\\Seen"),
        [r.AString("INBOX"), []],
        r.Literal(b"\x00b", binary=True),
        r.Raw(b"(raw)"),
        SequenceSet.parse("1:*"),
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ]
    assert r.encode_value(value) == (
        b'(NIL 3 "s" \\Seen (INBOX ()) ~{2}\r\n\x00b (raw) 1:* "02-Jan-2024 03:04:05 -0500")'
    )
    with pytest.raises(TypeError):
        r.encode_value(True)
    with pytest.raises(ValueError):
        r.encode_value(-1)
    with pytest.raises(TypeError):
        r.encode_value(object())
    with pytest.raises(ValueError):
        r.Atom("a\r\nb")


def test_flags() -> None:
    assert r.encode_flags(["\\Seen", "$Forwarded"]) == b"(\\Seen $Forwarded)"
    assert r.encode_flags([]) == b"()"


def test_tagged_and_untagged_status() -> None:
    assert r.tagged("a1", "ok", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert (
        r.tagged("a2", "NO", "Too big", code=r.ResponseCode("TOOBIG"))
        == b"a2 NO [TOOBIG] Too big\r\n"
    )
    assert r.tagged("a3", "BAD", "x\r\n* OK injected") == b"a3 BAD x  * OK injected\r\n"
    assert (
        r.untagged_status("OK", "Predicted next UID", code=r.ResponseCode("UIDNEXT", 4392))
        == b"* OK [UIDNEXT 4392] Predicted next UID\r\n"
    )
    assert r.untagged_status("OK", code="ALERT") == b"* OK [ALERT]\r\n"
    assert r.bye("Logging out") == b"* BYE Logging out\r\n"
    with pytest.raises(ValueError):
        r.tagged("a", "MAYBE", "x")
    with pytest.raises(ValueError):
        r.tagged("a b", "OK", "x")
    with pytest.raises(TypeError):
        r.tagged("a", "NO", r.ResponseCode("TOOBIG"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "wire"),
    [
        (
            r.ResponseCode(
                "PERMANENTFLAGS", [r.Atom("\\Deleted"), r.Atom("\\Seen"), r.Atom("\\*")]
            ),
            b"[PERMANENTFLAGS (\\Deleted \\Seen \\*)]",
        ),
        (
            r.ResponseCode("BADCHARSET", [r.Atom("UTF-8"), r.Atom("US-ASCII")]),
            b"[BADCHARSET (UTF-8 US-ASCII)]",
        ),
        (
            r.ResponseCode("COPYUID", 38505, r.Atom("304,319:320"), r.Atom("3956:3958")),
            b"[COPYUID 38505 304,319:320 3956:3958]",
        ),
        (
            r.ResponseCode("CAPABILITY", r.Atom("IMAP4rev1"), r.Atom("LITERAL+")),
            b"[CAPABILITY IMAP4rev1 LITERAL+]",
        ),
        (r.ResponseCode("trycreate"), b"[TRYCREATE]"),
    ],
)
def test_response_codes(code: r.ResponseCode, wire: bytes) -> None:
    assert code.encode() == wire


def test_untagged_data() -> None:
    assert r.untagged("3 EXISTS") == b"* 3 EXISTS\r\n"
    assert r.untagged("SEARCH", 2, 3, 7) == b"* SEARCH 2 3 7\r\n"
    assert (
        r.untagged("LIST", [r.Atom("\\HasNoChildren")], "/", r.AString("INBOX"))
        == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    )


def test_fetch_response() -> None:
    wire = r.fetch_response(
        12, [("FLAGS", [r.Atom("\\Seen")]), ("UID", 4), ("BODY[TEXT]<0>", b"a\r\nb")]
    )
    assert wire == b"* 12 FETCH (FLAGS (\\Seen) UID 4 BODY[TEXT]<0> {4}\r\na\r\nb)\r\n"


def test_continuation_and_literal_header() -> None:
    assert r.continuation("OK") == b"+ OK\r\n"
    assert r.continuation() == b"+ \r\n"
    assert r.literal_header(10) == b"{10}\r\n"
    assert r.literal_header(10, binary=True) == b"~{10}\r\n"


@given(st.binary(max_size=2000))
def test_encoded_string_parses_back(data: bytes) -> None:
    """What the encoder writes, the parser's own string reader reads back unchanged."""
    wire = r.encode_string(data)
    if wire.startswith(b"{"):
        header, _, body = wire.partition(b"\r\n")
        assert header == b"{%d}" % len(body)
        assert body == data.replace(b"\x00", b"\x80")
        return
    cur = Cursor([wire], [])
    assert cur.read_string() == data
    assert cur.at_end()


@given(st.text(max_size=50))
def test_encoded_astring_parses_back(text: str) -> None:
    wire = r.encode_astring(text)
    if wire.startswith(b"{"):
        return
    cur = Cursor([wire], [])
    assert cur.read_astring() == text.encode("utf-8", "surrogateescape")
