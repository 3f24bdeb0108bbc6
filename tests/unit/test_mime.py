"""Unit tests for columba.storage.mime.

Expected ENVELOPE/BODYSTRUCTURE strings below were checked against Debian's Dovecot
2.3.19 (the same cases, and many more, are in tests/data/mime-golden/tricky/ with the
answers Dovecot gave; see test_mime_golden.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from columba.storage.mime import (
    MAX_NESTING,
    MimePart,
    ParsedMessage,
    parse_message,
    to_crlf,
)
from columba.storage.mime_rfc822 import Address, parse_addresses

# -- helpers -------------------------------------------------------------------------------


def env(raw: bytes) -> str:
    return parse_message(raw).envelope


def bs(raw: bytes) -> str:
    return parse_message(raw).bodystructure


NESTED = (
    b"From: outer@x\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
    b"preamble\r\n--o\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n"
    b'--o\r\nContent-Type: message/rfc822; name="fwd.eml"\r\nContent-Disposition: attachment\r\n\r\n'
    b"From: Inner <inner@y>\r\nTo: a@b\r\nSubject: inner subject\r\n"
    b"Date: Tue, 2 Jan 2024 10:00:00 +0100\r\nMessage-ID: <in@y>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=i\r\n\r\n"
    b"--i\r\nContent-Type: text/plain\r\n\r\nplain\r\nline 2\r\n"
    b"--i\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--i--\r\n\r\n--o--\r\nepilogue\r\n"
)


# -- line endings and size -----------------------------------------------------------------


def test_to_crlf_converts_only_bare_lf() -> None:
    assert to_crlf(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"
    assert to_crlf(b"") == b""
    already = b"x\r\n"
    assert to_crlf(already) is already


def test_size_and_line_counts_are_over_crlf_bytes() -> None:
    raw = b"Subject: x\n\nline1\nline2\n"
    m = parse_message(raw)
    assert m.size == len(to_crlf(raw)) == 28
    assert m.body == '"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 2'


def test_simple_message() -> None:
    m = parse_message(b"Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n")
    assert m.envelope == (
        'NIL "hi" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) NIL NIL NIL NIL NIL'
    )
    assert (
        m.bodystructure
        == '"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL'
    )
    assert m.size == 32


# -- ENVELOPE ------------------------------------------------------------------------------


def test_nil_versus_empty_string() -> None:
    raw = (
        b'Subject: \r\nDate:\r\nMessage-ID: <x@y>\r\nIn-Reply-To:\r\nFrom: "" <a@b>\r\n'
        b'Sender:\r\nTo: " " <c@d>\r\nContent-Type: text/plain; a=""; b=\r\n'
        b"Content-ID:\r\nContent-Description: \r\n\r\nbody\r\n"
    )
    m = parse_message(raw)
    # empty Subject/Date/In-Reply-To are "", absent Cc/Bcc NIL, empty Sender falls back to From
    assert m.envelope == (
        '"" "" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) '
        '(("" NIL "c" "d")) NIL NIL "" "<x@y>"'
    )
    assert m.bodystructure == (
        '"text" "plain" ("a" "" "b" "" "charset" "us-ascii") "" "" "7bit" 6 1 NIL NIL NIL NIL'
    )


def test_no_headers_at_all() -> None:
    m = parse_message(b"")
    assert m.envelope == "NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL"
    assert (
        m.bodystructure
        == '"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL'
    )
    assert m.size == 0


def test_group_syntax_is_kept() -> None:
    raw = (
        b'To: grp: a@b, "C D" <c@d>;, solo@x.y\r\nCc: undisclosed-recipients:;\r\n'
        b"Bcc: g: ;, (comment) x@y (Name)\r\n\r\n"
    )
    assert env(raw) == (
        "NIL NIL NIL NIL NIL "
        '((NIL NIL "grp" NIL)(NIL NIL "a" "b")("C D" NIL "c" "d")(NIL NIL NIL NIL)(NIL NIL "solo" "x.y")) '
        '((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        '((NIL NIL "g" NIL)(NIL NIL NIL NIL)("Name" NIL "x" "y")) NIL NIL'
    )


def test_rfc2047_words_stay_raw_in_envelope() -> None:
    raw = (
        b'From: =?utf-8?q?Nov=C3=A1k?= <n@x.cz>, "=?iso-8859-1?q?J=F6rg?=" <j@x.de>\r\n'
        b"Subject: =?utf-8?b?w6lsw6lwaGFudA==?= and =?utf-8?q?more?=\r\n\r\n"
    )
    e = env(raw)
    assert e.startswith('NIL "=?utf-8?b?w6lsw6lwaGFudA==?= and =?utf-8?q?more?=" ((')
    assert (
        '("=?utf-8?q?Nov=C3=A1k?=" NIL "n" "x.cz")("=?iso-8859-1?q?J=F6rg?=" NIL "j" "x.de")' in e
    )
    # ...while SEARCH sees the decoded text
    m = parse_message(raw)
    assert m.decoded_header("Subject") == ["éléphant and more"]
    assert m.decoded_header("from") == ['Novák <n@x.cz>, "Jörg" <j@x.de>']


def test_subject_whitespace_quotes_and_8bit_use_literals() -> None:
    # Dovecot writes Subject and display names "for humans": whitespace collapsed, and a
    # literal whenever that changed anything or the text has quotes, backslashes, 8-bit
    assert env(b"Subject:  two  spaces  \r\n\tfolded\r\n\r\n").startswith(
        "NIL {17}\r\ntwo spaces folded NIL"
    )
    assert env(b'Subject: a"b\r\n\r\n').startswith('NIL {3}\r\na"b NIL')
    assert env("Subject: café\r\n\r\n".encode()).startswith("NIL {5}\r\ncafé NIL")
    assert env(b"Subject: \t\r\n\r\n").startswith('NIL "" NIL')
    # Date/Message-ID are plain nstrings: escapes up to four, then a literal
    assert env(b'Message-ID: """"\r\n\r\n').endswith('"\\"\\"\\"\\""')
    assert env(b'Message-ID: """""\r\n\r\n').endswith('{5}\r\n"""""')
    assert env(b"Date:  Mon,  1\tJan  \r\n\r\n").startswith('"Mon,  1\tJan  " NIL')
    assert env(b"Date: a\r\n b\r\n\r\n").startswith('"a b" NIL')


