"""The IMAP capability lists: before login (what the login tier offers) and after login (the
full list, in Dovecot's order where Dovecot has the capability; reference §1.13).

Before login: ``IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN
AUTH=LOGIN``; ``STARTTLS`` only while TLS can still be started, ``LOGINDISABLED`` instead of the
``AUTH=`` mechanisms when plaintext authentication isn't allowed on this connection.
``imap_literal_minus = yes`` replaces LITERAL+ by LITERAL-.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from columba.imap.session import ImapSession

from columba.proto.imap.response import Atom, Raw, ResponseCode

__all__ = ["AUTH_MECHANISMS", "POST_LOGIN", "capabilities", "capability_code", "capability_line"]

AUTH_MECHANISMS = ("PLAIN", "LOGIN")

_BASE = ("IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE")

POST_LOGIN: tuple[str, ...] = (
    *_BASE,
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "STATUS=SIZE",
    "SAVEDATE",
    "OBJECTID",
    "PARTIAL",
)
"""After login, without LITERAL+/LITERAL- and APPENDLIMIT (added per session)."""


def _literal(session: ImapSession) -> str:
    return "LITERAL-" if session.literal_minus else "LITERAL+"


def pre_login(session: ImapSession) -> list[str]:
    caps = [*_BASE, _literal(session)]
    if session.starttls_offered:
        caps.append("STARTTLS")
    if session.plaintext_allowed:
        caps.extend(f"AUTH={m}" for m in AUTH_MECHANISMS)
    else:
        caps.append("LOGINDISABLED")
    return caps


def post_login(session: ImapSession) -> list[str]:
    caps = [*POST_LOGIN, *_session_extensions(session), _literal(session), "NOTIFY"]
    if session.settings.get_str("imap_urlauth_host"):
        caps.extend(("URLAUTH", "URLAUTH=BINARY"))  # RFC 4467, RFC 5524 (Dovecot's place)
    limit = session.append_limit
    caps.append(f"APPENDLIMIT={limit}" if limit is not None else "APPENDLIMIT")
    return caps


def _session_extensions(session: ImapSession) -> list[str]:
    """``COMPRESS=DEFLATE`` (RFC 4978), and ``METADATA`` (RFC 5464; it includes
    METADATA-SERVER, which is therefore not listed apart) with ``imap_metadata = yes``;
    in Dovecot 2.4's order, before LITERAL+."""
    caps = ["COMPRESS=DEFLATE"]
    if session.settings.get_bool("imap_metadata"):
        caps.append("METADATA")
    return caps


def _versions(session: ImapSession, caps: list[str]) -> list[str]:
    """``IMAP4rev2`` (RFC 9051) after IMAP4rev1 with ``imap4rev2_enable = yes``;
    ``UTF8=ACCEPT`` (RFC 6855) after login with ``mail_utf8_extensions = yes`` (Dovecot's
    gate)."""
    if session.settings.get_bool("imap4rev2_enable"):
        caps.insert(caps.index("IMAP4rev1") + 1, "IMAP4rev2")
    if session.logged_in and session.settings.get_bool("mail_utf8_extensions"):
        caps.append("UTF8=ACCEPT")
    return caps


def capabilities(session: ImapSession) -> list[str]:
    """What ``CAPABILITY`` answers in the session's current state."""
    return _versions(session, post_login(session) if session.logged_in else pre_login(session))


_CODES: dict[tuple[str, ...], ResponseCode] = {}
"""``[CAPABILITY ...]`` codes by capability list: a handful of distinct lists per process, each
encoded once (every greeting and login reply carries one)."""


def capability_code(session: ImapSession) -> ResponseCode:
    """``[CAPABILITY ...]`` for the greeting and the login reply."""
    caps = tuple(capabilities(session))
    code = _CODES.get(caps)
    if code is None:
        for cap in caps:
            Atom(cap)  # each one must be a valid atom
        if len(_CODES) >= 64:
            _CODES.clear()
        code = _CODES[caps] = ResponseCode("CAPABILITY", Raw(" ".join(caps).encode("ascii")))
    return code


def capability_line(session: ImapSession) -> bytes:
    """``* CAPABILITY ...``."""
    return ("* CAPABILITY " + " ".join(capabilities(session)) + "\r\n").encode("ascii")
