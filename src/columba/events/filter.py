"""Dovecot's event filter language: parse, match, print back.

A filter is a boolean expression over comparisons ``key op value``::

    event=imap_command_finished AND (category=imap OR category=lmtp)
        AND NOT (net_in_bytes<1KB OR duration>5secs)

* ``AND``, ``OR``, ``NOT`` (any case) and parentheses; ``NOT`` binds tighter than
  ``AND``, which binds tighter than ``OR``.  (Dovecot's own grammar gives ``AND`` and
  ``OR`` the same precedence, left to right; the canonical text below always
  parenthesises, so it means the same to both.)
* keys: ``event`` (event name, case-sensitive wildcard match), ``category`` ("has a"),
  ``source_location`` (``file.c`` or ``file.c:123``), anything else is a field name.
  Keys are case-sensitive.
* ops: ``=`` ``<`` ``>`` ``<=`` ``>=``; only fields accept the ordering ops.
* values: a bare word or a double-quoted string (``\\"`` and ``\\\\`` escape inside).
  ``*`` and ``?`` are wildcards with ``=``; ``\\*`` is a literal star.  Field values
  compare case-insensitively.  A value can be a number, a size (``B KB MB GB TB``,
  1024-based), a time (``msecs secs mins hours days weeks``, compared in
  microseconds), an IP address or CIDR network, or a string.  ``field=""`` matches a
  missing or empty field, or an empty list; ``list=value`` is list membership.

The module is sans-IO: :func:`parse_filter` only looks at its argument and raises
:class:`EventFilterError` (naming the position) for any bad text, bounded by
:data:`MAX_FILTER_LENGTH` characters and :data:`MAX_NESTING` levels.
``str(filter)`` is a canonical text that parses back to an equal filter.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from columba.events.model import Event

__all__ = [
    "MAX_FILTER_LENGTH",
    "MAX_NESTING",
    "And",
    "Comparison",
    "EventFilter",
    "EventFilterError",
    "Node",
    "Not",
    "Or",
    "parse_filter",
    "parse_interval_msecs",
    "parse_size_bytes",
]

MAX_FILTER_LENGTH: Final = 16 * 1024
"""Longest filter text accepted, and longest canonical text a filter may have."""

MAX_NESTING: Final = 32
"""Deepest nesting of parentheses and ``NOT`` accepted, and of the parsed tree."""

_log = logging.getLogger(__name__)

Op = Literal["=", "<", ">", "<=", ">="]

_SPECIAL_KEYS: Final = frozenset({"event", "category", "source_location"})
_KEYWORDS: Final = frozenset({"and", "or", "not"})
_BARE_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:.*?_-/@+"
)
_WHITESPACE: Final = frozenset(" \t\r\n")
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)
_MAX_DIGITS: Final = 20  # more digits than any 64-bit number; keeps int() cheap and safe


def _small_int(digits: str) -> int | None:
    """int(digits) for at most 20 digits, else None (no huge-number work, no ValueError)."""
    return int(digits) if len(digits.lstrip("-")) <= _MAX_DIGITS else None


class EventFilterError(ValueError):
    """Bad event filter text.  ``position`` is the 0-based offset of the problem."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"event filter: {reason} (at position {position})")
        self.reason = reason
        self.position = position


# ---------------------------------------------------------------------------
# Units


_SIZE_MULTIPLIERS: Final = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_NUMBER_UNIT_RE: Final = re.compile(r"([0-9]+) *([A-Za-z]*)")

# Checked in this order; a unit matches a row when it is a prefix of one of the
# spellings (as Dovecot does), so "m" is minutes and "ms" is milliseconds.
_INTERVAL_UNITS: Final = (
    (("secs", "seconds"), 1000),
    (("mins", "minutes"), 60_000),
    (("msecs", "mseconds", "millisecs", "milliseconds"), 1),
    (("hours",), 3_600_000),
    (("days",), 86_400_000),
    (("weeks",), 604_800_000),
)