def test_eight_bit_header_bytes_round_trip() -> None:
    m = parse_message(b"Subject: caf\xc3\xa9 \x80\r\n\r\n")
    assert m.envelope.encode("utf-8", "surrogateescape").startswith(
        b"NIL {7}\r\ncaf\xc3\xa9 \x80 NIL"
    )


def test_nul_in_header_becomes_replacement_character() -> None:
    assert env(b"Subject: nul\x00x\r\n\r\n").startswith("NIL {7}\r\nnul\ufffdx NIL")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a@b", [Address(None, None, b"a", b"b")]),
        (b'"q u"@h', [Address(None, None, b"q u", b"h")]),
        (b"bare", [Address(None, None, b"bare", b"MISSING_DOMAIN")]),
        (b"<>", [Address(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"<a@b", [Address(None, None, b"a", b"SYNTAX_ERROR")]),
        (b"A <@x,@y:a@b>", [Address(b"A", b"@x,@y", b"a", b"b")]),
        (b"A <@x,@y a@b>", [Address(b"A", b"INVALID_ROUTE", b"a", b"b")]),
        (b"a@b (  c  )", [Address(b"  c  ", None, b"a", b"b")]),
        (b"John Q. Public <a@b>", [Address(b"John Q. Public", None, b"a", b"b")]),
        (b"a b c", [Address(b"a b c", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"a .b@c, .a@c", [Address(None, None, b"a.b", b"c"), Address(None, None, b".a", b"c")]),
        (b"a@b.", [Address(None, None, b"a", b"MISSING_DOMAIN")]),
        (b"(only a comment)", []),
        (b"", []),
        (b"a@b c, d@e", [Address(None, None, b"a", b"b")]),
    ],
)
def test_address_parsing_like_dovecot(value: bytes, expected: list[Address]) -> None:
    assert parse_addresses(value) == expected


def test_repeated_envelope_headers() -> None:
    raw = b"Subject: a\r\nSubject: b\r\nFrom: a@b\r\nFrom: c@d\r\nMessage-ID: <1>\r\nMessage-ID: <2>\r\n\r\n"
    # strings: the last one wins; addresses: they accumulate
    assert env(raw) == (
        'NIL "b" ((NIL NIL "a" "b")(NIL NIL "c" "d")) ((NIL NIL "a" "b")(NIL NIL "c" "d")) '
        '((NIL NIL "a" "b")(NIL NIL "c" "d")) NIL NIL NIL NIL "<2>"'
    )


# -- BODYSTRUCTURE -------------------------------------------------------------------------


def test_parameter_case_and_extension_data_order() -> None:
    raw = (
        b'MIME-Version: 1.0\r\nContent-Type: TEXT/Plain; Charset="UTF-8"; Format=flowed\r\n'
        b"Content-Transfer-Encoding: Base64\r\nContent-ID: <cid@x>\r\n"
        b"Content-Description: =?utf-8?q?d?=\r\n"
        b'Content-Disposition: Attachment; FileName="a b.txt"\r\n'
        b"Content-Language: en-US, de\r\nContent-Location: http://x/\r\n y\r\n"
        b"Content-MD5: abc==\r\n\r\naGVsbG8=\r\n"
    )
    assert bs(raw) == (
        '"TEXT" "Plain" ("Charset" "UTF-8" "Format" "flowed") "<cid@x>" "=?utf-8?q?d?=" '
        '"Base64" 10 1 "abc==" ("Attachment" ("FileName" "a b.txt")) ("en-US" "de") "http://x/ y"'
    )


def test_rfc2231_parameters_are_merged_not_decoded() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream; "
        b'name*0="long "; name*1="name.txt"; x*0*=a; x*2=c\r\n'
        b"Content-Disposition: attachment; filename*=utf-8''%C3%A4%C3%B6.txt\r\n\r\nAAAA\r\n"
    )
    assert bs(raw) == (
        '"application" "octet-stream" ("name" "long name.txt" "x*0*" "a" "x*2" "c") NIL NIL '
        '"7bit" 6 NIL ("attachment" ("filename*" "utf-8\'\'%C3%A4%C3%B6.txt")) NIL NIL'
    )


def test_message_rfc822_carries_envelope_structure_and_lines() -> None:
    m = parse_message(NESTED)
    assert m.bodystructure == (
        '("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 12 0 NIL NIL NIL NIL)'
        '("message" "rfc822" ("name" "fwd.eml") NIL NIL "7bit" 284 '
        '("Tue, 2 Jan 2024 10:00:00 +0100" "inner subject" (("Inner" NIL "inner" "y")) '
        '(("Inner" NIL "inner" "y")) (("Inner" NIL "inner" "y")) ((NIL NIL "a" "b")) NIL NIL NIL "<in@y>") '
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL NIL NIL)'
        '("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL) '
        '"alternative" ("boundary" "i") NIL NIL NIL) 18 NIL ("attachment" NIL) NIL NIL) '
        '"mixed" ("boundary" "o") NIL NIL NIL'
    )
    assert m.body == (
        '("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 12 0)'
        '("message" "rfc822" ("name" "fwd.eml") NIL NIL "7bit" 284 '
        '("Tue, 2 Jan 2024 10:00:00 +0100" "inner subject" (("Inner" NIL "inner" "y")) '
        '(("Inner" NIL "inner" "y")) (("Inner" NIL "inner" "y")) ((NIL NIL "a" "b")) NIL NIL NIL "<in@y>") '
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1)'
        '("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 0) "alternative") 18) "mixed"'
    )


