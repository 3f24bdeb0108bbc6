"""Tests for columba.lib.var_expand (Dovecot 2.4 ``%{...}`` variable expansion).

The first part ports the vectors of dovecot/core
``src/lib-var-expand/test-var-expand.c``: an expected *error* there is a
substring of the error message (Dovecot compares with ``strstr``), and so it
is here.  The rest covers every filter, the syntax errors, the limits and the
public API.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping

import pytest

from columba.lib import var_expand_filters as vef
from columba.lib.var_expand import (
    MAX_ARGUMENTS,
    MAX_OUTPUT_SIZE,
    MAX_PIPELINE_LENGTH,
    MAX_TEMPLATE_LENGTH,
    MAX_VALUE_SIZE,
    ExpandContext,
    Template,
    VarExpandError,
    default_providers,
    env_provider,
    expand,
    filter_names,
    parse,
    variables_used,
)

OK = 0
FAIL = -1

Case = tuple[str, str, int]


def run(
    template: str,
    variables: Mapping[str, str | None] | None = None,
    providers: Mapping[str, Callable[[str], str | None]] | None = None,
    escape: Callable[[str], str] | None = None,
) -> str:
    ctx = ExpandContext(variables or {}, providers or {}, escape)
    return parse(template).expand(ctx)


def check(
    case: Case,
    variables: Mapping[str, str | None] | None = None,
    providers: Mapping[str, Callable[[str], str | None]] | None = None,
    escape: Callable[[str], str] | None = None,
) -> None:
    template, out, ret = case
    if ret == OK:
        assert run(template, variables, providers, escape) == out
    else:
        with pytest.raises(VarExpandError) as info:
            run(template, variables, providers, escape)
        assert out in str(info.value)


# ================================================================ Dovecot vectors

BUILTIN_TABLE: dict[str, str | None] = {
    "first": "hello",
    "second": "world",
    "third": "pointer",
    "pointer": "portal",
    "port": "143",
    "three": "3",
    "encoded": "68656c6c6f",
    "domain": "test.dovecot.org",
    "user": "user@test@domain",
    "multivalue": "one\ttwo\tthree",
    "uidvalidity": "1727121943",
    "empty": "",
    "\u03b8": "is theta",
    "null": None,
}

BUILTIN_CASES: list[Case] = [
    # basic lookup
    ("%{first}", "hello", OK),
    ("%{lookup('first')}", "hello", OK),
    ("%{literal('hello')}", "hello", OK),
    ("%{lookup}", "lookup: Missing name to lookup", FAIL),
    ("%{literal}", "literal: Missing parameters", FAIL),
    # lookup via variable
    ("%{third}", "pointer", OK),
    ("%{lookup(third)}", "portal", OK),
    ("%{lookup(missing)}", "lookup: Unknown variable 'missing'", FAIL),
    # default values
    ("%{missing | default}", "", OK),
    ("%{missing | default(first)}", "hello", OK),
    ("%{missing | default('hello')}", "hello", OK),
    # preserves first error
    ("%{missing | default(missing)}", "Unknown variable 'missing'", FAIL),
    ("%{first | default(second)}", "hello", OK),
    ("%{first | default('world')}", "hello", OK),
    ("%{default(first)}", "hello", OK),
    ("%{default(missing)}", "default: Unknown variable 'missing'", FAIL),
    ("%{empty | default('nonempty')}", "nonempty", OK),
    ("%{null}", "", OK),
    # fail without default
    ("%{missing}", "Unknown variable 'missing'", FAIL),
    # casing
    ("%{first | upper}", "HELLO", OK),
    ("%{first | upper | lower}", "hello", OK),
    # substring
    ("%{first | substr(0)}", "hello", OK),
    ("%{first | substr(5, 0)}", "", OK),
    ("%{first | substr(1, 2)}", "el", OK),
    ("%{first | substr(-2, 2)}", "lo", OK),
    ("%{first | substr(2, -2)}", "l", OK),
    ("%{first | substr(-1, -1)}", "", OK),
    ("%{first | substr(0, -1)}", "hell", OK),
    ("%{first | substr(-1)}", "o", OK),
    ("%{first | substr(-5)}", "hello", OK),
    ("%{first | substr(6)}", "substr: Offset out of bounds", FAIL),
    ("%{first | substr(-6)}", "substr: Offset out of bounds", FAIL),
    ("%{first | substr(1, 5)}", "substr: Length out of bounds", FAIL),
    ("%{first | substr(1, -5)}", "substr: Length out of bounds", FAIL),
    ("%{first | substr(-1, 5)}", "substr: Length out of bounds", FAIL),
    ("%{first | substr(-1, -5)}", "substr: Length out of bounds", FAIL),
    ("%{first | substr(5, 1)}", "substr: Length out of bounds", FAIL),
    ("%{first | substr(5, -1)}", "substr: Length out of bounds", FAIL),
    ("%{first | substr(-5, 1)}", "h", OK),
    ("%{first | substr(-5, -1)}", "hell", OK),
    ("%{first | substr(-6, 1)}", "substr: Offset out of bounds", FAIL),
    ("%{first | substr(-6, -1)}", "substr: Offset out of bounds", FAIL),
    ("%{substr}", "substr: Missing parameters", FAIL),
    ("%{substr(0,0)}", "substr: No value to substring", FAIL),
    # reverse
    ("%{first | reverse}", "olleh", OK),
    ("%{reverse}", "reverse: No value to reverse", FAIL),
    # concatenate
    ("%{first | concat(' ',second)}", "hello world", OK),
    ("%{concat(first,' ',second)}", "hello world", OK),
    ("%{concat}", "Missing parameters", FAIL),
    # hash
    ("%{first | sha1}", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", OK),
    ("%{first | sha1(rounds=1000)}", "c0ddea212ee1af8d6401947d29c8bfab31f8ad93", OK),
    ("%{first | sha1(salt='world')}", "5715790a892990382d98858c4aa38d0617151575", OK),
    (
        "%{first | sha1(rounds=1000,salt='world')}",
        "a314ec3ef5103223a4c5bd285dbe4ea5534d4334",
        OK,
    ),
    ("%{literal('1724925643') | hex}", "66d046cb", OK),
    ("%{hash}", "hash: Missing parameters", FAIL),
    ("%{hash(rounds=1000)}", "hash: No algorithm as first parameter", FAIL),
    ("%{hash('md5',fail=1)}", "hash: Unsupported key 'fail'", FAIL),
    ("%{md5(fail=1)}", "md5: Unsupported key 'fail'", FAIL),
    # hexlify
    ("%{encoded | unhexlify | text}", "hello", OK),
    ("%{encoded | unhexlify}", "68656c6c6f", OK),
    ("%{three | hexlify(4)}", "0033", OK),
    ("%{hexlify(fail=1)}", "hexlify: Unsupported key 'fail'", FAIL),
    # hex
    ("%{three | hex | unhex}", "3", OK),
    ("%{uidvalidity | hex | unhex}", "1727121943", OK),
    ("%{three | hex(2)}", "03", OK),
    ("%{uidvalidity | hex(2)}", "17", OK),
    ("%{uidvalidity | hex(-2)}", "66", OK),
    ("%{uidvalidity | hex }", "66f1ca17", OK),
    # base64
    ("%{first | base64}", "aGVsbG8=", OK),
    ("%{first | base64 | unbase64 | text}", "hello", OK),
    ("%{base64(0)}", "base64: Too many positional parameters", FAIL),
    ("%{base64(fail=1)}", "base64: Unsupported key 'fail'", FAIL),
    ("%{unbase64(0)}", "unbase64: Too many positional parameters", FAIL),
    ("%{unbase64(fail=1)}", "unbase64: Unsupported key 'fail'", FAIL),
    ("%{first | base64(pad=0)}", "aGVsbG8", OK),
    ("%{literal('<<???>>') | base64(url=1)}", "PDw_Pz8-Pg==", OK),
    ("%{literal('<<???>>') | base64(pad=0,url=1)}", "PDw_Pz8-Pg", OK),
    # truncate
    ("%{first | truncate(3)}", "hel", OK),
    ("%{first | truncate(three)}", "hel", OK),
    ("%{first | truncate(bits=7)}", "4", OK),
    ("%{truncate}", "truncate: Missing parameter", FAIL),
    ("%{truncate('hello')}", "truncate: 'hello' is not a number", FAIL),
    ("%{truncate(first)}", "truncate: 'hello' (in first) is not a number", FAIL),
    ("%{truncate(3)}", "truncate: No value to truncate", FAIL),
    # ldap dn
    ("cn=%{first},ou=%{domain | ldap_dn}", "cn=hello,ou=test,dc=dovecot,dc=org", OK),
    # regexp.  In Dovecot's C source the replacement is '\\\\2 \\\\1', i.e. the
    # template holds '\\2 \\1'; inside a var-expand string '\\' is one backslash
    # (a bare '\2' would be an octal escape).
    ("%{literal('hello world') | regexp('(.*) (.*)', '\\\\2 \\\\1')}", "world hello", OK),
    # index
    ("%{user | index('@',0)}", "user", OK),
    ("%{user | username}", "user", OK),
    ("%{user | domain}", "test@domain", OK),
    ("%{user | domain | domain}", "domain", OK),
    ("%{user | index('@',1)}", "test", OK),
    ("%{user | index('@',2)}", "domain", OK),
    ("%{user | index('@',3)}", "index: Position out of bounds", FAIL),
    ("%{user | index('@',-4)}", "index: Position out of bounds", FAIL),
    ("%{user | index('@',-5)}", "index: Position out of bounds", FAIL),
    ("%{user | index('@',-4) | default('hello')}", "hello", OK),
    ("%{user | index('@',-3)}", "user", OK),
    ("%{user | index('@',-2)}", "test", OK),
    ("%{user | index('@',-1)}", "domain", OK),
    ("%{user | username(0)}", "username: Too many positional parameters", FAIL),
    ("%{user | domain(0)}", "domain: Too many positional parameters", FAIL),
    ("%{literal('hello@') | domain }", "", OK),
    ("%{literal('@hello') | username }", "", OK),
    ("%{literal('@') | domain }", "", OK),
    ("%{literal('@') | username }", "", OK),
    ("%{literal('') | username }", "", OK),
    ("%{literal('') | domain }", "", OK),
    ("%{literal('username') | username }", "username", OK),
    ("%{literal('username') | domain }", "", OK),
    # list
    ("%{multivalue | list(',')}", "one,two,three", OK),
    # fill
    ("%{literal('1') | rfill(3)}", "100", OK),
    ("%{literal('1') | lfill(3)}", "001", OK),
    ("%{literal('1') | lfill(3, ' ')}", "  1", OK),
    # %8Mu
    ("%{first | md5 | hexlify(8)}", "5d41402a", OK),
    # %N
    ("%{first | md5 | substr(4,4) }", "bc4b2a76", OK),
    # %2.256N
    ("%{first | md5 | substr(0,8) % 256 | hex}", "76", OK),
    ("%{first | md5 | substr(0,8) % 30 | hex }", "c", OK),
    # Modulo special case
    ("%{first | md5 % 256 | hex}", "92", OK),
    ("%{first | sha512 % 256 | hex }", "43", OK),
    # %N30
    ("%{first | md5 % 30 | hex }", "16", OK),
    ("%{first | md5 % 30 | hex(2) }", "16", OK),
    ("%{first | md5 % 30 | hex(4) }", "0016", OK),
    ("%{first | md5 % 30 | hex(-4) }", "1600", OK),
    ("%{\u03b8}", "is theta", OK),
    # Dovecot's "%{\xff\xfe\xff}" -- invalid UTF-8 can only reach a Python
    # str as lone surrogates
    ("%{\udcff\udcfe\udcff}", "Invalid UTF-8 string", FAIL),
]


@pytest.mark.parametrize("case", BUILTIN_CASES, ids=lambda c: c[0])
def test_dovecot_builtin_filters(case: Case) -> None:
    check(case, BUILTIN_TABLE)


MATH_TABLE = {
    "first": "1",
    "second": "2",
    "third": "pointer",
    "pointer": "4",
    "port": "143",
    "nan": "nanana",
}

MATH_CASES: list[Case] = [
    ("%{literal('1') + 1}", "2", OK),
    ("%{first + 1}", "2", OK),
    ("%{first * 10}", "10", OK),
    ("%{lookup(third) / 2}", "2", OK),
    ("%{nan - 1}", "Input is not a number", FAIL),
    ("%{literal('31') | unhexlify | text * 5}", "5", OK),
    ("%{literal('31') | unhex * 5}", "245", OK),
    ("%{port % 5}", "3", OK),
    ("%{port / 0}", "calculate: Division by zero", FAIL),
    ("%{port % 0}", "calculate: Modulo by zero", FAIL),
]


@pytest.mark.parametrize("case", MATH_CASES, ids=lambda c: c[0])
def test_dovecot_math(case: Case) -> None:
    check(case, MATH_TABLE)


IF_TABLE = {
    "alpha": "alpha",
    "beta": "beta",
    "one": "1",
    "two": "2",
    "evil1": ";', ':",
    "evil2": ";test;",
}

IF_CASES: list[Case] = [
    # basic numeric operand test
    ("%{if(1, '==', 1, 'yes', 'no')}", "yes", OK),
    ("%{literal('1') | if('==', 2, 'yes', 'no')}", "no", OK),
    ("%{literal('1') | if('<', 1, 'yes', 'no')}", "no", OK),
    ("%{literal('1') | if('<', 2, 'yes', 'no')}", "yes", OK),
    ("%{literal('1') | if('<=', 1, 'yes', 'no')}", "yes", OK),
    ("%{literal('1') | if('<=', 2, 'yes', 'no')}", "yes", OK),
    ("%{literal('1') | if('>', 1, 'yes', 'no')}", "no", OK),
    ("%{literal('1') | if('>', 2, 'yes', 'no')}", "no", OK),
    ("%{literal('1') | if('>=', 1, 'yes', 'no')}", "yes", OK),
    ("%{literal('1') | if('>=', 2, 'yes', 'no')}", "no", OK),
    ("%{literal('1') | if('!=', 1, 'yes', 'no')}", "no", OK),
    ("%{literal('1') | if('!=', 2, 'yes', 'no')}", "yes", OK),
    # basic string operand test
    ("%{if('a', 'eq', 'a', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('eq', 'b', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('lt', 'a', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('lt', 'b', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('le', 'a', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('le', 'b', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('gt', 'a', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('gt', 'b', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('ge', 'a', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('ge', 'b', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('ne', 'a', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('ne', 'b', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('*', 'a', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('*', 'b', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('*', '*a*', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('*', '*b*', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('*', '*', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('!*', 'a', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('!*', 'b', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('!*', '*a*', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('!*', '*b*', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('!*', '*', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('~', 'a', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('~', 'b', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('~', '.*a.*', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('~', '.*b.*', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('~', '.*', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('!~', 'a', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('!~', 'b', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('!~', '.*a.*', 'yes', 'no')}", "no", OK),
    ("%{literal('a') | if('!~', '.*b.*', 'yes', 'no')}", "yes", OK),
    ("%{literal('a') | if('!~', '.*', 'yes', 'no')}", "no", OK),
    ("%{literal('this is test') | if('~', '^test', 'yes', 'no')}", "no", OK),
    ("%{literal('this is test') | if('~', '.*test', 'yes', 'no')}", "yes", OK),
    # variable expansion
    ("%{alpha | if('eq', alpha, 'yes', 'no')}", "yes", OK),
    ("%{alpha | if('eq', beta, 'yes', 'no')}", "no", OK),
    ("%{one | if('eq', one, 'yes', 'no')}", "yes", OK),
    ("%{one | if('eq', two, 'yes', 'no')}", "no", OK),
    ("%{one | if('eq', one, one, two)}", "1", OK),
    ("%{one | if('gt', two, one, two)}", "2", OK),
    ("%{evil1 | if('eq', ';\\', \\':', evil2, 'no')}", ";test;", OK),
    # errors
    ("%{if('gt', two, one, two)}", "if: Missing parameters", FAIL),
    ("%{if(1, '', 1, 'yes', 'no')}", "if: Unsupported comparator ''", FAIL),
    (
        "%{if(missing, '==', 1, 'yes', 'no')}",
        "if: Left-hand side: Unknown variable 'missing'",
        FAIL,
    ),
    ("%{if(1, missing, 1, 'yes', 'no')}", "if: Comparator: Unknown variable 'missing'", FAIL),
    (
        "%{if(1, '==', missing, 'yes', 'no')}",
        "if: Right-hand side: Unknown variable 'missing'",
        FAIL,
    ),
    ("%{if(1, '==', 1, missing, 'no')}", "if: True branch: Unknown variable 'missing'", FAIL),
    ("%{if(1, '==', 0, 'yes', missing)}", "if: False branch: Unknown variable 'missing'", FAIL),
    ("%{if(1, '==', 1, 'yes', 'no', 'maybe')}", "if: Too many positional parameters", FAIL),
    ("%{if(fail=1)}", "if: Unsupported key 'fail'", FAIL),
    ("%{alpha|if('==', two, one, two)}", "if: Input is not a number", FAIL),
]


@pytest.mark.parametrize("case", IF_CASES, ids=lambda c: c[0])
def test_dovecot_if(case: Case) -> None:
    check(case, IF_TABLE)


def quote_escape(text: str) -> str:
    """Dovecot's test_escape() with escape_context "'"."""
    return "'" + "".join("\\" + c if c == "'" else c for c in text) + "'"


