"""Columba's MIME parser against Debian's Dovecot, answer for answer.

The answers in ``tests/data/mime-golden/`` were recorded from Dovecot by
``tests/data/mime-golden/generate.py`` (see its docstring): RFC822.SIZE, ENVELOPE, BODY,
BODYSTRUCTURE and a set of ``BODY[section]`` contents for

* the 200 messages of ``shared/data/imaptest-200.mbox`` (``corpus.json``), and
* the hand-written edge cases in ``tricky/*.eml`` (``tricky.json``).

Every message must match exactly.  Differences that are known and accepted are listed in
``KNOWN_DIFFERENCES`` (message -> reason) and run as strict xfails, so they are neither
hidden nor allowed to pass silently.  At the time of writing the list is empty: all 200
corpus messages and all edge cases match.

Beyond these files, the parser was cross-checked by differential fuzzing against the same
Dovecot (about 8,000 generated and mutated messages, sections included; the harness is the
generator's ``Dovecot.answers``).  The one behaviour found and not reproduced:

* a NUL byte right after a backslash inside a quoted display name (``"a\\<NUL>"``):
  Dovecot keeps the backslash and writes U+FFFD; Columba drops the backslash.  Real mail
  does not carry NUL bytes in headers.

The contents of ``BODY[...]`` sections are raw bytes; Dovecot sends NUL bytes inside a
literal as 0x80 - that is the FETCH writer's job, so the comparison below applies it too.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from columba.storage.mime import parse_message, to_crlf

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests/data/mime-golden"
MBOX = Path(__file__).parents[2].parent / "shared/data/imaptest-200.mbox"

# "corpus:<index>" or "tricky:<file name>" -> why Columba's answer differs from Dovecot's
KNOWN_DIFFERENCES: dict[str, str] = {}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mime_golden_generate", GOLDEN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def _load(name: str) -> list[dict[str, Any]]:
    doc = json.loads((GOLDEN / name).read_text())
    assert doc["oracle"].startswith("Dovecot ")
    messages: list[dict[str, Any]] = doc["messages"]
    return messages


CORPUS = _load("corpus.json")
TRICKY = _load("tricky.json")


def _corpus_messages() -> list[bytes]:
    if not MBOX.exists():
        pytest.skip(f"corpus not found at {MBOX}")
    return [to_crlf(m) for m in GEN.split_mbox(MBOX.read_bytes())]


_corpus_cache: list[bytes] = []


def corpus_message(index: int) -> bytes:
    if not _corpus_cache:
        _corpus_cache.extend(_corpus_messages())
    return _corpus_cache[index]


def _section_digest(data: bytes) -> str:
    # Dovecot sends NUL as 0x80 inside a literal; the FETCH writer does that, not the parser
    return hashlib.sha256(data.replace(b"\x00", b"\x80")).hexdigest()


def differences(raw: bytes, golden: dict[str, Any]) -> list[str]:
    """Human-readable differences between Columba's answers and Dovecot's for one message."""
    assert hashlib.sha256(raw).hexdigest() == golden["sha256"], "not the message Dovecot saw"
    parsed = parse_message(raw)
    out: list[str] = []
    for key in ("size", "envelope", "body", "bodystructure"):
        got, want = getattr(parsed, key), golden[key]
        if got != want:
            out.append(f"{key}:\n  columba: {got!r}\n  dovecot: {want!r}")
    for spec, want in golden.get("sections", {}).items():
        got = parsed.section_bytes(raw, spec) or b""
        if _section_digest(got) != want["sha256"]:
            shown = base64.b64decode(want["b64"]) if "b64" in want else f"<{want['len']} bytes>"
            out.append(f"BODY[{spec}]:\n  columba: {got[:300]!r}\n  dovecot: {shown!r}")
    return out


def _params(prefix: str, records: list[dict[str, Any]], key: str) -> list[Any]:
    params = []
    for rec in records:
        ident = f"{prefix}:{rec[key]}"
        marks = []
        if ident in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(reason=KNOWN_DIFFERENCES[ident], strict=True))
        params.append(pytest.param(rec, id=ident, marks=marks))
    return params


def test_corpus_split_is_the_one_dovecot_saw() -> None:
    messages = _corpus_messages()
    assert len(messages) == len(CORPUS) == 200
    for raw, rec in zip(messages, CORPUS, strict=True):
        assert hashlib.sha256(raw).hexdigest() == rec["sha256"]


@pytest.mark.parametrize("golden", _params("corpus", CORPUS, "index"))
def test_corpus_message_matches_dovecot(golden: dict[str, Any]) -> None:
    raw = corpus_message(golden["index"])
    assert differences(raw, golden) == []


@pytest.mark.parametrize("golden", _params("tricky", TRICKY, "name"))
def test_edge_case_matches_dovecot(golden: dict[str, Any]) -> None:
    raw = to_crlf((GOLDEN / "tricky" / golden["name"]).read_bytes())
    assert differences(raw, golden) == []


def test_every_edge_case_has_a_golden_answer() -> None:
    names = sorted(p.name for p in (GOLDEN / "tricky").glob("*.eml"))
    assert names == [rec["name"] for rec in TRICKY]


def test_goldens_cover_the_interesting_sections() -> None:
    specs = {spec for rec in CORPUS + TRICKY for spec in rec.get("sections", {})}
    for wanted in ("HEADER", "TEXT", "1", "1.MIME", "2.1.MIME", "2.HEADER", "2.TEXT", "99"):
        assert wanted in specs
    assert any(s.startswith("HEADER.FIELDS.NOT") for s in specs)
