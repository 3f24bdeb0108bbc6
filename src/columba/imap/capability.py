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

from columba.proto.imap.response import Atom, ResponseCode

__all__ = ["AUTH_MECHANISMS", "POST_LOGIN", "capabilities", "capability_code", "capability_line"]

AUTH_MECHANISMS = ("PLAIN", "LOGIN")

_BASE = ("IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE")

POST_LOGIN: tuple[str, ...] = (
    *_BASE,
    "MULTIAPPEND",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "ESEARCH",
    "SEARCHRES",
    "WITHIN",
    "LIST-STATUS",
    "MOVE",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "STATUS=SIZE",
    "SAVEDATE",
    "OBJECTID",
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
    caps = [*POST_LOGIN, _literal(session)]
    limit = session.append_limit
    caps.append(f"APPENDLIMIT={limit}" if limit is not None else "APPENDLIMIT")
    return caps


def capabilities(session: ImapSession) -> list[str]:
    """What ``CAPABILITY`` answers in the session's current state."""
    return post_login(session) if session.logged_in else pre_login(session)


def capability_code(session: ImapSession) -> ResponseCode:
    """``[CAPABILITY ...]`` for the greeting and the login reply."""
    return ResponseCode("CAPABILITY", *map(Atom, capabilities(session)))


def capability_line(session: ImapSession) -> bytes:
    """``* CAPABILITY ...``."""
    return ("* CAPABILITY " + " ".join(capabilities(session)) + "\r\n").encode("ascii")
