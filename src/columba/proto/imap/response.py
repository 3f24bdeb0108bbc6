"""IMAP response encoder: typed values -> wire bytes (RFC 3501 / RFC 9051 §7, §9).

Value mapping used by :func:`encode_value` (and so by lists, response codes and responses):

=================== =========================================================================
Python              wire
=================== =========================================================================
``None``            ``NIL``
``int``             number
``str``/``bytes``   string: quoted when short and plain, else a literal (see
                    :func:`encode_string`)
:class:`AString`    atom when it can be one, else a string (mailbox names, header names)
:class:`Atom`       written as is (flags, keywords, item names); no CR/LF/NUL allowed
:class:`Raw`        pre-encoded bytes, written as is
:class:`Literal`    ``{n}`` or ``~{n}`` literal
list / tuple        parenthesised list
``datetime``        quoted date-time (``"02-Jan-2024 10:00:00 +0000"``)
:class:`SequenceSet` its wire form
=================== =========================================================================

A string becomes a literal when it holds CR, LF or NUL, 8-bit octets (unless ``utf8=True``,
for UTF8=ACCEPT / IMAP4rev2 where quoted strings may carry UTF-8), or more than
``QUOTED_MAX`` octets. NUL can't be sent in a plain literal: as Dovecot does, it becomes
0x80 there; use ``Literal(data, binary=True)`` (``~{n}``) for BINARY answers.

Free text (``resp-text``) is never a string: CR, LF and NUL in it are replaced by spaces.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from columba.proto.imap import mutf7
from columba.proto.imap.dates import format_datetime
from columba.proto.imap.sequence import SequenceSet

__all__ = [
    "NIL",
    "QUOTED_MAX",
    "AString",
    "Atom",
    "Literal",
    "Raw",
    "ResponseCode",
    "bye",
    "continuation",
    "encode_astring",
    "encode_datetime",
    "encode_flags",
    "encode_list",
    "encode_literal",
    "encode_mailbox",
    "encode_nstring",
    "encode_string",
    "encode_value",
    "fetch_response",
    "literal_header",
    "tagged",
    "untagged",
    "untagged_status",
]

NIL = None
QUOTED_MAX = 1024
CRLF = b"\r\n"

_ASTRING_ATOM_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_QUOTABLE_ASCII_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
_UNSAFE_TEXT_RE = re.compile(r"[\r\n\x00]")
_STATUSES = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})


@dataclass(frozen=True, slots=True)
class Atom:
    """A bare word: flag, keyword, item name, capability."""

    value: str

    def __post_init__(self) -> None:
        if not self.value or _UNSAFE_TEXT_RE.search(self.value):
            raise ValueError(f"not an atom: {self.value!r}")


@dataclass(frozen=True, slots=True)
class AString:
    """An astring: an atom when possible, else quoted or literal."""

    value: str | bytes


@dataclass(frozen=True, slots=True)
class Raw:
    """Already-encoded bytes, written verbatim."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Literal:
    """Always a literal; ``binary`` makes it ``~{n}`` (RFC 3516 literal8)."""

    data: bytes
    binary: bool = False


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def literal_header(size: int, *, binary: bool = False) -> bytes:
    """``{size}\\r\\n`` (``~{size}\\r\\n``), for streaming a literal's data yourself."""
    return (b"~{" if binary else b"{") + str(size).encode("ascii") + b"}" + CRLF


def encode_literal(data: bytes, *, binary: bool = False) -> bytes:
    if not binary and b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return literal_header(len(data), binary=binary) + data


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > QUOTED_MAX:
        return False
    if _QUOTABLE_ASCII_RE.fullmatch(data):
        return True
    if not utf8 or b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _quote(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encode_string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """``string``: quoted when possible, else a literal."""
    data = _to_bytes(value)
    if _quotable(data, utf8):
        return _quote(data)
    return encode_literal(data)


def encode_astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """``astring``: an atom when every octet is ASTRING-CHAR (and it isn't ``NIL``)."""
    data = _to_bytes(value)
    if _ASTRING_ATOM_RE.fullmatch(data) and data.upper() != b"NIL":
        return data
    return encode_string(data, utf8=utf8)


def encode_nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else encode_string(value, utf8=utf8)


def encode_mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name: mUTF-7 (raw UTF-8 when *utf8*), then an astring."""
    if name.upper() == "INBOX":
        return b"INBOX"
    wire = name if utf8 else mutf7.encode(name)
    return encode_astring(wire, utf8=utf8)


def encode_datetime(value: _dt.datetime) -> bytes:
    return b'"' + format_datetime(value).encode("ascii") + b'"'


def encode_list(items: Iterable[object], *, utf8: bool = False) -> bytes:
    return b"(" + b" ".join(encode_value(i, utf8=utf8) for i in items) + b")"


def encode_flags(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Forwarded)``."""
    return b"(" + b" ".join(Atom(f).value.encode("utf-8") for f in flags) + b")"


def encode_value(value: object, *, utf8: bool = False) -> bytes:
    """Encode one value per the table in the module doc."""
    if value is None:
        return b"NIL"
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("IMAP numbers are unsigned")
        return str(value).encode("ascii")
    if isinstance(value, str | bytes):
        return encode_string(value, utf8=utf8)
    if isinstance(value, Atom):
        return value.value.encode("utf-8")
    if isinstance(value, AString):
        return encode_astring(value.value, utf8=utf8)
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Literal):
        return encode_literal(value.data, binary=value.binary)
    if isinstance(value, list | tuple):
        return encode_list(value, utf8=utf8)
    if isinstance(value, _dt.datetime):
        return encode_datetime(value)
    if isinstance(value, SequenceSet):
        return str(value).encode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as an IMAP value")


