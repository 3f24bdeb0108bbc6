"""IMAP URLs (RFC 5092) naming one message or part, with URLAUTH (RFC 4467) parameters:
parsing, resolution against a base, and formatting.

``imap://user;AUTH=*@host:port/mailbox;UIDVALIDITY=n/;UID=m/;SECTION=s/;PARTIAL=o.l;
EXPIRE=t;URLAUTH=access:mechanism:token``. Accepted forms: absolute (``imap://...``), an
absolute path on the current server (``/mailbox...``) and a path relative to a mailbox
(``;UID=m...``). Mailbox names are percent-encoded UTF-8 (mUTF-7 never appears in URLs).
Only message and part URLs are parsed: a mailbox list or search URL is an error.

:func:`urlauth_rump` gives the text an URLAUTH token signs: the URL as sent, up to and
including ``;URLAUTH=access``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

__all__ = ["ImapUrl", "UrlError", "format_url", "parse_url", "urlauth_rump"]

_PARTIAL_RE = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,10}))?")
_NZ_RE = re.compile(r"[1-9][0-9]{0,9}")
_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{32,}")
_MECH_RE = re.compile(r"[A-Za-z0-9.-]+")
_ACCESS_RE = re.compile(r"(?i)(submit\+|user\+)(.+)|authuser|anonymous")
# bchar without the "/" and ";" separators: what may appear unencoded in a name
_SAFE = "!$&'()*+,=:@~-._"
UINT32_MAX = 0xFFFFFFFF


class UrlError(ValueError):
    """The text isn't an IMAP URL this server understands (the message says why)."""


@dataclass(frozen=True)
class ImapUrl:
    """One parsed IMAP URL; ``None`` for what it leaves out."""

    user: str | None = None
    auth_type: str | None = None
    host: str | None = None
    port: int | None = None
    mailbox: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    section: str | None = None
    partial: tuple[int, int | None] | None = None
    expire: _dt.datetime | None = None
    access: str | None = None
    """``submit+user``, ``user+user``, ``authuser`` or ``anonymous`` (from ``;URLAUTH=``)."""
    mechanism: str | None = None
    token: str | None = None
    relative: bool = False
    """Parsed without ``imap://`` (resolved against a base or the current server)."""

    @property
    def is_urlauth_rump(self) -> bool:
        return self.access is not None and self.mechanism is None

    @property
    def is_urlauth(self) -> bool:
        return self.access is not None and self.mechanism is not None

    def resolve(self, base: ImapUrl) -> ImapUrl:
        """Fill what a relative URL leaves out from *base* (server, then mailbox)."""
        if not self.relative:
            return self
        out = replace(
            self, user=base.user, auth_type=base.auth_type, host=base.host, port=base.port
        )
        if self.mailbox is None:
            out = replace(out, mailbox=base.mailbox, uidvalidity=base.uidvalidity)
        return out


def _decode(text: str, what: str) -> str:
    if "%" in text and not re.fullmatch(r"(?:[^%]|%[0-9A-Fa-f]{2})*", text):
        raise UrlError(f"Invalid %-encoding in {what}")
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise UrlError(f"Invalid UTF-8 in {what}") from exc


def _nz(value: str, what: str) -> int:
    if not _NZ_RE.fullmatch(value) or int(value) > UINT32_MAX:
        raise UrlError(f"Invalid {what}")
    return int(value)


def _expire(value: str) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise UrlError("Invalid EXPIRE date-time") from exc
    if when.tzinfo is None or "T" not in value.upper():
        raise UrlError("Invalid EXPIRE date-time")
    return when


def _server(text: str) -> tuple[str | None, str | None, str, int | None]:
    """``[iuserinfo "@"] host [":" port]`` -> (user, auth type, host, port)."""
    user = auth = None
    if "@" in text:
        info, text = text.rsplit("@", 1)
        if ";" in info:
            info, _, mech = info.partition(";")
            if mech[:5].upper() != "AUTH=" or not mech[5:]:
                raise UrlError("Invalid ;AUTH= in URL")
            auth = _decode(mech[5:], "auth type")
        if info:
            user = _decode(info, "user name")
    port = None
    host = text
    m = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]*)(?::([0-9]{1,5}))?", text)
    if m is None:
        raise UrlError("Invalid host in URL")
    host = m.group(1)
    if m.group(2):
        port = int(m.group(2))
    if not host:
        raise UrlError("Missing host in URL")
    return user, auth, host, port