def test_missing_end_boundary() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"first\r\n--b\r\n\r\nsecond, never closed\r\n"
    )
    assert bs(raw) == (
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 22 1 NIL NIL NIL NIL) '
        '"mixed" ("boundary" "b") NIL NIL NIL'
    )


def test_empty_parts() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n--b--\r\n"
    )
    assert bs(raw) == (
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        '("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) '
        '"mixed" ("boundary" "b") NIL NIL NIL'
    )


def test_multipart_without_boundary_has_one_empty_part() -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\nno boundary here\r\n"
    assert (
        bs(raw)
        == '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" NIL NIL NIL NIL'
    )
    assert (
        parse_message(raw).body
        == '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed"'
    )


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody one\r\n"
        b"--d\r\nContent-Type: text/plain\r\n\r\nplain in digest\r\n--d--\r\n"
    )
    assert bs(raw) == (
        '("message" "rfc822" NIL NIL NIL "7bit" 24 (NIL "one" NIL NIL NIL NIL NIL NIL NIL NIL) '
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 8 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)'
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 15 0 NIL NIL NIL NIL) '
        '"digest" ("boundary" "d") NIL NIL NIL'
    )


def test_boundary_is_matched_by_longest_prefix() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--bb\r\n\r\nx\r\n--b junk\r\n\r\n"
        b"y\r\n--b--junk\r\nepi\r\n--b\r\nmore\r\n"
    )
    m = parse_message(raw)
    assert len(m.root.children) == 2
    assert m.section_bytes(to_crlf(raw), "TEXT") == to_crlf(raw)[45:]


