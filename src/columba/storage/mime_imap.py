"""IMAP text for ENVELOPE, BODY and BODYSTRUCTURE, written the way Dovecot writes it.

Three string writers matter, and Dovecot uses each in fixed places:

* :func:`nstring` - NIL, a quoted string (``"`` and ``\\`` escaped, at most four of them),
  or a literal ``{n}\\r\\n...`` when the value has CR, LF, 8-bit bytes or more escapes;
* :func:`nstring_nolf` - the same after CR and LF are turned into spaces (Date, Message-ID,
  In-Reply-To, Content-ID/Description/MD5/Location);
* :func:`string_for_humans` - whitespace runs collapsed and trimmed, and written as a
  literal whenever anything was changed or the text has quotes, backslashes or 8-bit bytes
  (Subject and address display names).

The writers produce bytes: 8-bit header bytes go out as they are, inside literals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from columba.storage.mime_rfc822 import Address

if TYPE_CHECKING:
    from columba.storage.mime import MimePart

_WS_RUN = re.compile(rb"[ \t\r\n]+")


def literal(out: bytearray, value: bytes) -> None:
    out += b"{%d}\r\n" % len(value)
    out += value


def nstring(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += b"NIL"
        return
    escapes = 0
    for c in value:
        if c in (0x22, 0x5C):
            escapes += 1
            if escapes > 4:
                literal(out, value)
                return
        elif c in (0x0D, 0x0A) or c >= 0x80:
            literal(out, value)
            return
    out.append(0x22)
    if escapes:
        out += value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    else:
        out += value
    out.append(0x22)


def nstring_nolf(out: bytearray, value: bytes | None) -> None:
    """CR/LF dropped before whitespace, else turned into a space (folds disappear)."""
    if value is not None and (b"\r" in value or b"\n" in value):
        value = _strip_newlines(value)
    nstring(out, value)


def _strip_newlines(value: bytes) -> bytes:
    out = bytearray()
    n = len(value)
    for i, c in enumerate(value):
        if c in (0x0D, 0x0A):
            if i + 1 < n and value[i + 1] in (0x20, 0x09, 0x0D, 0x0A):
                continue
            out.append(0x20)
        else:
            out.append(c)
    return bytes(out)


def string_for_humans(out: bytearray, value: bytes) -> None:
    modify = False
    for c in value:
        if c in (0x0D, 0x0A, 0x09, 0x22, 0x5C, 0) or c >= 0x80:
            modify = True
            break
    if not modify and value and (value[0] == 0x20 or value[-1] == 0x20 or b"  " in value):
        modify = True
    if not modify:
        out.append(0x22)
        out += value
        out.append(0x22)
        return
    cleaned = _WS_RUN.sub(b" ", value.replace(b"\x00", b"\x80")).strip(b" ")
    if not cleaned:
        out += b'""'
        return
    literal(out, cleaned)


def _address_list(out: bytearray, addrs: Sequence[Address]) -> None:
    if not addrs:
        out += b"NIL"
        return
    out.append(0x28)
    for a in addrs:
        out.append(0x28)
        if a.name is None:
            out += b"NIL"
        else:
            string_for_humans(out, a.name)
        out.append(0x20)
        nstring(out, a.route)
        out.append(0x20)
        nstring(out, a.mailbox)
        out.append(0x20)
        nstring(out, a.domain)
        out.append(0x29)
    out.append(0x29)


class Envelope:
    """The ten ENVELOPE fields, as raw header bytes / parsed addresses."""

    __slots__ = (
        "bcc",
        "cc",
        "date",
        "from_",
        "in_reply_to",
        "message_id",
        "reply_to",
        "sender",
        "subject",
        "to",
    )

    def __init__(self) -> None:
        self.date: bytes | None = None
        self.subject: bytes | None = None
        self.from_: list[Address] = []
        self.sender: list[Address] = []
        self.reply_to: list[Address] = []
        self.to: list[Address] = []
        self.cc: list[Address] = []
        self.bcc: list[Address] = []
        self.in_reply_to: bytes | None = None
        self.message_id: bytes | None = None

    def write(self, out: bytearray) -> None:
        nstring_nolf(out, self.date)
        out.append(0x20)
        if self.subject is None:
            out += b"NIL"
        else:
            string_for_humans(out, self.subject)
        for addrs in (
            self.from_,
            self.sender or self.from_,
            self.reply_to or self.from_,
            self.to,
            self.cc,
            self.bcc,
        ):
            out.append(0x20)
            _address_list(out, addrs)
        out.append(0x20)
        nstring_nolf(out, self.in_reply_to)
        out.append(0x20)
        nstring_nolf(out, self.message_id)


EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
EMPTY_BODYSTRUCTURE = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def _params(out: bytearray, params: Sequence[tuple[bytes, bytes]], default_charset: bool) -> None:
    if not default_charset and not params:
        out += b"NIL"
        return
    out.append(0x28)
    seen_charset = False
    for i, (key, value) in enumerate(params):
        if i:
            out.append(0x20)
        if default_charset and key.lower() == b"charset":
            seen_charset = True
        nstring(out, key)
        out.append(0x20)
        nstring(out, value)
    if default_charset and not seen_charset:
        if params:
            out.append(0x20)
        out += b'"charset" "us-ascii"'
    out.append(0x29)


def _common_ext(out: bytearray, part: MimePart) -> None:
    out.append(0x20)
    if part.disposition is None:
        out += b"NIL"
    else:
        out.append(0x28)
        nstring(out, part.disposition)
        out.append(0x20)
        _params(out, part.disposition_params, False)
        out.append(0x29)
    out.append(0x20)
    if not part.language:
        out += b"NIL"
    else:
        out.append(0x28)
        for i, lang in enumerate(part.language):
            if i:
                out.append(0x20)
            nstring(out, lang)
        out.append(0x29)
    out.append(0x20)
    nstring_nolf(out, part.location)


def write_bodystructure(out: bytearray, part: MimePart, extended: bool) -> None:
    """Dovecot's ``imap_bodystructure_write`` (without the outermost parentheses)."""
    if part.is_multipart:
        if part.children:
            for child in part.children:
                out.append(0x28)
                write_bodystructure(out, child, extended)
                out.append(0x29)
        else:
            out += EMPTY_BODYSTRUCTURE if extended else EMPTY_BODY
        out.append(0x20)
        nstring(out, part.content_subtype or b"")
        if not extended:
            return
        out.append(0x20)
        _params(out, part.content_params, False)
        _common_ext(out, part)
        return

    if part.is_truncated:
        # a multipart or message/rfc822 that was not parsed as one (too deep, too many
        # parts, no body): Dovecot calls it application/octet-stream
        out += b'"application" "octet-stream"'
        text = False
    elif part.is_rfc822:
        out += b'"message" "rfc822"'
        text = False
    elif part.content_type is None:
        out += b'"text" "plain"'
        text = True
    else:
        text = part.content_type.lower() == b"text"
        nstring(out, part.content_type)
        out.append(0x20)
        nstring(out, part.content_subtype or b"")
    out.append(0x20)
    _params(out, part.content_params, text)
    out.append(0x20)
    nstring_nolf(out, part.content_id)
    out.append(0x20)
    nstring_nolf(out, part.description)
    out.append(0x20)
    if part.cte is not None:
        nstring(out, part.cte)
    else:
        out += b'"7bit"'
    out += b" %d" % part.body_size
    if text:
        out += b" %d" % part.body_lines
    elif part.is_rfc822:
        out += b" ("
        if part.children:
            child = part.children[0]
            (child.envelope or Envelope()).write(out)
            out += b") ("
            write_bodystructure(out, child, extended)
            out += b")"
        else:  # header cut short by a boundary: nothing inside
            Envelope().write(out)
            out += b") "
            out += EMPTY_BODYSTRUCTURE if extended else EMPTY_BODY
        out += b" %d" % part.body_lines
    if not extended:
        return
    out.append(0x20)
    nstring_nolf(out, part.md5)
    _common_ext(out, part)
