"""Dovecot's event filter language: parsing, canonical text, matching, errors.

Many cases are ported from Dovecot's src/lib/test-event-filter*.c; where Columba differs on
purpose (AND binds tighter than OR; n-ary AND/OR in the canonical text) the test says so.
"""

from __future__ import annotations

import itertools

import pytest

from columba.events.filter import (
    MAX_FILTER_LENGTH,
    MAX_NESTING,
    And,
    Comparison,
    EventFilter,
    EventFilterError,
    Not,
    Or,
    parse_filter,
    parse_interval_msecs,
    parse_size_bytes,
)
from columba.events.model import Event, FieldValue


def ev(
    name: str = "",
    *,
    categories: tuple[str, ...] = (),
    source_location: str = "",
    duration_usecs: int | None = None,
    **fields: FieldValue,
) -> Event:
    event = Event(name, dict(fields), list(categories), 1000.0, None, source_location)
    if duration_usecs is not None:
        event.end_time = 1000.0 + duration_usecs / 1_000_000
    return event


def matches(text: str, event: Event) -> bool:
    return parse_filter(text).match(event)


def roundtrip(text: str) -> str:
    """Parse, print, and check that the printed text parses back to an equal filter."""
    f = parse_filter(text)
    canonical = str(f)
    again = parse_filter(canonical)
    assert again == f, (text, canonical)
    assert str(again) == canonical
    return canonical


# ---------------------------------------------------------------------------
# The reference's examples (docs/core/config/events/filter.md, export.md, statistics.md)

BIG = (
    "event=abc OR (event=def AND (category=imap OR category=lmtp) AND NOT category=debug "
    "AND NOT (net_in_bytes<1024 OR net_out_bytes<1024))"
)
SIZES = (
    "(category=debug AND NOT (net_in_bytes<1KB OR net_out_bytes<1KB)) OR "
    "(event=abc AND (message_size>1gb and message_size<1tB)) OR "
    "(event=def AND (duration<1mins))"
)
METRIC = (
    "event=http_request_finished AND source_location=http-client.c:123 AND "
    "category=storage AND category=imap AND user=testuser* AND status_code=200"
)
LOG_DEBUG = (
    "(event=http_request_finished AND category=imap) OR "
    "(event=imap_command_finished AND user=testuser)"
)


def test_reference_examples_parse_and_print() -> None:
    assert roundtrip("event=auth_request_finished AND (NOT success=yes)") == (
        'event="auth_request_finished" AND NOT success="yes"'
    )
    assert roundtrip(BIG) == (
        'event="abc" OR (event="def" AND (category="imap" OR category="lmtp") AND '
        'NOT category="debug" AND NOT (net_in_bytes<"1024" OR net_out_bytes<"1024"))'
    )
    assert roundtrip("category=service:imap") == 'category="service:imap"'
    assert roundtrip(SIZES) == (
        '(category="debug" AND NOT (net_in_bytes<"1KB" OR net_out_bytes<"1KB")) OR '
        '(event="abc" AND message_size>"1gb" AND message_size<"1tB") OR '
        '(event="def" AND duration<"1mins")'
    )
    assert roundtrip(METRIC) == (
        'event="http_request_finished" AND source_location="http-client.c:123" AND '
        'category="storage" AND category="imap" AND user="testuser*" AND status_code="200"'
    )
    assert roundtrip(LOG_DEBUG) == (
        '(event="http_request_finished" AND category="imap") OR '
        '(event="imap_command_finished" AND user="testuser")'
    )
    assert roundtrip("event=* AND category=service:imap") == (
        'event="*" AND category="service:imap"'
    )


def test_whitespace_and_quoting_of_event_name_are_insignificant() -> None:
    filters = {
        parse_filter(t) for t in ("event=abc", 'event="abc"', "event = abc", 'event = "abc"')
    }
    assert len(filters) == 1
    assert str(filters.pop()) == 'event="abc"'


def test_auth_request_finished_example_matches() -> None:
    f = parse_filter("event=auth_request_finished AND (NOT success=yes)")
    assert f.match(ev("auth_request_finished", success="no"))
    assert f.match(ev("auth_request_finished"))  # no success field at all
    assert not f.match(ev("auth_request_finished", success="yes"))
    assert not f.match(ev("auth_request_finished", success="YES"))  # values ignore case
    assert not f.match(ev("auth_request_started", success="no"))


def test_big_example_matches() -> None:
    f = parse_filter(BIG)

    def big(*categories: str) -> Event:
        return Event("def", {"net_in_bytes": 5000, "net_out_bytes": 5000}, list(categories))

    assert f.match(ev("abc"))
    assert f.match(big("imap"))
    assert f.match(big("lmtp", "other"))
    assert not f.match(big("pop3"))
    assert not f.match(big("imap", "debug"))
    assert not f.match(ev("def", categories=("imap",), net_in_bytes=100, net_out_bytes=5000))
    assert not f.match(ev("def", categories=("imap",), net_in_bytes=5000, net_out_bytes=1023))
    assert f.match(ev("def", categories=("imap",), net_in_bytes=1024, net_out_bytes=1024))
    ghi = big("imap")
    ghi.name = "ghi"
    assert not f.match(ghi)