def test_content_headers_need_mime() -> None:
    # no MIME-Version and no Content-Type: Content-* headers are ignored
    raw = b"Content-Transfer-Encoding: base64\r\nContent-ID: <i@x>\r\n\r\naGVsbG8=\r\n"
    assert bs(raw) == '"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL'
    assert bs(b"MIME-Version: 1.0\r\n" + raw).startswith(
        '"text" "plain" ("charset" "us-ascii") "<i@x>" NIL "base64"'
    )


@pytest.mark.parametrize(
    ("ctype", "start"),
    [
        (b"text", '"text" "" ("charset" "us-ascii") NIL NIL "7bit"'),
        (b"text/plain junk", '"" "" NIL NIL NIL "7bit"'),
        (b"multipart", '"application" "octet-stream" NIL NIL NIL "7bit"'),
        (b"text/plain (comment) ; charset=x", '"text" "plain" ("charset" "x") NIL NIL "7bit"'),
        (b"application/x; a=b c; d=e", '"application" "x" ("a" "b" "d" "e") NIL NIL "7bit"'),
    ],
)
def test_broken_content_types(ctype: bytes, start: str) -> None:
    assert bs(b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"\r\n\r\nx\r\n").startswith(start)


def test_deep_nesting_turns_opaque() -> None:
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(150)
    )
    m = parse_message(raw + b"\r\nleaf\r\n")
    depth = 0
    part: MimePart = m.root
    while part.children:
        part = part.children[0]
        depth += 1
    assert depth == MAX_NESTING - 1
    assert not part.is_multipart and part.body_size == 0
    assert '("application" "octet-stream" ("boundary" "b99") NIL NIL "7bit" 0 NIL NIL NIL NIL)' in (
        m.bodystructure
    )


def test_deep_message_rfc822_nesting() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 300 + b"Subject: leaf\r\n\r\nleaf\r\n"
    m = parse_message(raw)
    # 99 levels are parsed; the 100th is an opaque application/octet-stream, as in Dovecot
    assert m.bodystructure.count('"message" "rfc822"') == MAX_NESTING - 1
    assert m.bodystructure.count("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)") == MAX_NESTING - 1
    assert m.bodystructure.count('"application" "octet-stream"') == 1


# -- sections ------------------------------------------------------------------------------


