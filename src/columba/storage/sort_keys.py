"""Sort and thread keys (RFC 5256 SORT/THREAD, RFC 5957 DISPLAYFROM/DISPLAYTO), computed the
way Debian's Dovecot 2.3 computes them: pure functions of a message's header block, used at save
time (the keys are stored in the index's ``sort_keys`` table, :mod:`columba.storage.index`) and
by :mod:`columba.imap.sort_keys` (which re-exports them).

Strings compare as Dovecot's ``i;unicode-casemap`` keys: every character is mapped to its
simple titlecase (UnicodeData field 14) and then through one level of its decomposition
(canonical or compatibility: ``é`` → ``É`` → ``E`` U+0301, ``ﬁ`` → ``fi``); titlecase letters
(``ǅ``) stay as they are, Hangul syllables are decomposed into jamo. Keys compare code point
by code point, which is the byte order of their UTF-8 form (Dovecot's ``strcmp``). ASCII is
simply upper-cased.

* SUBJECT: the base subject of the *first* Subject header (RFC 5256 §2.1 steps 1-7, with
  Dovecot's reading of the ABNF: one blank after a blob, ``RE``/``FWD``/``FW`` leaders,
  ``(FWD)`` trailers, ``[FWD: ...]`` wrappers); a missing header sorts as the empty string.
* FROM/TO/CC: the local part (addr-mailbox) of the first address of the raw header, parsed as
  ENVELOPE parses it (a group's name for a group; ``MISSING_MAILBOX`` fills).
* DISPLAYFROM/DISPLAYTO: the RFC 2047-decoded display name of that address, or
  ``mailbox@domain`` (``mailbox`` alone for a group) when it has none.
* DATE: the first Date header in UTC seconds; a missing or unparsable date (or the epoch)
  falls back to the internal date. ARRIVAL: the internal date. SIZE: RFC822.SIZE.
* Message-IDs for THREAD follow Dovecot's ``message_id_get_next``: ``<left@right>`` with
  blanks removed; ids without ``@`` are skipped; quoted or commented ids are normalised.

Stored form (:func:`stored_keys`, one ``sort_keys`` row per message): the values of every
field plus the internal date and size, so a SORT or THREAD reads one row per message and
parses nothing. :data:`VERSION` tags each row: rows of another version count as missing and
are computed again (a changed computation bumps it).
"""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from email.utils import parsedate_tz
from typing import Any

from columba.storage.mime import decode_rfc2047
from columba.storage.mime_rfc822 import Address, parse_addresses

__all__ = [
    "COLUMNS",
    "FIELDS",
    "KEY_FIELDS",
    "STORED_COLUMNS",
    "VERSION",
    "StoredKeys",
    "address_key",
    "address_keys",
    "base_subject",
    "compute_fields",
    "decode_columns",
    "display_key",
    "extract_headers",
    "first_message_id",
    "message_ids",
    "sent_date",
    "stored_keys",
    "titlecase_decomposed",
]

FIELDS = ("subject", "date", "from", "to", "cc", "displayfrom", "displayto", "thread")
"""Cached per-message fields. ``subject`` is ``(base, is_reply_or_forward)``; ``date`` the
sent date or None; the address ones strings; ``thread`` is ``(message_id, references)``."""

_FIELD_HEADERS: dict[str, tuple[bytes, ...]] = {
    "subject": (b"subject",),
    "date": (b"date",),
    "from": (b"from",),
    "to": (b"to",),
    "cc": (b"cc",),
    "displayfrom": (b"from",),
    "displayto": (b"to",),
    "thread": (b"message-id", b"references", b"in-reply-to"),
}

# -- i;unicode-casemap ---------------------------------------------------------------------

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3


@functools.lru_cache(maxsize=65536)
def _char_key(ch: str) -> str:
    cp = ord(ch)
    if _HANGUL_FIRST <= cp <= _HANGUL_LAST:
        s = cp - _HANGUL_FIRST
        lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
        return chr(lead) + chr(vowel) + (chr(trail) if trail != 0x11A7 else "")
    title = ch.title()
    if len(title) != 1:  # only a full (SpecialCasing) mapping: no simple titlecase
        title = ch
    if unicodedata.category(title) == "Lt":
        return title  # titlecase letters map to themselves and are never decomposed
    decomposition = unicodedata.decomposition(title)
    if not decomposition:
        return title
    codes = decomposition.split(" ")
    if codes[0].startswith("<"):
        codes = codes[1:]
    if len(codes) == 1:
        value = int(codes[0], 16)
        return chr(value) if value <= 0xFFFF else title
    if ord(title) > 0xFFFF:
        return title
    return "".join(chr(int(code, 16)) for code in codes)