def test_sizes_example_matches() -> None:
    f = parse_filter(SIZES)
    assert f.match(ev("x", categories=("debug",), net_in_bytes=1024, net_out_bytes=2048))
    assert not f.match(ev("x", categories=("debug",), net_in_bytes=1023, net_out_bytes=2048))
    assert f.match(ev("abc", message_size=2 * 1024**3))
    assert not f.match(ev("abc", message_size=1024**3))  # > 1gb is strict
    assert not f.match(ev("abc", message_size=1024**4))
    assert f.match(ev("def", duration_usecs=59_999_999))
    assert not f.match(ev("def", duration_usecs=60_000_000))


def test_metric_example_matches() -> None:
    f = parse_filter(METRIC)
    good = ev(
        "http_request_finished",
        categories=("storage", "imap"),
        source_location="http-client.c:123",
        user="testuser42",
        status_code=200,
    )
    assert f.match(good)
    for change in (
        {"name": "http_request_started"},
        {"categories": ["storage"]},
        {"source_location": "http-client.c:124"},
        {"source_location": "other.c:123"},
    ):
        bad = ev(
            "http_request_finished",
            categories=("storage", "imap"),
            source_location="http-client.c:123",
            user="testuser42",
            status_code=200,
        )
        for attr, value in change.items():
            setattr(bad, attr, value)
        assert not f.match(bad), change
    bad = ev(
        "http_request_finished",
        categories=("storage", "imap"),
        source_location="http-client.c:123",
        user="someone",
        status_code=200,
    )
    assert not f.match(bad)


def test_log_debug_and_export_examples_match() -> None:
    f = parse_filter(LOG_DEBUG)
    assert f.match(ev("http_request_finished", categories=("imap",)))
    assert not f.match(ev("http_request_finished", categories=("lmtp",)))
    assert f.match(ev("imap_command_finished", user="TestUser"))
    assert not f.match(ev("imap_command_finished", user="other"))
    g = parse_filter("event=* AND category=service:imap")
    assert g.match(ev("anything", categories=("service:imap",)))
    assert not g.match(ev("", categories=("service:imap",)))  # unnamed events never match
    assert not g.match(ev("anything", categories=("service:pop3",)))


# ---------------------------------------------------------------------------
# Parser, ported from test-event-filter-parser.c

WHITESPACE = (" ", "\t", "\n", "\r", "          ")


@pytest.mark.parametrize("sp", WHITESPACE)
@pytest.mark.parametrize(("op", "cp"), [("", ""), ("(", ")"), ("((", "))"), ("(((", ")))")])
def test_spaces_and_extra_parens_do_not_matter(sp: str, op: str, cp: str) -> None:
    variants = [
        f"{sp}{op}event=abc{cp}",
        f"{op}{sp}event=abc{cp}",
        f"{op}event{sp}=abc{cp}",
        f"{op}event={sp}abc{cp}",
        f"{op}event=abc{sp}{cp}",
        f"{op}event=abc{cp}{sp}",
    ]
    for text in variants:
        assert roundtrip(text) == 'event="abc"', repr(text)


def test_empty_filter_is_valid_and_matches_nothing() -> None:
    f = parse_filter("")
    assert f == EventFilter(None)
    assert str(f) == ""
    assert not f.match(ev("abc"))
    assert parse_filter(" \t\r\n ") == f


@pytest.mark.parametrize("name", ["event", "source_location", "category", "foo-field-name"])
@pytest.mark.parametrize("cmp", ["", "=", "<", "<=", ">", ">="])
@pytest.mark.parametrize("negated", [False, True])
@pytest.mark.parametrize("quoted", [False, True])
def test_incomplete_comparison_is_an_error(
    name: str, cmp: str, negated: bool, quoted: bool
) -> None:
    key = f'"{name}"' if quoted else name
    text = ("NOT " if negated else "") + key + cmp
    with pytest.raises(EventFilterError) as info:
        parse_filter(text)
    assert info.value.position == len(text)
    assert "end of filter" in info.value.reason


def test_empty_parentheses_are_an_error() -> None:
    with pytest.raises(EventFilterError) as info:
        parse_filter("()")
    assert info.value.position == 1
    assert "unexpected ')'" in str(info.value)


