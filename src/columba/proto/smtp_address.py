"""SMTP envelope syntax: mailboxes and paths (RFC 5321 §4.1.2, RFC 6531 §3.3), xtext (RFC 3461).

Pure functions used by :mod:`columba.proto.smtp`; they raise :class:`AddressError` (or its
subclass :class:`NonAsciiAddressError`) and never anything else on bad input.

Leniency, on purpose and only where real mail needs it:

* ``MAIL FROM: <a@b>`` (space after the colon) and bare ``MAIL FROM:a@b`` are accepted, as
  Postfix does with ``strict_rfc821_envelopes = no``.
* An unquoted local part may have empty atoms (``john..doe``, ``.x``): such addresses are in
  use (old Japanese mobile carriers). :meth:`Address.__str__` re-quotes them.
* Domain labels may contain ``_``.

Source routes (``<@relay1,@relay2:user@host>``) are checked for syntax and dropped, as RFC 5321
§4.1.1.3 and appendix C allow.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "Address",
    "AddressError",
    "NonAsciiAddressError",
    "is_valid_domain",
    "parse_path",
    "split_path",
    "xtext_decode",
    "xtext_encode",
]

_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_LDH_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
_STANDARDIZED_TAG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
_HEX = frozenset("0123456789abcdefABCDEF")


class AddressError(ValueError):
    """A mailbox, path or xtext value that does not parse."""


class NonAsciiAddressError(AddressError):
    """A non-ASCII address where SMTPUTF8 was not requested (RFC 6531: ``553 5.6.7``)."""


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox from a path.

    ``local_part`` is decoded (no surrounding quotes, no backslash escapes), so it can be used
    for lookups directly. ``domain`` is kept as sent (case preserved; an address literal keeps
    its brackets). ``domain`` is empty only for the special recipient ``<Postmaster>``.
    """

    local_part: str
    domain: str

    @property
    def is_ascii(self) -> bool:
        return self.local_part.isascii() and self.domain.isascii()

    @property
    def is_postmaster(self) -> bool:
        return self.local_part.lower() == "postmaster" and not self.domain

    @property
    def quoted_local_part(self) -> str:
        """The local part as it must be written on the wire (quoted only where needed)."""
        if _is_dot_string(self.local_part):
            return self.local_part
        escaped = self.local_part.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'

    def __str__(self) -> str:
        if not self.domain:
            return self.quoted_local_part
        return f"{self.quoted_local_part}@{self.domain}"


def _is_utf8_non_ascii(c: str) -> bool:
    # RFC 6531 UTF8-non-ascii, less the invisible/space/control code points nobody means.
    return not c.isascii() and c.isprintable() and not c.isspace()


def _is_atext(c: str) -> bool:
    return c in _ATEXT or _is_utf8_non_ascii(c)


def _is_dot_string(s: str) -> bool:
    return bool(s) and all(atom and all(_is_atext(c) for c in atom) for atom in s.split("."))


def _is_u_label_char(c: str) -> bool:
    if c.isascii():
        return c.isalnum() or c in "-_"
    return _is_utf8_non_ascii(c)


def is_valid_domain(domain: str, *, utf8: bool = True) -> bool:
    """True for a syntactically valid domain name (RFC 5321 ``Domain``; U-labels if ``utf8``)."""
    if not domain or len(domain.encode("utf-8")) > 255:
        return False
    for label in domain.split("."):
        if label.isascii():
            if not _LDH_LABEL.match(label):
                return False
        elif not utf8 or (
            len(label.encode("utf-8")) > 63
            or label.startswith("-")
            or label.endswith("-")
            or not all(_is_u_label_char(c) for c in label)
        ):
            return False
    return True


def _is_valid_address_literal(lit: str) -> bool:
    # lit includes the brackets.
    if len(lit) < 3 or not lit.startswith("[") or not lit.endswith("]"):
        return False
    body = lit[1:-1]
    if body[:5].upper() == "IPV6:":
        try:
            ipaddress.IPv6Address(body[5:])
        except ValueError:
            return False
        return True
    if ":" in body:
        tag, _, content = body.partition(":")
        return (
            bool(_STANDARDIZED_TAG.match(tag))
            and bool(content)
            and all(33 <= ord(c) <= 90 or 94 <= ord(c) <= 126 for c in content)
        )
    try:
        ipaddress.IPv4Address(body)
    except ValueError:
        return False
    return True


