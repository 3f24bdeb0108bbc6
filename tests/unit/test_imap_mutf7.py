"""Modified UTF-7 (RFC 3501 §5.1.3) both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from columba.proto.imap import mutf7

VECTORS = [
    ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),  # RFC 3501 §5.1.3
    ("&-", "&"),
    ("Entw&APw-rfe", "Entwürfe"),
    ("INBOX", "INBOX"),
    ("", ""),
    ("A&-B", "A&B"),
    ("&2D3eAA-", "\U0001f600"),  # a surrogate pair
    ("Hi Mom -&Jjo--!", "Hi Mom -\u263a-!"),
    ("&AKM-1", "£1"),
    ("&ZeVnLIqe-&-", "日本語&"),
]


@pytest.mark.parametrize(("wire", "text"), VECTORS)
def test_vectors(wire: str, text: str) -> None:
    assert mutf7.decode(wire) == text
    assert mutf7.decode(wire.encode("ascii")) == text
    assert mutf7.encode(text) == wire


@pytest.mark.parametrize(
    "bad",
    [
        "&",  # unterminated
        "&U,BTFw",  # unterminated run
        "&AGE-",  # "a" must not be base64
        "&U,BTFw-&ZeVnLIqe-",  # two runs back to back
        "&U,BTF2-",  # non-zero filler bits
        "&2D0-",  # lone high surrogate
        "&Jjo!-",  # invalid base64 character
        "&Jjo=-",  # padding
        "&U/BTFw-",  # "/" instead of ","
        "a\x7fb",  # control character
        "caf\xe9",  # 8-bit
        "&A-",  # truncated run
    ],
)
def test_invalid(bad: str) -> None:
    with pytest.raises(mutf7.MUtf7Error):
        mutf7.decode(bad)
    assert not mutf7.is_valid(bad)


def test_encode_lone_surrogate_fails() -> None:
    with pytest.raises(mutf7.MUtf7Error):
        mutf7.encode("\ud800")


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_round_trip(text: str) -> None:
    wire = mutf7.encode(text)
    assert all(0x20 <= ord(ch) <= 0x7E for ch in wire)
    assert mutf7.decode(wire) == text


@given(st.binary(max_size=40))
def test_decode_arbitrary_bytes_only_raises_mutf7_error(data: bytes) -> None:
    try:
        text = mutf7.decode(data)
    except mutf7.MUtf7Error:
        return
    assert mutf7.encode(text).encode("ascii") == data