ESCAPE_TABLE = {
    "clean": "hello world",
    "escape": "'hello' \"world\"",
    "first": "bobby",
    "nasty": "';-- SELECT * FROM bobby.tables",
}

ESCAPE_CASES: list[Case] = [
    ("%{clean}", "'hello world'", OK),
    ("%{escape}", "'\\'hello\\' \"world\"'", OK),
    (
        "SELECT * FROM bobby.tables WHERE name = %{first}",
        "SELECT * FROM bobby.tables WHERE name = 'bobby'",
        OK,
    ),
    (
        "SELECT * FROM bobby.tables WHERE name = %{nasty}",
        "SELECT * FROM bobby.tables WHERE name = '\\';-- SELECT * FROM bobby.tables'",
        OK,
    ),
    ("no variables", "no variables", OK),
    ("%{literal('hello')}", "'hello'", OK),
    ("hello\\tworld", "hello\\tworld", OK),
    ("%{literal('hello\r\n\tworld')}", "'hello\r\n\tworld'", OK),
    # Hello
    ("\\110\\145\\154\\154\\157", "\\110\\145\\154\\154\\157", OK),
    ("%{literal('\\110\\145\\154\\154\\157')}", "'Hello'", OK),
    # Hex / oct escapes
    ("\\x20\\x21", "\\x20\\x21", OK),
    ("%{literal('\\x20\\x21')}", "' !'", OK),
    ("\\\\x20", "\\\\x20", OK),
    ("%{literal('\\\\x20')}", "'\\x20'", OK),
    # Bad hex / oct
    ("\\xgg", "\\xgg", OK),
    ("%{literal('\\xgg')}", "Invalid character escape", FAIL),
    ("\\999", "\\999", OK),
    ("%{literal('\\999')}", "Invalid character escape", FAIL),
    # List test
    ("%{literal('one\ttwo\tthree') | list}", "'one,two,three'", OK),
    # Escape escape
    ("\\hello\\world", "\\hello\\world", OK),
    ("%{literal('\\'\\\\hello\\\\world\\'')}", "'\\'\\hello\\world\\''", OK),
    ('%{literal("\\"\\\\hello\\\\world\\"")}', "'\"\\hello\\world\"'", OK),
    # Unsupported escape sequence
    ("%{literal('\\z')}", "Invalid character escape", FAIL),
]


