"""Modified UTF-7 (RFC 3501 §5.1.3), the mailbox-name encoding of IMAP4rev1.

Printable US-ASCII (0x20-0x7e) stands for itself except ``&``, which is written ``&-``.
Every other character is UTF-16BE, base64 with ``,`` in place of ``/``, no padding, between
``&`` and ``-``.

:func:`decode` is strict: it accepts only the canonical form that :func:`encode` produces
(no base64 for printable ASCII, no two encoded runs back to back, no padding, zero filler
bits, paired surrogates), so a name has exactly one spelling on the wire and two clients can't
create look-alike mailboxes. Anything else raises :class:`MUtf7Error`, which the codec turns
into ``BAD``.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["MUtf7Error", "decode", "encode", "is_valid"]

_B64_CHARS = re.compile(rb"[A-Za-z0-9+,]*")


class MUtf7Error(ValueError):
    """The text is not canonical modified UTF-7."""


def _is_direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    """Encode a Unicode mailbox name to modified UTF-7.

    Raises :class:`MUtf7Error` for a lone surrogate, which UTF-16 can't carry.
    """
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if not run:
            return
        try:
            raw = "".join(run).encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise MUtf7Error("lone surrogate in mailbox name") from exc
        b64 = base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")
        out.append("&" + b64.decode("ascii") + "-")
        run.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _decode_run(b64: bytes) -> str:
    if not b64:
        raise MUtf7Error("empty encoded run")
    if not _B64_CHARS.fullmatch(b64):
        raise MUtf7Error("invalid character in encoded run")
    if len(b64) % 4 == 1:
        raise MUtf7Error("truncated encoded run")
    padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MUtf7Error("invalid base64 in encoded run") from exc
    if len(raw) % 2:
        raise MUtf7Error("odd number of UTF-16 octets")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise MUtf7Error("unpaired UTF-16 surrogate") from exc
    return text


def decode(value: str | bytes) -> str:
    """Decode a modified UTF-7 mailbox name to Unicode (strict, canonical only)."""
    if isinstance(value, str):
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MUtf7Error("8-bit character in modified UTF-7 name") from exc
    else:
        data = bytes(value)
    out: list[str] = []
    i = 0
    n = len(data)
    prev_run_end = -1
    while i < n:
        c = data[i]
        if c < 0x20 or c > 0x7E:
            raise MUtf7Error("character outside printable US-ASCII")
        if c != 0x26:  # '&'
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise MUtf7Error("unterminated '&' run")
        if end == i + 1:
            out.append("&")
            i = end + 1
            continue
        if prev_run_end == i:
            raise MUtf7Error("two encoded runs back to back")
        text = _decode_run(data[i + 1 : end])
        if any(_is_direct(ch) for ch in text):
            raise MUtf7Error("printable US-ASCII encoded in base64")
        out.append(text)
        i = end + 1
        prev_run_end = i
    result = "".join(out)
    # Canonical check: filler bits must be zero, which only a re-encode tells cheaply.
    if encode(result).encode("ascii") != data:
        raise MUtf7Error("non-canonical modified UTF-7")
    return result


def is_valid(value: str | bytes) -> bool:
    """True when *value* is canonical modified UTF-7."""
    try:
        decode(value)
    except MUtf7Error:
        return False
    return True