@pytest.mark.parametrize(
    ("op1", "op2"), [("AND", "AND"), ("AND", "OR"), ("OR", "AND"), ("OR", "OR")]
)
def test_simple_nesting(op1: str, op2: str) -> None:
    left = roundtrip(f"(event=abc {op1} event=def) {op2} event=ghi")
    right = roundtrip(f"event=abc {op1} (event=def {op2} event=ghi)")
    if op1 == op2:
        # same operator: the groups flatten into one n-ary AND / OR
        flat = f'event="abc" {op1} event="def" {op1} event="ghi"'
        assert left == right == flat
    else:
        assert left == f'(event="abc" {op1} event="def") {op2} event="ghi"'
        assert right == f'event="abc" {op1} (event="def" {op2} event="ghi")'


def test_precedence_and_or_equal_left_to_right_like_dovecot() -> None:
    # Dovecot's bison grammar (%left AND OR) gives AND and OR equal precedence, left to
    # right: "1 OR 2 AND 3" is "(1 OR 2) AND 3". The canonical text always parenthesises.
    assert roundtrip('event="1" OR event="2" AND event="3"') == (
        '(event="1" OR event="2") AND event="3"'
    )
    assert roundtrip('event="1" AND event="2" OR event="3"') == (
        '(event="1" AND event="2") OR event="3"'
    )
    assert roundtrip("NOT a=1 AND b=2") == 'NOT a="1" AND b="2"'
    assert roundtrip("NOT a=1 OR b=2") == 'NOT a="1" OR b="2"'
    assert roundtrip("NOT (a=1 OR b=2)") == 'NOT (a="1" OR b="2")'
    assert roundtrip("NOT NOT a=1") == 'NOT NOT a="1"'
    assert parse_filter("a=1 OR b=2 AND c=3") == EventFilter(
        And((Or((Comparison("a", "=", "1"), Comparison("b", "=", "2"))), Comparison("c", "=", "3")))
    )
    assert parse_filter("NOT a=1 AND b=2") == EventFilter(
        And((Not(Comparison("a", "=", "1")), Comparison("b", "=", "2")))
    )
    # and the matching agrees: (a OR b) AND c
    f = parse_filter("a=1 OR b=1 AND c=1")
    assert not f.match(ev(a=1, b=0, c=0))
    assert not f.match(ev(a=0, b=1, c=0))
    assert f.match(ev(a=1, b=0, c=1))


def test_keywords_are_case_insensitive() -> None:
    assert parse_filter("a=1 and b=2 Or NoT c=3") == parse_filter("a=1 AND b=2 OR NOT c=3")


@pytest.mark.parametrize("category", ["debug", "info", "warning", "error", "fatal", "panic"])
def test_log_type_categories(category: str) -> None:
    assert roundtrip(f"(category={category})") == f'category="{category}"'


@pytest.mark.parametrize(
    ("not1", "not2"), [(False, False), (False, True), (True, False), (True, True)]
)
@pytest.mark.parametrize("op", ["AND", "OR"])
@pytest.mark.parametrize("sp", ["", "\t", "\n", "\r", "               "])
def test_nesting_with_whitespace(not1: bool, not2: bool, op: str, sp: str) -> None:
    e1, e2 = 'event="abc"', 'event="def"'
    n1, n2 = ("NOT " if not1 else ""), ("NOT " if not2 else "")
    expected = f"{n1}{e1} {op} {n2}{e2}"
    for sp1, sp2, sp3, sp4 in itertools.product(["", sp], repeat=4):
        text = f"{sp1}({n1}{e1}){sp2}{op}{sp3}({n2}{e2}){sp4}"
        assert roundtrip(text) == expected, repr(text)


COMPARATORS = ["=", "<", "<=", ">", ">="]
VALUES_SINGLE = ["foo", "foo.c", "foo.c:123"]
VALUES_MULTI = [
    "foo bar",
    "foo\tbar",
    "foo\nbar",
    "foo\rbar",
    'foo"bar',
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Donec ac vestibulum magna. "
    "Maecenas erat mi, finibus et tellus id, suscipit varius arcu. "
    "\u00e4\u00e1\u010d\u010f\u011b\u0148\u00f6\u0159\u00fc\u00fa\u016f",
    "r\u030c",
]
VALUES_OPER = [
    (kw, kw.lower())
    for base in ("and", "or", "not")
    for kw in {"".join(c) for c in itertools.product(*((ch.lower(), ch.upper()) for ch in base))}
]


def escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@pytest.mark.parametrize("parens", [False, True])
def test_generated_single_comparisons(parens: bool) -> None:
    def check(key: str, key_quoting: str, value_in: str, value_out: str, quoting: str) -> None:
        comparators = COMPARATORS if key not in ("event", "category", "source_location") else ["="]
        for cmp in comparators:
            expected = f'{key}{cmp}"{escaped(value_out)}"'
            for qkey, qval in itertools.product([False, True], repeat=2):
                if (qkey and key_quoting == "never") or (qval and quoting == "never"):
                    continue
                if not qval and quoting == "must":
                    continue
                k = f'"{key}"' if qkey else key
                v = f'"{escaped(value_in)}"' if qval else value_in
                text = f"{k}{cmp}{v}"
                if parens:
                    text = f"({text})"
                assert roundtrip(text) == expected, text

    for key in ("event", "category", "source_location"):
        for value in VALUES_SINGLE:
            check(key, "never", value, value, "may")
        for value in VALUES_MULTI:
            check(key, "never", value, value, "must")
        for kw, lower in VALUES_OPER:
            check(key, "never", kw, lower, "never")  # a bare keyword value is lowercased
            check(key, "never", kw, kw, "must")  # a quoted one is kept as written
    for key in ("foo", "foo_bar", "foo-bar"):
        for value in VALUES_SINGLE:
            check(key, "may", value, value, "may")
        for value in VALUES_MULTI:
            check(key, "may", value, value, "must")
        for kw, lower in VALUES_OPER:
            check(key, "may", kw, lower, "never")
            check(key, "may", kw, kw, "must")


def test_only_fields_take_ordering_comparisons() -> None:
    for key in ("event", "category", "source_location"):
        for op in ("<", ">", "<=", ">="):
            with pytest.raises(EventFilterError, match="only fields") as info:
                parse_filter(f"{key}{op}x")
            assert info.value.position == len(key)
    assert roundtrip("foo<=x") == 'foo<="x"'
    assert roundtrip("foo < = x") == 'foo<="x"'  # Dovecot allows a space inside <= too


def test_field_keys_are_quoted_when_needed() -> None:
    assert roundtrip('"foo bar"=1') == '"foo bar"="1"'
    assert roundtrip('"AND"=1') == '"AND"="1"'
    assert roundtrip('""=1') == '""="1"'
    assert roundtrip('"a\\"b"=1') == '"a\\"b"="1"'
    # a quoted "event" is still the event name, as in Dovecot
    assert parse_filter('"event"=x') == parse_filter("event=x")
    # keys are case-sensitive: Event is a field
    assert parse_filter("Event=x").root == Comparison("Event", "=", "x")


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("a=1 b=2", 4, "unexpected word 'b'"),
        ("a=1 AND", 7, "end of filter"),
        ("a=1 AND AND b=2", 8, "unexpected 'AND'"),
        ("(a=1", 4, "expecting ')'"),
        ("a=1)", 3, "unexpected ')'"),
        ("a==1", 2, "unexpected '='"),
        ("=1", 0, "unexpected '='"),
        ('a="unterminated', 2, "unterminated quoted string"),
        ('a="ends in backslash\\', 2, "unterminated quoted string"),
        ("a=1 % b", 4, "unexpected character '%'"),
        ("a=fe80::1%lo", 9, "unexpected character '%'"),  # must be quoted, as in Dovecot
        ("a=x\\ y", 3, "backslash"),
        ("a=\u00e4", 2, "unexpected character"),  # non-ASCII needs quotes
        ("a=1\u00a0", 3, "unexpected character"),  # only ASCII whitespace separates
        ("AND=1", 0, "unexpected 'AND'"),
        ("NOT", 3, "end of filter"),
        ("event>x", 5, "only fields"),
    ],
)
def test_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(EventFilterError) as info:
        parse_filter(text)
    assert info.value.position == position, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith("event filter: ")
    assert f"(at position {position})" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_input_is_a_filter_error() -> None:
    with pytest.raises(EventFilterError, match="must be a string"):
        parse_filter(None)  # type: ignore[arg-type]
    with pytest.raises(EventFilterError, match="must be a string"):
        parse_filter(b"event=abc")  # type: ignore[arg-type]