def test_sections_of_a_nested_message() -> None:
    m = parse_message(NESTED)
    raw = NESTED
    assert m.section_bytes(raw, "") == raw
    assert m.section_bytes(raw, "HEADER") == m.header_bytes
    assert m.header_bytes.endswith(b'boundary="o"\r\n\r\n')
    assert m.section_bytes(raw, "1") == b"see attached"
    assert m.section_bytes(raw, "1.MIME") == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    inner = m.section_bytes(raw, "2")
    assert inner is not None and inner.startswith(b"From: Inner") and inner.endswith(b"--i--\r\n")
    hdr = m.section_bytes(raw, "2.HEADER")
    assert (
        hdr is not None and hdr.startswith(b"From: Inner") and hdr.endswith(b"boundary=i\r\n\r\n")
    )
    text = m.section_bytes(raw, "2.TEXT")
    assert text is not None and text.startswith(b"--i\r\n")
    assert m.section_bytes(raw, "2.1") == b"plain\r\nline 2"
    assert m.section_bytes(raw, "2.2") == b"<p>html</p>"
    assert m.section_bytes(raw, "2.2.MIME") == b"Content-Type: text/html\r\n\r\n"
    assert m.section_bytes(raw, "2.HEADER.FIELDS (subject TO)") == (
        b"To: a@b\r\nSubject: inner subject\r\n\r\n"
    )
    assert m.section_bytes(raw, "HEADER.FIELDS.NOT (From Subject MIME-Version)") == (
        b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
    )
    assert m.section_bytes(raw, "HEADER.FIELDS (X-None)") == b"\r\n"
    # parts that are not there, and section texts that are not sections
    for spec in ("3", "1.1", "2.3", "1.HEADER", "0", "2.0", "MIME", "FOO", "HEADER.FIELDS"):
        assert m.section_bytes(raw, spec) is None, spec
    part = m.part([2, 2])
    assert part is not None and part.mime_type == "text/html"
    assert m.part([]) is m.root
    assert m.part([9]) is None


def test_non_multipart_section_one_is_the_body() -> None:
    raw = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    m = parse_message(raw)
    assert m.section_bytes(raw, "1") == b"hello\r\n"
    assert m.section_bytes(raw, "TEXT") == b"hello\r\n"
    assert m.section_bytes(raw, "1.MIME") == m.header_bytes  # Dovecot answers the header
    assert m.section_bytes(raw, "2") is None
    assert m.section_bytes(raw, "1.1") is None


def test_top_level_message_rfc822_sections() -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nSubject: inside\r\nFrom: a@b\r\n\r\ninner body\r\n"
    m = parse_message(raw)
    assert m.section_bytes(raw, "1.HEADER") == b"Subject: inside\r\nFrom: a@b\r\n\r\n"
    assert m.section_bytes(raw, "1.TEXT") == b"inner body\r\n"
    assert m.section_bytes(raw, "1.1") == b"inner body\r\n"
    assert m.part([1]) is m.root


def test_header_fields_without_end_of_header() -> None:
    raw = b"Subject: x\r\n"
    m = parse_message(raw)
    assert m.section_bytes(raw, "HEADER") == raw
    assert m.section_bytes(raw, "HEADER.FIELDS (Subject)") == b"Subject: x\r\n\r\n"
    assert m.section_bytes(raw, "HEADER.FIELDS.NOT (Subject)") == b""
    assert m.section_bytes(raw, "TEXT") == b""


def test_header_cut_short_by_a_boundary() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
        b"X-Header: cut\r\n--b\r\n\r\nlast\r\n--b--\r\n"
    )
    m = parse_message(raw)
    # the newline before the boundary belongs to the boundary, not to the header
    assert m.section_bytes(raw, "1.MIME") == b"Content-Type: text/plain\r\nX-Header: cut"
    assert m.section_bytes(raw, "1") == b""
    assert m.section_bytes(raw, "2") == b"last"


# -- headers, decoding, search text --------------------------------------------------------


def test_header_access() -> None:
    raw = (
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?_au_lait?=\r\nX-Dup: one\r\nx-dup:  two\r\n"
        b"Date: Mon, 02 Jan 2023 11:01:00 +0100\r\nMessage-ID:  <0.dabed@corp.example> \r\n\r\n"
    )
    m = parse_message(raw)
    assert m.headers("X-DUP") == ["one", "two"]
    assert m.header("x-dup") == "one"
    assert m.headers("subject") == ["=?utf-8?q?caf=C3=A9?= =?utf-8?q?_au_lait?="]
    assert m.subject == "café au lait"
    assert m.message_id == "<0.dabed@corp.example>"
    assert m.date == datetime(2023, 1, 2, 10, 1, tzinfo=UTC)
    assert m.headers("missing") == []
    assert parse_message(b"Date: garbage\r\n\r\n").date is None
    assert parse_message(b"\r\n").subject is None


