"""SEARCH HEADER (and FROM, SUBJECT, ...) answered from the header block kept in the index,
without decoding the cached parse of every message.

IMAP's header keys match when a top-level field of that name has an RFC 2047-decoded,
case-folded value containing the case-folded string (an empty string: when the field exists);
:meth:`columba.storage.mime.ParsedMessage.decoded_header` is the reference. That method sees
the fields of the parse cached at save (:meth:`~columba.storage.mime.ParsedMessage.to_json`),
which keeps every field of a header block unless their text passes
:data:`~columba.storage.mime.HEADER_CACHE_BYTES`. :func:`header_match` gives the same answer
from the header block alone for every block up to :data:`EXACT_LIMIT` bytes (far below where
the cache could leave a field out) and says "don't know" (None) for bigger ones, which the
caller then answers from the cached parse.

Speed: a block is first checked with bytes operations (is the field name there at all; for an
ASCII block without encoded words, is every word of the string there), then the field's lines
are found with one regular expression and only their values are decoded.
"""

from __future__ import annotations

import bisect
import itertools
import re

from columba.storage.mime import decode_rfc2047

__all__ = ["EXACT_LIMIT", "HeaderNeedle", "field_values", "header_match", "match_many"]

EXACT_LIMIT = 8192
"""Header blocks up to this size give exact answers: each field costs at most its bytes plus
16 of the cache's 64 KiB budget and takes at least 3 bytes, so a block this small always has
every field in the cached parse (and far fewer than ``MAX_HEADER_FIELDS``)."""


_LINE_ENDS = re.compile(rb"\r*\n")


DECODED_MEMO = 4096
"""Decoded field values one :func:`match_many` call remembers."""


class HeaderNeedle:
    """One header key, prepared: a lower-case field name and the case-folded string."""

    __slots__ = ("ascii", "encoded", "field", "folded", "name", "pattern", "usable", "words")

    def __init__(self, field: str, value: str) -> None:
        self.field = field
        self.name = field.lower().encode("utf-8", "surrogateescape")
        self.usable = bool(self.name) and all(0x21 <= b <= 0x7E and b != 0x3A for b in self.name)
        """False for a name no regular field line can carry the way this module looks for
        it (empty, blanks, controls, a colon, non-ASCII): :func:`header_match` then says
        None."""
        self.folded = value.casefold()
        self.ascii: bytes | None = self.folded.encode("ascii") if self.folded.isascii() else None
        """The folded string as bytes when it is ASCII (then a block of ASCII text without
        encoded words can only match if it holds these bytes, lower-cased)."""
        self.words = [w.encode("ascii") for w in self.folded.split()] if self.ascii else []
        # A field: at a line start the name (then blanks, or a NUL and anything up to the
        # first colon: the parser cuts a name at NUL and drops trailing blanks), the first
        # colon, the blanks after it, then the value: the rest of the line and every
        # continuation line (one starting with a blank).
        self.pattern = re.compile(
            rb"^"
            + re.escape(self.name)
            + rb"[ \t]*(?:\x00[^:\n]*)?:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)",
            re.MULTILINE,
        )
        # Such a field whose value has an encoded word or a non-ASCII byte, after an LF
        # (:func:`match_many` runs it over many blocks joined with LFs).
        self.encoded = re.compile(
            rb"\n"
            + re.escape(self.name)
            + rb"[ \t]*(?:\x00[^:\n]*)?:(?:[^\n]|\n[ \t])*?(?:=\?|[\x80-\xff])"
        )