def test_length_is_bounded() -> None:
    ok = "a=" + "x" * (MAX_FILTER_LENGTH - 6)  # canonical form adds two quotes
    assert len(str(parse_filter(ok))) <= MAX_FILTER_LENGTH
    with pytest.raises(EventFilterError, match="longer than") as info:
        parse_filter("a=" + "x" * MAX_FILTER_LENGTH)
    assert info.value.position == MAX_FILTER_LENGTH
    # the canonical text grows (quotes): a filter whose canonical form would be too long
    # is refused too, so that str() always parses back
    tight = " OR ".join(["a=b"] * ((MAX_FILTER_LENGTH + 4) // 7))
    assert len(tight) <= MAX_FILTER_LENGTH
    with pytest.raises(EventFilterError, match="canonical form"):
        parse_filter(tight)


def test_nesting_is_bounded() -> None:
    ok = "(" * MAX_NESTING + "a=1" + ")" * MAX_NESTING
    assert str(parse_filter(ok)) == 'a="1"'
    with pytest.raises(EventFilterError, match="nesting") as info:
        parse_filter("(" * (MAX_NESTING + 1) + "a=1" + ")" * (MAX_NESTING + 1))
    assert info.value.position == MAX_NESTING
    assert roundtrip("NOT " * MAX_NESTING + "a=1").count("NOT") == MAX_NESTING
    with pytest.raises(EventFilterError, match="nesting"):
        parse_filter("NOT " * (MAX_NESTING + 1) + "a=1")
    with pytest.raises(EventFilterError, match="nesting"):
        parse_filter("(" * 10_000)


def test_tree_depth_is_bounded() -> None:
    # Each level alternates AND/OR, so the tree gets two levels per parenthesis pair
    # and can be deeper than the text's nesting: that is refused too, so that the
    # canonical text (one parenthesis per level) always parses back.
    def build(levels: int) -> str:
        text = "a=1"
        for i in range(levels):
            op = "AND" if i % 2 else "OR"
            text = f"b=1 {op} ({text})" if i % 2 else f"c=1 AND {text} OR d=1"
        return text

    deep_ok = parse_filter(build(20))
    assert deep_ok.root is not None and deep_ok.root.depth <= MAX_NESTING
    roundtrip(build(20))
    with pytest.raises(EventFilterError, match="nested deeper"):
        parse_filter(build(40))


def test_long_flat_chains_do_not_recurse() -> None:
    text = " AND ".join(f"f{i}={i}" for i in range(1000))
    f = parse_filter(text)
    assert isinstance(f.root, And) and len(f.root.children) == 1000
    assert f.root.depth == 1
    assert f.match(Event("", {f"f{i}": i for i in range(1000)}))


def test_huge_numbers_are_strings_not_crashes() -> None:
    digits = "9" * 4400  # more than int() converts by default
    for text in (f"n={digits}", f"n>{digits}KB", f"n<{digits}secs", f"n={digits}.5"):
        assert not parse_filter(text).match(ev(n=5))
    roundtrip(f"source_location=foo.c:{digits}")
    roundtrip(f"ip=10.0.0.0/{digits}")
    assert parse_filter("n=99999999999999999999").match(ev(n="99999999999999999999"))


# ---------------------------------------------------------------------------
# Matching, ported from test-event-filter.c and test-event-filter-expr.c


STRINGS: list[str | None] = [None, "", "X", "Y"]


def _event_ab(a: str | None, b: str | None = None) -> Event:
    fields: dict[str, FieldValue] = {}
    if a is not None:
        fields["a"] = a
    if b is not None:
        fields["b"] = b
    return Event("", fields)


def _empty(v: str | None) -> bool:
    return v is None or v == ""


@pytest.mark.parametrize("a", STRINGS)
def test_unary_truth_table(a: str | None) -> None:
    event = _event_ab(a)
    for expr, truth in (('a=""', _empty(a)), ("a=X", a == "X")):
        assert matches(expr, event) is truth
        assert matches(f"NOT {expr}", event) is (not truth)
        assert matches(f"NOT ({expr})", event) is (not truth)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(STRINGS, repeat=2)))
def test_binary_truth_table(a: str | None, b: str | None) -> None:
    event = _event_ab(a, b)
    pairs = [
        ('a=""', 'b=""', _empty(a), _empty(b)),
        ("a=X", 'b=""', a == "X", _empty(b)),
        ('a=""', "b=Y", _empty(a), b == "Y"),
        ("a=X", "b=Y", a == "X", b == "Y"),
    ]
    for e1, e2, t1, t2 in pairs:
        for opstr in ("OR", "AND"):

            def op(x: bool, y: bool, opstr: str = opstr) -> bool:
                return (x or y) if opstr == "OR" else (x and y)

            cases = {
                f"{e1} {opstr} {e2}": op(t1, t2),
                f"NOT {e1} {opstr} {e2}": op(not t1, t2),
                f"NOT ({e1}) {opstr} {e2}": op(not t1, t2),
                f"(NOT {e1}) {opstr} {e2}": op(not t1, t2),
                f"{e1} {opstr} NOT {e2}": op(t1, not t2),
                f"{e1} {opstr} NOT ({e2})": op(t1, not t2),
                f"{e1} {opstr} (NOT {e2})": op(t1, not t2),
                f"NOT ({e1} {opstr} {e2})": not op(t1, t2),
                f"NOT {e1} {opstr} NOT {e2}": op(not t1, not t2),
                f"NOT ({e1}) {opstr} NOT ({e2})": op(not t1, not t2),
                f"(NOT {e1}) {opstr} (NOT {e2})": op(not t1, not t2),
            }
            for text, expected in cases.items():
                assert matches(text, event) is expected, text


def test_missing_and_empty_fields() -> None:
    present = ev(str="parent_str", int=0)
    cleared = ev(str="")
    assert matches("str=*", present)
    assert matches("int=*", present)
    assert not matches("str=*", cleared)
    assert not matches("int=*", cleared)
    assert not matches('str=""', present)
    assert matches('str=""', cleared)
    assert matches('nonexistent=""', present)
    assert matches('nonexistent=""', cleared)