@pytest.mark.parametrize("case", ESCAPE_CASES, ids=lambda c: c[0])
def test_dovecot_escape(case: Case) -> None:
    check(case, ESCAPE_TABLE, escape=quote_escape)


PERC_CASES: list[Case] = [
    ("%%{test}", "%{test}", OK),
    ("%Lu", "%Lu", OK),
    ("%%Lu", "%%Lu", OK),
    ("%{test}", "value", OK),
    ("%%", "%%", OK),
    ("%", "%", OK),
    ("%%-%%{test}-%%{test}", "%%-%{test}-%{test}", OK),
    # documented: %%%{ emits %%{
    ("%%%{test}", "%%{test}", OK),
]


@pytest.mark.parametrize("case", PERC_CASES, ids=lambda c: c[0])
def test_dovecot_percent_handling(case: Case) -> None:
    check(case, {"test": "value"})


def custom_provider(context: str) -> Callable[[str], str | None]:
    def provider(key: str) -> str | None:
        if key == "value":
            return context
        raise VarExpandError(f"Unsupported key '{key}'")

    return provider


def test_dovecot_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "tester")
    monkeypatch.delenv("missing", raising=False)
    providers = {**default_providers(), "custom": custom_provider("test")}
    cases: list[Case] = [
        ("%{process:pid}", str(os.getpid()), OK),
        ("%{env:USER}", "tester", OK),
        ("%{env:missing}", "", OK),
        ("%{dovecot:invalid}", "dovecot: Unsupported field 'invalid'", FAIL),
        ("%{invalid:whatever}", "Unsupported prefix 'invalid'", FAIL),
        ("%{custom:value}", "test", OK),
        ("%{custom:null}", "custom: Unsupported key 'null'", FAIL),
        ("%{custom:null | default}", "", OK),
        ("%{env:}", "env: Missing field", FAIL),
    ]
    for case in cases:
        check(case, {}, providers)