def parse_size_bytes(text: str) -> int | None:
    """``"10"``, ``"1k"``, ``"1KB"``, ``"1KiB"``, ``"2 GB"`` → bytes (1024-based), else None."""
    m = _NUMBER_UNIT_RE.fullmatch(text)
    if m is None:
        return None
    num, unit = _small_int(m[1]), m[2].upper()
    mult = _SIZE_MULTIPLIERS.get(unit[:1])
    if num is None or mult is None:
        return None
    rest = unit[1:]
    if unit[:1] not in ("", "B") and rest in ("I", "B", "IB"):
        rest = ""
    if rest:
        return None
    value = num * mult
    return value if value <= _INT64_MAX else None


def parse_interval_msecs(text: str) -> int | None:
    """``"5secs"``, ``"250 milliseconds"``, ``"2mins"``, ``"1d"`` → milliseconds, else None.

    A number without a unit is accepted only when it is 0, as Dovecot does.
    """
    m = _NUMBER_UNIT_RE.fullmatch(text)
    if m is None:
        return None
    num, unit = _small_int(m[1]), m[2].lower()
    if num is None:
        return None
    if not unit:
        return 0 if num == 0 else None
    for spellings, mult in _INTERVAL_UNITS:
        if any(s.startswith(unit) for s in spellings):
            value = num * mult
            return value if value <= _INT64_MAX // 1000 else None
    return None


# ---------------------------------------------------------------------------
# Wildcards


class _Star:
    __slots__ = ()


class _Any:
    __slots__ = ()


_STAR: Final = _Star()
_ANY: Final = _Any()
_PatternItem = str | _Star | _Any


def _compile_pattern(raw: str, fold: bool) -> tuple[tuple[_PatternItem, ...], bool]:
    """Split a wildcard value into items; returns (items, has_wildcards).

    ``\\x`` is a literal ``x``; a trailing lone backslash is literal.
    """
    items: list[_PatternItem] = []
    wild = False
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "\\" and i + 1 < n:
            i += 1
            c = raw[i]
            items.append(c.casefold() if fold else c)
        elif c == "*":
            wild = True
            if not items or items[-1] is not _STAR:
                items.append(_STAR)
        elif c == "?":
            wild = True
            items.append(_ANY)
        else:
            items.append(c.casefold() if fold else c)
        i += 1
    return tuple(items), wild


def _chars(text: str, fold: bool) -> Sequence[str]:
    if not fold:
        return text
    if text.isascii():
        return text.lower()
    return [c.casefold() for c in text]


def _wildcard_match(items: tuple[_PatternItem, ...], text: str, fold: bool) -> bool:
    """Match ``text`` against compiled items: ``*`` any run, ``?`` one character.

    Iterative with backtracking to the last star only: O(len(text) * len(items)).
    """
    chars = _chars(text, fold)
    ti = pi = 0
    star_pi = -1
    star_ti = 0
    n, m = len(chars), len(items)
    while ti < n:
        if pi < m:
            item = items[pi]
            if item is _STAR:
                star_pi, star_ti = pi, ti
                pi += 1
                continue
            if item is _ANY or item == chars[ti]:
                ti += 1
                pi += 1
                continue
        if star_pi < 0:
            return False
        pi = star_pi + 1
        star_ti += 1
        ti = star_ti
    while pi < m and items[pi] is _STAR:
        pi += 1
    return pi == m


# ---------------------------------------------------------------------------
# Values


_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_INT_RE: Final = re.compile(r"-?[0-9]+")
_FLOAT_RE: Final = re.compile(r"-?[0-9]+\.[0-9]+")
_LINE_RE: Final = re.compile(r"[0-9]+")


def _parse_ip(text: str) -> _IPAddress | None:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text or len(text) > 64 or not (":" in text or "." in text):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_ip_range(text: str) -> _IPAddress | _IPNetwork | None:
    addr_text, slash, bits_text = text.partition("/")
    addr = _parse_ip(addr_text)
    if addr is None:
        return None
    if not slash:
        return addr
    bits = _small_int(bits_text) if _LINE_RE.fullmatch(bits_text) else None
    if bits is None or bits > addr.max_prefixlen:
        return None
    return ipaddress.ip_network((addr, bits), strict=False)