def test_event_name_and_field() -> None:
    f = parse_filter("event=named AND str=str")
    g = parse_filter("event=named OR str=str")
    for name in ("", "named", "wrong"):
        for value in (None, "str", "wrong"):
            event = ev(name) if value is None else ev(name, str=value)
            assert f.match(event) is (name == "named" and value == "str")
            assert g.match(event) is (name == "named" or value == "str")


def test_event_names_are_case_sensitive_wildcards() -> None:
    assert matches("event=imap_command_finished", ev("imap_command_finished"))
    assert not matches("event=IMAP_COMMAND_FINISHED", ev("imap_command_finished"))
    assert matches("event=imap_*", ev("imap_command_finished"))
    assert not matches("event=IMAP_*", ev("imap_command_finished"))
    assert matches("event=imap_command_finishe?", ev("imap_command_finished"))
    assert not matches("event=imap_command_finishe?", ev("imap_command_finishe"))
    assert matches("event=*_finished", ev("smtp_submit_finished"))
    assert matches("event=*", ev("x"))
    assert not matches("event=*", ev(""))
    assert matches(r'event="a\*"', ev("a*"))
    assert not matches(r'event="a\*"', ev("ab"))
    assert matches(r"event=a\*", ev("a*"))  # Columba also takes the escape in a bare word


def test_field_values_are_case_insensitive_wildcards() -> None:
    assert matches("user=testuser*", ev(user="TestUser42"))
    assert matches("user=TESTUSER", ev(user="testuser"))
    assert not matches("user=testuser", ev(user="testuser2"))
    assert matches("user=t?stuser", ev(user="TEstuser"))
    assert matches("user=*@example.com", ev(user="Bob@Example.COM"))
    assert matches('reply="OK \\*"', ev(reply="ok *"))
    assert not matches('reply="OK \\*"', ev(reply="OK x"))
    assert matches('reply="a\\?c"', ev(reply="a?c"))
    assert not matches('reply="a\\?c"', ev(reply="abc"))
    assert matches('reply="a\\\\\\\\b"', ev(reply="a\\b"))  # "a\\\\b" in the filter: escaped \
    assert matches("s=*a*a*a*a*a*a*a*a*a*a*b", ev(s="a" * 30 + "b"))
    assert not matches("s=*a*a*a*a*a*a*a*a*a*a*b", ev(s="a" * 3000))  # no blow-up


def test_string_fields_take_only_equality() -> None:
    assert not matches("s>a", ev(s="b"))
    assert not matches("s<a", ev(s="0"))


def test_categories_have_a_relationship() -> None:
    e = ev("x", categories=("imap", "service:imap", "storage"))
    assert matches("category=imap", e)
    assert matches("category=service:imap", e)
    assert matches("category=imap AND category=storage", e)
    assert not matches("category=lmtp", e)
    assert not matches("category=IMAP", e)  # category names are exact
    assert not matches("category=imap", ev("x"))


def test_source_location() -> None:
    e = ev("x", source_location="http-client.c:123")
    assert matches("source_location=http-client.c:123", e)
    assert matches("source_location=http-client.c", e)  # no line: any line
    assert matches("source_location=http-client.c:0123", e)  # line compares as a number
    assert not matches("source_location=http-client.c:124", e)
    assert not matches("source_location=HTTP-client.c", e)
    assert not matches("source_location=http-client.c", ev("x"))


def test_string_lists() -> None:
    empty = ev(abc=[])
    assert matches('abc=""', ev())
    assert matches('abc=""', empty)
    e = ev(abc=["one", "two"])
    assert not matches('abc=""', e)
    assert matches("abc=one", e)
    assert matches("abc=TWO", e)
    assert matches("abc=t*", e)
    assert not matches("abc=three", e)
    assert matches("abc=one AND NOT abc=three", e)
    assert not matches("abc>one", e)


def test_duration() -> None:
    assert matches("duration < 1000", ev())  # not ended yet: 0
    assert matches("duration=1500", ev(duration_usecs=1500))
    assert matches("duration>1msecs", ev(duration_usecs=1500))
    assert not matches("duration>2msecs", ev(duration_usecs=1500))
    # "duration" is always the event's own duration
    assert matches("duration=0", ev(duration="long"))


def test_numbers() -> None:
    e = ev()
    for value, gt0, lt0 in ((1, True, False), (0, False, False), (-1, False, True)):
        e.fields["number"] = value
        assert matches("number > 0", e) is gt0
        assert matches("number < 0", e) is lt0
    e.fields["number"] = 0
    assert matches("number=0", e)
    assert matches("number=*", e)
    assert not matches("number > fish", e)
    assert not matches("number=fish", e)
    e.fields["status_code"] = 204
    assert not matches("status_code > 2*", e)  # wildcards need =
    assert matches("status_code = 2*", e)
    assert matches("status_code = 2?4", e)
    assert not matches("status_code = 3*", e)
    assert matches("load > 0.5", ev(load=0.75))  # Columba: decimal values compare too
    assert not matches("load > 0.5", ev(load=0.25))
    assert matches("load < 1", ev(load=0.25))
    assert matches("n = 1", ev(n=True))  # bool is an int