def test_dovecot_provider_values() -> None:
    providers = default_providers()
    assert run("%{process:uid}", providers=providers) == str(os.geteuid())
    assert run("%{process:gid}", providers=providers) == str(os.getegid())
    assert int(run("%{system:cpu_count}", providers=providers)) >= 1
    assert run("%{system:hostname}", providers=providers)
    assert run("%{system:os}", providers=providers) == os.uname().sysname
    assert run("%{system:os-version}", providers=providers) == os.uname().release
    assert run("%{dovecot:name}", providers=providers) == "Columba"
    stamp = run(
        "%{date:year}%{date:month}%{date:day}T%{time:hour}%{time:min}%{time:sec}",
        providers=providers,
    )
    assert re.fullmatch(r"\d{8}T\d{6}", stamp)
    assert re.fullmatch(r"\d+\.\d{9}", run("%{time:unix}", providers=providers))
    assert 0 <= int(run("%{time:usec}", providers=providers)) < 1_000_000
    with pytest.raises(VarExpandError, match="time: Unsupported key 'nope'"):
        run("%{time:nope}", providers=providers)


def test_dovecot_generate() -> None:
    providers = default_providers()
    assert os.uname().nodename.split(".")[0] in run("%{generate:guid}", providers=providers)
    assert re.fullmatch(r"[0-9a-f]{32}", run("%{generate:guid128}", providers=providers))
    assert re.fullmatch(r"[0-9a-f-]{36}", run("%{generate:uuid}", providers=providers))
    assert re.fullmatch(r"[0-9a-f-]{36}", run("%{generate:uuid:record}", providers=providers))
    assert re.fullmatch(r"[0-9a-f]{32}", run("%{generate:uuid:compact}", providers=providers))
    assert re.fullmatch(
        r"\{[0-9a-f-]{36}\}", run("%{generate:uuid:microsoft}", providers=providers)
    )


def test_dovecot_value_func_errors() -> None:
    def provider(key: str) -> str | None:
        if key == "third":
            raise VarExpandError("expected failure")
        return "world"

    with pytest.raises(VarExpandError, match="expected failure"):
        run("%{first} %{p:third}", {"first": "hello"}, {"p": provider})
    assert run("%{first} %{p:second}", {"first": "hello"}, {"p": provider}) == "hello world"


def test_dovecot_tables() -> None:
    assert (
        run("I am %{name} and %{age} years old", {"name": "first", "age": "20"})
        == "I am first and 20 years old"
    )


def test_dovecot_variables() -> None:
    template = "%{foo} %{bar} %{baz} %{first} %{env:foo} %{provider:value}"
    assert sorted(variables_used(template)) == [
        "bar",
        "baz",
        "env:foo",
        "first",
        "foo",
        "provider:value",
    ]


# ================================================================ quick-start guide


def test_quick_start_fscache_path() -> None:
    for user in ("alice@example.com", "bob@example.com", "x", ""):
        digest = hashlib.sha1(user.encode()).digest()
        want = int.from_bytes(digest[-8:], "big") % 4
        assert expand("/var/cache/mails/%{user | sha1 % 4}", {"user": user}) == (
            f"/var/cache/mails/{want}"
        )


def test_binary_modulo_rule_matches_python() -> None:
    for name, algo in (("md5", "md5"), ("sha256", "sha256"), ("sha512", "sha512")):
        digest = hashlib.new(algo, b"hello").digest()
        for mod in (1, 2, 7, 256, 1000, 2**62):
            want = int.from_bytes(digest[-8:], "big") % mod
            assert run(f"%{{x | {name} % {mod}}}", {"x": "hello"}) == str(want)


def test_binary_modulo_short_input_and_negative() -> None:
    # fewer than 8 bytes: all of them
    assert run("%{x | unhexlify % 1000}", {"x": "0102"}) == str(0x0102 % 1000)
    with pytest.raises(VarExpandError, match="Binary modulo must be positive integer"):
        run("%{x | md5 % -3}", {"x": "a"})
    with pytest.raises(VarExpandError, match="Modulo by zero"):
        run("%{x | md5 % 0}", {"x": "a"})


def test_pass_and_proxy_fields() -> None:
    template = "proxy=y host=%{passdb:host} pass=%{password} proxy_mech=%{mechanism}"
    passdb = {"host": "10.0.0.5"}
    out = run(
        template,
        {"password": "s3cret", "mechanism": "PLAIN"},
        {"passdb": passdb.get},
    )
    assert out == "proxy=y host=10.0.0.5 pass=s3cret proxy_mech=PLAIN"


# ================================================================ each filter


def test_lookup_and_literal() -> None:
    v = {"name": "user", "user": "bob"}
    assert run("%{lookup('user')}", v) == "bob"
    assert run("%{lookup(name)}", v) == "bob"
    assert run("%{literal(42)}", v) == "42"
    assert run("%{literal(-7)}", v) == "-7"
    assert run("%{literal(name)}", v) == "user"
    with pytest.raises(VarExpandError, match="lookup: 7 is not a string"):
        run("%{lookup(7)}", v)
    with pytest.raises(VarExpandError, match="Unsupported key 'k'"):
        run("%{lookup(k='x')}", v)
    with pytest.raises(VarExpandError, match="literal: Unsupported key 'k'"):
        run("%{literal(k='x')}", v)
    with pytest.raises(VarExpandError, match="Too many positional"):
        run("%{literal('a', 'b')}", v)


def test_first_element_prefers_variable_over_filter() -> None:
    # 'domain' is both a filter and, here, a variable
    assert run("%{domain}", {"domain": "example.org"}) == "example.org"
    # without such a variable, the filter runs (and has no input)
    with pytest.raises(VarExpandError, match="domain: No value to get domain from"):
        run("%{domain}", {})
    # a variable as first element ignores its arguments, like Dovecot
    assert run("%{first('x')}", {"first": "hello"}) == "hello"


def test_default() -> None:
    assert run("%{x | default(5)}", {}) == "5"
    assert run("%{x | default}", {"x": "a"}) == "a"
    assert run("%{x | default('b')}", {"x": ""}) == "b"
    # a failing default keeps the first error of the pipeline ...
    with pytest.raises(VarExpandError, match=r"^Unknown variable 'x'$"):
        run("%{x | default(k=1)}", {})
    # ... and reports its own when there was none
    with pytest.raises(VarExpandError, match="default: Unsupported key 'k'"):
        run("%{x | default(k=1)}", {"x": ""})
    with pytest.raises(VarExpandError, match="Unknown variable 'x'"):
        run("%{x | default('a', 'b')}", {})
    with pytest.raises(VarExpandError, match="default: Too many positional"):
        run("%{x | default('a', 'b')}", {"x": ""})