@dataclass(frozen=True, slots=True, init=False)
class ResponseCode:
    """``[NAME arg arg ...]``. Args are values (see :func:`encode_value`): a list becomes a
    parenthesised list (``PERMANENTFLAGS``, ``BADCHARSET``), words are :class:`Atom`::

        ResponseCode("UIDNEXT", 4392)
        ResponseCode("PERMANENTFLAGS", [Atom("\\\\Seen"), Atom("\\\\*")])
        ResponseCode("COPYUID", 38505, Atom("304,319:320"), Atom("3956:3958"))
        ResponseCode("CAPABILITY", *map(Atom, caps))
    """

    name: str
    args: tuple[object, ...]

    def __init__(self, name: str, *args: object) -> None:
        if not re.fullmatch(r"[A-Za-z0-9.\-=+]+", name):
            raise ValueError(f"invalid response code name {name!r}")
        object.__setattr__(self, "name", name.upper())
        object.__setattr__(self, "args", args)

    def encode(self, *, utf8: bool = False) -> bytes:
        out = self.name.encode("ascii")
        for arg in self.args:
            out += b" " + encode_value(arg, utf8=utf8)
        return b"[" + out + b"]"


def _text(text: str) -> bytes:
    return _UNSAFE_TEXT_RE.sub(" ", text).encode("utf-8", "surrogateescape")


def _resp_text(code: ResponseCode | str | None, text: str, utf8: bool) -> bytes:
    if not isinstance(text, str):
        raise TypeError("response text must be str; pass a response code as code=...")
    parts: list[bytes] = []
    if code is not None:
        if isinstance(code, ResponseCode):
            parts.append(code.encode(utf8=utf8))
        else:
            parts.append(b"[" + _text(code) + b"]")
    if text:
        parts.append(_text(text))
    return b" ".join(parts)


def _status_line(
    prefix: bytes, status: str, text: str, code: ResponseCode | str | None, utf8: bool
) -> bytes:
    status = status.upper()
    if status not in _STATUSES:
        raise ValueError(f"invalid status {status!r}")
    rest = _resp_text(code, text, utf8)
    return prefix + b" " + status.encode("ascii") + (b" " + rest if rest else b"") + CRLF


def tagged(
    tag: str,
    status: str,
    text: str = "",
    *,
    code: ResponseCode | str | None = None,
    utf8: bool = False,
) -> bytes:
    """``tag OK|NO|BAD [code] text``, e.g. ``tagged("a1", "NO", "Too big",
    code=ResponseCode("TOOBIG"))``. ``code`` is keyword-only so it can't be swapped with
    the text by accident."""
    if not tag or _UNSAFE_TEXT_RE.search(tag) or " " in tag:
        raise ValueError(f"invalid tag {tag!r}")
    return _status_line(tag.encode("ascii", "replace"), status, text, code, utf8)


def untagged_status(
    status: str,
    text: str = "",
    *,
    code: ResponseCode | str | None = None,
    utf8: bool = False,
) -> bytes:
    """``* OK|NO|BAD|PREAUTH|BYE [code] text``."""
    return _status_line(b"*", status, text, code, utf8)


def bye(text: str, *, code: ResponseCode | str | None = None) -> bytes:
    return untagged_status("BYE", text, code=code)


def untagged(words: str, *values: object, utf8: bool = False) -> bytes:
    """``* words value value ...``: *words* is written as is (``"3 EXISTS"``, ``"LIST"``,
    ``"12 FETCH"``), the values through :func:`encode_value`::

        untagged("3 EXISTS")
        untagged("LIST", [Atom("\\\\HasNoChildren")], "/", AString("INBOX"))
        untagged("SEARCH", 2, 3, 7)
    """
    out = b"* " + _text(words)
    for value in values:
        out += b" " + encode_value(value, utf8=utf8)
    return out + CRLF


def fetch_response(
    number: int, items: Iterable[tuple[str, object]], *, utf8: bool = False
) -> bytes:
    """``* number FETCH (NAME value NAME value ...)``; names are written as is."""
    body = b" ".join(_text(name) + b" " + encode_value(value, utf8=utf8) for name, value in items)
    return b"* " + str(number).encode("ascii") + b" FETCH (" + body + b")" + CRLF


def continuation(text: str = "") -> bytes:
    """``+ text`` (``+ OK`` for literals, base64 challenges for SASL)."""
    return b"+ " + _text(text) + CRLF
