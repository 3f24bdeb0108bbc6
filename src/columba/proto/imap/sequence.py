"""IMAP sequence sets (RFC 3501 §9 ``sequence-set``, RFC 5182 ``$``).

A set is kept as the ranges the client wrote; ``*`` is ``None`` until resolved against the
largest number in use (the message count for sequence numbers, the highest UID for UID sets).

Edge cases the RFCs pin down and :meth:`SequenceSet.resolve` follows:

- ``5:2`` is the same as ``2:5`` (order of a range's ends doesn't matter);
- ``n:*`` always includes the largest number, even when ``n`` is larger (``559:*`` in a mailbox
  whose highest UID is 500 means ``500``);
- in an empty mailbox (largest = 0) ``*`` names nothing, so every range that contains ``*``
  resolves to nothing; explicit numbers are left for the caller to judge;
- ``$`` (SEARCHRES) is a reference to the saved search result, resolved by the session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["UINT32_MAX", "SequenceSet"]

UINT32_MAX = 0xFFFFFFFF

_NUM = rb"(?:[1-9][0-9]{0,9}|\*)"
_SET_RE = re.compile(rb"(?:%s(?::%s)?)(?:,%s(?::%s)?)*" % (_NUM, _NUM, _NUM, _NUM))

Bound = int | None  # None means "*"


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set. ``ranges`` holds ``(start, end)`` as written, ``None`` = ``*``."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False  # "$": the result saved by SEARCH RETURN (SAVE)

    @classmethod
    def parse(cls, text: str | bytes) -> SequenceSet:
        """Parse the wire form; raises ``ValueError`` on anything the grammar rejects."""
        data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        if data == b"$":
            return cls((), saved=True)
        if not _SET_RE.fullmatch(data):
            raise ValueError("invalid sequence set")
        ranges: list[tuple[Bound, Bound]] = []
        for part in data.split(b","):
            lo_s, _, hi_s = part.partition(b":")
            lo = _bound(lo_s)
            hi = _bound(hi_s) if hi_s else lo
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, *numbers: int) -> SequenceSet:
        """A set of explicit numbers (compacted into ranges)."""
        return cls.from_ranges(_compact(sorted(set(numbers))))

    @classmethod
    def from_ranges(
        cls, ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]
    ) -> SequenceSet:
        return cls(tuple((lo, hi) for lo, hi in ranges))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for lo, hi in self.ranges:
            if lo == hi:
                parts.append(_fmt(lo))
            else:
                parts.append(f"{_fmt(lo)}:{_fmt(hi)}")
        return ",".join(parts)

    @property
    def uses_star(self) -> bool:
        return any(lo is None or hi is None for lo, hi in self.ranges)

    def max_number(self) -> int:
        """The largest explicit number (0 if there is none). Useful to reject sequence
        numbers past the message count with ``BAD``."""
        best = 0
        for lo, hi in self.ranges:
            for b in (lo, hi):
                if b is not None and b > best:
                    best = b
        return best

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ``(lo, hi)`` ranges with ``*`` = *largest*.

        Explicit numbers are kept even past *largest* (see :meth:`clamp` for UIDs).
        ``$`` can't be resolved here: it raises ``ValueError``.
        """
        if self.saved:
            raise ValueError("'$' must be resolved from the saved search result")
        out: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            if (lo is None or hi is None) and largest <= 0:
                continue
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            out.append((a, b))
        return _merge(out)

    def clamp(self, largest: int) -> list[tuple[int, int]]:
        """Like :meth:`resolve`, cut to ``1..largest`` (what a UID set means in practice)."""
        out = []
        for lo, hi in self.resolve(largest):
            if lo > largest:
                continue
            out.append((lo, min(hi, largest)))
        return out

    def contains(self, number: int, largest: int) -> bool:
        return any(lo <= number <= hi for lo, hi in self.resolve(largest))

    def iter_numbers(self, largest: int) -> Iterator[int]:
        """Ascending numbers in ``1..largest`` that the set names (never more than
        *largest* of them, however wide the ranges)."""
        for lo, hi in self.clamp(largest):
            yield from range(lo, hi + 1)


def _bound(token: bytes) -> Bound:
    if token == b"*":
        return None
    value = int(token)
    if value > UINT32_MAX:
        raise ValueError("sequence number out of range")
    return value


def _fmt(b: Bound) -> str:
    return "*" if b is None else str(b)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _compact(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out