def test_upper_lower_are_ascii_only() -> None:
    assert run("%{x | upper}", {"x": "Åbc"}) == "ÅBC"
    assert run("%{x | lower}", {"x": "ÅBC"}) == "Åbc"
    with pytest.raises(VarExpandError, match="upper: Too many positional"):
        run("%{x | upper(1)}", {"x": "a"})


def test_concat() -> None:
    assert run("%{x | concat('-', 1, y)}", {"x": "a", "y": "b"}) == "a-1b"
    assert run("%{concat('%', x)}", {"x": "user@domain"}) == "%user@domain"
    with pytest.raises(VarExpandError, match="concat: Unsupported key 'k'"):
        run("%{concat(k='a')}", {})


def test_hash_family() -> None:
    v = {"x": "hello"}
    for name in ("md5", "sha1", "sha256", "sha384", "sha512"):
        assert run(f"%{{x | {name}}}", v) == hashlib.new(name, b"hello").hexdigest()
        assert run(f"%{{x | hash('{name}')}}", v) == hashlib.new(name, b"hello").hexdigest()
    assert run("%{x | hash('sha3-256')}", v) == hashlib.sha3_256(b"hello").hexdigest()
    assert run("%{x | hash(algo)}", {"x": "hello", "algo": "md5"}) == (
        hashlib.md5(b"hello").hexdigest()
    )
    salted = hashlib.sha256(b"pepperhello").digest()
    for _ in range(2):
        salted = hashlib.sha256(b"pepper" + salted).digest()
    assert run("%{x | sha256(rounds=3,salt='pepper')}", v) == salted.hex()
    assert run("%{x | md5(ROUNDS=1)}", v) == hashlib.md5(b"hello").hexdigest()
    with pytest.raises(VarExpandError, match="hash: Unsupported algorithm 'nope'"):
        run("%{x | hash('nope')}", v)
    with pytest.raises(VarExpandError, match="md5: Too many positional"):
        run("%{x | md5(1)}", v)
    with pytest.raises(VarExpandError, match="hash: Too many positional"):
        run("%{x | hash('md5', 1)}", v)
    with pytest.raises(VarExpandError, match="Too many rounds"):
        run(f"%{{x | md5(rounds={vef.MAX_HASH_ROUNDS + 1})}}", v)
    with pytest.raises(VarExpandError, match="md5: No value to md5"):
        run("%{md5}", {})


def test_binary_output_is_hex_and_text_clears_it() -> None:
    v = {"x": "hello"}
    assert run("%{x | md5 | truncate(2)}", v) == "5d41"
    assert run("%{x | md5 | reverse | truncate(1)}", v) == "92"
    assert run("%{x | md5 | concat('')}", v) == hashlib.md5(b"hello").hexdigest()
    assert run("%{x | md5 | base64}", v) == "XUFAKrxLKna5cZ2REBfFkg=="
    assert run("%{x | md5 | hexlify}", v) == hashlib.md5(b"hello").hexdigest()
    # Dovecot keeps the binary tag through arithmetic: "5" comes out hex-encoded
    assert run("%{literal('31') | unhexlify * 5}", v) == "35"


def test_base64_variants() -> None:
    assert run("%{x | base64(url=0,pad=1)}", {"x": "??>"}) == "Pz8+"
    assert run("%{x | base64(url=1)}", {"x": "??>"}) == "Pz8-"
    assert run("%{x | unbase64(url=1) | text}", {"x": "Pz8-"}) == "??>"
    assert run("%{x | unbase64 | text}", {"x": "aGVsbG8"}) == "hello"
    assert run("%{x | unbase64(pad=0) | text}", {"x": "aGVsbG8"}) == "hello"
    assert run("%{x | base64(pad=flag)}", {"x": "hello", "flag": "0"}) == "aGVsbG8"
    with pytest.raises(VarExpandError, match="unbase64: Invalid base64 input"):
        run("%{x | unbase64}", {"x": "a$b"})
    with pytest.raises(VarExpandError, match="'2' is not 0 or 1"):
        run("%{x | base64(pad=2)}", {"x": "a"})


def test_hex_unhex() -> None:
    assert run("%{x | hex}", {"x": "255"}) == "ff"
    assert run("%{x | unhex}", {"x": "FF"}) == "255"
    assert run("%{x | hex}", {"x": str(2**64 - 1)}) == "f" * 16
    assert run("%{x | hex(w)}", {"x": "10", "w": "4"}) == "000a"
    with pytest.raises(VarExpandError, match="hex: Input is not a number"):
        run("%{x | hex}", {"x": "-1"})
    with pytest.raises(VarExpandError, match="hex: Input is not a number"):
        run("%{x | hex}", {"x": str(2**64)})
    with pytest.raises(VarExpandError, match="unhex: Input is not a hex number"):
        run("%{x | unhex}", {"x": "xyz"})
    with pytest.raises(VarExpandError, match="hex: Unsupported key 'k'"):
        run("%{x | hex(k=1)}", {"x": "1"})
    with pytest.raises(VarExpandError, match="hex: Too many positional"):
        run("%{x | hex(1, 2)}", {"x": "1"})


def test_hexlify_unhexlify() -> None:
    assert run("%{x | hexlify}", {"x": "AB"}) == "4142"
    assert run("%{x | hexlify(2)}", {"x": "AB"}) == "41"
    assert run("%{x | unhexlify | text}", {"x": "4142"}) == "AB"
    with pytest.raises(VarExpandError, match="hexlify: Width must be positive"):
        run("%{x | hexlify(-1)}", {"x": "AB"})
    with pytest.raises(VarExpandError, match="unhexlify: Not a hex value"):
        run("%{x | unhexlify}", {"x": "414"})
    with pytest.raises(VarExpandError, match="unhexlify: Not a hex value"):
        run("%{x | unhexlify}", {"x": "zz"})


def test_number_conversion() -> None:
    assert run("%{x | unhexlify | benumber}", {"x": "0102"}) == "258"
    assert run("%{x | unhexlify | lenumber}", {"x": "0102"}) == "513"
    assert run("%{x | unhexlify | benumber}", {"x": "ff"}) == "255"
    assert run("%{x | unhexlify | lenumber}", {"x": "01000000"}) == "1"
    assert run("%{x | md5 | truncate(8) | benumber}", {"x": "hello"}) == str(
        int.from_bytes(hashlib.md5(b"hello").digest()[:8], "big")
    )
    with pytest.raises(VarExpandError, match="benumber: Cannot convert '3' bytes to number"):
        run("%{x | benumber}", {"x": "abc"})