def _params(url: ImapUrl, segment: str, last: bool) -> ImapUrl:
    """One ``;NAME=value[;...]`` path segment (URLAUTH parameters only in the last)."""
    items = segment.split(";")
    if items[0]:
        raise UrlError("Invalid URL path")
    for position, item in enumerate(items[1:]):
        name, eq, value = item.partition("=")
        name = name.upper()
        if not eq:
            raise UrlError(f"Invalid URL parameter {name}")
        # RFC 5092: ;UID=, ;SECTION= and ;PARTIAL= each open their own "/" path segment;
        # only ;EXPIRE= and ;URLAUTH= follow inside one.
        if (position == 0) == (name in ("EXPIRE", "URLAUTH")):
            raise UrlError(f"Unrecognized IMAP URL extension ;{name}=")
        if name == "UID":
            if url.uid is not None or url.section is not None:
                raise UrlError("Misplaced ;UID=")
            url = replace(url, uid=_nz(value, "UID"))
        elif name == "SECTION":
            if url.uid is None or url.section is not None or url.partial is not None:
                raise UrlError("Misplaced ;SECTION=")
            section = _decode(value, "section")
            if not section:
                raise UrlError("Empty ;SECTION=")
            url = replace(url, section=section)
        elif name == "PARTIAL":
            m = _PARTIAL_RE.fullmatch(value)
            if url.uid is None or url.partial is not None or m is None:
                raise UrlError("Invalid ;PARTIAL=")
            length = int(m.group(2)) if m.group(2) is not None else None
            if int(m.group(1)) > UINT32_MAX or length == 0 or (length or 0) > UINT32_MAX:
                raise UrlError("Invalid ;PARTIAL=")
            url = replace(url, partial=(int(m.group(1)), length))
        elif name == "EXPIRE" and last:
            if url.uid is None or url.expire is not None or url.access is not None:
                raise UrlError("Misplaced ;EXPIRE=")
            url = replace(url, expire=_expire(_decode(value, "EXPIRE")))
        elif name == "URLAUTH" and last:
            if url.uid is None or url.access is not None:
                raise UrlError("Misplaced ;URLAUTH=")
            url = _urlauth(url, value)
        else:
            raise UrlError(f"Unknown URL parameter {name}")
    return url


def _urlauth(url: ImapUrl, value: str) -> ImapUrl:
    access, _, verifier = value.partition(":")
    m = _ACCESS_RE.fullmatch(access)
    if m is None:
        raise UrlError("Invalid URLAUTH access identifier")
    if m.group(1):
        access = m.group(1).lower() + _decode(m.group(2), "access user")
    else:
        access = access.lower()
    if not verifier:
        return replace(url, access=access)
    mech, sep, token = verifier.partition(":")
    if not sep or not _MECH_RE.fullmatch(mech):
        raise UrlError("Invalid URLAUTH mechanism")
    if not _TOKEN_RE.fullmatch(token):
        raise UrlError("Too short URLAUTH token" if len(token) < 32 else "Invalid URLAUTH token")
    return replace(url, access=access, mechanism=mech.upper(), token=token.lower())


def parse_url(text: str) -> ImapUrl:
    """Parse an absolute or relative IMAP message/part URL; UrlError when it isn't one."""
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in text):
        raise UrlError("Invalid character in URL")
    url = ImapUrl()
    path = text
    if text[:7].lower() == "imap://":
        rest = text[7:]
        server, slash, path = rest.partition("/")
        user, auth, host, port = _server(server)
        url = ImapUrl(user=user, auth_type=auth, host=host, port=port)
        if not slash:
            raise UrlError("URL names no message")
        path = "/" + path
    else:
        if "://" in text.split("/", 1)[0]:
            raise UrlError("Not an IMAP URL")
        url = ImapUrl(relative=True)
    if path.startswith("/") and not path.startswith("/;"):
        parts = path[1:].split("/;")
        ref = parts[0]
        uidvalidity = None
        m = re.search(r"(?i);UIDVALIDITY=", ref)
        if m is not None:
            uidvalidity = _nz(ref[m.end() :], "UIDVALIDITY")
            ref = ref[: m.start()]
        if not ref or "?" in ref:
            raise UrlError("URL names no message")
        mailbox = _decode(ref, "mailbox name")
        url = replace(url, mailbox=mailbox, uidvalidity=uidvalidity)
        segments = [";" + p for p in parts[1:]]
    else:
        if not url.relative:
            raise UrlError("URL names no mailbox")
        segments = [(p if p.startswith(";") else "/" + p) for p in path.lstrip("/").split("/")]
    for i, segment in enumerate(segments):
        url = _params(url, segment, i == len(segments) - 1)
    if url.uid is None:
        raise UrlError("URL names no message (;UID= missing)")
    return url


def urlauth_rump(text: str) -> str:
    """The URL text up to and including ``;URLAUTH=access`` (what the token signs)."""
    m = re.search(r"(?i);URLAUTH=[^:;/]*", text)
    if m is None:
        raise UrlError("Not an URLAUTH URL")
    return text[: m.end()]


def _enc(text: str) -> str:
    return quote(text, safe=_SAFE + "/", encoding="utf-8")


def format_url(url: ImapUrl) -> str:
    """The URL as text (absolute when it has a host, else an absolute path)."""
    out = ""
    if url.host is not None:
        out = "imap://"
        if url.user is not None:
            out += quote(url.user, safe=_SAFE.replace("@", "").replace(":", ""))
        if url.auth_type is not None:
            out += ";AUTH=" + url.auth_type
        if url.user is not None or url.auth_type is not None:
            out += "@"
        out += url.host
        if url.port is not None:
            out += f":{url.port}"
    if url.mailbox is not None:
        out += "/" + _enc(url.mailbox)
        if url.uidvalidity is not None:
            out += f";UIDVALIDITY={url.uidvalidity}"
    if url.uid is not None:
        out += f"/;UID={url.uid}"
    if url.section is not None:
        out += "/;SECTION=" + quote(url.section, safe=_SAFE + "/", encoding="utf-8")
    if url.partial is not None:
        origin, length = url.partial
        out += f"/;PARTIAL={origin}" + (f".{length}" if length is not None else "")
    if url.expire is not None:
        out += ";EXPIRE=" + url.expire.isoformat().replace("+00:00", "Z")
    if url.access is not None:
        out += ";URLAUTH=" + url.access
        if url.mechanism is not None and url.token is not None:
            out += f":{url.mechanism.lower()}:{url.token}"
    return out
