"""Filters of the Dovecot 2.4 compatible variable expansion (``%{var | filter}``).

This module is the lower layer of :mod:`columba.lib.var_expand`: the parsed
statement model, the per-pipeline execution state and every built-in filter.
It has no knowledge of templates or of the public API; filters report problems
by raising :class:`FilterError` with Dovecot's own message text, and the caller
turns that into a :class:`~columba.lib.var_expand.VarExpandError`.

Semantics follow ``src/lib-var-expand/expansion-filter.c`` of dovecot/core:

* Values are byte strings.  A value can be *unset* (missing variable, failed
  filter) and can carry a *binary* tag; a binary final value is hex-encoded.
* Filters that take the whole value as text (``lookup``, ``literal``,
  ``default``, ``base64``, ``hexlify``, ``if`` ...) clear the binary tag, hashes
  and ``unbase64``/``unhexlify`` set it, and byte-preserving filters
  (``substr``, ``truncate``, ``reverse``, ``concat``, ``lower`` ...) keep it.
* Parameters are positional (in order) followed by named ones (sorted by key).
  A positional parameter is a quoted string, a number or a variable name.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

INTMAX_MIN = -(2**63)
INTMAX_MAX = 2**63 - 1
UINTMAX_MAX = 2**64 - 1
INT_MAX = 2**31 - 1

#: Largest intermediate or final value a pipeline may produce, in bytes.
MAX_VALUE_SIZE = 1024 * 1024
#: Upper bound for ``rounds=`` of the hash filters (each round is one digest).
MAX_HASH_ROUNDS = 100_000

_REPLACEMENT_CHAR = "\ufffd".encode()


class FilterError(Exception):
    """A filter (or a variable lookup) failed; ``message`` is Dovecot's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParamKind(enum.Enum):
    """Type of a filter parameter as written in the template."""

    STRING = "s"  # 'quoted' or "quoted" -> bytes
    INT = "i"  # 123 or -123 -> int
    VARIABLE = "v"  # bare name -> looked up at expansion time


@dataclass(frozen=True, slots=True)
class Param:
    """One filter parameter.  ``idx`` is the positional index, -1 for named."""

    kind: ParamKind
    value: bytes | int | str
    idx: int = -1
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    """One step of a pipeline: ``function(params)``.

    The first statement of a pipeline is a variable name or a function.  An
    arithmetic operation is a ``calculate`` statement with the operator code as
    its first parameter and the right-hand operand as its second.
    """

    function: str
    params: tuple[Param, ...] = ()
    position: int = 0
    has_arguments: bool = False


class Operator(enum.IntEnum):
    """Arithmetic operators, numbered as in Dovecot's parser."""

    PLUS = 0
    MINUS = 1
    STAR = 2
    SLASH = 3
    MODULO = 4


class State:
    """Execution state of one pipeline (Dovecot's ``var_expand_state``)."""

    __slots__ = ("binary", "delayed_error", "escape", "lookup", "transfer")

    def __init__(
        self,
        lookup: Callable[[str], bytes],
        escape: Callable[[str], str] | None,
    ) -> None:
        self.lookup = lookup
        self.escape = escape
        self.transfer: bytes | None = None
        self.binary = False
        self.delayed_error: str | None = None

    def set_text(self, value: bytes) -> None:
        self.transfer = value
        self.binary = False

    def set_binary(self, value: bytes) -> None:
        self.transfer = value
        self.binary = True

    def set_data(self, value: bytes) -> None:
        """Replace the value but keep its binary tag."""
        self.transfer = value

    def unset(self) -> None:
        self.transfer = None

    def require(self, action: str) -> bytes:
        if self.transfer is None:
            raise FilterError(f"No value to {action}")
        return self.transfer


FilterFunc = Callable[[Statement, State], None]


# ---------------------------------------------------------------- helpers


def show(value: bytes) -> str:
    """Render a byte value for an error message."""
    return value.decode("utf-8", "replace")


def str_to_intmax(value: bytes) -> int | None:
    """Dovecot's ``str_to_intmax``: optional '-', decimal digits, in range."""
    digits = value[1:] if value[:1] == b"-" else value
    if not digits or not digits.isdigit() or _too_long(digits):
        return None
    number = _to_int(digits) * (-1 if value[:1] == b"-" else 1)
    if number < INTMAX_MIN or number > INTMAX_MAX:
        return None
    return number


def str_to_uintmax(value: bytes) -> int | None:
    if not value or not value.isdigit() or _too_long(value):
        return None
    number = _to_int(value)
    return number if number <= UINTMAX_MAX else None