def test_reverse_truncate_substr_bytes() -> None:
    assert run("%{x | truncate(10)}", {"x": "abc"}) == "abc"
    assert run("%{x | truncate(0)}", {"x": "abc"}) == ""
    assert run("%{x | truncate(bits=16)}", {"x": "abc"}) == "ab"
    assert run("%{x | truncate(bits=100)}", {"x": "abc"}) == "abc"
    assert run("%{x | unhexlify | truncate(bits=12)}", {"x": "abcd"}) == "0abc"
    with pytest.raises(VarExpandError, match="truncate: Value of out of bounds"):
        run("%{x | truncate(-1)}", {"x": "abc"})
    with pytest.raises(VarExpandError, match="truncate: Unsupported key 'k'"):
        run("%{x | truncate(k=1)}", {"x": "abc"})
    with pytest.raises(VarExpandError, match="substr: Unsupported key 'k'"):
        run("%{x | substr(k=1)}", {"x": "abc"})
    with pytest.raises(VarExpandError, match="substr: Too many positional"):
        run("%{x | substr(1, 1, 1)}", {"x": "abc"})
    assert run("%{x | substr(off)}", {"x": "abc", "off": "1"}) == "bc"


def test_ldap_dn_and_username_domain() -> None:
    assert run("%{x | ldap_dn}", {"x": "mail.example.org"}) == "mail,dc=example,dc=org"
    assert run("%{x | username}", {"x": "a@b@c"}) == "a"
    assert run("%{x | domain}", {"x": "a@b@c"}) == "b@c"
    with pytest.raises(VarExpandError, match="index: Missing index parameter"):
        run("%{x | index('@')}", {"x": "a"})
    with pytest.raises(VarExpandError, match="index: Separator must not be empty"):
        run("%{x | index('', 0)}", {"x": "a"})
    with pytest.raises(VarExpandError, match="index: 1 is not a string"):
        run("%{x | index(1, 0)}", {"x": "a"})


def test_list() -> None:
    assert run("%{x | list}", {"x": "a\tb"}) == "a,b"
    assert run("%{x | list(' ; ')}", {"x": "a\tb\tc"}) == "a ; b ; c"
    assert run("%{x | list}", {"x": ""}) == ""
    # tab-escaped items: \001t is a TAB, \0011 is \001
    assert run("%{x | list('|')}", {"x": "a\x01tb\tc\x011"}) == "a\tb|c\x01"
    with pytest.raises(VarExpandError, match="list: Too many positional"):
        run("%{x | list(',', ',')}", {"x": "a"})


def test_fill() -> None:
    assert run("%{x | lfill(5, 'ab')}", {"x": "1"}) == "abab1"
    assert run("%{x | rfill(4, 'ab')}", {"x": "1"}) == "1abab"
    assert run("%{x | lfill(2)}", {"x": "123"}) == "123"
    with pytest.raises(VarExpandError, match="lfill: Fill length out of bounds"):
        run("%{x | lfill(0)}", {"x": "1"})
    with pytest.raises(VarExpandError, match="Fill length out of bounds"):
        run("%{x | lfill(2147483647)}", {"x": "1"})
    with pytest.raises(VarExpandError, match="Fill length out of bounds"):
        run(f"%{{x | rfill({MAX_VALUE_SIZE + 1})}}", {"x": "1"})
    with pytest.raises(VarExpandError, match="lfill: Filler must not be empty"):
        run("%{x | lfill(3, '')}", {"x": "1"})
    with pytest.raises(VarExpandError, match="rfill: ' ' is not a number"):
        run("%{x | rfill(' ')}", {"x": "1"})


def test_text_sanitizes() -> None:
    assert run("%{x | unhexlify | text}", {"x": "610062"}) == "a"  # stops at NUL
    assert run("%{x | unhexlify | text}", {"x": "61ff62"}) == "a\ufffdb"
    assert run("%{x | unhexlify | text}", {"x": "c3a9"}) == "é"
    assert run("%{x | unhexlify | text}", {"x": "e282"}) == "\ufffd\ufffd"
    assert run("%{x | text}", {"x": "a\nb\tc"}) == "a\ufffdb\ufffdc"


def test_regexp() -> None:
    v = {"user": "john.doe@example.com"}
    assert run("%{user | regexp('^([^@]*)@(.*)$', '\\\\2/\\\\1')}", v) == ("example.com/john.doe")
    # no match: unchanged
    assert run("%{user | regexp('^x', 'y')}", v) == "john.doe@example.com"
    # a match replaces the whole value with the replacement (Dovecot semantics)
    assert run("%{user | regexp('@.*', 'at')}", v) == "at"
    assert run("%{user | regexp('[[:alpha:]]+', '\\\\0')}", v) == "john"
    assert run("%{user | regexp('[.]', '<\\\\0>')}", v) == "<.>"
    with pytest.raises(VarExpandError, match="regexp: Invalid capture group"):
        run("%{user | regexp('(x)?j', '\\\\1')}", v)
    with pytest.raises(VarExpandError, match="regexp: Invalid capture group"):
        run("%{user | regexp('j', '\\\\3')}", v)
    with pytest.raises(VarExpandError, match="regexp: Invalid regular expression"):
        run("%{user | regexp('(', 'x')}", v)
    with pytest.raises(VarExpandError, match="regexp: Missing replacement parameter"):
        run("%{user | regexp('x')}", v)
    with pytest.raises(VarExpandError, match="regexp: 1 is not a string"):
        run("%{user | regexp(1, 'x')}", v)


def test_regexp_posix_translation() -> None:
    t = vef.translate_ere
    assert re.fullmatch(t("[[:digit:]]+"), "123")
    assert re.fullmatch(t("[]a]"), "]")
    assert re.fullmatch(t("[^]a]"), "b")
    assert re.fullmatch(t("a\\.b"), "a.b")
    assert re.fullmatch(t("[\\]"), "\\")  # backslash is literal inside brackets
    assert re.search(t("\\<word\\>"), "a word b")
    assert re.fullmatch(t("x$"), "x")
    assert re.fullmatch(t("x$"), "x\n") is None
    for bad in ("(?i)x", "[[:nope:]]", "[a", "x\\", "[z-a]"):
        with pytest.raises(re.error):
            t(bad)


def test_if_extras() -> None:
    assert run("%{x | if('*', 'a?c', 'y', 'n')}", {"x": "abc"}) == "y"
    assert run("%{x | if('*', 'a*x*c', 'y', 'n')}", {"x": "abxyc"}) == "y"
    assert run("%{x | if('*', 'a*d', 'y', 'n')}", {"x": "abc"}) == "n"
    assert run("%{if(a, '<', b, 'y', 'n')}", {"a": "-5", "b": "3"}) == "y"
    assert run("%{x | if('==', 1, 10, 20)}", {"x": "1"}) == "10"
    with pytest.raises(VarExpandError, match="Left-hand side: 1 is not a string"):
        run("%{if(1, 'eq', 'a', 'y', 'n')}", {})
    with pytest.raises(VarExpandError, match="Right-hand side: 'x' is not a number"):
        run("%{if(1, '==', 'x', 'y', 'n')}", {})
    with pytest.raises(VarExpandError, match="regexp\\(\\) failed"):
        run("%{x | if('~', '(', 'y', 'n')}", {"x": "a"})


