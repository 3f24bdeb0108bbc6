"""Fuzzing columba.lib.var_expand: whatever the template, parse() and expand()
either succeed (returning a Template / a str) or raise VarExpandError."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.lib.var_expand import (
    MAX_OUTPUT_SIZE,
    ExpandContext,
    Template,
    VarExpandError,
    filter_names,
    parse,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

VARIABLES: dict[str, str | None] = {
    "user": "alice@example.com",
    "first": "hello",
    "num": "143",
    "neg": "-5",
    "hex": "68656c6c6f",
    "b64": "aGVsbG8=",
    "list": "a\tb\x01tc",
    "empty": "",
    "null": None,
    "ts": "1727121943.5",
    "utf": "\u00e9\u03b8\u2603",
    "ctl": "a\x00b\x1fc",
    "pct": "%{user}",
    "big": "x" * 4096,
}


def _userdb(key: str) -> str | None:
    return {"home": "/home/a", "quota": "1G"}.get(key)


def _broken(key: str) -> str | None:
    if key == "raise":
        raise RuntimeError("provider bug")
    if key == "error":
        raise VarExpandError("provider said no")
    return None


PROVIDERS: dict[str, Callable[[str], str | None]] = {
    "userdb": _userdb,
    "passdb": _broken,
    "env": lambda key: "" if key else None,
}


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


CONTEXTS = [
    ExpandContext(VARIABLES, PROVIDERS),
    ExpandContext(VARIABLES, PROVIDERS, _quote),
    ExpandContext({}, {}),
]


def _check(template: str) -> None:
    try:
        parsed = parse(template)
    except VarExpandError as exc:
        assert str(exc)
        return
    assert isinstance(parsed, Template)
    for ctx in CONTEXTS:
        try:
            result = parsed.expand(ctx)
        except VarExpandError as exc:
            assert str(exc)
        else:
            assert isinstance(result, str)
            assert len(result.encode()) <= MAX_OUTPUT_SIZE


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(template: str) -> None:
    _check(template)


@FUZZ
@given(st.text(max_size=120).map(lambda s: "%{" + s))
def test_arbitrary_expression_body(template: str) -> None:
    _check(template)


FRAGMENTS = [
    "%{",
    "%%{",
    "%",
    "}",
    "{",
    "|",
    " | ",
    "(",
    ")",
    ",",
    "=",
    "+",
    "-",
    "*",
    "/",
    " % ",
    " ",
    "\t",
    "\n",
    "'",
    '"',
    "\\",
    "\\x41",
    "\\101",
    "\\n",
    "'a'",
    "'@'",
    "''",
    "'.*'",
    "'(a|b)+'",
    "'[[:alpha:]]'",
    "'\\\\1'",
    "'%Y-%m-%d'",
    "'ms'",
    "'=='",
    "'eq'",
    "'*'",
    "'~'",
    "'md5'",
    "0",
    "1",
    "-1",
    "2",
    "3",
    "8",
    "256",
    "-7",
    "2147483647",
    "9223372036854775807",
    "9223372036854775808",
    "rounds=",
    "salt=",
    "bits=",
    "pad=",
    "url=",
    "unit=",
    "user",
    "first",
    "num",
    "neg",
    "hex",
    "b64",
    "list",
    "empty",
    "null",
    "ts",
    "utf",
    "ctl",
    "pct",
    "big",
    "missing",
    "userdb:home",
    "userdb:nope",
    "passdb:raise",
    "passdb:error",
    "passdb:x",
    "env:HOME",
    "env:",
    "nope:x",
    "\u03b8",
    "\udcff",
    "x" * 10,
    *sorted(filter_names()),
]


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_token_soup(template: str) -> None:
    _check(template)


_NAMES = st.sampled_from([*VARIABLES, "missing", "userdb:home", "passdb:x", "env:X"])
_STRINGS = st.one_of(
    st.sampled_from(["'@'", "'.'", "'a'", "''", "'(.*)@(.*)'", "'\\\\2'", "'%H:%M'", "'s'"]),
    st.text(max_size=8).map(_quote),
)
_NUMBERS = st.one_of(
    st.integers(min_value=-300, max_value=300),
    st.sampled_from([2**31 - 1, 2**63 - 1, -(2**63), 2**20]),
).map(str)
_ARG = st.one_of(_NAMES, _STRINGS, _NUMBERS)
_NAMED = st.tuples(
    st.sampled_from(["rounds", "salt", "bits", "pad", "url", "unit", "fail"]),
    st.one_of(_STRINGS, st.integers(min_value=-3, max_value=50).map(str), _NAMES),
).map(lambda kv: f"{kv[0]}={kv[1]}")


@st.composite
def _filter(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(filter_names())))
    args = draw(st.lists(st.one_of(_ARG, _NAMED), max_size=5))
    text = name + (f"({', '.join(args)})" if args else "")
    if draw(st.booleans()):
        op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
        text += f" {op} {draw(st.one_of(_NUMBERS, _NAMES))}"
    return text


@st.composite
def _pipeline(draw: st.DrawFn) -> str:
    head = draw(st.one_of(_NAMES, _filter()))
    filters = draw(st.lists(_filter(), max_size=6))
    return "%{" + " | ".join([head, *filters]) + "}"


@FUZZ
@given(st.lists(st.one_of(_pipeline(), st.text(max_size=5)), min_size=1, max_size=4).map("".join))
def test_structured_pipelines(template: str) -> None:
    _check(template)


@FUZZ
@given(st.text(max_size=200).filter(lambda s: "%" not in s))
def test_text_without_percent_is_literal(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        return
    assert parse(text).expand(ExpandContext()) == text


@FUZZ
@given(st.text(max_size=50).filter(lambda s: "%" not in s))
def test_escaped_expression_is_literal(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        return
    assert parse("%%{" + text).expand(ExpandContext()) == "%{" + text
