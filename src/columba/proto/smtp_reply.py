"""SMTP/LMTP reply encoding (RFC 5321 §4.2, RFC 2034 enhanced status codes).

``reply(250, "2.1.0", "Ok")`` → ``b"250 2.1.0 Ok\\r\\n"``; a list of lines gives a multi-line
reply (``250-…`` … ``250 …``) with the enhanced code on every line, as RFC 2034 §4 asks.
Text is sanitised: CR, LF and other control characters become spaces, so text that echoes
client input can never inject a reply line.

``ehlo_reply()`` builds the EHLO/LHLO answer, which RFC 2034 exempts from enhanced codes;
``ehlo_capabilities()`` lists the keywords in a stable order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["ehlo_capabilities", "ehlo_reply", "reply"]

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str) -> str:
    return _CONTROL.sub(" ", text)


def reply(code: int, enhanced: str | None = None, text: str | Sequence[str] = "") -> bytes:
    """Encode one reply. ``text`` may be a string or a list of lines (multi-line reply).

    Raises ValueError for a code outside 200–599 or an enhanced code whose class does not
    match the reply's first digit (RFC 2034 §4); those are programming errors.
    """
    if not 200 <= code <= 599:
        raise ValueError(f"reply code out of range: {code}")
    if enhanced is not None:
        m = _ENHANCED.match(enhanced)
        if m is None or int(m[1]) != code // 100:
            raise ValueError(f"enhanced status code {enhanced!r} does not fit reply {code}")
    lines = [text] if isinstance(text, str) else list(text)
    if not lines:
        lines = [""]
    out: list[str] = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        sep = " " if i == last else "-"
        body = _clean(line)
        if enhanced is not None:
            body = f"{enhanced} {body}" if body else enhanced
        out.append(f"{code}{sep}{body}\r\n" if body else f"{code}{sep.strip()}\r\n")
    return "".join(out).encode("utf-8")


def ehlo_reply(domain: str, capabilities: Iterable[str], greeting: str = "") -> bytes:
    """The 250 reply to EHLO or LHLO: ``domain [greeting]`` then one keyword per line."""
    first = f"{domain} {greeting}".strip() if greeting else domain
    return reply(250, None, [first, *capabilities])


def ehlo_capabilities(
    *,
    pipelining: bool = True,
    max_message_size: int | None = None,
    starttls: bool = False,
    auth_mechanisms: Sequence[str] = (),
    enhanced_status_codes: bool = True,
    eightbitmime: bool = True,
    dsn: bool = False,
    smtputf8: bool = False,
    chunking: bool = True,
    binarymime: bool = False,
    xclient: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """EHLO keywords for what the server offers.

    ``SIZE`` is always listed: ``SIZE n`` with a limit, bare ``SIZE`` without one
    (RFC 1870 §4). BINARYMIME needs CHUNKING (RFC 3030 §3). ``xclient`` lists the XCLIENT
    attribute names the client may set (Postfix); empty leaves XCLIENT out.
    """
    caps: list[str] = []
    if pipelining:
        caps.append("PIPELINING")
    caps.append(f"SIZE {max_message_size}" if max_message_size else "SIZE")
    if starttls:
        caps.append("STARTTLS")
    if auth_mechanisms:
        caps.append("AUTH " + " ".join(m.upper() for m in auth_mechanisms))
    if enhanced_status_codes:
        caps.append("ENHANCEDSTATUSCODES")
    if eightbitmime:
        caps.append("8BITMIME")
    if dsn:
        caps.append("DSN")
    if smtputf8:
        caps.append("SMTPUTF8")
    if chunking:
        caps.append("CHUNKING")
        if binarymime:
            caps.append("BINARYMIME")
    if xclient:
        caps.append("XCLIENT " + " ".join(a.upper() for a in xclient))
    caps.extend(extra)
    return [_clean(c) for c in caps]