def test_wildcard_match() -> None:
    wm = vef.wildcard_match
    assert wm("", "")
    assert wm("", "*")
    assert not wm("", "?")
    assert wm("abc", "*")
    assert wm("abc", "a*")
    assert wm("abc", "*c")
    assert wm("abcbc", "*bc")
    assert not wm("abc", "*b")
    assert wm("a" * 50, "*a*a*a*a*a*a*a*a*")
    assert not wm("a" * 50 + "b", "*a*a*a*a*a*a*a*a*c")


def test_safe_and_escape() -> None:
    esc = quote_escape
    v = {"x": "o'k", "n": "a.b"}
    assert run("v=%{x}", v, escape=esc) == "v='o\\'k'"
    assert run("v=%{x | safe}", v, escape=esc) == "v=o'k"
    assert run("v=%{x | escape | safe}", v, escape=esc) == "v='o\\'k'"
    # escape without safe escapes twice, as documented
    assert run("v=%{x | escape}", v, escape=esc) == "v='\\'o\\\\'k\\''"
    # without an escape function, safe is a no-op and escape is an error
    assert run("v=%{x | safe}", v) == "v=o'k"
    with pytest.raises(VarExpandError, match="escape: No escape function configured"):
        run("%{x | escape}", v)
    with pytest.raises(VarExpandError, match="Unknown variable 'missing'"):
        run("%{missing | safe}", v, escape=esc)
    # literal text is never escaped
    assert run("'%{n}'", v, escape=esc) == "''a.b''"


def test_escape_function_failure_is_wrapped() -> None:
    def broken(_text: str) -> str:
        raise RuntimeError("boom")

    with pytest.raises(VarExpandError, match="Escape function failed: boom"):
        run("%{x}", {"x": "a"}, escape=broken)


def test_epoch_and_date_filters() -> None:
    v = {"t": "1727121943", "f": "1727121943.123456789", "ms": "1727121943123"}
    assert run("%{t | epoch}", v) == "1727121943"
    assert run("%{f | epoch}", v) == "1727121943"
    assert run("%{f | epoch(unit='ms')}", v) == "1727121943123"
    assert run("%{f | epoch(unit='us')}", v) == "1727121943123456"
    assert run("%{f | epoch(unit='ns')}", v) == "1727121943123456789"
    assert run("%{ms | from_epoch(unit='ms')}", v) == "1727121943.123000000"
    assert run("%{t | from_epoch}", v) == "1727121943.000000000"
    assert run("%{ms | from_epoch(unit='ms') | epoch(unit='ms')}", v) == v["ms"]
    assert run("%{x | epoch(unit='ms')}", {"x": "-1.5"}) == "-1500"
    assert run("%{x | from_epoch(unit='ms')}", {"x": "-1500"}) == "-1.500000000"
    assert run("%{x | iso8601}", {"x": "-1.5"}) == "1969-12-31T23:59:58.5Z"
    assert run("%{t | iso8601}", v) == "2024-09-23T20:05:43Z"
    assert run("%{f | iso8601}", v) == "2024-09-23T20:05:43.123456789Z"
    assert run("%{t | date}", v) == "2024-09-23"
    assert run("%{t | date('%Y/%m/%d %H:%M')}", v) == "2024/09/23 20:05"
    with pytest.raises(VarExpandError, match="epoch: Unsupported unit 'h'"):
        run("%{t | epoch(unit='h')}", v)
    with pytest.raises(VarExpandError, match="epoch: Too many positional"):
        run("%{t | epoch('s')}", v)
    with pytest.raises(VarExpandError, match="epoch: Input is not a timestamp"):
        run("%{x | epoch}", {"x": "soon"})
    with pytest.raises(VarExpandError, match="from_epoch: Input is not a number"):
        run("%{x | from_epoch}", {"x": "1.5"})
    with pytest.raises(VarExpandError, match="date: Unsupported format"):
        run("%{t | date('%Q')}", v)
    with pytest.raises(VarExpandError, match="iso8601: Timestamp out of range"):
        run("%{x | iso8601}", {"x": "99999999999999999"})


def test_time_unix_provider_feeds_epoch() -> None:
    out = run("%{time:unix | epoch(unit='ms')}", providers=default_providers())
    assert out.isdigit()
    assert len(out) >= 13


# ================================================================ syntax and errors


@pytest.mark.parametrize(
    ("template", "message", "position"),
    [
        ("ab%{user", "Missing '}'", 2),
        ("%{user(}", "Unexpected '}', expected an argument", 7),
        ("%{user()}", "Unexpected ')', expected an argument", 7),
        ("%{user | upper(1,}", "Unexpected '}', expected an argument", 17),
        ("%{user # x}", "Unexpected character '#'", 7),
        ("%{user\n}", "Unexpected character '\\n'", 6),
        ("%{user | nosuch}", "No such function 'nosuch'", 9),
        ("%{user | safe | upper}", "The safe filter must be the last filter", 9),
        ("%{user | safe + 1}", "The safe filter must be the last filter", 9),
        ("%{user + }", "Unexpected '}', expected a number or a variable after '+'", 9),
        ("%{user + 1 + 2}", "Unexpected '+', expected '|' or '}'", 11),
        ("%{ + 1}", "Unexpected '+', expected a variable or filter name", 3),
        ("%{1}", "Unexpected number '1'", 2),
        ("%{'x'}", "Unexpected string, expected a variable or filter name", 2),
        ("%{user | md5(rounds=)}", "Unexpected ')', expected a value for 'rounds'", 20),
        ("%{literal('abc)}", "Unterminated string", 10),
        ("%{literal('\\q')}", "Invalid character escape", 11),
        ("%{literal('\\x4')}", "Invalid character escape", 11),
        ("%{literal('\\400')}", "Invalid character escape", 11),
        ("%{x + 9223372036854775808}", "Not a number", 6),
        ("ok \udcff", "Invalid UTF-8 string", 3),
    ],
)
def test_syntax_errors_name_the_position(template: str, message: str, position: int) -> None:
    with pytest.raises(VarExpandError) as info:
        parse(template)
    assert message in info.value.message
    assert info.value.position == position
    assert f"at position {position}" in str(info.value)


def test_valid_edge_syntax() -> None:
    v = {"a-b": "dash", "x": "5", "n": "3", "user": "U"}
    assert run("%{}", v) == ""
    assert run("[%{ }]", v) == "[]"
    assert run("%{x | | upper}", v) == "5"
    assert run("%{a-b}", v) == "dash"
    assert run("%{x - -1}", v) == "6"
    assert run("%{x -1}", v) == "4"
    assert run("%{x + n}", v) == "8"
    assert run("%{x * -2}", v) == "-10"
    assert run("%{literal(-7) / 2}", v) == "-3"  # C truncation
    assert run("%{literal(-7) % 2}", v) == "-1"  # C remainder sign
    assert run('%{literal("a\'b")}', v) == "a'b"
    assert run("%{literal('\\x41\\101\\t')}", v) == "AA\t"
    assert run("}}%{user}{{", v) == "}}U{{"
    assert run("\t%{\tuser\t|\tlower\t}", v) == "\tu"