def titlecase_decomposed(text: str) -> str:
    """Dovecot's ``uni_utf8_to_decomposed_titlecase`` (the i;unicode-casemap sort key)."""
    if text.isascii():
        return text.upper()
    return "".join([_char_key(ch) for ch in text])


# -- base subject (RFC 5256 §2.1) ------------------------------------------------------------

_WSP_RUN = re.compile(r"[ \t\r\n]+")


def _blob_end(text: str, pos: int) -> int | None:
    """After ``[...]`` and one optional blank at *pos*; None when there is no blob."""
    if pos >= len(text) or text[pos] != "[":
        return None
    end = pos + 1
    n = len(text)
    while end < n and text[end] not in "[]":
        end += 1
    if end >= n or text[end] != "]":
        return None
    end += 1
    if end < n and text[end] == " ":
        end += 1
    return end


def _leader_end(text: str, start: int) -> int | None:
    """Where ``*subj-blob subj-refwd`` starting at *start* ends, or None."""
    pos = start
    while pos < len(text) and text[pos] == "[":
        after = _blob_end(text, pos)
        if after is None:
            return None
        pos = after
    if text.startswith("RE", pos):
        pos += 2
    elif text.startswith("FWD", pos):
        pos += 3
    elif text.startswith("FW", pos):
        pos += 2
    else:
        return None
    if pos < len(text) and text[pos] == " ":
        pos += 1
    if pos < len(text) and text[pos] == "[":
        after = _blob_end(text, pos)
        if after is None:
            return None
        pos = after
    if pos < len(text) and text[pos] == ":":
        return pos + 1
    return None


def base_subject_of_text(text: str) -> tuple[str, bool]:
    """Steps 2-7 of RFC 5256 §2.1 on an already decoded, case-mapped, whitespace-packed
    subject: ``(base subject, is reply or forward)``."""
    reply = False
    start = 0
    while True:
        # (2) trailers: blanks and "(fwd)"
        end = len(text)
        while end > start:
            if text[end - 1] == " ":
                end -= 1
            elif end >= 5 and text[end - 5 : end] == "(FWD)":
                reply = True
                end -= 5
            else:
                break
        if end != len(text):
            text = text[:end]
        while True:
            found = False
            # (3) one leading blank, then *subj-blob subj-refwd
            if start < len(text) and text[start] == " ":
                start += 1
                found = True
            after = _leader_end(text, start)
            if after is not None:
                start = after
                reply = True
                found = True
            # (4) a leading blob when something follows it
            after = _blob_end(text, start)
            if after is not None and after < len(text):
                start = after
                found = True
            if not found:
                break
        # (6) "[fwd:" ... "]"
        if text.startswith("[FWD:", start) and text.endswith("]"):
            reply = True
            text = text[:-1]
            start += 5
            continue
        return (text[start:] if start <= len(text) else ""), reply


def base_subject(value: bytes | None) -> tuple[str, bool]:
    """The base subject of a raw Subject value (RFC 2047 words decoded, case-mapped):
    ``(base subject, is reply or forward)``. None (no header) gives ``("", False)``."""
    if value is None:
        return "", False
    text = titlecase_decomposed(decode_rfc2047(value))
    if "  " in text or "\t" in text or "\n" in text or "\r" in text:
        text = _WSP_RUN.sub(" ", text)
    return base_subject_of_text(text)


# -- addresses (RFC 5256 FROM/TO/CC, RFC 5957 DISPLAYFROM/DISPLAYTO) ------------------------


def address_key(value: bytes | None) -> str:
    """FROM/TO/CC: the first address's local part, case-mapped ("" without one)."""
    if not value:
        return ""
    return _address_key(parse_addresses(value, 1))


def display_key(value: bytes | None) -> str:
    """DISPLAYFROM/DISPLAYTO: the decoded display name, else ``mailbox@domain``."""
    if not value:
        return ""
    return _display_key(parse_addresses(value, 1))