def field_values(header: bytes, lowered: bytes, needle: HeaderNeedle) -> list[bytes]:
    """The values of the fields named ``needle.name`` in a header block as
    :meth:`ParsedMessage.decoded_header` decodes them: the MIME parser's ``HeaderField.value``
    (leading blanks cut, each line without its line end and trailing CRs, continuation lines
    joined with LF) with the LFs removed. *lowered* is ``header.lower()``."""
    out: list[bytes] = []
    n = len(header)
    for match in needle.pattern.finditer(lowered, 0, _end_of_header(header)):
        start, end = match.span(1)
        value = header[start:end]
        if end < n:  # the last line ends with LF: its trailing CRs go
            value = value.rstrip(b"\r")
        if b"\n" in value:
            value = _LINE_ENDS.sub(b"", value)
        out.append(value)
    return out


def _end_of_header(data: bytes) -> int:
    """Offset of the empty line that ends the header (the parser stops there), or the end:
    in a block as the index keeps it, its last line."""
    n = len(data)
    crlf = data.find(b"\n\r\n")
    lf = data.find(b"\n\n")
    if (crlf < 0 or crlf == n - 3) and (lf < 0 or lf == n - 2):
        if data.startswith(b"\n") or data.startswith(b"\r\n"):
            return 0
        return n
    best = n
    for at in (crlf, lf):
        if 0 <= at < best:
            best = at + 1
    return 0 if data.startswith(b"\n") or data.startswith(b"\r\n") else best


def header_match(
    header: bytes, needle: HeaderNeedle, decoded: dict[bytes, str] | None = None
) -> bool | None:
    """Whether the message with this header block matches the header key (None: the block is
    too big to promise the cached parse's answer, or the name is unusual). *decoded* keeps
    the case-folded decoding of field values across calls (lists and threads repeat them)."""
    if len(header) > EXACT_LIMIT or not needle.usable:
        return None
    lowered = header.lower()
    if needle.name not in lowered:
        return False
    plain = needle.words and header.isascii() and b"=?" not in header
    if plain and not all(w in lowered for w in needle.words):
        return False
    values = field_values(header, lowered, needle)
    if not values:
        return False
    if not needle.folded:
        return True
    wanted = needle.folded
    raw = needle.ascii
    for value in values:
        if raw is not None and b"=?" not in value and value.isascii():
            if raw in value.lower():
                return True
        else:
            text = decoded.get(value) if decoded is not None else None
            if text is None:
                text = decode_rfc2047(value).casefold()
                if decoded is not None and len(decoded) < DECODED_MEMO:
                    decoded[value] = text
            if wanted in text:
                return True
    return False


def match_many(headers: list[bytes], needle: HeaderNeedle) -> tuple[list[int], list[int]]:
    """:func:`header_match` of many header blocks: (positions in *headers* that match,
    positions it can't decide). The blocks are joined and lower-cased once; only those where
    the key could match are checked one by one: ASCII field values without encoded words
    must hold (the longest word of) the string, so a block that has neither the word nor such
    a field (found with one regular expression over all blocks) doesn't match."""
    if not headers:
        return [], []
    if not needle.usable:
        return [], list(range(len(headers)))
    candidates: set[int] = set()
    if needle.folded:
        joined = (b"\n" + b"\n".join(headers)).lower()
        # where each block starts in *joined*: after the LF before it
        starts = list(itertools.accumulate((len(b) + 1 for b in headers), initial=1))[:-1]

        def owner(offset: int) -> int:
            return bisect.bisect_right(starts, offset) - 1

        for match in needle.encoded.finditer(joined):
            candidates.add(owner(match.start() + 1))
        if needle.words:
            word = max(needle.words, key=len)
            at = joined.find(word)
            while at >= 0:
                candidates.add(owner(at))
                at = joined.find(word, at + 1)
        candidates.update(i for i, b in enumerate(headers) if len(b) > EXACT_LIMIT)
    else:
        candidates.update(range(len(headers)))
    matched: list[int] = []
    unsure: list[int] = []
    decoded: dict[bytes, str] = {}
    for i in sorted(candidates):
        got = header_match(headers[i], needle, decoded)
        if got is None:
            unsure.append(i)
        elif got:
            matched.append(i)
    return matched, unsure
