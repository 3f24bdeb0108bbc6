"""SEARCH header keys answered from the index's header block (storage.header_search) give the
same answer as the cached parse (ParsedMessage.decoded_header), the general path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from columba.storage.header_search import EXACT_LIMIT, HeaderNeedle, header_match, match_many
from columba.storage.mime import ParsedMessage, parse_message, to_crlf


def reference(message: bytes, field: str, value: str) -> tuple[bytes, bool]:
    """(the header block the index keeps, the cached parse's answer)."""
    data = to_crlf(message)
    parsed = parse_message(data)
    header = parsed.header_bytes
    if not header:
        end = data.find(b"\r\n\r\n")
        header = data if end < 0 else data[: end + 4]
    cached = ParsedMessage.from_json(parsed.to_json())
    values = cached.decoded_header(field)
    if not value:
        return header, bool(values)
    wanted = value.casefold()
    return header, any(wanted in v.casefold() for v in values)


def check(message: bytes, field: str, value: str) -> None:
    header, expected = reference(message, field, value)
    got = header_match(header, HeaderNeedle(field, value))
    if got is None:
        assert len(header) > EXACT_LIMIT or not HeaderNeedle(field, value).usable
    else:
        assert got == expected, (message, field, value)


CASES = [
    (b"Subject: Quarterly report\r\n\r\nbody", "Subject", "quarterly"),
    (b"Subject: nothing here\r\n\r\nquarterly", "Subject", "quarterly"),
    (b"subject : QUARTERLY\r\n\r\n", "SUBJECT", "quarterly"),
    (b"Subject\x00junk: quarterly\r\n\r\n", "subject", "quarterly"),
    (b"Subject: quar\r\n terly\r\n\r\n", "Subject", "quar terly"),
    (b"Subject: quar\r\n terly\r\n\r\n", "Subject", "quarterly"),
    (b"Subject: =?utf-8?q?Quarterly_r=C3=A9sum=C3=A9?=\r\n\r\n", "Subject", "RÉSUMÉ"),
    (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n", "Subject", "grüsse"),
    (b"Subject: Stra\xc3\x9fe\r\n\r\n", "Subject", "strasse"),
    (b"X-Subject: quarterly\r\nSubject: no\r\n\r\n", "Subject", "quarterly"),
    (b"Subject: a\r\n\r\nSubject: quarterly\r\n", "Subject", "quarterly"),
    (b"Subject: a\r\ngarbage\r\n quarterly\r\n\r\n", "Subject", "quarterly"),
    (b"Subject:\r\n\r\n", "Subject", ""),
    (b"From: a@b\r\n\r\n", "Subject", ""),
    (b"\r\nSubject: quarterly\r\n", "Subject", "quarterly"),
    (b"Subject: quarterly", "Subject", "quarterly"),
    (b"Subject: one\r\nSubject: Two quarterly\r\n\r\n", "subject", "QUARTERLY"),
    (b"Subject: \t  padded\r\r\n\r\n", "Subject", "padded"),
    (b"To: =?iso-8859-1?q?J=F6rg?= <j@x>\r\n\r\n", "to", "jörg"),
]


@pytest.mark.parametrize(("message", "field", "value"), CASES)
def test_cases(message: bytes, field: str, value: str) -> None:
    check(message, field, value)


def test_unusable_names_and_big_headers_say_none() -> None:
    assert header_match(b": x\r\n\r\n", HeaderNeedle("", "x")) is None
    assert header_match(b"a:b: x\r\n\r\n", HeaderNeedle("a:b", "x")) is None
    big = b"Subject: quarterly\r\n" + b"X-Pad: " + b"p" * EXACT_LIMIT + b"\r\n\r\n"
    assert header_match(big, HeaderNeedle("Subject", "quarterly")) is None


def test_matches_what_a_wrong_prefilter_would_miss() -> None:
    # the ASCII shortcut must not reject blocks whose encoded words decode to the string
    header = b"Subject: =?utf-8?b?cXVhcnRlcmx5?=\r\n\r\n"
    assert header_match(header, HeaderNeedle("Subject", "quarterly")) is True


_pieces = st.sampled_from(
    [
        b"Subject",
        b"subject",
        b"SUBJECT ",
        b"From",
        b"X-Subject",
        b":",
        b": ",
        b"\t",
        b" ",
        b"\r\n",
        b"\n",
        b"\r",
        b"\x00",
        b"quarterly",
        b"QUARTER",
        b"ly",
        b"=?utf-8?q?Quar=74erly?=",
        b"=?utf-8?b?cXVhcnRlcmx5?=",
        b"=?iso-8859-1?q?J=F6rg?=",
        b"\xc3\x9f",
        b"\xff",
        b"-",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(_pieces, max_size=30),
    field=st.sampled_from(["Subject", "subject", "From", "X-Subject"]),
    value=st.sampled_from(["quarterly", "QUARTERLY", "ly", "quar terly", "jörg", "ss", "", "-"]),
)
def test_same_answer_as_the_cached_parse(parts: list[bytes], field: str, value: str) -> None:
    check(b"".join(parts) + b"\r\n\r\nbody\r\n", field, value)
    check(b"".join(parts), field, value)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.lists(_pieces, max_size=20), min_size=1, max_size=8),
    field=st.sampled_from(["Subject", "subject", "From"]),
    value=st.sampled_from(["quarterly", "QUARTERLY", "ly", "quar terly", "jörg", "ss", "", "-"]),
)
def test_many_blocks_at_once_like_one_by_one(
    messages: list[list[bytes]], field: str, value: str
) -> None:
    headers = [
        reference(b"".join(parts) + b"\r\n\r\nbody\r\n", field, value)[0] for parts in messages
    ]
    headers += [reference(b"".join(parts), field, value)[0] for parts in messages]
    needle = HeaderNeedle(field, value)
    matched, unsure = match_many(headers, needle)
    one_by_one = [header_match(h, needle) for h in headers]
    assert matched == [i for i, got in enumerate(one_by_one) if got is True]
    assert unsure == [i for i, got in enumerate(one_by_one) if got is None]


def test_many_blocks_find_encoded_and_plain_matches() -> None:
    headers = [
        b"Subject: =?utf-8?b?cXVhcnRlcmx5?=\r\n\r\n",
        b"Subject: nothing\r\nX-Other: quarterly\r\n\r\n",
        b"From: =?utf-8?q?J=C3=B6rg?= <j@x>\r\nSubject: plain\r\n\r\n",
        b"Subject: Quarterly figures\r\n\r\n",
        b"Subject: =?utf-8?q?Quar=74erly?=\r\n\r\n",
        b"X-Pad: " + b"p" * EXACT_LIMIT + b"\r\nSubject: quarterly\r\n\r\n",
    ]
    assert match_many(headers, HeaderNeedle("Subject", "quarterly")) == ([0, 3, 4], [5])
    assert match_many(headers, HeaderNeedle("From", "jörg")) == ([2], [5])
    assert match_many(headers, HeaderNeedle("Subject", "")) == ([0, 1, 2, 3, 4], [5])
