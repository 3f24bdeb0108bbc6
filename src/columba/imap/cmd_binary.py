"""RFC 3516 BINARY: the content-transfer-decoded form of a message or a part, as FETCH
``BINARY[...]``/``BINARY.PEEK[...]``/``BINARY.SIZE[...]`` and URLFETCH's ``BINARY`` option
(RFC 5524) send it.

A leaf part in ``base64`` or ``quoted-printable`` is decoded; ``7bit``/``8bit``/``binary`` (or
no Content-Transfer-Encoding) is sent as stored; any other encoding is unknown
(``NO [UNKNOWN-CTE]``). A multipart or message/rfc822 section (``BINARY[]`` included) is sent
with every leaf inside it converted, its ``Content-Transfer-Encoding`` field then reading
``binary``, as Dovecot does. Decoded data is sent as a literal8 (``~{n}``), as is data that
holds NUL; data sent as stored otherwise goes as a plain literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from columba.storage.mime import MimePart, ParsedMessage, decode_transfer

__all__ = ["BinaryData", "UnknownCte", "binary_section", "literal_prefix"]

IDENTITY_CTES = frozenset({b"", b"7bit", b"8bit", b"binary"})
DECODED_CTES = frozenset({b"base64", b"quoted-printable"})
_CTE_FIELD_RE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*\r?\n(?:[ \t].*\r?\n)*")


class UnknownCte(Exception):  # noqa: N818 - the response code's name
    """A part has a Content-Transfer-Encoding this server can't decode."""


@dataclass(frozen=True, slots=True)
class BinaryData:
    """A decoded section: its bytes, and whether any decoding took place."""

    data: bytes
    converted: bool

    @property
    def literal8(self) -> bool:
        """Send as ``~{n}``: decoded data, or data holding NUL."""
        return self.converted or b"\x00" in self.data


def literal_prefix(data: bytes, literal8: bool) -> bytes:
    """``{n}`` or ``~{n}`` and CRLF."""
    return (b"~" if literal8 else b"") + b"{%d}\r\n" % len(data)


def _cte(part: MimePart, raw: bytes) -> bytes:
    """The part's encoding; read from its header when the MIME parse left it out (a
    header without MIME-Version or Content-Type), as Dovecot's BINARY does."""
    if part.cte is not None:
        return part.cte.strip().lower()
    m = _CTE_FIELD_RE.search(raw, part.hdr_start, part.body_start)
    if m is None:
        return b""
    value = m.group().split(b":", 1)[1]
    return b" ".join(value.split()).lower()


def _is_leaf(part: MimePart) -> bool:
    return not (part.is_multipart or part.is_rfc822) or part.is_truncated


class _Converter:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.converted = False

    def body(self, part: MimePart) -> bytes:
        raw = self.raw
        if _is_leaf(part):
            cte = _cte(part, raw)
            body = raw[part.body_start : part.body_end]
            if cte in IDENTITY_CTES:
                return body
            if cte not in DECODED_CTES:
                raise UnknownCte(cte.decode("ascii", "replace"))
            self.converted = True
            return decode_transfer(body, cte)
        out = bytearray()
        pos = part.body_start
        for child in part.children:
            start = min(child.hdr_start, child.body_start)
            if start < pos:
                continue
            out += raw[pos:start]
            out += self.entity(child)
            pos = child.body_end
        out += raw[pos : part.body_end]
        return bytes(out)

    def entity(self, part: MimePart) -> bytes:
        """Header (CTE rewritten for a decoded leaf) and converted body."""
        header = self.raw[part.hdr_start : part.body_start]
        before = self.converted
        self.converted = False
        body = self.body(part)
        if self.converted and _is_leaf(part):
            header = _CTE_FIELD_RE.sub(
                lambda m: b"Content-Transfer-Encoding: binary" + _eol(m.group()), header, count=1
            )
        self.converted = self.converted or before
        return header + body


def _eol(field: bytes) -> bytes:
    return b"\r\n" if field.endswith(b"\r\n") else b"\n"


def binary_section(parsed: ParsedMessage, raw: bytes, part: tuple[int, ...]) -> BinaryData:
    """``BINARY[part]`` of a message (``()`` is the whole message). A part that doesn't
    exist is empty (Dovecot's answer). Raises UnknownCte."""
    conv = _Converter(raw)
    if not part:
        data = conv.entity(parsed.root)
        return BinaryData(data, conv.converted)
    found = parsed.part(list(part))
    if found is None:
        return BinaryData(b"", False)
    return BinaryData(conv.body(found), conv.converted)
