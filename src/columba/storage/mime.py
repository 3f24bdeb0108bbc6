"""Parse an RFC 5322 message once, at save time, into everything IMAP FETCH needs.

:func:`parse_message` walks the message a single time and produces a :class:`ParsedMessage`:
RFC822.SIZE, the exact ENVELOPE / BODY / BODYSTRUCTURE text, the MIME part tree with byte
offsets (so ``BODY[section]`` is a slice of the stored object), header access, and decoded
text for SEARCH.  :meth:`ParsedMessage.to_json` / :meth:`ParsedMessage.from_json` let the
index cache the result and reload it without touching the message again.

Exactness.  ENVELOPE and BODYSTRUCTURE are compared byte for byte by clients and by the
compliance suites, and Debian's Dovecot is the reference (DESIGN.md §9).  The structure walk
therefore reproduces Dovecot's ``message-parser`` rules rather than the RFCs' ideal:

* a boundary line is ``--`` + the *longest* active boundary that is a *prefix* of the line
  (innermost first on ties; boundaries are cut to 80 bytes); the [CR]LF before it belongs
  to the boundary; a boundary line that arrives inside a header block - or right after its
  empty line, unless it is the part's own boundary - ends the part there, with no body;
  a boundary line without a line end at the end of the message starts nothing;
* ``multipart/*`` without a usable boundary is still a multipart with no children (written
  as one empty text/plain part); ``message/rfc822`` is parsed as a message whatever its
  Content-Transfer-Encoding; parts without Content-Type under ``multipart/digest`` are
  message/rfc822; a part typed multipart or message/rfc822 that could not be parsed as
  one is written as application/octet-stream;
* Content-* headers of a message without MIME-Version and Content-Type are ignored;
* the first Content-* header of each kind wins (Content-Disposition: the first with
  parameters); for Subject/Date/Message-ID/In-Reply-To the last one wins; address headers
  accumulate; RFC 2231 continuations are merged but left encoded;
* nesting deeper than :data:`MAX_NESTING` and parts past :data:`MAX_PARTS` are opaque;
* HEADER.FIELDS answers follow Dovecot's header filter (see :func:`_filter_header`).

Why a hand-written boundary scanner.  ``email.message``/``email.parser`` build a tree of
decoded header objects, normalise line endings, drop the byte offsets IMAP needs for
``BODY[section]``, and resolve malformed boundaries differently from Dovecot (exact boundary
match, no prefix rule, no header truncation).  The scanner here is a ``bytes.find(b"\\n--")``
loop over the CRLF buffer: linear in the message size (plus the depth bound), no copies of
part bodies, offsets kept.  ``email.utils`` is used only to parse the Date header.

Bounds: nesting (:data:`MAX_NESTING`), parts (:data:`MAX_PARTS`), header fields looked at
per header block (:data:`MAX_HEADER_FIELDS`) and header text per cache record
(:data:`HEADER_CACHE_BYTES`).  Malformed input never raises: every byte string yields a
ParsedMessage.  The cross-check against Dovecot is tests/unit/test_mime_golden.py.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from columba.storage.mime_imap import Envelope, write_bodystructure
from columba.storage.mime_rfc822 import (
    NUL_REPLACEMENT,
    Address,
    parse_addresses,
    parse_content_type,
    parse_disposition,
    parse_language,
    parse_mime_token_value,
    parse_params,
)

__all__ = [
    "MAX_NESTING",
    "MAX_PARTS",
    "HeaderField",
    "MimePart",
    "ParsedMessage",
    "parse_message",
    "to_crlf",
]

MAX_NESTING = 100  # Dovecot's default max_nested_mime_parts
MAX_PARTS = 10_000  # Dovecot's default max_total_mime_parts
BOUNDARY_MAX_LEN = 80  # Dovecot cuts longer boundaries (lines are matched by prefix anyway)
MAX_HEADER_FIELDS = 10_000  # fields of one header block looked at (sizes stay exact past it)
HEADER_CACHE_BYTES = 64 * 1024  # header field text kept in a to_json() record
JSON_VERSION = 1

_BARE_LF = re.compile(rb"(?<!\r)\n")
_MULTI_CR = re.compile(rb"\r+\n")
_ENVELOPE_STR = {b"date", b"subject", b"message-id", b"in-reply-to"}
_ENVELOPE_ADDR = {b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc"}


def to_crlf(raw: bytes) -> bytes:
    """Bare LF -> CRLF (CRLF and lone CR are left alone), as IMAP sizes are counted."""
    if b"\n" not in raw:
        return raw
    if raw.count(b"\n") == raw.count(b"\r\n"):
        return raw
    return _BARE_LF.sub(b"\r\n", raw)


def _b2s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _s2b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _nul_fix(value: bytes) -> bytes:
    return value.replace(b"\x00", NUL_REPLACEMENT) if b"\x00" in value else value


@dataclass(slots=True)
class HeaderField:
    """One header field: name as written (trailing blanks cut), raw span, unfolded value."""

    name: bytes
    start: int  # offset of the field's first byte in the message
    end: int  # offset after its last line ending
    value: bytes  # Dovecot's "full value": folds joined with LF, leading blanks cut


@dataclass(slots=True, eq=False)
class MimePart:
    """A MIME part with offsets into the (CRLF) message."""

    hdr_start: int = 0
    hdr_end: int = 0  # == body_start, except when a boundary line cut the header short
    body_start: int = 0
    body_end: int = 0
    body_lines: int = 0
    is_multipart: bool = False
    is_rfc822: bool = False
    content_type: bytes | None = None  # as written ("TEXT"), None when absent / not MIME
    content_subtype: bytes | None = None
    content_params: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_id: bytes | None = None
    description: bytes | None = None
    cte: bytes | None = None
    md5: bytes | None = None
    disposition: bytes | None = None
    disposition_params: list[tuple[bytes, bytes]] = field(default_factory=list)
    language: list[bytes] | None = None
    location: bytes | None = None
    children: list[MimePart] = field(default_factory=list)
    envelope: Envelope | None = None  # for a message's root part (top level or rfc822 child)
    in_digest: bool = False  # child of multipart/digest (default type message/rfc822)

    @property
    def is_truncated(self) -> bool:
        """Typed multipart or message/rfc822 but not parsed as such (Dovecot's test)."""
        if self.is_multipart or self.is_rfc822:
            return False
        if self.content_type is None:
            return self.in_digest
        t = self.content_type.lower()
        if t == b"multipart":
            return True
        return t == b"message" and (self.content_subtype or b"").lower() == b"rfc822"

    @property
    def header_size(self) -> int:
        return self.hdr_end - self.hdr_start

    @property
    def body_size(self) -> int:
        return self.body_end - self.body_start

    @property
    def mime_type(self) -> str:
        """Lower-case ``type/subtype`` with the IMAP defaults applied."""
        if self.is_rfc822:
            return "message/rfc822"
        if self.is_multipart:
            return "multipart/" + (self.content_subtype or b"").decode("ascii", "replace").lower()
        if self.content_type is None:
            return "text/plain"
        t = self.content_type.decode("ascii", "replace").lower()
        s = (self.content_subtype or b"").decode("ascii", "replace").lower()
        return f"{t}/{s}"

    def param(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.content_params:
            if k.lower() == key:
                return _b2s(v)
        return None

    @property
    def charset(self) -> str | None:
        return self.param("charset")

    def walk(self) -> Iterator[MimePart]:
        yield self
        for c in self.children:
            yield from c.walk()


# -- the structure walk -------------------------------------------------------------------


class _Field:
    __slots__ = ("end", "name", "parts", "start")

    def __init__(self, name: bytes, start: int) -> None:
        self.name = name
        self.start = start
        self.end = start
        self.parts: list[bytes] = []


class _Walker:
    """Dovecot's message-parser as a recursive descent over one CRLF buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.stack: list[bytes] = []  # active boundaries, outermost first
        self.total_parts = 1
        self.root_fields: list[HeaderField] = []

    # boundaries -----------------------------------------------------------------

    def boundary_at(self, pos: int) -> tuple[int, bool] | None:
        """At a line start holding ``--``: (stack index, is end boundary) or None."""
        if self.total_parts >= MAX_PARTS:
            return None
        data = self.data
        start = pos + 2
        lf = data.find(b"\n", start)
        if lf < 0:
            find_size = self.n - start
        else:
            find_size = lf - start
            if find_size > 0 and data[lf - 1] == 0x0D:
                find_size -= 1
            if find_size > 2 and data[start + find_size - 2 : start + find_size] == b"--":
                find_size -= 2
        best = -1
        best_len = -1
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            b = stack[i]
            blen = len(b)
            if blen <= find_size and blen > best_len and data.startswith(b, start):
                best, best_len = i, blen
                if blen == find_size:
                    break
        if best < 0:
            return None
        return best, data[start + best_len : start + best_len + 2] == b"--"

    def scan(self, pos: int) -> tuple[int, tuple[int, bool, int] | None]:
        """Body from *pos* to the next boundary line: (body end, (index, is_end, line start))."""
        if not self.stack:
            return self.n, None
        data = self.data
        if data.startswith(b"--", pos):
            f = self.boundary_at(pos)
            if f is not None:
                return pos, (f[0], f[1], pos)
        i = pos
        while True:
            j = data.find(b"\n--", i)
            if j < 0:
                return self.n, None
            line = j + 1
            f = self.boundary_at(line)
            if f is not None:
                end = j
                if end > pos and data[end - 1] == 0x0D:
                    end -= 1
                return end, (f[0], f[1], line)
            i = line

    # parts ----------------------------------------------------------------------

    def parse_part(
        self,
        part: MimePart,
        pos: int,
        level: int,
        *,
        in_multipart: bool,
        in_digest: bool,
        is_message: bool,
    ) -> tuple[int, tuple[int, bool, int] | None]:
        data, n = self.data, self.n
        part.hdr_start = pos
        fields: list[_Field] = []
        cur: _Field | None = None
        prev_nl = 0
        body_start = -1
        eoh = -1
        found: tuple[int, bool, int] | None = None
        while True:
            if pos >= n:
                body_start = part.hdr_end = n
                break
            if self.stack and data.startswith(b"--", pos):
                f = self.boundary_at(pos)
                if f is not None:
                    found = (f[0], f[1], pos)
                    break
            lf = data.find(b"\n", pos)
            nxt = n if lf < 0 else lf + 1
            c = data[pos]
            if c == 0x0A or (c == 0x0D and pos + 1 < n and data[pos + 1] == 0x0A):
                eoh = pos
                body_start = part.hdr_end = nxt
                break
            line_end = nxt
            if lf >= 0:
                line_end = lf - 1 if lf > pos and data[lf - 1] == 0x0D else lf
                prev_nl = nxt - line_end
                while line_end > pos and data[line_end - 1] == 0x0D:
                    line_end -= 1  # Dovecot's line content has no trailing CRs
            else:
                prev_nl = 0
            if c in (0x20, 0x09):
                if cur is not None:
                    cur.parts.append(b"\n" + data[pos:line_end])
                    cur.end = nxt
            else:
                colon = data.find(b":", pos, line_end)
                if colon < 0:
                    cur = None  # a line without a colon is no field
                else:
                    name = data[pos:colon]
                    if b"\x00" in name:  # Dovecot's names are C strings
                        name = name[: name.index(b"\x00")]
                    cur = _Field(name.rstrip(b" \t"), pos)
                    vstart = colon + 1
                    while vstart < line_end and data[vstart] in (0x20, 0x09):
                        vstart += 1
                    cur.parts.append(data[vstart:line_end])
                    cur.end = nxt
                    if len(fields) < MAX_HEADER_FIELDS:
                        fields.append(cur)
            pos = nxt
        part.body_start = body_start
        hfields = [HeaderField(f.name, f.start, f.end, b"".join(f.parts)) for f in fields]
        if level == 0:
            self.root_fields = hfields
        boundary, digest = self.apply_headers(part, hfields, in_multipart, in_digest, is_message)
        own = boundary if part.is_multipart and level + 1 < MAX_NESTING else None
        too_deep = part.is_multipart and level + 1 >= MAX_NESTING
        if too_deep:
            part.is_multipart = False  # Dovecot: application/octet-stream with no body
        if eoh >= 0 and self.stack and data.startswith(b"--", body_start):
            # A boundary line right after the empty line: Dovecot checks it before it
            # ends the header, with this part's own boundary already active.  An
            # ancestor's boundary then cuts the header like any other header line.
            if own is not None:
                self.stack.append(own)
            f = self.boundary_at(body_start)
            if own is not None:
                self.stack.pop()
            if f is not None and f[0] < len(self.stack):
                found = (f[0], f[1], body_start)
                prev_nl = body_start - eoh
                pos = body_start
        if found is not None:
            # A boundary line cut the header short: the part ends right there, with no
            # body and no children (its own boundary is never pushed).  The [CR]LF before
            # the boundary leaves the header and, as in Dovecot, counts in the parent's body.
            part.hdr_end = pos - prev_nl
            part.body_start = part.body_end = pos
            part.body_lines = 0
            return pos, found

        if part.is_multipart:
            if own is not None:
                end, found = self.parse_multipart(part, body_start, own, level, digest)
            else:
                end, found = self.scan(body_start)
        elif too_deep:
            # the bytes count in the parent's body, none in this part's
            end, found = self.scan(body_start)
            part.body_end = body_start
            part.body_lines = 0
            return end, found
        elif part.is_rfc822 and level + 1 < MAX_NESTING and self.total_parts < MAX_PARTS:
            child = MimePart()
            part.children.append(child)
            self.total_parts += 1
            end, found = self.parse_part(
                child, body_start, level + 1, in_multipart=False, in_digest=False, is_message=True
            )
        else:
            if part.is_rfc822:
                part.is_rfc822 = False  # too deep: an opaque message/rfc822 body
            end, found = self.scan(body_start)
        part.body_end = end
        part.body_lines = data.count(b"\n", body_start, end)
        return end, found

    def parse_multipart(
        self, part: MimePart, body_start: int, boundary: bytes, level: int, digest: bool
    ) -> tuple[int, tuple[int, bool, int] | None]:
        self.stack.append(boundary)
        mine = len(self.stack) - 1
        end, found = self.scan(body_start)  # preamble
        while True:
            if found is None:
                del self.stack[mine:]
                return end, None
            idx, is_end, line = found
            if idx < mine:
                del self.stack[mine:]
                return end, found
            lf = self.data.find(b"\n", line)
            if lf < 0:
                # a boundary line cut by the end of the message starts nothing
                del self.stack[mine:]
                return self.n, None
            after = lf + 1
            if is_end:
                del self.stack[mine:]
                return self.scan(after)  # epilogue
            child = MimePart()
            part.children.append(child)
            self.total_parts += 1
            end, found = self.parse_part(
                child, after, level + 1, in_multipart=True, in_digest=digest, is_message=False
            )

    def apply_headers(
        self,
        part: MimePart,
        fields: list[HeaderField],
        in_multipart: bool,
        in_digest: bool,
        is_message: bool,
    ) -> tuple[bytes | None, bool]:
        is_mime = in_multipart
        first_ct: bytes | None = None
        seen_ct = False
        env = Envelope() if is_message else None
        have: set[bytes] = set()
        for f in fields:
            lname = f.name.lower()
            if lname == b"mime-version":
                is_mime = True
            elif lname.startswith(b"content-"):
                sub = lname[8:]
                if sub == b"type":
                    is_mime = True
                    if not seen_ct:
                        seen_ct = True
                        first_ct = f.value
                if sub in have:
                    continue
                self._content_header(part, sub, f.value, have)
            if env is not None:
                if lname in _ENVELOPE_STR:
                    v = _nul_fix(f.value)
                    if lname == b"date":
                        env.date = v
                    elif lname == b"subject":
                        env.subject = v
                    elif lname == b"message-id":
                        env.message_id = v
                    else:
                        env.in_reply_to = v
                elif lname in _ENVELOPE_ADDR:
                    addrs = parse_addresses(f.value)
                    if lname == b"from":
                        env.from_ += addrs
                    elif lname == b"sender":
                        env.sender += addrs
                    elif lname == b"reply-to":
                        env.reply_to += addrs
                    elif lname == b"to":
                        env.to += addrs
                    elif lname == b"cc":
                        env.cc += addrs
                    else:
                        env.bcc += addrs
        part.envelope = env
        if not is_mime:
            # no MIME-Version and no Content-Type: forget all the Content-* headers
            for attr in ("content_type", "content_subtype", "content_id", "description", "cte"):
                setattr(part, attr, None)
            part.md5 = part.disposition = part.location = part.language = None
            part.content_params = []
            part.disposition_params = []
        # message-parser flags come from the first Content-Type only
        boundary: bytes | None = None
        multipart = rfc822 = digest = False
        if first_ct is not None:
            ret, ctype, p = parse_content_type(first_ct)
            lct = ctype.lower()
            if lct == b"message/rfc822":
                rfc822 = True
            elif lct.startswith(b"multipart/"):
                multipart = True
                digest = lct == b"multipart/digest"
                if ret >= 0:
                    for k, v in parse_params(p):
                        if k.lower() == b"boundary":
                            boundary = v[:BOUNDARY_MAX_LEN]
                            break
        else:
            rfc822 = in_digest
        part.is_multipart = multipart
        part.is_rfc822 = rfc822
        part.in_digest = in_digest
        return boundary, digest

    def _content_header(self, part: MimePart, sub: bytes, value: bytes, have: set[bytes]) -> None:
        if sub == b"type":
            have.add(sub)
            ret, ctype, p = parse_content_type(value)
            slash = ctype.find(b"/")
            if slash < 0:
                part.content_type, part.content_subtype = ctype, b""
            else:
                part.content_type, part.content_subtype = ctype[:slash], ctype[slash + 1 :]
            if ret >= 0:
                part.content_params = parse_params(p)
        elif sub == b"transfer-encoding":
            cte = parse_mime_token_value(value)
            if cte is not None:
                have.add(sub)
                part.cte = cte
        elif sub == b"id":
            have.add(sub)
            part.content_id = _nul_fix(value)
        elif sub == b"md5":
            have.add(sub)
            part.md5 = _nul_fix(value)
        elif sub == b"description":
            have.add(sub)
            part.description = _nul_fix(value)
        elif sub == b"location":
            have.add(sub)
            part.location = _nul_fix(value)
        elif sub == b"language":
            langs = parse_language(value)
            if langs is not None:
                have.add(sub)
                part.language = langs
        elif sub == b"disposition":
            # Dovecot re-reads Content-Disposition until one with parameters was seen
            disp = parse_disposition(value)
            if disp is not None:
                part.disposition, part.disposition_params = disp
                if disp[1]:
                    have.add(sub)


def _walk(data: bytes) -> tuple[MimePart, list[HeaderField]]:
    w = _Walker(data)
    root = MimePart()
    w.parse_part(root, 0, 0, in_multipart=False, in_digest=False, is_message=True)
    return root, w.root_fields


# -- sections -----------------------------------------------------------------------------

_SECTION = re.compile(
    r"^(?P<path>\d+(?:\.\d+)*)?(?:(?:^|\.)(?P<spec>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    r"(?:\s*\((?P<fields>[^)]*)\))?$",
    re.IGNORECASE,
)


def _parse_section(spec: str) -> tuple[list[int], str, list[bytes]] | None:
    m = _SECTION.match(spec.strip())
    if m is None:
        return None
    path = [int(x) for x in m.group("path").split(".")] if m.group("path") else []
    if any(x == 0 for x in path):
        return None
    kind = (m.group("spec") or "").upper()
    fields_text = m.group("fields")
    if kind.startswith("HEADER.FIELDS"):
        if fields_text is None:
            return None
        names = [_s2b(x).lower() for x in fields_text.replace('"', " ").split()]
        return path, kind, names
    if fields_text is not None:
        return None
    if kind == "MIME" and not path:
        return None
    return path, kind, []


def _eoh(hdr: bytes) -> bytes:
    """The empty line that ends a header block, or b"" when it has none."""
    if hdr in (b"\r\n", b"\n"):
        return hdr
    if hdr.endswith(b"\n\r\n"):
        return b"\r\n"
    if hdr.endswith(b"\n\n"):
        return b"\n"
    return b""


def _filter_header(
    raw: bytes, start: int, end: int, names: list[bytes], *, keep: bool, add_eoh: bool
) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT the way Dovecot's header filter answers them.

    Dovecot filters the message stream from the header's start up to the first empty line,
    so a header that a boundary line cut short is read past the cut.  The header's own
    empty line ends the answer; when there is none, the top-level HEADER.FIELDS adds one
    (``add_eoh``), the other forms do not.
    """
    hdr = raw[start:end]
    if not _eoh(hdr) and end < len(raw):
        pos = start
        n = len(raw)
        while pos < n:
            lf = raw.find(b"\n", pos)
            nxt = n if lf < 0 else lf + 1
            if raw[pos] == 0x0A or raw.startswith(b"\r\n", pos):
                pos = nxt
                break
            pos = nxt
        hdr = raw[start:pos]
    wanted = set(names)
    out = bytearray()
    for name, s, e in _header_fields(hdr):
        if (name in wanted) == keep:
            line = hdr[s:e]
            colon = line.find(b":")
            if keep and 0 <= line.find(b"\x00") < colon:  # FIELDS rewrites the name
                line = line[: line.index(b"\x00")] + line[colon:]
            out += line
    eoh = _eoh(hdr)
    if eoh:
        out += eoh
    elif add_eoh:
        out += b"\r\n"
    if keep and b"\r\r" in out:  # HEADER.FIELDS rewrites each line with one CRLF
        return _MULTI_CR.sub(b"\r\n", bytes(out))
    return bytes(out)


def _header_fields(hdr: bytes) -> list[tuple[bytes, int, int]]:
    """(lower-case name, start, end) of each field of a header block, folds included.

    A line without a colon is a field without a name (Dovecot keeps such lines in
    HEADER.FIELDS.NOT and never matches them); the final empty line is not a field.
    """
    out: list[tuple[bytes, int, int]] = []
    end = len(hdr) - len(_eoh(hdr))
    pos = 0
    while pos < end:
        lf = hdr.find(b"\n", pos, end)
        nxt = end if lf < 0 else lf + 1
        c = hdr[pos]
        if c in (0x20, 0x09) and out:
            name, s, _ = out[-1]
            out[-1] = (name, s, nxt)
        else:
            colon = hdr.find(b":", pos, nxt)
            # a line without a colon has no name: HEADER.FIELDS never matches it
            name = hdr[pos:colon].split(b"\x00", 1)[0].rstrip(b" \t").lower() if colon >= 0 else b""
            out.append((name, pos, nxt))
        pos = nxt
    return out


# -- decoding for SEARCH ------------------------------------------------------------------

_EWORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_EWORD_GAP = re.compile(rb"(\?=)[ \t\r\n]+(=\?)")


def _charset_codec(charset: str | None) -> str:
    if not charset:
        return "utf-8"
    cs = charset.strip().strip('"').lower().split("*", 1)[0]
    if cs in ("us-ascii", "ascii", "unknown-8bit", "x-unknown", "default"):
        return "utf-8"
    try:
        return codecs.lookup(cs).name
    except LookupError:
        return "utf-8"


def _decode_text(raw: bytes, charset: str | None) -> str:
    codec = _charset_codec(charset)
    try:
        return raw.decode(codec, "replace")
    except (LookupError, ValueError):
        return raw.decode("utf-8", "replace")


def decode_rfc2047(value: bytes) -> str:
    """Decode RFC 2047 encoded words (adjacent words joined); other bytes as UTF-8."""
    value = _EWORD_GAP.sub(rb"\1\2", value)
    out: list[str] = []
    pos = 0
    for m in _EWORD.finditer(value):
        out.append(value[pos : m.start()].decode("utf-8", "replace"))
        charset = m.group(1).decode("ascii", "replace")
        text = m.group(3)
        if m.group(2) in (b"b", b"B"):
            raw = _b64decode(text)
        else:
            raw = binascii.a2b_qp(text.replace(b"_", b" "))
        out.append(_decode_text(raw, charset))
        pos = m.end()
    out.append(value[pos:].decode("utf-8", "replace"))
    return "".join(out)


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _b64decode(data: bytes) -> bytes:
    clean = _B64_JUNK.sub(b"", data.split(b"=", 1)[0] if b"=" in data else data)
    clean = clean[: len(clean) - len(clean) % 4] + (
        b"" if len(clean) % 4 == 0 else (clean[len(clean) - len(clean) % 4 :] + b"==")[:4]
    )
    try:
        return base64.b64decode(clean)
    except (binascii.Error, ValueError):
        return b""


def decode_transfer(body: bytes, cte: bytes | None) -> bytes:
    enc = (cte or b"7bit").lower()
    if enc == b"base64":
        lines = body.replace(b"\r", b"").split(b"\n")
        return b"".join(_b64decode(line) for line in lines) if lines else b""
    if enc == b"quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    return body


# -- the result ----------------------------------------------------------------------------


class ParsedMessage:
    """What FETCH and SEARCH need from one message, computed once."""

    __slots__ = (
        "_raw",
        "body",
        "bodystructure",
        "envelope",
        "header_bytes",
        "header_fields",
        "headers_complete",
        "root",
        "size",
    )

    def __init__(
        self,
        *,
        size: int,
        envelope: str,
        body: str,
        bodystructure: str,
        header_bytes: bytes,
        header_fields: list[HeaderField],
        root: MimePart,
        raw: bytes | None = None,
        headers_complete: bool = True,
    ) -> None:
        self.size = size
        self.envelope = envelope
        self.body = body
        self.bodystructure = bodystructure
        self.header_bytes = header_bytes
        self.header_fields = header_fields
        self.root = root
        self._raw = raw
        # False when a cache record left header fields out (see to_json): headers() and
        # decoded_header() then see only the first ones until reloaded with the message
        self.headers_complete = headers_complete

    # parts ------------------------------------------------------------------------

    def part(self, section: list[int]) -> MimePart | None:
        """The part a numeric section path names (RFC 3501 §6.4.5); [] is the message."""
        part = self.root
        for i, num in enumerate(section):
            if part.is_multipart:
                if num < 1 or num > len(part.children):
                    return None
                part = part.children[num - 1]
            elif num != 1:
                return None
            if i + 1 < len(section):
                if part.is_rfc822 and part.children:
                    part = part.children[0]
                elif not part.is_multipart:
                    return None
        return part

    def section_bytes(self, raw: bytes, spec: str) -> bytes | None:
        """Contents of ``BODY[spec]`` (no partial); None when the section does not exist.

        *raw* is the stored message (CRLF, as given to :func:`parse_message`).  Dovecot sends
        an empty string for a part that does not exist; a caller can do the same with
        ``or b""``.  HEADER/TEXT/HEADER.FIELDS after a part number need a message/rfc822 part.
        """
        parsed = _parse_section(spec)
        if parsed is None:
            return None
        path, kind, names = parsed
        if not path and not kind:
            return raw[: self.size]
        part = self.part(path) if path else self.root
        if part is None:
            return None
        if kind == "":
            return raw[part.body_start : part.body_end]
        if kind == "MIME":
            return raw[part.hdr_start : part.hdr_end]
        if path:
            if not part.is_rfc822:
                return None
            if part.children:
                part = part.children[0]
            else:  # message/rfc822 whose header a boundary cut: an empty message
                at = part.hdr_end  # (where Dovecot's header filter starts reading)
                part = MimePart(hdr_start=at, hdr_end=at, body_start=at, body_end=at)
        if kind == "TEXT":
            return raw[part.body_start : part.body_end]
        if kind == "HEADER":
            return raw[part.hdr_start : part.hdr_end]
        add_eoh = kind == "HEADER.FIELDS" and not path
        return _filter_header(
            raw, part.hdr_start, part.hdr_end, names, keep=kind == "HEADER.FIELDS", add_eoh=add_eoh
        )

    # headers ----------------------------------------------------------------------

    def headers(self, name: str) -> list[str]:
        """Raw (unfolded, undecoded) values of every *name* field of the top-level header."""
        key = name.lower().encode()
        return [
            _b2s(f.value.replace(b"\n", b"")) for f in self.header_fields if f.name.lower() == key
        ]

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    def decoded_header(self, name: str) -> list[str]:
        """RFC 2047-decoded values of *name* (for SEARCH HEADER/SUBJECT/FROM...)."""
        key = name.lower().encode()
        return [
            decode_rfc2047(f.value.replace(b"\n", b""))
            for f in self.header_fields
            if f.name.lower() == key
        ]

    @property
    def subject(self) -> str | None:
        values = self.decoded_header("subject")
        return values[-1] if values else None

    @property
    def message_id(self) -> str | None:
        values = self.headers("message-id")
        return values[-1].strip() if values else None

    @property
    def date(self) -> datetime | None:
        values = self.headers("date")
        if not values:
            return None
        try:
            return parsedate_to_datetime(values[-1])
        except (TypeError, ValueError, IndexError, OverflowError):
            return None

    def addresses(self, name: str) -> list[Address]:
        out: list[Address] = []
        key = name.lower().encode()
        for f in self.header_fields:
            if f.name.lower() == key:
                out += parse_addresses(f.value)
        return out

    # text -------------------------------------------------------------------------

    def text_parts(self) -> Iterator[MimePart]:
        for p in self.root.walk():
            if p.is_multipart or p.is_rfc822:
                continue
            if p.content_type is None or p.content_type.lower() == b"text":
                yield p

    def text_for_search(self, raw: bytes | None = None) -> str:
        """Decoded text of the text/* parts (transfer encoding and charset undone)."""
        data = raw if raw is not None else self._raw
        if data is None:
            raise ValueError("text_for_search needs the message bytes after from_json()")
        chunks = []
        for p in self.text_parts():
            body = decode_transfer(data[p.body_start : p.body_end], p.cte)
            chunks.append(_decode_text(body, p.charset))
        return "\n".join(chunks)

    # cache ------------------------------------------------------------------------

    def to_json(self) -> str:
        """A compact JSON record for the index: the FETCH texts, the part tree and the
        top-level header fields (up to :data:`HEADER_CACHE_BYTES` of them; past that the
        record says so and :meth:`from_json` re-reads them from the message when given it).
        """
        fields: list[list[Any]] = []
        budget = HEADER_CACHE_BYTES
        complete = self.headers_complete
        for f in self.header_fields:
            budget -= len(f.name) + len(f.value) + 16
            if budget < 0:
                complete = False
                break
            fields.append([_b2s(f.name), f.start, f.end, _b2s(f.value)])
        doc = {
            "v": JSON_VERSION,
            "size": self.size,
            "envelope": self.envelope,
            "body": self.body,
            "bodystructure": self.bodystructure,
            "hdr": fields,
            "hdr_complete": complete,
            "root": _part_to_json(self.root),
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, raw: bytes | None = None) -> ParsedMessage:
        """Rebuild from :meth:`to_json` without parsing the message.

        *raw* (the stored CRLF message) is optional; with it, :attr:`header_bytes` and
        :meth:`text_for_search` work, and header fields the record left out are re-read.
        """
        doc = json.loads(text)
        if doc.get("v") != JSON_VERSION:
            raise ValueError("unknown ParsedMessage cache version")
        fields = [HeaderField(_s2b(n), s, e, _s2b(v)) for n, s, e, v in doc["hdr"]]
        complete = bool(doc.get("hdr_complete", True))
        root = _part_from_json(doc["root"])
        header_bytes = b""
        if raw is not None:
            header_bytes = raw[root.hdr_start : root.hdr_end]
            if not complete:
                fields = _walk(header_bytes)[1]
                complete = True
        return cls(
            size=doc["size"],
            envelope=doc["envelope"],
            body=doc["body"],
            bodystructure=doc["bodystructure"],
            header_bytes=header_bytes,
            header_fields=fields,
            root=root,
            raw=raw,
            headers_complete=complete,
        )


def _opt(b: bytes | None) -> str | None:
    return None if b is None else _b2s(b)


def _unopt(s: str | None) -> bytes | None:
    return None if s is None else _s2b(s)


def _params_to_json(params: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [[_b2s(k), _b2s(v)] for k, v in params]


def _params_from_json(params: list[list[str]]) -> list[tuple[bytes, bytes]]:
    return [(_s2b(k), _s2b(v)) for k, v in params]


def _part_to_json(p: MimePart) -> list[Any]:
    flags = (1 if p.is_multipart else 0) | (2 if p.is_rfc822 else 0) | (4 if p.in_digest else 0)
    return [
        p.hdr_start,
        p.hdr_end,
        p.body_start,
        p.body_end,
        p.body_lines,
        flags,
        _opt(p.content_type),
        _opt(p.content_subtype),
        _params_to_json(p.content_params),
        _opt(p.cte),
        _opt(p.disposition),
        _params_to_json(p.disposition_params),
        _opt(p.content_id),
        _opt(p.description),
        _opt(p.md5),
        None if p.language is None else [_b2s(x) for x in p.language],
        _opt(p.location),
        [_part_to_json(c) for c in p.children],
    ]


def _part_from_json(j: list[Any]) -> MimePart:
    p = MimePart(
        hdr_start=j[0],
        hdr_end=j[1],
        body_start=j[2],
        body_end=j[3],
        body_lines=j[4],
        is_multipart=bool(j[5] & 1),
        is_rfc822=bool(j[5] & 2),
        in_digest=bool(j[5] & 4),
        content_type=_unopt(j[6]),
        content_subtype=_unopt(j[7]),
        content_params=_params_from_json(j[8]),
        cte=_unopt(j[9]),
        disposition=_unopt(j[10]),
        disposition_params=_params_from_json(j[11]),
        content_id=_unopt(j[12]),
        description=_unopt(j[13]),
        md5=_unopt(j[14]),
        language=None if j[15] is None else [_s2b(x) for x in j[15]],
        location=_unopt(j[16]),
    )
    p.children = [_part_from_json(c) for c in j[17]]
    return p


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse *raw* (bare LF is converted to CRLF first; offsets refer to the CRLF bytes)."""
    data = to_crlf(raw)
    root, fields = _walk(data)
    env = bytearray()
    (root.envelope or Envelope()).write(env)
    body = bytearray()
    write_bodystructure(body, root, False)
    bs = bytearray()
    write_bodystructure(bs, root, True)
    return ParsedMessage(
        size=len(data),
        envelope=_b2s(bytes(env)),
        body=_b2s(bytes(body)),
        bodystructure=_b2s(bytes(bs)),
        header_bytes=data[root.hdr_start : root.hdr_end],
        header_fields=fields,
        root=root,
        raw=data,
    )
