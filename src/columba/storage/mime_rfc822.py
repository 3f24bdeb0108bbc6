"""RFC 822/2045/2231 header-value tokenizer, shaped like Dovecot's ``rfc822-parser``.

IMAP's ENVELOPE and BODYSTRUCTURE are exact-text answers, and clients compare them with
what Dovecot says.  The grammar in the RFCs leaves most malformed input undefined, so this
module follows Dovecot's own tokenizer step by step (where a header value is cut, which
characters are atoms, how comments are remembered, what a broken quoted string becomes)
rather than Python's ``email`` parsers, whose error recovery differs.  Everything works on
bytes; nothing here raises on malformed input.

* :class:`Rfc822Parser` - cursor with ``skip_lwsp``, atoms, dot-atoms, quoted strings,
  phrases, domains, MIME tokens, ``;param=value`` lists.
* :func:`parse_content_type`, :func:`parse_params` (RFC 2231 continuations merged, values
  left encoded as Dovecot does), :func:`parse_mime_token_value`, :func:`parse_language`.
* :func:`parse_addresses` - RFC 5322 address lists with group syntax, in Dovecot's
  ``message_address_parse(..., FILL_MISSING)`` shape: ``MISSING_MAILBOX``,
  ``MISSING_DOMAIN``, ``SYNTAX_ERROR``, ``INVALID_ROUTE`` placeholders.
"""

from __future__ import annotations

from typing import NamedTuple

NUL_REPLACEMENT = "\ufffd".encode()

# Dovecot's rfc822_atext_chars: 1 = atext, 2 = alpha/digit, 4 = atext but a MIME tspecial.
_ATEXT = bytearray(256)
for _c in b"!#$%&'*+-^_`{|}~":
    _ATEXT[_c] = 1
for _c in b"/=?":
    _ATEXT[_c] = 4
for _c in b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
    _ATEXT[_c] = 2
for _c in range(128, 256):
    _ATEXT[_c] = 1
ATEXT = bytes(_ATEXT)
_TOKEN_OK = bytes(1 if (v & 3) or i == 0x2E else 0 for i, v in enumerate(ATEXT))
_ATEXT_OR_DOT = bytes(1 if v or i == 0x2E else 0 for i, v in enumerate(ATEXT))
_LWSP = frozenset(b" \t\r\n")