def test_arithmetic_overflow_is_an_error() -> None:
    with pytest.raises(VarExpandError, match="calculate: Integer overflow"):
        run("%{x * 2}", {"x": str(2**62)})
    with pytest.raises(VarExpandError, match="calculate: Integer overflow"):
        run("%{x - 9223372036854775807}", {"x": "-2"})


def test_runtime_no_value_errors_keep_first_error() -> None:
    with pytest.raises(VarExpandError) as info:
        run("%{missing | upper | lower}", {})
    assert str(info.value) == "Unknown variable 'missing'"
    with pytest.raises(VarExpandError) as info:
        run("%{x | index('@', 5) | upper}", {"x": "a"})
    assert str(info.value) == "index: Position out of bounds"
    with pytest.raises(VarExpandError) as info:
        run("%{upper}", {})
    assert str(info.value) == "upper: No value to upper"


def test_missing_variable_in_second_expression() -> None:
    with pytest.raises(VarExpandError, match="Unknown variable 'home'"):
        run("%{user}/%{home}", {"user": "u"})


def test_non_utf8_result_is_an_error() -> None:
    with pytest.raises(VarExpandError, match="not valid UTF-8"):
        run("%{x | substr(0, 1)}", {"x": "é"})
    with pytest.raises(VarExpandError, match="not valid UTF-8"):
        run("%{x | reverse}", {"x": "é"})


def test_limits() -> None:
    with pytest.raises(VarExpandError, match="Template too long"):
        parse("a" * (MAX_TEMPLATE_LENGTH + 1))
    with pytest.raises(VarExpandError, match="Template too long"):
        parse("é" * (MAX_TEMPLATE_LENGTH // 2 + 1))
    parse("a" * MAX_TEMPLATE_LENGTH)
    ok = "%{x" + " | lower" * (MAX_PIPELINE_LENGTH - 1) + "}"
    assert run(ok, {"x": "A"}) == "a"
    with pytest.raises(VarExpandError, match="Too many filters"):
        parse("%{x" + " | lower" * MAX_PIPELINE_LENGTH + "}")
    args = ", ".join(["'a'"] * MAX_ARGUMENTS)
    assert run(f"%{{concat({args})}}", {}) == "a" * MAX_ARGUMENTS
    with pytest.raises(VarExpandError, match="Too many arguments"):
        parse(f"%{{concat({args}, 'a')}}")
    big = "x" * (MAX_OUTPUT_SIZE // 2 + 1)
    with pytest.raises(VarExpandError, match="Expansion result too large"):
        run("%{a}%{a}", {"a": big})
    with pytest.raises(VarExpandError, match="too large"):
        run("%{a}", {"a": "x" * (MAX_VALUE_SIZE + 1)})
    with pytest.raises(VarExpandError, match="Value too large"):
        run("%{a | concat(a)}", {"a": big})


def test_non_str_template() -> None:
    with pytest.raises(VarExpandError, match="must be a str"):
        parse(b"%{x}")  # type: ignore[arg-type]
    with pytest.raises(VarExpandError, match="must be a str"):
        parse(None)  # type: ignore[arg-type]


def test_bad_variable_values() -> None:
    with pytest.raises(VarExpandError, match="not valid UTF-8"):
        run("%{x}", {"x": "\ud800"})
    assert run("%{x}", {"x": 5}) == "5"  # type: ignore[dict-item]
    # surrogate-escaped bytes (as os.environ produces) pass through as bytes
    with pytest.raises(VarExpandError, match="not valid UTF-8"):
        run("%{x}", {"x": "\udcff"})
    assert run("%{x | hexlify}", {"x": "\udcff"}) == "ff"


def test_provider_failures_are_wrapped() -> None:
    def broken(_key: str) -> str | None:
        raise KeyError("nope")

    with pytest.raises(VarExpandError, match="userdb: 'nope'"):
        run("%{userdb:x}", providers={"userdb": broken})
    empty: dict[str, str] = {}
    with pytest.raises(VarExpandError, match="userdb: Unknown key 'quota'"):
        run("%{userdb:quota}", providers={"userdb": empty.get})
    assert run("%{userdb:quota | default('1G')}", providers={"userdb": empty.get}) == "1G"
    assert run("%{userdb:home}", providers={"userdb": {"home": "/h"}.get}) == "/h"


# ================================================================ API


def test_parse_is_cached_and_reusable() -> None:
    t1 = parse("%{user | lower}")
    t2 = parse("%{user | lower}")
    assert t1 is t2
    assert isinstance(t1, Template)
    assert t1.expand(ExpandContext({"user": "A"})) == "a"
    assert t1.expand(ExpandContext({"user": "B"})) == "b"
    assert t1.source == "%{user | lower}"
    assert not t1.is_literal
    assert parse("plain").is_literal


def test_expand_convenience_uses_default_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMBA_TEST_VAR", "yes")
    assert expand("%{env:COLUMBA_TEST_VAR}") == "yes"
    assert env_provider("COLUMBA_TEST_VAR") == "yes"
    with pytest.raises(VarExpandError, match="Unsupported prefix 'env'"):
        expand("%{env:COLUMBA_TEST_VAR}", {}, {})
    assert expand("%{x}", {"x": "1"}, escape=lambda s: f"<{s}>") == "<1>"


def test_variables_used() -> None:
    assert variables_used("plain") == set()
    assert variables_used("%{user | sha1 % 4}") == {"user"}
    assert variables_used("%{literal('a')} %{lookup('b')} %{if(c, 'eq', 'd', e, 'f')}") == {
        "c",
        "e",
    }
    assert variables_used("%{port + offset}") == {"port", "offset"}
    assert variables_used("%{concat(a, 'b')} %{domain}") == {"a", "domain"}
    assert variables_used("%{userdb:home | default(env:HOME)}") == {"userdb:home", "env:HOME"}
    assert variables_used("%{x | md5(salt=pepper)}") == {"x", "pepper"}
    with pytest.raises(VarExpandError):
        variables_used("%{x")


def test_filter_names() -> None:
    documented = {
        "lower upper username domain default hex hexlify unhex unhexlify base64 unbase64"
        " md5 sha1 sha256 sha384 sha512 hash substr truncate lfill rfill reverse text"
        " literal lookup concat if index list regexp safe escape benumber lenumber epoch"
        " from_epoch date iso8601 ldap_dn calculate"
    }
    assert set(next(iter(documented)).split()) == set(filter_names())


def test_arithmetic_on_a_huge_number_is_an_expansion_error() -> None:
    """Hypothesis found ``%{big | hexlify + 0}``: 8 192 digits made int() raise ValueError
    (Python's 4 300-digit limit) instead of the out-of-range error; leading zeros still count
    for nothing."""
    with pytest.raises(VarExpandError):
        run("%{big | hexlify + 0}", {"big": "x" * 4096})
    assert vef.str_to_intmax(b"0" * 5000 + b"7") == 7
    assert vef.str_to_uintmax(b"9" * 21) is None