@dataclass(frozen=True, slots=True)
class _Value:
    """What a filter value means, worked out once at parse time."""

    raw: str
    items: tuple[_PatternItem, ...]  # case-folded wildcard items
    name_items: tuple[_PatternItem, ...]  # case-sensitive items (event names)
    wildcard: bool
    literal: str  # the value with escapes removed (meaningful when not wildcard)
    literal_folded: str
    number: int | float | None
    ambiguous_unit: bool
    ip: _IPAddress | _IPNetwork | None
    numeric_wildcard: bool
    location: tuple[str, int]  # as a source_location: (file, line or 0)

    @classmethod
    def parse(cls, raw: str) -> _Value:
        items, wildcard = _compile_pattern(raw, fold=True)
        name_items, _ = _compile_pattern(raw, fold=False)
        literal = "".join(i for i in name_items if isinstance(i, str))
        number: int | float | None = None
        ambiguous = False
        ip: _IPAddress | _IPNetwork | None = None
        # The order is Dovecot's: integer, IP or network, size, time interval.
        integer = _small_int(raw) if _INT_RE.fullmatch(raw) else None
        if integer is not None and _INT64_MIN <= integer <= _INT64_MAX:
            number = integer
        else:
            ip = _parse_ip_range(raw)
        if number is None and ip is None:
            size = parse_size_bytes(raw)
            msecs = parse_interval_msecs(raw) if size is None else None
            if size is not None and raw.upper().endswith("M"):
                ambiguous = True  # "1m": megabytes or minutes?  Dovecot refuses to guess.
            elif size is not None:
                number = size
            elif msecs is not None:
                number = msecs * 1000  # events report times in microseconds
            elif len(raw) <= 2 * _MAX_DIGITS and _FLOAT_RE.fullmatch(raw):
                number = float(raw)
        numeric_wildcard = wildcard and all(c in "0123456789*?" for c in raw)
        return cls(
            raw=raw,
            items=items,
            name_items=name_items,
            wildcard=wildcard,
            literal=literal,
            literal_folded=literal.casefold(),
            number=number,
            ambiguous_unit=ambiguous,
            ip=ip,
            numeric_wildcard=numeric_wildcard,
            location=_split_location(raw),
        )

    def matches_text(self, text: str) -> bool:
        """Case-insensitive equality or wildcard match against a string."""
        if self.wildcard:
            return _wildcard_match(self.items, text, fold=True)
        return text.casefold() == self.literal_folded


def _split_location(text: str) -> tuple[str, int]:
    """``"file.c:123"`` → ("file.c", 123); anything without a numeric suffix → (text, 0)."""
    file, colon, line = text.rpartition(":")
    number = _small_int(line) if colon and _LINE_RE.fullmatch(line) else None
    if number is not None and number < 2**64:
        return file, number
    return text, 0


# ---------------------------------------------------------------------------
# The tree