def address_keys(value: bytes | None) -> tuple[str, str]:
    """``(address_key(value), display_key(value))`` with one parse."""
    if not value:
        return "", ""
    addrs = parse_addresses(value, 1)
    return _address_key(addrs), _display_key(addrs)


def _address_key(addrs: Sequence[Address]) -> str:
    if not addrs or addrs[0].mailbox is None:
        return ""
    return titlecase_decomposed(addrs[0].mailbox.decode("utf-8", "replace"))


def _display_key(addrs: Sequence[Address]) -> str:
    if not addrs:
        return ""
    addr = addrs[0]
    if addr.name is not None:
        name = decode_rfc2047(addr.name)
        if name:
            return titlecase_decomposed(name)
    if addr.mailbox is None:
        return ""
    mailbox = addr.mailbox.decode("utf-8", "replace")
    if addr.domain is not None:
        mailbox += "@" + addr.domain.decode("utf-8", "replace")
    return titlecase_decomposed(mailbox)


# -- dates -----------------------------------------------------------------------------------


def sent_date(value: bytes | None) -> int | None:
    """A Date header as UTC seconds; None when missing, unparsable or the epoch (Dovecot then
    uses the internal date). A date without a zone is taken as UTC."""
    if not value:
        return None
    try:
        parts = parsedate_tz(value.decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parts is None:
        return None
    try:
        stamp = calendar.timegm((*parts[:6], 0, 1, -1)) - (parts[9] or 0)
    except (TypeError, ValueError, OverflowError):
        return None
    return stamp if stamp != 0 else None


# -- message ids ------------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+"
_DOT_ATOM = _ATEXT + r"(?:\." + _ATEXT + r")*"
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_SLOW_ID = re.compile(
    r'\s*(?:"((?:[^"\\]|\\.)*)"|(' + _DOT_ATOM + r"))\s*@\s*(" + _DOT_ATOM + r")\s*>",
    re.S,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_WS = re.compile(r"[ \t\r\n]")
_STOPS = frozenset('>"([')


def message_ids(value: str | None) -> list[str]:
    """Every valid message id in a header value, in order (Dovecot's message_id_get_next)."""
    out: list[str] = []
    if not value:
        return out
    pos = 0
    n = len(value)
    while True:
        start = value.find("<", pos)
        if start < 0:
            return out
        start += 1
        p = start
        found_at = False
        while p < n and value[p] not in _STOPS:
            if value[p] == "@":
                found_at = True
            p += 1
        if p >= n:
            return out
        if value[p] == ">":
            pos = p + 1
            if found_at:
                out.append(_WS.sub("", value[start:p]))
            continue
        m = _SLOW_ID.match(_COMMENT.sub("", value[start:]))
        if m is not None:
            left = _QUOTED_PAIR.sub(r"\1", m.group(1)) if m.group(1) is not None else m.group(2)
            out.append(f"{left}@{m.group(3)}")
            close = value.find(">", start)
            pos = close + 1 if close >= 0 else n
        else:
            pos = start


def first_message_id(value: str | None) -> str | None:
    ids = message_ids(value) if value and "<" in value else []
    return ids[0] if ids else None


# -- header extraction -------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _header_re(names: tuple[bytes, ...]) -> re.Pattern[bytes]:
    alternatives = b"|".join(re.escape(n) for n in names)
    return re.compile(rb"^(" + alternatives + rb")[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def extract_headers(block: bytes, names: tuple[bytes, ...]) -> dict[bytes, bytes]:
    """The first value of each header in *names* (lower-case) found in a header block,
    unfolded (line breaks removed, the blanks after them kept)."""
    out: dict[bytes, bytes] = {}
    for m in _header_re(names).finditer(block):
        name = m.group(1).lower()
        if name not in out:
            value = m.group(2)
            if b"\n" in value or b"\r" in value:
                value = value.replace(b"\r", b"").replace(b"\n", b"")
            out[name] = value.rstrip(b" \t")
            if len(out) == len(names):
                break
    return out


def _thread_ids(headers: dict[bytes, bytes]) -> tuple[str | None, tuple[str, ...]]:
    """``(message id, references)``: the References ids, or the first In-Reply-To id."""
    raw_id = headers.get(b"message-id")
    msgid = first_message_id(raw_id.decode("utf-8", "replace") if raw_id else None)
    refs_raw = headers.get(b"references")
    refs = message_ids(refs_raw.decode("utf-8", "replace")) if refs_raw else []
    if not refs:
        irt = headers.get(b"in-reply-to")
        first = first_message_id(irt.decode("utf-8", "replace") if irt else None)
        refs = [first] if first is not None else []
    return msgid, tuple(refs)


def compute_fields(block: bytes, fields: Sequence[str]) -> list[object]:
    """The values of *fields* (names from :data:`FIELDS`) for one header block."""
    wanted: list[bytes] = []
    for f in fields:
        for h in _FIELD_HEADERS[f]:
            if h not in wanted:
                wanted.append(h)
    headers = extract_headers(block, tuple(wanted))
    out: list[object] = []
    for f in fields:
        if f == "subject":
            out.append(base_subject(headers.get(b"subject")))
        elif f == "date":
            out.append(sent_date(headers.get(b"date")))
        elif f in ("from", "to", "cc"):
            out.append(address_key(headers.get(f.encode())))
        elif f in ("displayfrom", "displayto"):
            out.append(display_key(headers.get(f[7:].encode())))
        else:  # thread
            out.append(_thread_ids(headers))
    return out


# -- the stored form -----------------------------------------------------------------------------

VERSION = 1
"""Version of the stored keys (bump when a computation above changes)."""

KEY_FIELDS = (*FIELDS, "arrival", "size")
"""Every field a ``sort_keys`` row answers: :data:`FIELDS`, ``arrival`` (the internal date in
UTC seconds) and ``size`` (RFC822.SIZE)."""

StoredKeys = tuple[int, str, int, int | None, int, int, str, str, str, str, str, str | None, str]
"""A ``sort_keys`` row after its (mailbox_id, uid) key, in :data:`STORED_COLUMNS` order."""

STORED_COLUMNS = (
    "version",
    "subject",
    "reply",
    "sent",
    "arrival",
    "size",
    "addr_from",
    "addr_to",
    "addr_cc",
    "display_from",
    "display_to",
    "message_id",
    "refs",
)

COLUMNS: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "reply"),
    "date": ("sent",),
    "from": ("addr_from",),
    "to": ("addr_to",),
    "cc": ("addr_cc",),
    "displayfrom": ("display_from",),
    "displayto": ("display_to",),
    "thread": ("message_id", "refs"),
    "arrival": ("arrival",),
    "size": ("size",),
}
"""The ``sort_keys`` columns each field is read from."""

_REFS_SEPARATOR = "\n"  # ids never hold a line break (header values are unfolded)


_STORED_HEADERS = (b"subject", b"date", b"from", b"to", b"cc", *_FIELD_HEADERS["thread"])


def stored_keys(header: bytes, arrival: int, size: int) -> StoredKeys:
    """The ``sort_keys`` row of a message (after its key) from its header block, internal
    date (UTC seconds) and size: what :func:`compute_fields` gives for every field."""
    headers = extract_headers(header, _STORED_HEADERS)
    base, reply = base_subject(headers.get(b"subject"))
    from_, display_from = address_keys(headers.get(b"from"))
    to, display_to = address_keys(headers.get(b"to"))
    msgid, refs = _thread_ids(headers)
    return (
        VERSION,
        base,
        1 if reply else 0,
        sent_date(headers.get(b"date")),
        arrival,
        size,
        from_,
        to,
        address_key(headers.get(b"cc")),
        display_from,
        display_to,
        msgid,
        _REFS_SEPARATOR.join(refs),
    )


def decode_columns(
    uids: Sequence[int], columns: Sequence[Sequence[Any]], fields: Sequence[str]
) -> dict[str, dict[int, object]]:
    """Field → uid → value (the forms :func:`compute_fields` gives, plus ``arrival`` and
    ``size``) from the ``sort_keys`` columns of *fields* (:data:`COLUMNS`, in that order), each
    aligned with *uids*."""
    out: dict[str, dict[int, object]] = {}
    pos = 0
    for name in fields:
        if name == "subject":
            values: Iterable[object] = zip(columns[pos], map(bool, columns[pos + 1]), strict=True)
        elif name == "thread":
            refs = [tuple(r.split(_REFS_SEPARATOR)) if r else () for r in columns[pos + 1]]
            values = zip(columns[pos], refs, strict=True)
        else:
            values = columns[pos]
        out[name] = dict(zip(uids, values, strict=True))
        pos += len(COLUMNS[name])
    return out