class Rfc822Parser:
    """A cursor over one header value (Dovecot's ``struct rfc822_parser_context``)."""

    __slots__ = ("data", "end", "last_comment", "nul_replacement", "pos")

    def __init__(self, data: bytes, *, nul_replacement: bool = False) -> None:
        # a NUL sentinel stands for C's string terminator: peeking at the end reads 0
        self.data = data + b"\x00"
        self.pos = 0
        self.end = len(data)
        self.last_comment: bytearray | None = None
        self.nul_replacement = nul_replacement

    # -- whitespace and comments -------------------------------------------------------

    def skip_comment(self) -> int:
        data, end = self.data, self.end
        level = 1
        lc = self.last_comment
        if lc is not None:
            del lc[:]
        self.pos += 1
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c == 0x28:  # (
                level += 1
            elif c == 0x29:  # )
                level -= 1
                if level == 0:
                    if lc is not None:
                        lc += data[start : self.pos]
                    self.pos += 1
                    return 1
            elif c == 0x0A:
                # folding whitespace: the (CR)LF goes; text so far is kept even if the
                # comment never ends (as Dovecot does)
                if lc is not None:
                    cut = self.pos
                    if cut > start and data[cut - 1] == 0x0D:
                        cut -= 1
                    lc += data[start:cut]
                    start = self.pos + 1
            elif c == 0x5C:  # backslash
                self.pos += 1
                if self.pos >= end:
                    return -1
                if lc is not None:
                    lc += data[start : self.pos - 1]
                start = self.pos
            elif c == 0 and self.nul_replacement and lc is not None:
                lc += data[start : self.pos] + NUL_REPLACEMENT
                start = self.pos + 1
            self.pos += 1
        return -1

    def skip_lwsp(self) -> int:
        data, end = self.data, self.end
        while self.pos < end:
            c = data[self.pos]
            if c in _LWSP:
                self.pos += 1
                continue
            if c != 0x28:
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.pos < end else 0

    def at(self, ch: int) -> bool:
        return self.pos < self.end and self.data[self.pos] == ch

    # -- atoms ------------------------------------------------------------------------

    def parse_atom(self, out: bytearray) -> int:
        data, end = self.data, self.end
        if self.pos >= end or not ATEXT[data[self.pos]]:
            return -1
        start = self.pos
        self.pos += 1
        while self.pos < end:
            if not ATEXT[data[self.pos]]:
                out += data[start : self.pos]
                return self.skip_lwsp()
            self.pos += 1
        out += data[start : self.pos]
        return 0

    def parse_dot_atom(self, out: bytearray) -> int:
        data, end = self.data, self.end
        if self.pos >= end or not ATEXT[data[self.pos]]:
            return -1
        start = self.pos
        self.pos += 1
        while self.pos < end:
            if ATEXT[data[self.pos]]:
                self.pos += 1
                continue
            if start == self.pos:
                return -1
            out += data[start : self.pos]
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out.append(0x2E)
            if self.skip_lwsp() <= 0:
                return -1
            start = self.pos
        out += data[start : self.pos]
        return 0

    def parse_atom_or_dot(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = self.pos
        while self.pos < end:
            if not _ATEXT_OR_DOT[data[self.pos]]:
                out += data[start : self.pos]
                return self.skip_lwsp()
            self.pos += 1
        out += data[start : self.pos]
        return 0

    def parse_mime_token(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = self.pos
        while self.pos < end:
            if not _TOKEN_OK[data[self.pos]]:
                out += data[start : self.pos]
                return self.skip_lwsp()
            self.pos += 1
        out += data[start : self.pos]
        return 0

    def parse_quoted_string(self, out: bytearray) -> int:
        data, end = self.data, self.end
        self.pos += 1
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c == 0x22:
                out += data[start : self.pos]
                self.pos += 1
                return self.skip_lwsp()
            if c == 0x0A:
                cut = self.pos
                if cut > start and data[cut - 1] == 0x0D:
                    cut -= 1
                out += data[start:cut]
                start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= end:
                    return -1
                out += data[start : self.pos - 1]
                start = self.pos
            elif c == 0 and self.nul_replacement:
                out += data[start : self.pos] + NUL_REPLACEMENT
                start = self.pos + 1
            self.pos += 1
        return -1

    def parse_phrase(self, out: bytearray) -> int:
        data, end = self.data, self.end
        if self.pos >= end:
            return 0
        if data[self.pos] == 0x2E:
            return -1
        while True:
            if data[self.pos] == 0x22:
                ret = self.parse_quoted_string(out)
            else:
                ret = self.parse_atom_or_dot(out)
            if ret <= 0:
                return ret
            c = data[self.pos]
            if not ATEXT[c] and c not in (0x22, 0x2E):
                break
            out.append(0x20)
        return self.skip_lwsp()

    def parse_domain_literal(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = self.pos
        self.pos += 1
        while self.pos < end:
            c = data[self.pos]
            if c == 0x5C:
                self.pos += 1
                if self.pos >= end:
                    break
            elif c == 0x5D:
                self.pos += 1
                out += data[start : self.pos]
                return self.skip_lwsp()
            elif c == 0x0A:
                cut = self.pos
                if cut > start and data[cut - 1] == 0x0D:
                    cut -= 1
                out += data[start:cut]
                start = self.pos + 1
            self.pos += 1
        return -1

    def parse_domain(self, out: bytearray) -> int:
        self.pos += 1  # the "@"
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == 0x5B:
            return self.parse_domain_literal(out)
        return self.parse_dot_atom(out)

    # -- MIME -------------------------------------------------------------------------

    def parse_content_param(self) -> tuple[int, bytes, bytes]:
        """One ``; key=value``: (1 ok / 0 end / -1 broken, key, value)."""
        data, end = self.data, self.end
        if self.pos >= end:
            return 0, b"", b""
        if data[self.pos] != 0x3B:
            return -1, b"", b""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1, b"", b""
        key = bytearray()
        if self.parse_mime_token(key) <= 0:
            return -1, b"", b""
        if self.pos >= end or data[self.pos] != 0x3D:
            return -1, b"", b""
        self.pos += 1
        value = bytearray()
        ret = self.skip_lwsp()
        if ret <= 0:
            pass  # no value
        elif data[self.pos] == 0x22:
            ret = self.parse_quoted_string(value)
        elif data[self.pos] == 0x3D:
            # Dovecot's workaround for name==?utf-8?b?...?=
            start = self.pos
            while self.pos < end and data[self.pos] not in b"; \t\r\n\x00":
                self.pos += 1
            value += data[start : self.pos]
        else:
            ret = self.parse_mime_token(value)
        return (-1 if ret < 0 else 1), bytes(key), bytes(value)


# -- Content-Type and friends -----------------------------------------------------------


def parse_content_type(value: bytes) -> tuple[int, bytes, Rfc822Parser]:
    """``type/subtype`` as Dovecot keeps it: (ret, text, parser positioned at the params).

    On a broken value the text is what Dovecot keeps: the bare type when the value ends
    right after it, an empty string when something other than ``/subtype`` follows.
    """
    p = Rfc822Parser(value)
    out = bytearray()
    if p.skip_lwsp() <= 0:
        return -1, b"", p
    if p.parse_mime_token(out) <= 0 or not out:
        return -1, bytes(out), p
    if p.data[p.pos] != 0x2F:
        return -1, b"", p
    p.pos += 1
    if p.skip_lwsp() <= 0:
        return -1, b"", p
    out.append(0x2F)
    n = len(out)
    ret = p.parse_mime_token(out)
    if ret < 0 or len(out) == n or (ret > 0 and p.data[p.pos] != 0x3B):
        return -1, b"", p  # no subtype, or something other than ";params" after it
    return ret, bytes(out), p


class _Rfc2231Param(NamedTuple):
    key: bytes
    idx: int
    extended: bool
    value: bytes
    order: int


def _rfc2231_escape(out: bytearray, value: bytes) -> None:
    out += value.replace(b"%", b"%25")


def parse_params(p: Rfc822Parser) -> list[tuple[bytes, bytes]]:
    """Dovecot's ``rfc2231_parse``: plain parameters in order, then merged RFC 2231 ones."""
    p.nul_replacement = True
    result: list[tuple[bytes, bytes]] = []
    extended_params: list[_Rfc2231Param] = []
    idx = 0
    guard = 0
    while True:
        guard += 1
        if guard > 100_000:
            break
        ret, key, value = p.parse_content_param()
        if ret == 0:
            break
        if ret < 0:
            if p.pos >= p.end:
                break
            p.pos += 1
            continue
        star = key.find(b"*")
        if star < 0:
            result.append((key, value))
            continue
        q = star
        if q + 1 < len(key):
            q += 1
            idx = 0
            while q < len(key) and 0x30 <= key[q] <= 0x39:
                idx = idx * 10 + key[q] - 0x30
                q += 1
        extended = q < len(key) and key[q] == 0x2A
        if extended:
            q += 1
        if q != len(key):
            result.append((key, value))
        else:
            extended_params.append(
                _Rfc2231Param(key[:star], idx, extended, value, len(extended_params))
            )
    if not extended_params:
        return result
    # Dovecot sorts by (key bytewise, index), then merges keys case-insensitively
    extended_params.sort(key=lambda x: (x.key, x.idx))
    i = 0
    n = len(extended_params)
    while i < n:
        ok = True
        have_extended = False
        next_idx = 0
        j = i
        while j < n:
            if extended_params[j].key.lower() != extended_params[i].key.lower():
                break
            if extended_params[j].idx != next_idx:
                ok = False
            if extended_params[j].extended:
                have_extended = True
            next_idx += 1
            j += 1
        if not ok:
            for k in range(i, j):
                prm = extended_params[k]
                fmt = b"%s*%d*" if prm.extended else b"%s*%d"
                result.append((fmt % (prm.key, prm.idx), prm.value))
        else:
            merged = bytearray()
            if not extended_params[i].extended and have_extended:
                merged += b"''"
            for k in range(i, j):
                prm = extended_params[k]
                if not prm.extended and have_extended:
                    _rfc2231_escape(merged, prm.value)
                else:
                    merged += prm.value
            key = extended_params[i].key + (b"*" if have_extended else b"")
            result.append((key, bytes(merged)))
        i = j
    return result


def parse_mime_token_value(value: bytes) -> bytes | None:
    """Content-Transfer-Encoding: one token and nothing else, else None."""
    p = Rfc822Parser(value)
    p.skip_lwsp()
    out = bytearray()
    if p.parse_mime_token(out) >= 0 and p.skip_lwsp() == 0 and out:
        return bytes(out)
    return None


def parse_disposition(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    p = Rfc822Parser(value)
    p.skip_lwsp()
    out = bytearray()
    if p.parse_mime_token(out) < 0:
        return None
    return bytes(out), parse_params(p)


def parse_language(value: bytes) -> list[bytes] | None:
    p = Rfc822Parser(value)
    p.skip_lwsp()
    langs: list[bytes] = []
    while True:
        out = bytearray()
        if p.parse_atom(out) < 0:
            break
        langs.append(bytes(out))
        if p.pos >= p.end or p.data[p.pos] != 0x2C:
            break
        p.pos += 1
        p.skip_lwsp()
    return langs or None


# -- addresses --------------------------------------------------------------------------


class Address(NamedTuple):
    """One ENVELOPE address; a group start has only ``mailbox``, a group end is all None."""

    name: bytes | None
    route: bytes | None
    mailbox: bytes | None
    domain: bytes | None


class _Addr:
    __slots__ = ("domain", "invalid", "mailbox", "name", "route")

    def __init__(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.domain: bytes | None = None
        self.invalid = False


class _AddressParser:
    def __init__(self, value: bytes, limit: int) -> None:
        self.p = Rfc822Parser(value, nul_replacement=True)
        self.p.last_comment = bytearray()
        self.out: list[Address] = []
        self.addr = _Addr()
        self.limit = limit
        self._str = bytearray()  # the local part read last (addr-spec fallback builds on it)

    def add(self) -> None:
        a = self.addr
        if len(self.out) < self.limit:
            self.out.append(Address(a.name, a.route, a.mailbox, a.domain))
        self.addr = _Addr()

    def add_fixed(self) -> None:
        a = self.addr
        if a.mailbox is None:
            a.mailbox = b"MISSING_MAILBOX"
            a.invalid = True
        if not a.domain:
            a.domain = b"MISSING_DOMAIN"
            a.invalid = True
        self.add()

    def nonstrict_dot_atom(self, out: bytearray) -> int:
        """Local parts: dots anywhere (leading, doubled, trailing), no blanks after a dot."""
        p = self.p
        data = p.data
        ret = -1
        while True:
            while data[p.pos] == 0x2E and p.pos < p.end:
                out.append(0x2E)
                p.pos += 1
                if p.pos == p.end:
                    return 0
                ret = 1
            if data[p.pos] == 0x40 and p.pos < p.end:
                break
            ret = p.parse_atom(out)
            if ret <= 0:
                return ret
            if data[p.pos] != 0x2E or p.pos >= p.end:
                break
        return ret

    def local_part(self) -> int:
        out = bytearray()
        p = self.p
        quoted = p.data[p.pos] == 0x22
        ret = p.parse_quoted_string(out) if quoted else self.nonstrict_dot_atom(out)
        self._str = out
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(out)
        return ret

    def domain(self) -> int:
        out = bytearray()
        ret = self.p.parse_domain(out)
        if ret < 0:
            return -1
        self.addr.domain = bytes(out)
        return ret

    def domain_list(self) -> int:
        p = self.p
        out = bytearray()
        while True:
            if p.pos >= p.end:
                return 0
            if p.data[p.pos] != 0x40:
                break
            if out:
                out.append(0x2C)
            out.append(0x40)
            ret = p.parse_domain(out)
            if ret <= 0:
                return ret
            while p.skip_lwsp() > 0 and p.data[p.pos] == 0x2C:
                p.pos += 1
        self.addr.route = bytes(out)
        return 1

    def angle_addr(self) -> int:
        p = self.p
        p.pos += 1  # "<"
        if p.skip_lwsp() <= 0:
            return -1
        if p.data[p.pos] == 0x40:
            if self.domain_list() > 0 and p.data[p.pos] == 0x3A:
                p.pos += 1
            else:
                self.addr.route = b"INVALID_ROUTE"
                if p.pos >= p.end:
                    return -1
            if p.skip_lwsp() <= 0:
                return -1
        if p.data[p.pos] != 0x3E:
            if self.local_part() <= 0:
                return -1
            if p.data[p.pos] == 0x40 and self.domain() <= 0:
                return -1
        if p.data[p.pos] != 0x3E:
            return -1
        p.pos += 1
        return p.skip_lwsp()

    def name_addr(self) -> int:
        p = self.p
        out = bytearray()
        if p.parse_phrase(out) <= 0 or p.data[p.pos] != 0x3C:
            return -1
        self.addr.name = bytes(out) if out else None
        if self.angle_addr() < 0:
            self.addr.domain = b"SYNTAX_ERROR"
            self.addr.invalid = True
        return 1 if p.pos < p.end else 0

    def addr_spec(self) -> int:
        p = self.p
        assert p.last_comment is not None
        del p.last_comment[:]
        quoted = p.data[p.pos] == 0x22
        self._str = bytearray()
        ret = self.local_part()
        if ret <= 0:
            self.addr.invalid = True
        ret2 = -2
        if ret != 0 and p.pos < p.end and p.data[p.pos] == 0x40:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if p.last_comment:
            self.addr.name = bytes(p.last_comment)
        elif ret2 == -2:
            s = self._str
            s.append(0x20)
            orig = len(s)
            p.parse_phrase(s)
            if len(s) != orig:
                self.addr.mailbox = None
                self.addr.name = bytes(s)
            elif not quoted:
                self.addr.domain = b""
            self.addr.invalid = True
            ret = -1
        return ret

    def mailbox(self) -> int:
        p = self.p
        start = p.pos
        ret = self.name_addr()
        if ret < 0:
            p.pos = start
            ret = self.addr_spec()
            a = self.addr
            if a.invalid and a.name is None and a.mailbox is not None and a.domain is None:
                a.name = a.mailbox
                a.mailbox = None
        if ret < 0:
            self.addr.invalid = True
        self.add_fixed()
        return ret

    def group(self) -> int:
        p = self.p
        out = bytearray()
        if p.parse_phrase(out) <= 0 or p.data[p.pos] != 0x3A:
            return -1
        p.pos += 1
        ret = p.skip_lwsp()
        self.addr.mailbox = bytes(out)
        self.add()
        if ret > 0 and p.data[p.pos] != 0x3B:
            while True:
                if self.mailbox() == 0:  # (a broken mailbox does not end the group)
                    ret = -1
                    break
                if p.data[p.pos] != 0x2C:
                    break
                p.pos += 1
                if p.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if p.pos >= p.end or p.data[p.pos] != 0x3B:
                ret = -1
            else:
                p.pos += 1
                ret = p.skip_lwsp()
        self.add()  # end of group
        return 0 if ret == 0 else 1

    def address(self) -> int:
        p = self.p
        start = p.pos
        ret = self.group()
        if ret < 0:
            p.pos = start
            self.addr = _Addr()
            ret = self.mailbox()
        return ret

    def run(self) -> list[Address]:
        p = self.p
        if p.skip_lwsp() <= 0:
            return []
        budget = self.limit
        while budget > 0:
            budget -= 1
            if self.address() == 0:
                break
            if p.pos >= p.end or p.data[p.pos] != 0x2C:
                break
            p.pos += 1
            if p.skip_lwsp() == 0:
                break  # (an unterminated comment still yields one more, empty address)
        return self.out


MAX_ADDRESSES = 10_000


def parse_addresses(value: bytes, limit: int = MAX_ADDRESSES) -> list[Address]:
    """Parse an address-list header value (unfolded) the way Dovecot's ENVELOPE does."""
    return _AddressParser(value, limit).run()
