"""Fuzz parse_filter: any text gives EventFilterError or a filter whose str() round-trips,
and matching a parsed filter never raises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.events.filter import EventFilter, EventFilterError, parse_filter
from columba.events.model import Event

VALID = [
    "event=abc",
    'event="abc"',
    "event=auth_request_finished AND (NOT success=yes)",
    "event=abc OR (event=def AND (category=imap OR category=lmtp) AND NOT category=debug "
    "AND NOT (net_in_bytes<1024 OR net_out_bytes<1024))",
    "(category=debug AND NOT (net_in_bytes<1KB OR net_out_bytes<1KB)) OR "
    "(event=abc AND (message_size>1gb and message_size<1tB)) OR (event=def AND (duration<1mins))",
    "category=service:imap",
    "event=http_request_finished AND source_location=http-client.c:123 AND user=testuser*",
    'ip="fe80::1%lo" OR ip=10.0.0.0/8 OR ip=2001::1*',
    'reply="OK \\* \\"quoted\\" \\\\ done" AND n>=2weeks AND m<=3 KB',
    'list="" OR "odd key"=and OR x=NOT',
    "a=1 OR b=2 AND NOT c=3",
]

# characters that matter to the lexer, plus some that do not
ALPHABET = st.sampled_from(list('()=<>" \\*?:._-/%\tANDORNOTandornot01239abcxyz\u00e4\n'))


def check(text: str) -> None:
    try:
        f = parse_filter(text)
    except EventFilterError as e:
        assert 0 <= e.position <= len(text)
        return
    canonical = str(f)
    again = parse_filter(canonical)
    assert again == f, (text, canonical)
    assert str(again) == canonical


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    check(text)


@settings(max_examples=600)
@given(st.text(ALPHABET, max_size=120))
def test_text_from_the_filter_alphabet(text: str) -> None:
    check(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "swap"]))
        pos = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:pos] + draw(st.text(ALPHABET, min_size=1, max_size=4)) + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)) :]
        elif kind == "replace" and pos < len(text):
            text = text[:pos] + draw(ALPHABET) + text[pos + 1 :]
        elif kind == "duplicate":
            end = min(len(text), pos + draw(st.integers(1, 20)))
            text = text[:end] + text[pos:end] + text[end:]
        elif kind == "swap" and len(text) > 1:
            other = draw(st.integers(0, len(text) - 1))
            a, b = sorted((min(pos, len(text) - 1), other))
            chars = list(text)
            chars[a], chars[b] = chars[b], chars[a]
            text = "".join(chars)
    return text


@settings(max_examples=1500)
@given(mutated())
def test_mutated_valid_filters(text: str) -> None:
    check(text)


KEYS = st.sampled_from(["event", "category", "source_location", "user", "n", "ip", "AND", ""])
VALUES = st.one_of(
    st.sampled_from(["abc", "*", "a*b?", "1KB", "5secs", "1m", "-3", "10.0.0.0/8", "::1", "and"]),
    st.text(max_size=12),
)


@st.composite
def generated(draw: st.DrawFn, depth: int = 0) -> str:
    """Filter text from the grammar, with random quoting and spacing."""
    if depth < 4 and draw(st.booleans()):
        kind = draw(st.sampled_from(["AND", "OR", "NOT", "()"]))
        if kind == "NOT":
            return "NOT " + draw(generated(depth + 1))
        if kind == "()":
            return "(" + draw(generated(depth + 1)) + ")"
        return f"{draw(generated(depth + 1))} {kind} {draw(generated(depth + 1))}"
    key = draw(KEYS)
    op = (
        "="
        if key in ("event", "category", "source_location")
        else draw(st.sampled_from(["=", "<", ">", "<=", ">="]))
    )
    value = draw(VALUES)
    quoted_key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    quoted_value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    sp = draw(st.sampled_from(["", " ", "\t"]))
    return f"{quoted_key}{sp}{op}{sp}{quoted_value}"


@settings(max_examples=800)
@given(generated())
def test_generated_filters_parse_and_roundtrip(text: str) -> None:
    f = parse_filter(text)  # everything the grammar builds is valid
    assert parse_filter(str(f)) == f


FIELD_VALUES = st.one_of(
    st.text(max_size=10),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=600)
@given(
    mutated() | generated(),
    st.text(max_size=12),
    st.dictionaries(st.sampled_from(["user", "n", "ip", "duration", "x"]), FIELD_VALUES),
    st.lists(st.sampled_from(["imap", "debug", "service:imap"]), max_size=3),
    st.sampled_from(["", "http-client.c:123", "a.c", "x:y:1"]),
)
def test_matching_never_raises(
    text: str, name: str, fields: dict[str, object], categories: list[str], location: str
) -> None:
    try:
        f: EventFilter = parse_filter(text)
    except EventFilterError:
        return
    event = Event(name, fields, categories, 1.0, 2.0, location)  # type: ignore[arg-type]
    assert f.match(event) in (True, False)
