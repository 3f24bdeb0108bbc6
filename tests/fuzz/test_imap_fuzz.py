"""Hypothesis fuzzing of the IMAP codec.

Arbitrary bytes and mutated valid commands, cut into arbitrary chunks, must only ever produce
events: never an exception (internal errors are raised here, not masked as BAD), never more
held in memory than the bounds allow, and the same events however the input is split.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.proto.imap import response as r
from columba.proto.imap.events import ConnectionClose, ParserEvent
from columba.proto.imap.parser import ImapParser
from tests.unit.test_imap_codec import GOLDEN, merge_chunks, respond

LIMITS = {
    "max_line_length": 300,
    "max_literal_size": 200,
    "max_inline_total": 400,
    "append_limit": 1000,
    "append_inline_threshold": 50,
    "max_nesting": 8,
    "max_args": 200,
    "max_literals": 20,
    "max_search_depth": 20,
}
BOUND = 2 * LIMITS["max_line_length"] + LIMITS["max_inline_total"] + 64

_BIG = b"M" * 120
CORPUS_COMMANDS = [raw for raw, _ in GOLDEN] + [
    b"DONE\r\n",
    b"=\r\n",
    b"s APPEND INBOX (\\Seen) {120}\r\n" + _BIG + b"\r\n",
    b"s APPEND INBOX {3+}\r\nabc {120+}\r\n" + _BIG + b" UTF8 (~{120+}\r\n" + _BIG + b")\r\n",
    b"s APPEND INBOX {1200+}\r\n" + _BIG * 10 + b"\r\n",
    b"s LOGIN {250}\r\n" + b"u" * 250 + b" p\r\n",
]
SPECIAL = [
    b"{",
    b"}",
    b"+}",
    b"~{",
    b'"',
    b"\\",
    b"(",
    b")",
    b"[",
    b"]",
    b"<",
    b">",
    b" ",
    b"\r\n",
    b"\n",
    b"*",
    b"%",
    b"$",
    b":",
    b",",
    b"{5}\r\n",
    b"{3+}\r\n",
    b"{0}\r\n",
    b"~{2+}\r\n",
    b"\x00",
    b"\xff",
    b"&",
    b"-",
    b"0",
    b"9" * 25,
    b"NIL",
    b"UID ",
    b"DONE\r\n",
    b"{99999999999}\r\n",
]


class StrictParser(ImapParser):
    _raise_internal_errors = True


def run(chunks: list[bytes], **kw: object) -> list[ParserEvent]:
    parser = StrictParser(**{**LIMITS, **kw})  # type: ignore[arg-type]
    out: list[ParserEvent] = []
    for chunk in chunks:
        pending = parser.feed(chunk)
        while pending:
            event = pending.pop(0)
            assert isinstance(event, ParserEvent)
            out.append(event)
            if not pending and parser.paused:
                pending.extend(respond(parser, event))
        assert parser.buffered_bytes <= BOUND + len(chunk)
        assert parser.buffered_bytes <= BOUND or parser.paused
    if parser.closed:
        assert isinstance(out[-1], ConnectionClose)
    return merge_chunks(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(CORPUS_COMMANDS), min_size=1, max_size=6))
    data = bytearray(b"".join(lines))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(SPECIAL))
        elif op == 2 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = draw(st.binary(max_size=8))
    return bytes(data)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 4000), max_size=20))
def test_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    assert run(split(data, cuts)) == run([data])


@FUZZ
@given(mutated(), st.lists(st.integers(0, 4000), max_size=20))
def test_mutated_commands(data: bytes, cuts: list[int]) -> None:
    assert run(split(data, cuts)) == run([data])


@FUZZ
@given(mutated())
def test_mutated_commands_byte_by_byte(data: bytes) -> None:
    assert run([data[i : i + 1] for i in range(len(data))]) == run([data])


@FUZZ
@given(mutated(), st.booleans(), st.booleans())
def test_mutated_commands_in_other_modes(data: bytes, literal_plus: bool, utf8: bool) -> None:
    assert run([data], literal_plus=literal_plus, utf8=utf8) == run(
        split(data, [7, 13, 50]), literal_plus=literal_plus, utf8=utf8
    )


@FUZZ
@given(st.binary(min_size=1, max_size=3000))
def test_huge_lines_stay_bounded(data: bytes) -> None:
    run([data.replace(b"\n", b"x")] * 5)


@FUZZ
@given(
    st.recursive(
        st.none() | st.integers(0, 2**63) | st.text(max_size=20) | st.binary(max_size=20),
        lambda inner: st.lists(inner, max_size=4),
        max_leaves=20,
    )
)
def test_encoder_total_on_its_value_domain(value: object) -> None:
    wire = r.encode_value(value)
    assert isinstance(wire, bytes)
    assert wire.count(b"(") >= wire.count(b")") or b"{" in wire or b'"' in wire
