"""Sequence sets: `*`, `n:*`, reversed ranges, `$`, empty mailboxes, huge ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from columba.proto.imap.sequence import UINT32_MAX, SequenceSet


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("1", ((1, 1),)),
        ("1:3", ((1, 3),)),
        ("5:2", ((5, 2),)),
        ("*", ((None, None),)),
        ("1:*", ((1, None),)),
        ("*:4", ((None, 4),)),
        ("2,4:7,9,12:*", ((2, 2), (4, 7), (9, 9), (12, None))),
        ("4294967295", ((UINT32_MAX, UINT32_MAX),)),
    ],
)
def test_parse(text: str, ranges: tuple[tuple[int | None, int | None], ...]) -> None:
    s = SequenceSet.parse(text)
    assert s.ranges == ranges
    assert str(s) == text
    assert SequenceSet.parse(text.encode()) == s


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0",
        "1:0",
        "01",
        ",1",
        "1,",
        "1,,2",
        "1:",
        ":1",
        "1:2:3",
        "4294967296",
        "a",
        "$1",
        "1 2",
        "*1",
        "-1",
        "$,1",
    ],
)
def test_parse_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        SequenceSet.parse(bad)


def test_saved() -> None:
    s = SequenceSet.parse("$")
    assert s.saved and str(s) == "$"
    with pytest.raises(ValueError):
        s.resolve(10)


def test_reversed_range_is_same_as_forward() -> None:
    assert SequenceSet.parse("5:2").resolve(10) == [(2, 5)]


def test_star_is_largest() -> None:
    assert SequenceSet.parse("1:*").resolve(7) == [(1, 7)]
    assert SequenceSet.parse("*").resolve(7) == [(7, 7)]


def test_n_star_past_largest_includes_largest() -> None:
    # RFC 3501: "559:*" always includes the last UID even when 559 is higher
    assert SequenceSet.parse("559:*").resolve(500) == [(500, 559)]
    assert SequenceSet.parse("559:*").clamp(500) == [(500, 500)]
    assert list(SequenceSet.parse("559:*").iter_numbers(500)) == [500]


def test_star_in_empty_mailbox_names_nothing() -> None:
    assert SequenceSet.parse("1:*").resolve(0) == []
    assert SequenceSet.parse("*").resolve(0) == []
    assert SequenceSet.parse("1:*,3").resolve(0) == [(3, 3)]
    assert list(SequenceSet.parse("1:*").iter_numbers(0)) == []


def test_explicit_numbers_past_largest() -> None:
    s = SequenceSet.parse("3,8")
    assert s.resolve(5) == [(3, 3), (8, 8)]
    assert s.max_number() == 8  # a sequence-number command answers BAD for this
    assert s.clamp(5) == [(3, 3)]


def test_merge_and_overlap() -> None:
    assert SequenceSet.parse("1:3,2:6,8,7,10:9").resolve(100) == [(1, 10)]
    assert SequenceSet.parse("5,1,3").resolve(100) == [(1, 1), (3, 3), (5, 5)]


def test_huge_range_iterates_lazily() -> None:
    s = SequenceSet.parse("1:4294967295")
    assert list(s.iter_numbers(3)) == [1, 2, 3]
    assert s.contains(4000000000, 10**10)


def test_contains_and_uses_star() -> None:
    s = SequenceSet.parse("2:4,*")
    assert s.uses_star
    assert s.contains(3, 10) and s.contains(10, 10) and not s.contains(5, 10)
    assert not SequenceSet.parse("1:5").uses_star


def test_of_compacts() -> None:
    assert str(SequenceSet.of(5, 1, 2, 3, 9, 10)) == "1:3,5,9:10"
    assert str(SequenceSet.of()) == ""


@given(
    st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=30), st.integers(0, 250)
)
def test_iter_numbers_matches_brute_force(numbers: list[int], largest: int) -> None:
    s = SequenceSet.of(*numbers)
    assert list(s.iter_numbers(largest)) == sorted(n for n in set(numbers) if n <= largest)