def _too_long(digits: bytes) -> bool:
    """More significant digits than any 64-bit value has: out of range without converting
    (Python refuses int() of a string over 4300 digits)."""
    return len(digits.lstrip(b"0")) > len(str(UINTMAX_MAX))


def _to_int(digits: bytes) -> int:
    """Decimal digits (leading zeros however many) as a number."""
    return int(digits.lstrip(b"0") or b"0")


def str_to_uintmax_hex(value: bytes) -> int | None:
    if not value or any(c not in b"0123456789abcdefABCDEF" for c in value):
        return None
    number = int(value, 16)
    return number if number <= UINTMAX_MAX else None


def lookup_param(state: State, param: Param) -> bytes:
    assert isinstance(param.value, str)
    return state.lookup(param.value)


def number_or_var(state: State, param: Param | None) -> int:
    if param is None:
        raise FilterError("Missing parameter")
    if param.kind is ParamKind.VARIABLE:
        assert isinstance(param.value, str)
        result = state.lookup(param.value)
        number = str_to_intmax(result)
        if number is None:
            raise FilterError(f"'{show(result)}' (in {param.value}) is not a number")
        return number
    if param.kind is not ParamKind.INT:
        assert isinstance(param.value, bytes)
        raise FilterError(f"'{show(param.value)}' is not a number")
    assert isinstance(param.value, int)
    return param.value


def bool_or_var(state: State, param: Param) -> bool:
    value = number_or_var(state, param)
    if value not in (0, 1):
        raise FilterError(f"'{value}' is not 0 or 1")
    return value == 1


def string_or_var(state: State, param: Param | None) -> bytes:
    if param is None:
        raise FilterError("Missing parameter")
    if param.kind is ParamKind.VARIABLE:
        return lookup_param(state, param)
    if isinstance(param.value, int):
        raise FilterError(f"{param.value} is not a string")
    assert isinstance(param.value, bytes)
    return param.value


def any_or_var(state: State, param: Param | None) -> bytes:
    if param is None:
        raise FilterError("Missing parameter")
    if param.kind is ParamKind.VARIABLE:
        return lookup_param(state, param)
    if param.kind is ParamKind.INT:
        return str(param.value).encode()
    assert isinstance(param.value, bytes)
    return param.value


def unsupported_key(key: str) -> FilterError:
    return FilterError(f"Unsupported key '{key}'")


def too_many_positional() -> FilterError:
    return FilterError("Too many positional parameters")


def require_params(stmt: Statement) -> None:
    if not stmt.params:
        raise FilterError("Missing parameters")


def forbid_params(stmt: Statement) -> None:
    if stmt.params:
        key = stmt.params[0].key
        if key is not None:
            raise unsupported_key(key)
        raise too_many_positional()


def check_size(value: bytes) -> bytes:
    if len(value) > MAX_VALUE_SIZE:
        raise FilterError(f"Value too large (limit is {MAX_VALUE_SIZE} bytes)")
    return value


# ---------------------------------------------------------------- basic


def fn_lookup(stmt: Statement, state: State) -> None:
    if not stmt.params:
        raise FilterError("Missing name to lookup")
    par = stmt.params[0]
    if par.key is not None:
        raise unsupported_key(par.key)
    if len(stmt.params) > 1:
        raise too_many_positional()
    state.unset()
    name = string_or_var(state, par)
    state.set_text(state.lookup(show(name)))


def fn_literal(stmt: Statement, state: State) -> None:
    require_params(stmt)
    par = stmt.params[0]
    if par.key is not None:
        raise unsupported_key(par.key)
    if len(stmt.params) > 1:
        raise too_many_positional()
    state.set_text(any_or_var(state, par))


def fn_default(stmt: Statement, state: State) -> None:
    if state.transfer:
        return
    value = b""
    if stmt.params:
        par = stmt.params[0]
        if par.key is not None:
            raise unsupported_key(par.key)
        value = any_or_var(state, par)
        if len(stmt.params) > 1:
            raise too_many_positional()
    state.set_text(value)


