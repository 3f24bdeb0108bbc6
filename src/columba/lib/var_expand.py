"""Dovecot 2.4 compatible variable expansion: ``%{variable | filter | filter(args)}``.

Sans-IO and bounded.  A template is parsed once (and cached) into a
:class:`Template`; expanding it needs only an :class:`ExpandContext` holding
the variables, the providers (``%{provider:key}``) and, optionally, an escape
function (for SQL/LDAP queries).  The only I/O is what the providers passed in
do; :func:`default_providers` offers Dovecot's global ones (``env``,
``process``, ``system``, ``dovecot``, ``date``, ``time``, ``generate``).

Syntax (dovecot/core ``src/lib-var-expand/var-expand-lexer.l`` and
``var-expand-parser.y``):

* Text outside ``%{...}`` is literal.  ``%%{`` emits ``%{``; any other ``%``
  is literal, so ``%%`` emits ``%%``.
* Inside: a pipeline of filters separated by ``|``.  The first element is a
  variable name (``user``, ``userdb:home``) or, if no such variable exists,
  a filter (``literal('x')``, ``lookup(name)``, ``if(...)``).  A missing
  variable is an error unless a later ``default`` supplies a value.
* Arguments: ``'single'`` or ``"double"`` quoted strings (escapes ``\\\\``
  ``\\'`` ``\\"`` ``\\t`` ``\\r`` ``\\n`` ``\\xHH`` ``\\ooo``), numbers, bare
  variable names, and named arguments ``key=value`` (``md5(rounds=1000,
  salt='pepper')``).
* Each filter may be followed by one arithmetic operation ``+ - * / %`` with
  a number or a variable (``%{port + 1000}``).  ``%`` of a binary value (a
  hash) takes the last 8 bytes as a big-endian unsigned 64-bit number, so
  ``%{user | sha1 % 4}`` is ``0``..``3``.
* A binary final value is hex-encoded.  ``safe`` (which must be last) keeps a
  pipeline's output from being passed to the escape function.

Columba differences from Dovecot, all on the side of failing early or
safely: a filter name that does not exist (in a non-first position) and a
``safe`` that is not last are parse errors rather than expansion errors;
sizes, rounds and fill widths are bounded; a result that is not valid UTF-8
is an error; arithmetic overflow is an error instead of wrapping.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from columba import __version__
from columba.lib.var_expand_filters import (
    FILTERS,
    INTMAX_MAX,
    INTMAX_MIN,
    MAX_VALUE_SIZE,
    FilterError,
    Operator,
    Param,
    ParamKind,
    State,
    Statement,
    call_escape,
    timestamp_now,
)

__all__ = [
    "MAX_ARGUMENTS",
    "MAX_OUTPUT_SIZE",
    "MAX_PIPELINE_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "MAX_VALUE_SIZE",
    "ExpandContext",
    "Provider",
    "Template",
    "VarExpandError",
    "default_providers",
    "env_provider",
    "expand",
    "filter_names",
    "parse",
    "variables_used",
]

#: Longest template accepted, in UTF-8 bytes.
MAX_TEMPLATE_LENGTH = 64 * 1024
#: Most statements (filters and arithmetic operations) in one ``%{...}``.
MAX_PIPELINE_LENGTH = 64
#: Most arguments to one filter.
MAX_ARGUMENTS = 32
#: Largest expansion result, in UTF-8 bytes.
MAX_OUTPUT_SIZE = MAX_VALUE_SIZE

#: A provider gets the part after ``prefix:`` and returns the value, or None
#: if it has no such key.  It may raise :class:`VarExpandError` with a message.
Provider = Callable[[str], str | None]

# Functions Dovecot never registers as variables when they start a pipeline.
_NON_VARIABLE_FUNCTIONS = frozenset({"literal", "lookup", "if", "calculate"})


class VarExpandError(ValueError):
    """A template is invalid or could not be expanded.

    ``message`` is the bare message (Dovecot's wording where Dovecot has one);
    ``position`` is the character offset into the template for syntax errors.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        text = message if position is None else f"{message} at position {position}"
        super().__init__(text)
        self.message = message
        self.position = position


# ================================================================ lexer

_PUNCTUATION = {
    "|": "PIPE",
    "(": "OBRACE",
    ")": "CBRACE",
    ",": "COMMA",
    "=": "EQ",
    "+": "PLUS",
    "-": "MINUS",
    "*": "STAR",
    "/": "SLASH",
    "%": "PERC",
    "}": "CCBRACE",
}

_OPERATORS = {
    "PLUS": Operator.PLUS,
    "MINUS": Operator.MINUS,
    "STAR": Operator.STAR,
    "SLASH": Operator.SLASH,
    "PERC": Operator.MODULO,
}

_SIMPLE_ESCAPES = {"\\": 92, "t": 9, "r": 13, "n": 10, '"': 34, "'": 39}

_TOKEN_NAMES = {
    "NAME": "name",
    "VALUE": "string",
    "NUMBER": "number",
    "EOF": "end of template",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    pos: int
    text: str = ""
    data: bytes = b""

    def describe(self) -> str:
        if self.kind in ("NAME", "NUMBER"):
            return f"{_TOKEN_NAMES[self.kind]} '{self.text}'"
        if self.kind in _TOKEN_NAMES:
            return _TOKEN_NAMES[self.kind]
        return f"'{self.text}'"


def _is_name_start(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c >= "\x80"


def _is_name_char(c: str) -> bool:
    return _is_name_start(c) or ("0" <= c <= "9") or c in "_/;:.-"


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _lex_string(src: str, start: int) -> tuple[bytes, int]:
    """Lex a quoted string whose opening quote is at ``start``."""
    quote = src[start]
    n = len(src)
    buf = bytearray()
    i = seg = start + 1
    while True:
        if i >= n:
            raise VarExpandError("Unterminated string", start)
        c = src[i]
        if c == quote:
            buf += src[seg:i].encode()
            return bytes(buf), i + 1
        if c != "\\":
            i += 1
            continue
        buf += src[seg:i].encode()
        i += 1
        if i >= n:
            raise VarExpandError("Unterminated string", start)
        e = src[i]
        if e in _SIMPLE_ESCAPES:
            buf.append(_SIMPLE_ESCAPES[e])
            i += 1
        elif e == "x":
            digits = src[i + 1 : i + 3]
            if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise VarExpandError("Invalid character escape", i - 1)
            buf.append(int(digits, 16))
            i += 3
        elif _is_digit(e):
            j = i
            while j < n and j - i < 3 and _is_digit(src[j]):
                j += 1
            digits = src[i:j]
            if any(d in "89" for d in digits) or int(digits, 8) > 255:
                raise VarExpandError("Invalid character escape", i - 1)
            buf.append(int(digits, 8))
            i = j
        else:
            raise VarExpandError("Invalid character escape", i - 1)
        seg = i


def _lex_expression(src: str, pos: int) -> tuple[list[_Token], int]:
    """Tokenize from just after ``%{`` up to and including the closing ``}``."""
    tokens: list[_Token] = []
    n = len(src)
    i = pos
    while True:
        if i >= n:
            raise VarExpandError("Missing '}'", pos - 2)
        c = src[i]
        if c in " \t":
            i += 1
        elif c in _PUNCTUATION:
            tokens.append(_Token(_PUNCTUATION[c], i, c))
            i += 1
            if c == "}":
                return tokens, i
        elif c in "'\"":
            data, end = _lex_string(src, i)
            tokens.append(_Token("VALUE", i, src[i:end], data))
            i = end
        elif _is_digit(c):
            j = i + 1
            while j < n and _is_digit(src[j]):
                j += 1
            tokens.append(_Token("NUMBER", i, src[i:j]))
            i = j
        elif _is_name_start(c):
            j = i + 1
            while j < n and _is_name_char(src[j]):
                j += 1
            tokens.append(_Token("NAME", i, src[i:j]))
            i = j
        else:
            raise VarExpandError(f"Unexpected character {c!r}", i)


# ================================================================ parser


@dataclass(frozen=True, slots=True)
class _Pipeline:
    statements: tuple[Statement, ...]
    position: int
    safe: bool


class _Parser:
    """Recursive-descent parser of one ``%{...}`` token list."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    @staticmethod
    def fail(tok: _Token, expected: str) -> VarExpandError:
        return VarExpandError(f"Unexpected {tok.describe()}, expected {expected}", tok.pos)

    def pipeline(self) -> list[Statement]:
        statements: list[Statement] = []
        while True:
            tok = self.peek()
            if tok.kind == "NAME":
                statements.append(self.function())
                if self.peek().kind in _OPERATORS:
                    statements.append(self.math())
            elif tok.kind not in ("PIPE", "CCBRACE"):
                raise self.fail(tok, "a variable or filter name")
            if len(statements) > MAX_PIPELINE_LENGTH:
                raise VarExpandError(f"Too many filters (limit is {MAX_PIPELINE_LENGTH})", tok.pos)
            tok = self.take()
            if tok.kind == "CCBRACE":
                return statements
            if tok.kind != "PIPE":
                raise self.fail(tok, "'|' or '}'")

    def number(self) -> int:
        tok = self.take()
        negative = tok.kind == "MINUS"
        if negative:
            tok = self.take()
        if tok.kind != "NUMBER":
            raise self.fail(tok, "a number")
        value = -int(tok.text) if negative else int(tok.text)
        if value < INTMAX_MIN or value > INTMAX_MAX:
            raise VarExpandError("Not a number", tok.pos)
        return value

    def math(self) -> Statement:
        op_tok = self.take()
        operator = Param(ParamKind.INT, int(_OPERATORS[op_tok.kind]), 0)
        tok = self.peek()
        if tok.kind == "NAME":
            self.take()
            operand = Param(ParamKind.VARIABLE, tok.text, 1)
        elif tok.kind in ("NUMBER", "MINUS"):
            operand = Param(ParamKind.INT, self.number(), 1)
        else:
            raise self.fail(tok, f"a number or a variable after '{op_tok.text}'")
        return Statement("calculate", (operator, operand), op_tok.pos, True)

    def function(self) -> Statement:
        name_tok = self.take()
        if self.peek().kind != "OBRACE":
            return Statement(name_tok.text, (), name_tok.pos, False)
        self.take()
        positional: list[Param] = []
        named: list[Param] = []
        while True:
            if len(positional) + len(named) >= MAX_ARGUMENTS:
                raise VarExpandError(
                    f"Too many arguments (limit is {MAX_ARGUMENTS})", self.peek().pos
                )
            param = self.argument(len(positional))
            (positional if param.key is None else named).append(param)
            tok = self.take()
            if tok.kind == "CBRACE":
                break
            if tok.kind != "COMMA":
                raise self.fail(tok, "',' or ')'")
        named.sort(key=lambda p: p.key or "")
        return Statement(name_tok.text, tuple(positional + named), name_tok.pos, True)

    def argument(self, idx: int) -> Param:
        tok = self.peek()
        if tok.kind == "VALUE":
            self.take()
            return Param(ParamKind.STRING, tok.data, idx)
        if tok.kind in ("NUMBER", "MINUS"):
            return Param(ParamKind.INT, self.number(), idx)
        if tok.kind != "NAME":
            raise self.fail(tok, "an argument")
        self.take()
        if self.peek().kind != "EQ":
            return Param(ParamKind.VARIABLE, tok.text, idx)
        self.take()
        key = tok.text.lower()
        value = self.peek()
        if value.kind == "VALUE":
            self.take()
            return Param(ParamKind.STRING, value.data, -1, key)
        if value.kind == "NAME":
            self.take()
            return Param(ParamKind.VARIABLE, value.text, -1, key)
        if value.kind in ("NUMBER", "MINUS"):
            return Param(ParamKind.INT, self.number(), -1, key)
        raise self.fail(value, f"a value for '{tok.text}'")


def _check_pipeline(statements: list[Statement]) -> None:
    for n, stmt in enumerate(statements):
        if n > 0 and stmt.function not in FILTERS:
            raise VarExpandError(f"No such function '{stmt.function}'", stmt.position)
        if n > 0 and stmt.function == "safe" and n != len(statements) - 1:
            raise VarExpandError(
                "The safe filter must be the last filter in the pipeline", stmt.position
            )


def _variables_of(statements: list[Statement]) -> set[str]:
    """Variables a pipeline refers to, as Dovecot's ``register_variable``
    does, except that a leading filter written with arguments (``concat(a)``)
    is not mistaken for a variable."""
    names: set[str] = set()
    first = statements[0]
    if first.function not in _NON_VARIABLE_FUNCTIONS and not (
        first.function in FILTERS and first.has_arguments
    ):
        names.add(first.function)
    for stmt in statements:
        for par in stmt.params:
            if par.kind is ParamKind.VARIABLE:
                assert isinstance(par.value, str)
                names.add(par.value)
    return names


def _parse(template: str) -> Template:
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise VarExpandError(f"Template too long (limit is {MAX_TEMPLATE_LENGTH} bytes)")
    try:
        encoded_length = len(template.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise VarExpandError("Invalid UTF-8 string", exc.start) from None
    if encoded_length > MAX_TEMPLATE_LENGTH:
        raise VarExpandError(f"Template too long (limit is {MAX_TEMPLATE_LENGTH} bytes)")

    parts: list[bytes | _Pipeline] = []
    literal: list[str] = []
    variables: set[str] = set()
    n = len(template)
    i = 0
    while i < n:
        pct = template.find("%", i)
        if pct < 0:
            literal.append(template[i:])
            break
        literal.append(template[i:pct])
        if template.startswith("%{", pct):
            tokens, i = _lex_expression(template, pct + 2)
            statements = _Parser(tokens).pipeline()
            if not statements:
                continue  # an empty %{} expands to nothing, as in Dovecot
            _check_pipeline(statements)
            variables |= _variables_of(statements)
            if literal:
                parts.append("".join(literal).encode())
                literal = []
            safe = len(statements) > 1 and statements[-1].function == "safe"
            parts.append(_Pipeline(tuple(statements), pct, safe))
        elif template.startswith("%%{", pct):
            literal.append("%{")
            i = pct + 3
        else:
            literal.append("%")
            i = pct + 1
    if literal:
        text = "".join(literal)
        if text:
            parts.append(text.encode())
    return Template(template, tuple(p for p in parts if p != b""), frozenset(variables))


@functools.lru_cache(maxsize=2048)
def _parse_cached(template: str) -> Template:
    return _parse(template)


def parse(template: str) -> Template:
    """Parse and validate ``template``; the result is cached and reusable.

    Raises :class:`VarExpandError` naming the position of a syntax error.
    """
    if not isinstance(template, str):
        raise VarExpandError(f"Template must be a str, not {type(template).__name__}")
    return _parse_cached(template)


def variables_used(template: str) -> set[str]:
    """Names of the variables (including ``provider:key`` ones) ``template``
    refers to, sorted out the way Dovecot's ``var_expand_program_variables``
    does."""
    return set(parse(template).variables)


def filter_names() -> frozenset[str]:
    """Names of all built-in filters."""
    return frozenset(FILTERS)


# ================================================================ expansion


@dataclass(slots=True)
class ExpandContext:
    """What a template is expanded with.

    ``variables`` maps names to values (None counts as empty).  ``providers``
    maps a prefix to a :data:`Provider` for ``%{prefix:key}``.  ``escape``,
    when set, is applied to the output of every ``%{...}`` that does not end
    in ``| safe`` (Dovecot's ``escape_func``, e.g. for SQL or LDAP queries).
    """

    variables: Mapping[str, str | None] = field(default_factory=dict)
    providers: Mapping[str, Provider] = field(default_factory=dict)
    escape: Callable[[str], str] | None = None


def _value_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        data = value
    else:
        text = value if isinstance(value, str) else str(value)
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise FilterError(f"Value of {what} is not valid UTF-8") from None
    if len(data) > MAX_VALUE_SIZE:
        raise FilterError(f"Value of {what} is too large (limit is {MAX_VALUE_SIZE} bytes)")
    return data


def _make_lookup(ctx: ExpandContext) -> Callable[[str], bytes]:
    variables = ctx.variables
    providers = ctx.providers

    def lookup(name: str) -> bytes:
        prefix, sep, key = name.partition(":")
        if not sep:
            try:
                value = variables[name]
            except KeyError:
                raise FilterError(f"Unknown variable '{name}'") from None
            return b"" if value is None else _value_bytes(value, f"'{name}'")
        provider = providers.get(prefix)
        if provider is None:
            raise FilterError(f"Unsupported prefix '{prefix}'")
        try:
            result = provider(key)
        except VarExpandError as exc:
            raise FilterError(f"{prefix}: {exc.message}") from exc
        except Exception as exc:
            raise FilterError(f"{prefix}: {exc}") from exc
        if result is None:
            raise FilterError(f"{prefix}: Unknown key '{key}'")
        return _value_bytes(result, f"'{name}'")

    return lookup


def _run_pipeline(pipeline: _Pipeline, state: State) -> bytes:
    """Execute one ``%{...}`` (Dovecot's ``var_expand_program_execute`` and
    ``var_expand_execute_stmt``); returns the output bytes."""
    state.transfer = None
    state.binary = False
    state.delayed_error = None
    for n, stmt in enumerate(pipeline.statements):
        first = n == 0
        delayed: str | None = None
        if first:
            # The first element is preferably a variable, then a function.
            try:
                state.set_text(state.lookup(stmt.function))
                continue
            except FilterError as exc:
                state.unset()
                delayed = exc.message
        fn = FILTERS.get(stmt.function)
        if fn is not None:
            delayed = None
            try:
                fn(stmt, state)
            except FilterError as exc:
                state.unset()
                # keep the first error of the pipeline (e.g. the missing
                # variable) rather than "No value to ..." of a later filter
                if state.delayed_error is not None:
                    raise VarExpandError(state.delayed_error) from None
                delayed = f"{stmt.function}: {exc.message}"
            if state.transfer is not None and len(state.transfer) > MAX_VALUE_SIZE:
                raise VarExpandError(
                    f"{stmt.function}: Value too large (limit is {MAX_VALUE_SIZE} bytes)"
                )
        elif not first:  # pragma: no cover - rejected by the parser
            raise VarExpandError(f"No such function '{stmt.function}'")
        state.delayed_error = delayed
    if state.transfer is None:
        raise VarExpandError(state.delayed_error or "No value")
    data = state.transfer
    if state.binary:
        data = data.hex().encode()
    if state.escape is not None and not pipeline.safe:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise VarExpandError("Value to escape is not valid UTF-8") from None
        try:
            data = call_escape(state.escape, text).encode("utf-8", "surrogateescape")
        except (FilterError, UnicodeEncodeError) as exc:
            raise VarExpandError(str(exc)) from None
    return data


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template.  Immutable; expand it any number of times."""

    source: str
    parts: tuple[bytes | _Pipeline, ...]
    variables: frozenset[str]

    @property
    def is_literal(self) -> bool:
        """True if the template contains no ``%{...}`` expressions."""
        return all(isinstance(p, bytes) for p in self.parts)

    def expand(self, ctx: ExpandContext) -> str:
        """Expand with ``ctx``; raises :class:`VarExpandError` on failure."""
        state = State(_make_lookup(ctx), ctx.escape)
        out = bytearray()
        for part in self.parts:
            out += part if isinstance(part, bytes) else _run_pipeline(part, state)
            if len(out) > MAX_OUTPUT_SIZE:
                raise VarExpandError(
                    f"Expansion result too large (limit is {MAX_OUTPUT_SIZE} bytes)"
                )
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise VarExpandError("Expansion result is not valid UTF-8") from None


def expand(
    template: str,
    variables: Mapping[str, str | None] | None = None,
    providers: Mapping[str, Provider] | None = None,
    escape: Callable[[str], str] | None = None,
) -> str:
    """Parse (cached) and expand ``template`` in one call.

    ``providers=None`` means :func:`default_providers`; pass ``{}`` for none.
    """
    ctx = ExpandContext(
        variables if variables is not None else {},
        providers if providers is not None else default_providers(),
        escape,
    )
    return parse(template).expand(ctx)


# ================================================================ providers


def env_provider(key: str) -> str:
    """``%{env:NAME}``: an environment variable, empty if unset (as Dovecot)."""
    if not key:
        raise VarExpandError("Missing field")
    return os.environ.get(key, "")


def _process_provider(key: str) -> str | None:
    if key == "pid":
        return str(os.getpid())
    if key == "uid":
        return str(os.geteuid())
    if key == "gid":
        return str(os.getegid())
    raise VarExpandError(f"Unsupported field '{key}'")


def _hostname() -> str:
    return os.environ.get("DOVECOT_HOSTNAME") or socket.gethostname().split(".", 1)[0]


def _system_provider(key: str) -> str | None:
    if key == "cpu_count":
        return os.environ.get("NCPU") or str(os.cpu_count() or 1)
    if key == "hostname":
        return _hostname()
    if key == "os":
        return platform.system()
    if key == "os-version":
        return platform.release()
    raise VarExpandError(f"Unsupported field '{key}'")


def _dovecot_provider(key: str) -> str | None:
    # Columba's own identity; it has no support address or source revision.
    values = {
        "name": "Columba",
        "version": __version__,
        "support-url": "",
        "support-email": "",
        "revision": "",
    }
    if key not in values:
        raise VarExpandError(f"Unsupported field '{key}'")
    return values[key]


def _date_provider(key: str) -> str | None:
    formats = {"year": "%Y", "month": "%m", "day": "%d"}
    if key not in formats:
        raise VarExpandError(f"Unsupported key '{key}'")
    return time.strftime(formats[key], time.localtime())


def _time_provider(key: str) -> str | None:
    if key == "unix":
        return timestamp_now()
    if key in ("us", "usec"):
        return str(time.time_ns() // 1000 % 1_000_000)
    formats = {"hour": "%H", "min": "%M", "minute": "%M", "sec": "%S", "second": "%S"}
    if key not in formats:
        raise VarExpandError(f"Unsupported key '{key}'")
    return time.strftime(formats[key], time.localtime())


def _generate_provider(key: str) -> str | None:
    if key == "guid":
        now = time.time_ns()
        return f"{now // 1_000_000_000:08x}{now % 1_000_000_000:08x}.{os.getpid()}.{_hostname()}"
    if key == "guid128":
        return uuid.uuid4().hex
    if key in ("uuid", "uuid:record"):
        return str(uuid.uuid4())
    if key == "uuid:compact":
        return uuid.uuid4().hex
    if key == "uuid:microsoft":
        return "{" + str(uuid.uuid4()) + "}"
    raise VarExpandError(f"Unsupported key '{key}'")


def default_providers() -> dict[str, Provider]:
    """Dovecot's global providers: env, process, system, dovecot, date, time
    (including ``time:unix``, ``<seconds>.<nanoseconds>``) and generate.
    Context providers (``userdb``, ``passdb``, ``event`` ...) are added by
    the caller."""
    return {
        "env": env_provider,
        "process": _process_provider,
        "system": _system_provider,
        "dovecot": _dovecot_provider,
        "date": _date_provider,
        "time": _time_provider,
        "generate": _generate_provider,
    }
