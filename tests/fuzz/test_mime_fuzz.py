"""Hypothesis fuzzing of columba.storage.mime: no input makes it raise or break its shape.

Three sources of input: arbitrary bytes, MIME-shaped messages built from a grammar of
awkward pieces, and real messages (the edge-case files and, when the corpus is there, the
imaptest corpus) mutated byte-wise.  Every result is checked for structural invariants:
offsets nest and stay inside the message, line counts agree with the bytes, the IMAP texts
are well-formed (balanced, literals of the right length), every section can be fetched,
and the JSON cache reproduces the same answers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.storage.mime import MimePart, ParsedMessage, parse_message, to_crlf

REPO = Path(__file__).resolve().parents[2]
TRICKY = sorted((REPO / "tests/data/mime-golden/tricky").glob("*.eml"))
MBOX = Path(__file__).parents[2].parent / "shared/data/imaptest-200.mbox"


def _seeds() -> list[bytes]:
    seeds = [p.read_bytes() for p in TRICKY if p.stat().st_size < 20_000]
    if MBOX.exists():
        text = MBOX.read_bytes()
        # a handful of corpus messages, split on the mbox From_ lines
        parts = re.split(rb"(?:^|\r?\n)From [^\n]*\n", text)
        seeds += [p for p in parts[1:] if p][:: max(1, len(parts) // 12)]
    return seeds


SEEDS = _seeds()
FUZZ = settings(
    max_examples=int(os.environ.get("COLUMBA_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- checks ---------------------------------------------------------------------------------

_TOKEN = re.compile(rb'\(|\)|NIL|\d+|"(?:[^"\\\r\n]|\\["\\])*"|\{(\d+)\}\r\n| ')


def well_formed(text: str) -> int:
    """Parse an IMAP paren-list body; returns the number of top-level items."""
    data = text.encode("utf-8", "surrogateescape")
    pos, depth, items = 0, 0, 0
    while pos < len(data):
        m = _TOKEN.match(data, pos)
        assert m is not None, f"bad IMAP text at {pos}: {data[pos : pos + 40]!r}"
        tok = m.group(0)
        pos = m.end()
        if m.group(1) is not None:
            pos += int(m.group(1))
            assert pos <= len(data), "literal runs past the end"
        if tok == b"(":
            depth += 1
        elif tok == b")":
            depth -= 1
            assert depth >= 0, "unbalanced )"
        if depth == 0 and tok not in (b" ", b"("):
            items += 1
    assert depth == 0, "unbalanced ("
    return items


def section_paths(part: MimePart, prefix: str = "") -> list[str]:
    out: list[str] = []
    if part.is_multipart:
        for i, child in enumerate(part.children, 1):
            path = f"{prefix}{i}"
            out.append(path)
            out += _inner(child, path)
    elif not prefix:
        out.append("1")
        out += _inner(part, "1")
    return out


def _inner(part: MimePart, path: str) -> list[str]:
    if part.is_multipart:
        return section_paths(part, path + ".")
    if part.is_rfc822 and part.children:
        inner = part.children[0]
        if inner.is_multipart:
            return section_paths(inner, path + ".")
        return [path + ".1", *_inner(inner, path + ".1")]
    return []


def check(raw: bytes) -> ParsedMessage:
    m = parse_message(raw)
    data = to_crlf(raw)
    assert m.size == len(data)
    assert well_formed(m.envelope) == 10
    assert well_formed(m.body) >= 1
    assert well_formed(m.bodystructure) >= 1
    for part in m.root.walk():
        assert 0 <= part.hdr_start <= part.hdr_end <= part.body_start <= part.body_end <= m.size
        assert part.body_lines == data.count(b"\n", part.body_start, part.body_end)
        for child in part.children:
            assert part.body_start <= child.hdr_start and child.body_end <= part.body_end
    specs = ["", "HEADER", "TEXT", "HEADER.FIELDS (From Subject)", "HEADER.FIELDS.NOT (To)"]
    for path in section_paths(m.root)[:60]:
        specs += [path, path + ".MIME", path + ".HEADER", path + ".TEXT"]
        specs.append(path + ".HEADER.FIELDS (Subject)")
    back = ParsedMessage.from_json(m.to_json())
    assert (back.envelope, back.body, back.bodystructure, back.size) == (
        m.envelope,
        m.body,
        m.bodystructure,
        m.size,
    )
    for spec in specs:
        got = m.section_bytes(data, spec)
        assert got is None or isinstance(got, bytes)
        assert back.section_bytes(data, spec) == got
    assert isinstance(m.text_for_search(), str)
    for name in ("subject", "from", "date", "message-id", "to"):
        assert all(isinstance(v, str) for v in m.decoded_header(name))
    _ = m.date, m.subject, m.message_id
    return m


# -- strategies -----------------------------------------------------------------------------

PIECES = [
    b"\r\n", b"\n", b"\r", b"--", b"--b", b"--b--", b"--b\r\n", b"\r\n\r\n", b":", b";", b'"', b"(",
    b")", b"<", b">", b"@", b",", b"\\", b"=?utf-8?q?x?=", b"\x00", b"\xff", b" ", b"\t",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/digest; boundary=b\r\n", b"Content-Type: text/plain; charset=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"MIME-Version: 1.0\r\n", b"From: a@b\r\n",
    b"To: g: a@b, c@d;\r\n", b"Subject: s\r\n", b"name*0=a; name*1=b", b"filename*=utf-8''%C3%A4",
    b"Content-Disposition: attachment; filename=x\r\n", b"Content-Language: en, de\r\n",
]  # fmt: skip

piece = st.sampled_from(PIECES)
mime_text = st.lists(st.one_of(piece, st.binary(max_size=8)), max_size=60).map(b"".join)


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 16))
        data[at : at + cut] = draw(st.one_of(piece, st.binary(max_size=4)))
    return bytes(data)


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> bytes:
    headers = draw(st.lists(piece, max_size=4))
    kind = draw(st.sampled_from(["leaf", "multi", "rfc822"] if depth < 4 else ["leaf"]))
    if kind == "multi":
        b = draw(st.sampled_from([b"b", b"bb", b"b%d" % depth, b"", b"x" * 90]))
        headers.append(b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n')
        children = draw(st.lists(mime_tree(depth + 1), max_size=3))
        body = b"pre\r\n" + b"".join(b"--" + b + b"\r\n" + c + b"\r\n" for c in children)
        body += draw(st.sampled_from([b"--" + b + b"--\r\n", b"", b"--" + b]))
    elif kind == "rfc822":
        headers.append(b"Content-Type: message/rfc822\r\n")
        body = draw(mime_tree(depth + 1))
    else:
        body = draw(mime_text)
    sep = draw(st.sampled_from([b"\r\n", b"\n", b""]))
    return b"".join(headers) + sep + body


# -- tests ----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(mime_text)
def test_mime_shaped_noise(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(mime_tree())
def test_generated_mime_trees(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(mutated_seed())
def test_mutated_real_messages(raw: bytes) -> None:
    check(raw)


def test_seed_messages_themselves() -> None:
    assert SEEDS
    for raw in SEEDS:
        check(raw)