def fn_lower(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    state.set_data(state.require("lower").lower())


def fn_upper(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    state.set_data(state.require("upper").upper())


def fn_concat(stmt: Statement, state: State) -> None:
    require_params(stmt)
    result = bytearray(state.transfer or b"")
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        result += any_or_var(state, par)
        if len(result) > MAX_VALUE_SIZE:
            raise FilterError(f"Value too large (limit is {MAX_VALUE_SIZE} bytes)")
    state.set_data(bytes(result))


def fn_reverse(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    state.set_data(state.require("reverse")[::-1])


def fn_text(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    state.set_text(sanitize_utf8(state.require("text")))


def sanitize_utf8(value: bytes) -> bytes:
    """Dovecot's ``str_sanitize_append_utf8``: control characters and each byte
    of invalid UTF-8 become U+FFFD; the value ends at the first NUL."""
    nul = value.find(b"\0")
    if nul >= 0:
        value = value[:nul]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not any(ord(c) < 32 for c in text):
            return value
    out = bytearray()
    i = 0
    length = len(value)
    while i < length:
        lead = value[i]
        if lead < 0x80:
            out += _REPLACEMENT_CHAR if lead < 32 else value[i : i + 1]
            i += 1
            continue
        size = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4
        if lead < 0xC0 or lead >= 0xF8:
            size = 0
        chunk = value[i : i + size] if size else b""
        try:
            if not chunk or len(chunk) < size:
                raise UnicodeDecodeError("utf-8", chunk, 0, 1, "truncated")
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            out += _REPLACEMENT_CHAR
            i += 1
            continue
        out += chunk
        i += size
    return bytes(out)


def fn_safe(stmt: Statement, state: State) -> None:
    # The effect (no escaping of this pipeline's output) is applied by the
    # caller; the parser makes sure that ``safe`` is the last filter.
    forbid_params(stmt)
    state.require("mark safe")


def fn_escape(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    value = state.require("escape")
    if state.escape is None:
        raise FilterError("No escape function configured")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FilterError("Input is not valid UTF-8") from exc
    state.set_text(call_escape(state.escape, text).encode("utf-8", "surrogateescape"))


def call_escape(escape: Callable[[str], str], text: str) -> str:
    try:
        result = escape(text)
    except Exception as exc:
        raise FilterError(f"Escape function failed: {exc}") from exc
    if not isinstance(result, str):
        raise FilterError("Escape function did not return a string")
    return result


# ---------------------------------------------------------------- arithmetic


def _trunc_div(a: int, b: int) -> int:
    """C division: the quotient is truncated toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def fn_calculate(stmt: Statement, state: State) -> None:
    require_params(stmt)
    oper: int | None = None
    right = 0
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if par.idx == 0:
            if not isinstance(par.value, int) or par.kind is not ParamKind.INT:
                raise FilterError("Missing operator")
            oper = par.value
        elif par.idx == 1:
            right = number_or_var(state, par)
        else:
            raise too_many_positional()
    if oper is None:
        raise FilterError("Missing operator")
    value_bytes = state.require("calculate")
    if state.binary and oper == Operator.MODULO:
        # Binary modulo: the last 8 bytes as a big-endian unsigned 64-bit int.
        if right < 0:
            raise FilterError("Binary modulo must be positive integer")
        if right == 0:
            raise FilterError("Modulo by zero")
        number = int.from_bytes(value_bytes[-8:], "big")
        state.set_text(str(number % right).encode())
        return
    value = str_to_intmax(value_bytes)
    if value is None:
        raise FilterError("Input is not a number")
    if oper == Operator.PLUS:
        result = value + right
    elif oper == Operator.MINUS:
        result = value - right
    elif oper == Operator.STAR:
        result = value * right
    elif oper == Operator.SLASH:
        if right == 0:
            raise FilterError("Division by zero")
        result = _trunc_div(value, right)
    elif oper == Operator.MODULO:
        if right == 0:
            raise FilterError("Modulo by zero")
        result = value - right * _trunc_div(value, right)
    else:
        raise FilterError("Missing operator")
    if result < INTMAX_MIN or result > INTMAX_MAX:
        raise FilterError("Integer overflow")
    # Like Dovecot, the binary tag of the input is left as it was.
    state.set_data(str(result).encode())


# ---------------------------------------------------------------- hashing


_HASH_METHODS = {
    "md5": "md5",
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-512": "sha3_512",
}


def _hash(stmt: Statement, state: State, algo: str, algo_from_param: bool) -> None:
    method = _HASH_METHODS.get(algo)
    if method is None:
        raise FilterError(f"Unsupported algorithm '{algo}'")
    rounds = 1
    salt = b""
    for par in stmt.params:
        if par.key is None:
            if not algo_from_param or par.idx > 0:
                raise too_many_positional()
            continue
        if par.key == "rounds":
            rounds = number_or_var(state, par)
            if rounds > MAX_HASH_ROUNDS:
                raise FilterError(f"Too many rounds (limit is {MAX_HASH_ROUNDS})")
        elif par.key == "salt":
            salt = string_or_var(state, par)
        else:
            raise unsupported_key(par.key)
    data = state.require("hash" if algo_from_param else algo)
    for _ in range(rounds):
        data = hashlib.new(method, salt + data).digest()
    state.set_binary(data)


def fn_hash(stmt: Statement, state: State) -> None:
    require_params(stmt)
    par = stmt.params[0]
    if par.idx == -1:
        raise FilterError("No algorithm as first parameter")
    algo = string_or_var(state, par)
    _hash(stmt, state, show(algo), algo_from_param=True)


def _hash_alias(algo: str) -> FilterFunc:
    def fn(stmt: Statement, state: State) -> None:
        _hash(stmt, state, algo, algo_from_param=False)

    fn.__name__ = f"fn_{algo}"
    return fn


# ---------------------------------------------------------------- encodings


def _base64_flags(stmt: Statement, state: State) -> tuple[bool, bool]:
    pad, url = True, False
    for par in stmt.params:
        if par.key is None:
            raise too_many_positional()
        if par.key == "pad":
            pad = bool_or_var(state, par)
        elif par.key == "url":
            url = bool_or_var(state, par)
        else:
            raise unsupported_key(par.key)
    return pad, url


def fn_base64(stmt: Statement, state: State) -> None:
    pad, url = _base64_flags(stmt, state)
    data = state.require("base64")
    encoded = base64.urlsafe_b64encode(data) if url else base64.b64encode(data)
    if not pad:
        encoded = encoded.rstrip(b"=")
    state.set_text(check_size(encoded))


def fn_unbase64(stmt: Statement, state: State) -> None:
    _pad, url = _base64_flags(stmt, state)
    data = state.require("unbase64").rstrip(b"=")
    alphabet = rb"[A-Za-z0-9\-_]*" if url else rb"[A-Za-z0-9+/]*"
    if re.fullmatch(alphabet, data) is None or len(data) % 4 == 1:
        raise FilterError("Invalid base64 input")
    data += b"=" * (-len(data) % 4)
    try:
        decoded = base64.urlsafe_b64decode(data) if url else base64.b64decode(data)
    except (binascii.Error, ValueError) as exc:
        raise FilterError("Invalid base64 input") from exc
    state.set_binary(decoded)


def _single_positional(stmt: Statement) -> Param | None:
    param = None
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if par.idx != 0:
            raise too_many_positional()
        param = par
    return param


def fn_hex(stmt: Statement, state: State) -> None:
    par = _single_positional(stmt)
    width = number_or_var(state, par) if par is not None else 0
    number = str_to_uintmax(state.require("hex"))
    if number is None:
        raise FilterError("Input is not a number")
    if abs(width) > MAX_VALUE_SIZE:
        raise FilterError("Width out of bounds")
    text = f"{number:x}"
    if width < 0:
        text = text.ljust(-width, "0")[:-width]
    elif width > 0:
        text = text.rjust(width, "0")[-width:]
    state.set_data(text.encode())


def fn_unhex(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    number = str_to_uintmax_hex(state.require("unhex"))
    if number is None:
        raise FilterError("Input is not a hex number")
    state.set_text(str(number).encode())


def fn_hexlify(stmt: Statement, state: State) -> None:
    width = 0
    if stmt.params:
        par = stmt.params[0]
        if par.key is not None:
            raise unsupported_key(par.key)
        if len(stmt.params) > 1:
            raise too_many_positional()
        width = number_or_var(state, par)
        if width < 0:
            raise FilterError("Width must be positive")
        if width > MAX_VALUE_SIZE:
            raise FilterError("Width out of bounds")
    result = check_size(state.require("hexlify").hex().encode())
    if width:
        result = result.rjust(width, b"0")[:width]
    state.set_text(result)


def fn_unhexlify(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    data = state.require("unhexlify")
    if len(data) % 2 != 0 or any(c not in b"0123456789abcdefABCDEF" for c in data):
        raise FilterError("Not a hex value")
    state.set_binary(bytes.fromhex(data.decode("ascii")))


def _fn_number(stmt: Statement, state: State, big_endian: bool) -> None:
    forbid_params(stmt)
    data = state.require("convert to number")
    if len(data) not in (1, 2, 4, 8):
        raise FilterError(f"Cannot convert '{len(data)}' bytes to number")
    number = int.from_bytes(data, "big" if big_endian else "little")
    state.set_text(str(number).encode())


def fn_benumber(stmt: Statement, state: State) -> None:
    _fn_number(stmt, state, big_endian=True)


def fn_lenumber(stmt: Statement, state: State) -> None:
    _fn_number(stmt, state, big_endian=False)


# ---------------------------------------------------------------- cutting


def fn_truncate(stmt: Statement, state: State) -> None:
    require_params(stmt)
    length: int | None = None
    bits = False
    for par in stmt.params:
        if par.key == "bits" or (par.key is None and par.idx == 0):
            value = number_or_var(state, par)
            if value < 0 or value > INTMAX_MAX:
                raise FilterError("Value of out of bounds")
            length = value
            bits = par.key == "bits"
        elif par.key is not None:
            raise unsupported_key(par.key)
        else:
            raise too_many_positional()
    if length is None:
        raise FilterError("Missing truncation length")
    data = state.require("truncate")
    if not bits:
        state.set_data(data[:length])
        return
    if length >= len(data) * 8:
        state.set_data(data)
        return
    nbytes = (length + 7) // 8
    number = int.from_bytes(data[:nbytes], "big") >> (nbytes * 8 - length)
    state.set_data(number.to_bytes(nbytes, "big"))


def fn_substr(stmt: Statement, state: State) -> None:
    require_params(stmt)
    off = 0
    got_off = got_len = False
    length = 0
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        value = number_or_var(state, par)
        if par.idx == 0:
            off, got_off = value, True
        elif par.idx == 1:
            length, got_len = value, True
        else:
            raise too_many_positional()
    if not got_off:
        raise FilterError("Missing offset parameter")
    data = state.require("substring")
    used = len(data)
    if not got_len:
        length = used
    if off < -used or off > used:
        raise FilterError("Offset out of bounds")
    if length < -used or length > used:
        raise FilterError("Length out of bounds")
    if length == 0:
        state.set_data(b"")
        return
    if off < 0:
        off += used
    if not got_len:
        length = used - off
    elif length < 0:
        # a negative length leaves that many bytes off the end
        length += used
        if length < off:
            raise FilterError("Length out of bounds")
        length -= off
    if off < 0 or off > used:
        raise FilterError("Offset out of bounds")
    if length < 0 or length + off > used:
        raise FilterError("Length out of bounds")
    state.set_data(data[off : off + length])


def _index(state: State, index: int, separator: bytes) -> None:
    if not separator:
        raise FilterError("Separator must not be empty")
    tokens = state.require("index").split(separator)
    if index < 0:
        index += len(tokens)
    if index < 0 or index >= len(tokens):
        raise FilterError("Position out of bounds")
    state.set_text(tokens[index])


def fn_index(stmt: Statement, state: State) -> None:
    require_params(stmt)
    separator: bytes | None = None
    idx: int | None = None
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if par.idx == 0:
            separator = string_or_var(state, par)
        elif par.idx == 1:
            value = number_or_var(state, par)
            if value < -INT_MAX - 1 or value > INT_MAX:
                raise FilterError("Position out of bounds")
            idx = value
        else:
            raise too_many_positional()
    if separator is None:
        raise FilterError("Missing separator and index parameters")
    if idx is None:
        raise FilterError("Missing index parameter")
    state.require("index")
    _index(state, idx, separator)


def fn_username(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    state.require("get username from")
    _index(state, 0, b"@")


def fn_domain(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    # Everything after the first '@', even if it contains more '@'s.
    _user, _sep, domain = state.require("get domain from").partition(b"@")
    state.set_text(domain)


def fn_ldap_dn(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    state.set_data(check_size(state.require("convert to ldap_dn").replace(b".", b",dc=")))


def tab_unescape(value: bytes) -> bytes:
    """Dovecot's ``str_tabunescape``: \\001 followed by 1, t, r, n or 0."""
    if b"\x01" not in value:
        return value
    out = bytearray()
    i = 0
    table = {ord("1"): 1, ord("t"): 9, ord("r"): 13, ord("n"): 10, ord("0"): 0}
    while i < len(value):
        c = value[i]
        if c == 1 and i + 1 < len(value):
            nxt = value[i + 1]
            out.append(table.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def fn_list(stmt: Statement, state: State) -> None:
    sep = b","
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if par.idx > 0:
            raise too_many_positional()
        sep = string_or_var(state, par)
    data = state.require("generate list from")
    values = [tab_unescape(v) for v in data.split(b"\t")] if data else []
    state.set_text(check_size(sep.join(values)))


def _fill(stmt: Statement, state: State, left: bool) -> None:
    require_params(stmt)
    amount = 0
    filler = b"0"
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if par.idx == 0:
            value = number_or_var(state, par)
            if value < 1 or value > INT_MAX:
                raise FilterError("Fill length out of bounds")
            if value > MAX_VALUE_SIZE:
                raise FilterError(f"Fill length out of bounds (limit is {MAX_VALUE_SIZE})")
            amount = value
        elif par.idx == 1:
            filler = string_or_var(state, par)
        else:
            raise too_many_positional()
    if amount < 1:
        raise FilterError("Missing amount")
    if not filler:
        raise FilterError("Filler must not be empty")
    data = state.require("fill")
    if len(data) < amount:
        count = -(-(amount - len(data)) // len(filler))
        padding = filler * count
        data = padding + data if left else data + padding
    state.set_data(check_size(data))


def fn_lfill(stmt: Statement, state: State) -> None:
    _fill(stmt, state, left=True)


def fn_rfill(stmt: Statement, state: State) -> None:
    _fill(stmt, state, left=False)


# ---------------------------------------------------------------- regexp

_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "print": r" -~",
    "graph": r"!-~",
    "cntrl": r"\x00-\x1f\x7f",
    "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_",
}

_ESCAPES_OUTSIDE = {
    "w": r"\w",
    "W": r"\W",
    "s": r"\s",
    "S": r"\S",
    "b": r"\b",
    "B": r"\B",
    "<": r"\b",
    ">": r"\b",
    "`": r"\A",
    "'": r"\Z",
}


def _translate_bracket(pattern: str, i: int, out: list[str]) -> int:
    """Translate a POSIX bracket expression starting at ``pattern[i] == '['``."""
    n = len(pattern)
    i += 1
    out.append("[")
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while True:
        if i >= n:
            raise re.error("brackets ([ ]) not balanced")
        c = pattern[i]
        if c == "]" and not first:
            out.append("]")
            return i + 1
        first = False
        if c == "[" and i + 1 < n and pattern[i + 1] in ":.=":
            kind = pattern[i + 1]
            end = pattern.find(kind + "]", i + 2)
            if end < 0:
                raise re.error("brackets ([ ]) not balanced")
            name = pattern[i + 2 : end]
            i = end + 2
            if kind == ":":
                if name not in _POSIX_CLASSES:
                    raise re.error(f"invalid character class '{name}'")
                out.append(_POSIX_CLASSES[name])
                continue
            c = name  # collating element / equivalence class: the character itself
            if len(c) != 1:
                raise re.error("invalid collation character")
        else:
            i += 1
        if i + 1 < n and pattern[i] == "-" and pattern[i + 1] != "]":
            hi = pattern[i + 1]
            if hi < c:
                raise re.error("invalid range end")
            out.append(f"{re.escape(c)}-{re.escape(hi)}")
            i += 2
        else:
            out.append(re.escape(c))


def translate_ere(pattern: str) -> str:
    """Translate a POSIX extended regular expression to Python ``re`` syntax."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "[":
            i = _translate_bracket(pattern, i, out)
            continue
        if c == "\\":
            if i + 1 >= n:
                raise re.error("trailing backslash")
            nxt = pattern[i + 1]
            if nxt in _ESCAPES_OUTSIDE:
                out.append(_ESCAPES_OUTSIDE[nxt])
            elif nxt.isdigit() and nxt != "0":
                out.append("\\" + nxt)
            else:
                out.append(re.escape(nxt))
            i += 2
            continue
        if c == "(" and i + 1 < n and pattern[i + 1] == "?":
            raise re.error("invalid preceding regular expression")
        if c == "$":
            out.append(r"\Z")
        else:
            out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def compile_ere(pattern: str) -> re.Pattern[str]:
    return re.compile(translate_ere(pattern), re.DOTALL)


def regex_compile(pattern: bytes) -> re.Pattern[str]:
    try:
        return compile_ere(pattern.decode("utf-8", "surrogateescape"))
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise FilterError(f"Invalid regular expression: {exc}") from exc


def fn_regexp(stmt: Statement, state: State) -> None:
    require_params(stmt)
    pattern: bytes | None = None
    replacement: bytes | None = None
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        value = string_or_var(state, par)
        if par.idx == 0:
            pattern = value
        elif par.idx == 1:
            replacement = value
        else:
            raise too_many_positional()
    if pattern is None:
        raise FilterError("Missing pattern and replacement parameters")
    if replacement is None:
        raise FilterError("Missing replacement parameter")
    data = state.require("regexp")
    compiled = regex_compile(pattern)
    match = compiled.search(data.decode("utf-8", "surrogateescape"))
    if match is None:
        return  # no match: the value is left as it is
    # As in Dovecot, a match replaces the whole value with the expanded
    # replacement; \0..\9 refer to the match and its capture groups.
    out: list[str] = []
    rep = replacement.decode("utf-8", "surrogateescape")
    i = 0
    while i < len(rep):
        c = rep[i]
        if c == "\\" and i + 1 < len(rep) and rep[i + 1].isdigit():
            group = int(rep[i + 1])
            if group > compiled.groups or match.group(group) is None:
                raise FilterError("Invalid capture group")
            out.append(match.group(group))
            i += 2
            continue
        out.append(c)
        i += 1
    state.set_data(check_size("".join(out).encode("utf-8", "surrogateescape")))


# ---------------------------------------------------------------- if


def wildcard_match(data: str, mask: str) -> bool:
    """Dovecot's ``wildcard_match``: ``*`` matches any run, ``?`` one character."""
    d = m = 0
    star_m = -1
    star_d = 0
    while d < len(data):
        if m < len(mask) and (mask[m] == "?" or mask[m] == data[d]):
            d += 1
            m += 1
        elif m < len(mask) and mask[m] == "*":
            star_m = m
            star_d = d
            m += 1
        elif star_m >= 0:
            m = star_m + 1
            star_d += 1
            d = star_d
        else:
            return False
    while m < len(mask) and mask[m] == "*":
        m += 1
    return m == len(mask)


_NUMERIC_OPS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "!=": lambda a, b: a != b,
}

_STRING_OPS: dict[str, Callable[[bytes, bytes], bool]] = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "ne": lambda a, b: a != b,
    "*": lambda a, b: wildcard_match(show(a), show(b)),
    "!*": lambda a, b: not wildcard_match(show(a), show(b)),
}

_REGEX_OPS = {"~": False, "!~": True}


def _if_compare(state: State, lhs: Param, op: str, rhs: Param) -> bool:
    if op in _NUMERIC_OPS:
        try:
            a = number_or_var(state, lhs)
        except FilterError as exc:
            raise FilterError(f"Left-hand side: {exc.message}") from exc
        try:
            b = number_or_var(state, rhs)
        except FilterError as exc:
            raise FilterError(f"Right-hand side: {exc.message}") from exc
        return _NUMERIC_OPS[op](a, b)
    try:
        left = string_or_var(state, lhs)
    except FilterError as exc:
        raise FilterError(f"Left-hand side: {exc.message}") from exc
    try:
        right = string_or_var(state, rhs)
    except FilterError as exc:
        raise FilterError(f"Right-hand side: {exc.message}") from exc
    if op in _STRING_OPS:
        return _STRING_OPS[op](left, right)
    try:
        compiled = regex_compile(right)
    except FilterError as exc:
        raise FilterError(f"regexp() failed: {exc.message}") from exc
    found = compiled.search(left.decode("utf-8", "surrogateescape")) is not None
    return found != _REGEX_OPS[op]


def fn_if(stmt: Statement, state: State) -> None:
    lhs_from_params = state.transfer is None
    slots: list[Param] = []
    wanted = 5 if lhs_from_params else 4
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if len(slots) >= wanted:
            raise too_many_positional()
        slots.append(par)
    if len(slots) != wanted:
        raise FilterError("Missing parameters")
    if lhs_from_params:
        lhs, op_param, rhs, p_true, p_false = slots
    else:
        op_param, rhs, p_true, p_false = slots
    try:
        op = show(string_or_var(state, op_param))
    except FilterError as exc:
        raise FilterError(f"Comparator: {exc.message}") from exc
    if op not in _NUMERIC_OPS and op not in _STRING_OPS and op not in _REGEX_OPS:
        raise FilterError(f"Unsupported comparator '{op}'")
    if not lhs_from_params:
        assert state.transfer is not None
        if op in _NUMERIC_OPS:
            number = str_to_intmax(state.transfer)
            if number is None:
                raise FilterError("Input is not a number")
            lhs = Param(ParamKind.INT, number, 0)
        else:
            lhs = Param(ParamKind.STRING, state.transfer, 0)
    result = _if_compare(state, lhs, op, rhs)
    try:
        value = any_or_var(state, p_true if result else p_false)
    except FilterError as exc:
        branch = "True branch" if result else "False branch"
        raise FilterError(f"{branch}: {exc.message}") from exc
    state.set_text(value)


# ---------------------------------------------------------------- time

_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_TIMESTAMP_RE = re.compile(rb"(-?)([0-9]{1,20})(?:\.([0-9]{1,9}))?")
_NS = 1_000_000_000


def parse_timestamp(value: bytes) -> int:
    """Parse ``<seconds>`` or ``<seconds>.<fraction>`` into nanoseconds."""
    match = _TIMESTAMP_RE.fullmatch(value)
    if match is None:
        raise FilterError("Input is not a timestamp")
    seconds = int(match.group(2))
    if seconds > INTMAX_MAX:
        raise FilterError("Timestamp out of range")
    frac = match.group(3) or b""
    total = seconds * _NS + (int(frac.ljust(9, b"0")) if frac else 0)
    return -total if match.group(1) else total


def _unit(stmt: Statement, state: State) -> int:
    unit = 1
    for par in stmt.params:
        if par.key is None:
            raise too_many_positional()
        if par.key != "unit":
            raise unsupported_key(par.key)
        name = show(string_or_var(state, par))
        if name not in _UNITS:
            raise FilterError(f"Unsupported unit '{name}'")
        unit = _UNITS[name]
    return unit


def fn_epoch(stmt: Statement, state: State) -> None:
    unit = _unit(stmt, state)
    nsecs = parse_timestamp(state.require("convert to epoch"))
    result = nsecs * unit // _NS
    if result < INTMAX_MIN or result > INTMAX_MAX:
        raise FilterError("Timestamp out of range")
    state.set_text(str(result).encode())


def fn_from_epoch(stmt: Statement, state: State) -> None:
    unit = _unit(stmt, state)
    number = str_to_intmax(state.require("convert from epoch"))
    if number is None:
        raise FilterError("Input is not a number")
    seconds, rest = divmod(abs(number), unit)
    sign = "-" if number < 0 else ""
    state.set_text(f"{sign}{seconds}.{rest * (_NS // unit):09d}".encode())


def _utc(value: bytes) -> tuple[time.struct_time, int]:
    seconds, nsecs = divmod(parse_timestamp(value), _NS)
    try:
        tm = time.gmtime(seconds)
    except (OverflowError, OSError, ValueError) as exc:
        raise FilterError("Timestamp out of range") from exc
    if not 1 <= tm.tm_year <= 9999:
        raise FilterError("Timestamp out of range")
    return tm, nsecs


_STRFTIME_OK = re.compile(r"(?:[^%]|%[aAbBcdDeFgGhHIjmMnprRSTuUVwWxXyYzZ%])*")


def fn_date(stmt: Statement, state: State) -> None:
    fmt = "%Y-%m-%d"
    for par in stmt.params:
        if par.key is not None:
            raise unsupported_key(par.key)
        if par.idx > 0:
            raise too_many_positional()
        fmt = show(string_or_var(state, par))
    if _STRFTIME_OK.fullmatch(fmt) is None:
        raise FilterError(f"Unsupported format '{fmt}'")
    tm, _nsecs = _utc(state.require("format as date"))
    try:
        text = time.strftime(fmt, tm)
    except (ValueError, OverflowError) as exc:
        raise FilterError(f"Unsupported format '{fmt}'") from exc
    state.set_text(check_size(text.encode("utf-8", "surrogateescape")))


def fn_iso8601(stmt: Statement, state: State) -> None:
    forbid_params(stmt)
    tm, nsecs = _utc(state.require("format as iso8601"))
    text = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
    if nsecs:
        text += "." + f"{nsecs:09d}".rstrip("0")
    state.set_text((text + "Z").encode())


def timestamp_now() -> str:
    """Current time in the ``<seconds>.<nanoseconds>`` form of ``time:unix``."""
    now = time.time_ns()
    return f"{now // 1_000_000_000}.{now % 1_000_000_000:09d}"


# ---------------------------------------------------------------- registry

FILTERS: dict[str, FilterFunc] = {
    "lookup": fn_lookup,
    "literal": fn_literal,
    "calculate": fn_calculate,
    "concat": fn_concat,
    "upper": fn_upper,
    "lower": fn_lower,
    "hash": fn_hash,
    "md5": _hash_alias("md5"),
    "sha1": _hash_alias("sha1"),
    "sha256": _hash_alias("sha256"),
    "sha384": _hash_alias("sha384"),
    "sha512": _hash_alias("sha512"),
    "base64": fn_base64,
    "unbase64": fn_unbase64,
    "hex": fn_hex,
    "unhex": fn_unhex,
    "hexlify": fn_hexlify,
    "unhexlify": fn_unhexlify,
    "default": fn_default,
    "reverse": fn_reverse,
    "truncate": fn_truncate,
    "substr": fn_substr,
    "ldap_dn": fn_ldap_dn,
    "if": fn_if,
    "regexp": fn_regexp,
    "lenumber": fn_lenumber,
    "benumber": fn_benumber,
    "index": fn_index,
    "username": fn_username,
    "domain": fn_domain,
    "list": fn_list,
    "lfill": fn_lfill,
    "rfill": fn_rfill,
    "text": fn_text,
    "safe": fn_safe,
    "escape": fn_escape,
    "epoch": fn_epoch,
    "from_epoch": fn_from_epoch,
    "date": fn_date,
    "iso8601": fn_iso8601,
}