def _parse_quoted_local(s: str) -> tuple[str, int]:
    """Parse a quoted string at the start of ``s``; return (decoded, index after the quote)."""
    out: list[str] = []
    i = 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 >= n:
                break
            q = s[i + 1]
            if not (32 <= ord(q) <= 126 or _is_utf8_non_ascii(q)):
                raise AddressError("bad quoted-pair in local part")
            out.append(q)
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        o = ord(c)
        if not (o in (32, 33) or 35 <= o <= 91 or 93 <= o <= 126 or _is_utf8_non_ascii(c)):
            raise AddressError("bad character in quoted local part")
        out.append(c)
        i += 1
    raise AddressError("unterminated quoted local part")


def _parse_mailbox(s: str) -> Address:
    if s.startswith('"'):
        local, end = _parse_quoted_local(s)
        if end >= len(s) or s[end] != "@":
            raise AddressError("missing @domain")
        domain = s[end + 1 :]
    else:
        at = s.find("@")
        if at <= 0:
            raise AddressError("missing local part or @domain")
        local, domain = s[:at], s[at + 1 :]
        if not all(c == "." or _is_atext(c) for c in local):
            raise AddressError("bad character in local part")
    if domain.startswith("["):
        if not _is_valid_address_literal(domain):
            raise AddressError("bad address literal")
    elif not is_valid_domain(domain):
        raise AddressError("bad domain")
    return Address(local, domain)


def _check_route(route: str) -> None:
    for hop in route.split(","):
        if not hop.startswith("@"):
            raise AddressError("bad source route")
        hop_domain = hop[1:]
        ok = (
            _is_valid_address_literal(hop_domain)
            if hop_domain.startswith("[")
            else is_valid_domain(hop_domain)
        )
        if not ok:
            raise AddressError("bad source route")


def parse_path(
    text: str, *, allow_null: bool = False, allow_postmaster: bool = False, utf8: bool = False
) -> Address | None:
    """Parse a reverse-path or forward-path (with or without angle brackets).

    Returns None for the null path ``<>`` when ``allow_null``. ``allow_postmaster`` accepts the
    domain-less ``<Postmaster>`` of RCPT. Non-ASCII is only accepted when ``utf8`` (the
    transaction's MAIL carried SMTPUTF8); otherwise :class:`NonAsciiAddressError`.
    """
    if not text:
        raise AddressError("empty path")
    if not text.isascii() and not utf8:
        raise NonAsciiAddressError("non-ASCII address without SMTPUTF8")
    if text.startswith("<"):
        if not text.endswith(">") or len(text) < 2:
            raise AddressError("unterminated path")
        inner = text[1:-1]
        if not inner:
            if allow_null:
                return None
            raise AddressError("null path not allowed here")
    else:
        inner = text
    if inner.startswith("@"):
        route, sep, inner = inner.partition(":")
        if not sep:
            raise AddressError("bad source route")
        _check_route(route)
    if allow_postmaster and inner.lower() == "postmaster":
        return Address(inner, "")
    return _parse_mailbox(inner)


def split_path(arg: str) -> tuple[str, str]:
    """Split ``<path> params`` (the text after ``FROM:``/``TO:``) into path and parameter text."""
    if arg.startswith("<"):
        in_quote = False
        i = 1
        n = len(arg)
        while i < n:
            c = arg[i]
            if in_quote:
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    in_quote = False
            elif c == '"':
                in_quote = True
            elif c == ">":
                path, rest = arg[: i + 1], arg[i + 1 :]
                if rest and rest[0] not in " \t":
                    raise AddressError("junk after path")
                return path, rest.strip(" \t")
            i += 1
        raise AddressError("unterminated path")
    m = re.match(r"([^ \t]*)[ \t]*(.*)\Z", arg, re.S)
    assert m is not None  # the pattern matches any string
    if not m[1]:
        raise AddressError("empty path")
    return m[1], m[2]


def xtext_decode(value: str, *, utf8: bool = False) -> str:
    """Decode RFC 3461 xtext (``+XX`` hex escapes). Literal non-ASCII only if ``utf8``."""
    out = bytearray()
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == "+":
            h = value[i + 1 : i + 3]
            if len(h) != 2 or not all(x in _HEX for x in h):
                raise AddressError("bad xtext escape")
            out.append(int(h, 16))
            i += 3
            continue
        o = ord(c)
        if 33 <= o <= 126 and c != "=":
            out.append(o)
        elif utf8 and _is_utf8_non_ascii(c):
            out += c.encode("utf-8")
        else:
            raise AddressError("bad xtext character")
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError("xtext is not UTF-8") from None


def xtext_encode(value: str) -> str:
    """Encode to RFC 3461 xtext; non-ASCII is sent as ``+XX`` escapes of its UTF-8 octets."""
    out: list[str] = []
    for b in value.encode("utf-8"):
        if 33 <= b <= 126 and b not in (0x2B, 0x3D):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)