_warned: set[tuple[str, str, str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(node: Comparison, problem: str) -> None:
    key = (node.key, node.op, node.value, problem)
    with _warned_lock:
        if key in _warned or len(_warned) >= 1024:
            return
        _warned.add(key)
    _log.warning("Event filter %s: %s", node, problem)


@dataclass(frozen=True)
class Comparison:
    """``key op value``.  ``key`` is ``event``, ``category``, ``source_location`` or a field."""

    key: str
    op: Op
    value: str
    _value: _Value = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_value", _Value.parse(self.value))

    @property
    def depth(self) -> int:
        return 0

    def match(self, event: Event) -> bool:
        if self.key == "event":
            return self._match_name(event.name)
        if self.key == "category":
            return self.value in event.categories
        if self.key == "source_location":
            return self._match_location(event.source_location)
        return self._match_field(event)

    def _match_name(self, name: str) -> bool:
        if not name:
            return False
        v = self._value
        if v.wildcard:
            return _wildcard_match(v.name_items, name, fold=False)
        return name == v.literal

    def _match_location(self, location: str) -> bool:
        if not location:
            return False
        want_file, want_line = self._value.location
        file, line = _split_location(location)
        return file == want_file and (want_line in (0, line))

    def _match_field(self, event: Event) -> bool:
        v = self._value
        if self.key == "duration":
            value: object = event.duration_usecs
        elif self.key in event.fields:
            value = event.fields[self.key]
        else:
            return v.raw == ""  # field="" matches a missing field
        if isinstance(value, int | float):
            return self._match_number(value)
        if isinstance(value, list | tuple):
            return self._match_list(value)
        return self._match_string(value if isinstance(value, str) else str(value))

    def _match_string(self, value: str) -> bool:
        v = self._value
        if self.op != "=":
            _warn_once(self, "string fields support only '='")
            return False
        if value == "":
            return v.raw == ""
        if v.ip is not None and (addr := _parse_ip(value)) is not None:
            if isinstance(v.ip, ipaddress.IPv4Network | ipaddress.IPv6Network):
                return addr in v.ip
            return addr == v.ip
        return v.matches_text(value)

    def _match_number(self, value: float) -> bool:
        v = self._value
        if v.ambiguous_unit:
            _warn_once(self, f"ambiguous unit in '{v.raw}': use 'mins' or 'MB'")
            return False
        if v.number is not None:
            want = v.number
            match self.op:
                case "=":
                    return value == want
                case "<":
                    return value < want
                case ">":
                    return value > want
                case "<=":
                    return value <= want
                case ">=":
                    return value >= want
        if not v.numeric_wildcard:
            _warn_once(self, f"numeric field compared with non-numeric value '{v.raw}'")
            return False
        if self.op != "=":
            _warn_once(self, "wildcards need '='")
            return False
        return _wildcard_match(v.items, str(value), fold=True)

    def _match_list(self, values: Iterable[object]) -> bool:
        v = self._value
        if self.op != "=":
            _warn_once(self, "list fields support only '='")
            return False
        items = [x if isinstance(x, str) else str(x) for x in values]
        if v.raw == "":
            return not items
        return any(v.matches_text(x) for x in items)

    def __str__(self) -> str:
        key = self.key
        if key not in _SPECIAL_KEYS and not _is_bare(key):
            key = _quote(key)
        return f"{key}{self.op}{_quote(self.value)}"


@dataclass(frozen=True)
class Not:
    child: Node
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", self.child.depth + 1)

    def match(self, event: Event) -> bool:
        return not self.child.match(event)

    def __str__(self) -> str:
        return f"NOT {self.child}"


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", 1 + max((c.depth for c in self.children), default=0))

    def match(self, event: Event) -> bool:
        return all(c.match(event) for c in self.children)

    def __str__(self) -> str:
        return "(" + " AND ".join(map(str, self.children)) + ")"


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", 1 + max((c.depth for c in self.children), default=0))

    def match(self, event: Event) -> bool:
        return any(c.match(event) for c in self.children)

    def __str__(self) -> str:
        return "(" + " OR ".join(map(str, self.children)) + ")"


Node = Comparison | Not | And | Or
_Operand = Callable[[], Node]


def _is_bare(word: str) -> bool:
    return bool(word) and word.lower() not in _KEYWORDS and all(c in _BARE_CHARS for c in word)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class EventFilter:
    """A parsed filter; ``root`` is None for the empty filter, which matches nothing."""

    root: Node | None

    def match(self, event: Event) -> bool:
        return self.root is not None and self.root.match(event)

    def __str__(self) -> str:
        root = self.root
        if root is None:
            return ""
        text = str(root)
        if isinstance(root, And | Or):
            text = text[1:-1]  # the outermost group needs no parentheses
        return text


# ---------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # WORD STRING AND OR NOT ( ) = < > END
    text: str
    pos: int


def _describe(tok: _Token) -> str:
    if tok.kind == "END":
        return "end of filter"
    if tok.kind in ("WORD", "STRING"):
        return f"{tok.kind.lower()} {tok.text!r}"
    return repr(tok.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif c in "()=<>":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c == '"':
            start = i
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise EventFilterError("unterminated quoted string", start)
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    if i + 1 >= n:
                        raise EventFilterError("unterminated quoted string", start)
                    nxt = text[i + 1]
                    # \\ and \" are escapes; any other \x is kept as is (a wildcard escape)
                    buf.append(nxt if nxt in '\\"' else c + nxt)
                    i += 2
                else:
                    buf.append(c)
                    i += 1
            tokens.append(_Token("STRING", "".join(buf), start))
        elif c in _BARE_CHARS or c == "\\":
            start = i
            while i < n:
                c = text[i]
                if c == "\\":
                    if i + 1 >= n or text[i + 1] in _WHITESPACE:
                        raise EventFilterError("backslash must escape a character", i)
                    i += 2
                elif c in _BARE_CHARS:
                    i += 1
                else:
                    break
            word = text[start:i]
            kind = word.upper() if word.lower() in _KEYWORDS else "WORD"
            tokens.append(_Token(kind, word, start))
        else:
            raise EventFilterError(f"unexpected character {c!r}", i)
    tokens.append(_Token("END", "", n))
    return tokens


# ---------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive descent: or_expr := and_expr (OR and_expr)*; and_expr := unary (AND unary)*;
    unary := NOT unary | '(' or_expr ')' | key op value.
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.nesting = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "END":
            self.i += 1
        return tok

    def fail(self, tok: _Token, expecting: str) -> EventFilterError:
        return EventFilterError(f"unexpected {_describe(tok)}, expecting {expecting}", tok.pos)

    def parse(self) -> Node | None:
        if self.peek().kind == "END":
            return None
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "END":
            raise self.fail(tok, "AND, OR or end of filter")
        return node

    def or_expr(self) -> Node:
        """AND and OR bind equally, left to right, as in Dovecot's grammar
        (``a OR b AND c`` is ``(a OR b) AND c``)."""
        start = self.peek()
        node = self.unary()
        while self.peek().kind in ("AND", "OR"):
            kind = self.take().kind
            right = self.unary()
            cls = Or if kind == "OR" else And
            left = node.children if isinstance(node, cls) else (node,)
            rest = right.children if isinstance(right, cls) else (right,)
            node = cls((*left, *rest))
            self.check_depth(node, start)
        return node

    def enter(self, tok: _Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise EventFilterError(f"nesting deeper than {MAX_NESTING}", tok.pos)

    def check_depth(self, node: Node, tok: _Token) -> None:
        if node.depth > MAX_NESTING:
            raise EventFilterError(f"expression nested deeper than {MAX_NESTING}", tok.pos)

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            self.enter(tok)
            node: Node = Not(self.unary())
            self.nesting -= 1
            self.check_depth(node, tok)
            return node
        if tok.kind == "(":
            self.take()
            self.enter(tok)
            node = self.or_expr()
            close = self.take()
            if close.kind != ")":
                raise self.fail(close, "')', AND or OR")
            self.nesting -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        key_tok = self.take()
        if key_tok.kind not in ("WORD", "STRING"):
            raise self.fail(key_tok, "a key, NOT or '('")
        op_tok = self.take()
        if op_tok.kind not in ("=", "<", ">"):
            raise self.fail(op_tok, "'=', '<', '>', '<=' or '>='")
        op: Op = "<" if op_tok.kind == "<" else ">" if op_tok.kind == ">" else "="
        if op != "=" and self.peek().kind == "=":
            self.take()
            op = "<=" if op == "<" else ">="
        value_tok = self.take()
        if value_tok.kind in ("WORD", "STRING"):
            value = value_tok.text
        elif value_tok.kind in ("AND", "OR", "NOT"):
            value = value_tok.text.lower()  # as Dovecot: an unquoted keyword value is lowercased
        else:
            raise self.fail(value_tok, "a value")
        key = key_tok.text
        if key in _SPECIAL_KEYS and op != "=":
            raise EventFilterError(
                f"'{key}' supports only '=' (only fields can use {op})", op_tok.pos
            )
        return Comparison(key, op, value)


def parse_filter(text: str) -> EventFilter:
    """Parse Dovecot event filter text.  Raises :class:`EventFilterError` on any bad input."""
    if not isinstance(text, str):
        raise EventFilterError(f"filter must be a string, not {type(text).__name__}", 0)
    if len(text) > MAX_FILTER_LENGTH:
        raise EventFilterError(
            f"filter longer than {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH
        )
    root = _Parser(_tokenize(text)).parse()
    result = EventFilter(root)
    if len(str(result)) > MAX_FILTER_LENGTH:
        raise EventFilterError(
            f"filter's canonical form is longer than {MAX_FILTER_LENGTH} characters", len(text)
        )
    return result