def test_number_given_as_string_field() -> None:
    assert matches("code=200", ev(code="200"))
    assert not matches("code>100", ev(code="200"))  # a string field compares only with =
    assert matches("size=1KB", ev(size="1kb"))  # as strings, case-insensitively


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("field = -1", -1, True),
        ("field = 1", 1, True),
        ("field = 1b", 1, True),
        ("field = 1B", 1, True),
        ("field < 1B", 1, False),
        ("field > 1B", 1, False),
        ("field = 1k", 1024, True),
        ("field = 1KB", 1024, True),
        ("field = 1Kb", 1024, True),
        ("field = 1kB", 1024, True),
        ("field = 1kb", 1024, True),
        ("field = 1KIB", 1024, True),
        ("field = 1KiB", 1024, True),
        ("field >= 1KB", 1024, True),
        ("field <= 1KB", 1024, True),
        ("field > 1B", 1024, True),
        ("field > 1000", 1024, True),
        ("field < 1KB", 1024, False),
        ("field > 1KB", 1024, False),
        ("field = 1MB", 1024**2, True),
        ("field >= 1MB", 1024**2, True),
        ("field <= 1MB", 1024**2, True),
        ("field > 1KB", 1024**2, True),
        ("field > 1000000", 1024**2, True),
        ("field < 1MB", 1024**2, False),
        ("field > 1MB", 1024**2, False),
        ("field = 1g", 1024**3, True),
        ("field = 1GB", 1024**3, True),
        ("field >= 1GB", 1024**3, True),
        ("field <= 1GB", 1024**3, True),
        ("field < 1TB", 1024**3, True),
        ("field > 1000000000", 1024**3, True),
        ("field < 1GB", 1024**3, False),
        ("field > 1GB", 1024**3, False),
        ("field = 1t", 1024**4, True),
        ("field = 1TB", 1024**4, True),
        ("field >= 1TB", 1024**4, True),
        ("field <= 1TB", 1024**4, True),
        ("field > 1GB", 1024**4, True),
        ("field > 1000000000000", 1024**4, True),
        ("field < 1TB", 1024**4, False),
        ("field > 1TB", 1024**4, False),
        ('field = "2 MB"', 2 * 1024**2, True),
    ],
)
def test_size_units(text: str, value: int, expected: bool) -> None:
    assert matches(text, ev(field=value)) is expected


MS, SEC, MIN, HOUR, DAY, WEEK = (
    1000,
    1000**2,
    60 * 1000**2,
    3600 * 1000**2,
    86400 * 1000**2,
    7 * 86400 * 1000**2,
)


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("field = -1", -1, True),
        ("field = 1milliseconds", MS, True),
        ("field = 1millisecs", MS, True),
        ("field = 1mseconds", MS, True),
        ("field = 1msecs", MS, True),
        ("field = 1ms", MS, True),
        ("field = 1000", MS, True),
        ("field >= 1msecs", MS, True),
        ("field <= 1msecs", MS, True),
        ("field > 1", MS, True),
        ("field > 1msecs", MS, False),
        ("field < 1msecs", MS, False),
        ("field = 1seconds", SEC, True),
        ("field = 1secs", SEC, True),
        ("field = 1s", SEC, True),
        ("field = 1000000", SEC, True),
        ("field >= 1secs", SEC, True),
        ("field <= 1secs", SEC, True),
        ("field > 1msecs", SEC, True),
        ("field > 1secs", SEC, False),
        ("field < 1secs", SEC, False),
        ("field = 1minutes", MIN, True),
        ("field = 1mins", MIN, True),
        ("field = 60000000", MIN, True),
        ("field >= 1mins", MIN, True),
        ("field <= 1mins", MIN, True),
        ("field > 1secs", MIN, True),
        ("field > 1mins", MIN, False),
        ("field < 1mins", MIN, False),
        ("field = 1hours", HOUR, True),
        ("field = 1h", HOUR, True),
        ("field = 3600000000", HOUR, True),
        ("field > 1mins", HOUR, True),
        ("field > 1hours", HOUR, False),
        ("field = 1days", DAY, True),
        ("field = 1d", DAY, True),
        ("field = 86400000000", DAY, True),
        ("field > 1hours", DAY, True),
        ("field < 1days", DAY, False),
        ("field = 1weeks", WEEK, True),
        ("field = 1w", WEEK, True),
        ("field = 604800000000", WEEK, True),
        ("field > 1days", WEEK, True),
        ("field > 1weeks", WEEK, False),
        ('field = "250 milliseconds"', 250 * MS, True),
    ],
)
def test_time_units(text: str, value: int, expected: bool) -> None:
    assert matches(text, ev(field=value)) is expected