def test_text_for_search_decodes_transfer_encoding_and_charset() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=F6rg sagt hall=\r\no\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PHA+Y2Fmw6k8L3A+\r\n"
        b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--b\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n\r\nplain \xc3\xa9\r\n--b--\r\n"
    )
    m = parse_message(raw)
    text = m.text_for_search()
    assert "Jörg sagt hallo" in text
    assert "<p>café</p>" in text
    assert "plain é" in text
    assert "PNG" not in text
    assert [p.mime_type for p in m.text_parts()] == ["text/plain", "text/html", "text/plain"]


# -- cache ---------------------------------------------------------------------------------


def test_json_round_trip_without_reparsing() -> None:
    m = parse_message(NESTED)
    cached = m.to_json()
    back = ParsedMessage.from_json(cached)
    for attr in ("size", "envelope", "body", "bodystructure"):
        assert getattr(back, attr) == getattr(m, attr)
    assert back.to_json() == cached
    for spec in ("HEADER", "TEXT", "1", "2.HEADER", "2.1", "2.2.MIME", "HEADER.FIELDS (To)"):
        assert back.section_bytes(NESTED, spec) == m.section_bytes(NESTED, spec)
    assert back.headers("subject") == ["outer"]
    assert back.header_bytes == b""  # not stored: FETCH slices it from the object
    with pytest.raises(ValueError):
        back.text_for_search()
    assert back.text_for_search(NESTED) == m.text_for_search()
    again = ParsedMessage.from_json(cached, raw=NESTED)
    assert again.header_bytes == m.header_bytes
    assert again.text_for_search() == m.text_for_search()


def test_json_keeps_undecodable_bytes() -> None:
    raw = b'Subject: \xff\xfe\r\nX: \x80\r\nContent-Type: text/plain; name="\xe4"\r\n\r\n'
    m = parse_message(raw)
    back = ParsedMessage.from_json(m.to_json())
    assert back.envelope == m.envelope and back.bodystructure == m.bodystructure
    assert back.headers("x") == m.headers("x")


def test_json_record_caps_header_text() -> None:
    raw = b"Subject: big\r\n" + (b"X-Filler: " + b"f" * 200 + b"\r\n") * 1001 + b"\r\nbody\r\n"
    m = parse_message(raw)
    record = m.to_json()
    assert len(record) < 100_000
    short = ParsedMessage.from_json(record)
    assert not short.headers_complete
    assert short.headers("subject") == ["big"]
    assert len(short.headers("x-filler")) < 1001
    full = ParsedMessage.from_json(record, raw=raw)
    assert full.headers_complete and len(full.headers("x-filler")) == 1001
    assert full.bodystructure == m.bodystructure


# -- robustness and speed ------------------------------------------------------------------


def test_every_prefix_and_trailing_junk_parse() -> None:
    for end in range(len(NESTED) + 1):
        m = parse_message(NESTED[:end])
        assert m.size == end
    m = parse_message(NESTED + b"\x00\xff--o\r\n--o--junk")
    assert m.root.children


def test_huge_header_and_many_fields() -> None:
    raw = b"X-Long: " + b"a" * 1_000_000 + b"\r\n" + b"X-Many: 1\r\n" * 50_000 + b"\r\nbody\r\n"
    m = parse_message(raw)
    assert m.size == len(raw)
    assert m.bodystructure.endswith('"7bit" 6 1 NIL NIL NIL NIL')


def test_parsing_is_fast_on_hostile_input() -> None:
    hostile = [
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"--"
        + b"a" * 70
        + b"x\r\n" * 1
        + b"--a\r\n" * 20_000,
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--c\r\n" * 100_000,
        b"From: " + b"(" * 100_000 + b"\r\n\r\n",
        b"To: " + b"a@b, " * 50_000 + b"\r\n\r\n",
        b"Content-Type: text/plain" + b"; a*%d=b" % 5 * 20_000 + b"\r\n\r\n",
        b"\n" * 1_000_000,
    ]
    for raw in hostile:
        start = time.perf_counter()
        parse_message(raw)
        assert time.perf_counter() - start < 5, raw[:60]