def test_ambiguous_unit(caplog: pytest.LogCaptureFixture) -> None:
    # "1m": megabytes or minutes?  Never matches a number (and warns), matches as a string.
    assert not matches("field = 1m", ev(field=1000))
    assert not matches("field = 1M", ev(field=1024**2))
    assert not matches("field = 1m", ev(field=MIN))
    assert "ambiguous unit" in caplog.text
    assert matches("field = 1m", ev(field="1M"))


def test_unit_parsers() -> None:
    assert parse_size_bytes("0") == 0
    assert parse_size_bytes("3 KiB") == 3072
    assert parse_size_bytes("1BB") is None
    assert parse_size_bytes("1kbb") is None
    assert parse_size_bytes("1x") is None
    assert parse_size_bytes("-1k") is None
    assert parse_interval_msecs("0") == 0
    assert parse_interval_msecs("5") is None  # missing unit
    assert parse_interval_msecs("2 mins") == 120_000
    assert parse_interval_msecs("1m") == 60_000
    assert parse_interval_msecs("1mil") == 1
    assert parse_interval_msecs("3sec") == 3000
    assert parse_interval_msecs("1fortnight") is None


def test_ip_addresses() -> None:
    assert matches("ip = 127.0.0.1", ev(ip="127.0.0.1"))
    assert not matches("ip = 127.0.0.1", ev(ip="127.0.0.2"))
    assert not matches("ip = 127.0.0.1", ev(ip=2130706433))  # a number is not an IP
    assert matches("ip = 127.0.0.*", ev(ip="127.0.0.1"))
    assert not matches("ip = 127.0.0.*", ev(ip="127.0.1.1"))
    assert matches('ip = "127.0.0.0/16"', ev(ip="127.0.255.255"))
    assert matches("ip = 127.0.0.0/16", ev(ip="127.0.255.255"))  # '/' in a bare word
    assert not matches("ip = 127.0.0.0/16", ev(ip="127.1.255.255"))
    assert matches("ip = 127.0.0.0/16", ev(ip="127.0.0.0/16"))  # same text
    assert not matches("ip = fish", ev(ip="127.0.0.1"))
    cases = [
        ("ip = ::1", "::1", True),
        ("ip = ::2", "::1", False),
        ("ip = ::1/128", "::1", True),
        ("ip = ::1/126", "::2", True),
        ('ip = "::1/126"', "::3", True),
        ("ip = ::1/126", "::4", False),
        ("ip = 2001::/8", "2001::1", True),
        ("ip = 2001::/8", "20ff:ffff::1", True),
        ("ip = 2001::/8", "2100::1", False),
        ("ip = 2001::1", "2001::1", True),
        ('ip = "2001::1"', "2001::1", True),
        ("ip = 2001:0:0:0:0:0:0:1", "2001::1", True),
        ("ip = 2001::1", "2001:0:0:0:0:0:0:1", True),
        ("ip = 2001::1", "2001::2", False),
        (
            "ip = 2000:1190:c02a:130:a87a:ad7:5b76:3310",
            "2000:1190:c02a:130:a87a:ad7:5b76:3310",
            True,
        ),
        (
            "ip = 2001:1190:c02a:130:a87a:ad7:5b76:3310",
            "2000:1190:c02a:130:a87a:ad7:5b76:3310",
            False,
        ),
        ('ip = "fe80::1%lo"', "fe80::1%lo", True),
        ('ip = "fe80::1%lo"', "fe80::1%eth0", False),
        ("ip = 2001::1*", "2001::1234", True),
        ("ip = 2001:0:0:0:0:0:0:1*", "2001::1", False),
        ("ip = 10.0.0.0/8", "::1", False),
        ("ip = ::/0", "10.1.2.3", False),
        ("ip = 10.0.0.0/8", "mail.example.com", False),
    ]
    for text, value, expected in cases:
        assert matches(text, ev(ip=value)) is expected, (text, value)
    # a bad prefix length is not a network, just a string
    assert matches("ip = 10.0.0.0/33", ev(ip="10.0.0.0/33"))
    assert not matches("ip = 10.0.0.0/33", ev(ip="10.0.0.1"))


def test_ip_and_number_values_canonicalise_and_roundtrip() -> None:
    for text in ("ip=10.0.0.0/8", 'ip="fe80::1%lo"', "n=1KiB", "n=2weeks", "n=1m", "n=-5"):
        roundtrip(text)


def test_filter_objects_are_values() -> None:
    a, b = parse_filter("event=x AND n>1"), parse_filter('event="x" AND n>"1"')
    assert a == b and hash(a) == hash(b)
    assert parse_filter("n=1") != parse_filter("n=01")  # different text, both valid
    assert EventFilter(Comparison("event", "=", "abc")).match(ev("abc"))
    assert str(EventFilter(Not(Comparison("event", "=", "abc")))) == 'NOT event="abc"'
