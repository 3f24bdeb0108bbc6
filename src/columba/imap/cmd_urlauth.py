"""URLAUTH (RFC 4467): RESETKEY, GENURLAUTH and URLFETCH (with RFC 5524's BODY, BINARY and
BODYPARTSTRUCTURE options), and the URL resolution CATENATE (RFC 4469) shares.

Each mailbox may have a random access key, stored in its owner's index
(:meth:`~columba.storage.api.MailUser.urlauth_key`). The ``INTERNAL`` mechanism's token is
HMAC-SHA256 of the URL rump (the URL text up to and including ``;URLAUTH=access``) under
that key, in hex. RESETKEY replaces a mailbox's key (or drops every key of the user), so the
URLs made with the old one stop working.

URLAUTH is offered when ``imap_urlauth_host`` is set: URLs must name that host (``*``
accepts any). Access identifiers: ``anonymous`` and ``authuser`` for any logged-in user,
``user+name`` for that user only, ``submit+name`` for nobody here (no submit service is
configured to act for users).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from dataclasses import dataclass

from columba.imap.cmd_binary import UnknownCte, binary_section, literal_prefix
from columba.imap.imap_url import ImapUrl, UrlError, parse_url, urlauth_rump
from columba.imap.session import CommandError, ImapSession, Reply
from columba.proto.imap import commands as c
from columba.proto.imap.response import encode_astring
from columba.storage.api import MailboxNotFound, MailUser, MessageExpunged, StorageError
from columba.storage.mime import ParsedMessage
from columba.storage.mime_imap import write_bodystructure

__all__ = [
    "UrlFailure",
    "UrlPart",
    "genurlauth",
    "resetkey",
    "resolve_catenate_url",
    "urlauth_enabled",
    "urlfetch",
]

MECHANISMS = ("INTERNAL",)
_SECTION_WORDS = ("HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT")


class UrlFailure(Exception):  # noqa: N818 - reads as the condition
    """A URL can't be used; the message says why (BADURL / URLFETCH NIL)."""


@dataclass(frozen=True)
class UrlPart:
    """What a URL names: the section's bytes (partial applied) and how to get the rest."""

    data: bytes
    parsed: ParsedMessage
    raw: bytes


def urlauth_enabled(session: ImapSession) -> bool:
    """URLAUTH is offered (``imap_urlauth_host`` is set)."""
    return bool(session.settings.get_str("imap_urlauth_host"))


def _host_ok(session: ImapSession, host: str | None) -> bool:
    wanted = session.settings.get_str("imap_urlauth_host")
    return host is not None and (wanted == "*" or host.lower() == wanted.lower())


def token(key: bytes, rump: str) -> str:
    """The INTERNAL mechanism's token for *rump*."""
    return hmac.new(key, rump.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_section(section: str) -> None:
    """``section-text`` after an optional part number, as BODY[...] takes it."""
    upper = section.upper()
    path, _, word = upper.partition(" ")
    head = path
    while head and head[0].isdigit():
        num, _, head = head.partition(".")
        if not num.isdigit() or int(num) == 0:
            raise UrlFailure("Invalid section")
    if head and head not in _SECTION_WORDS:
        raise UrlFailure("Invalid section")
    if word and not head.startswith("HEADER.FIELDS"):
        raise UrlFailure("Invalid section")


async def fetch_part(user: MailUser, url: ImapUrl) -> UrlPart:
    """Read the section a resolved URL names from *user*'s mail."""
    assert url.mailbox is not None and url.uid is not None
    if url.section is not None:
        _check_section(url.section)
    try:
        view = await user.open_mailbox(url.mailbox, readonly=True)
    except MailboxNotFound:
        raise UrlFailure(f"Mailbox doesn't exist: {url.mailbox}") from None
    try:
        if url.uidvalidity is not None and url.uidvalidity != view.uidvalidity:
            raise UrlFailure("Invalid UIDVALIDITY")
        if not view.records([url.uid]):
            raise UrlFailure("Message not found")
        try:
            raw = await view.read_message(url.uid)
            parsed = await view.parsed(url.uid)
        except MessageExpunged:
            raise UrlFailure("Message not found") from None
    finally:
        await view.close()
    data = raw[: parsed.size]
    if url.section is not None:
        data = parsed.section_bytes(raw, url.section) or b""
    if url.partial is not None:
        origin, length = url.partial
        data = data[origin:] if length is None else data[origin : origin + length]
    return UrlPart(data, parsed, raw)


def _base(session: ImapSession) -> ImapUrl:
    sel = session.selected
    return ImapUrl(
        user=session.username,
        host=session.settings.get_str("imap_urlauth_host") or None,
        mailbox=sel.view.name if sel is not None else None,
    )


async def _verified_owner(session: ImapSession, url: ImapUrl, text: str) -> MailUser | None:
    """Check a full URLAUTH URL; the owner's MailUser when it isn't the session's user
    (the caller closes it), None when it is."""
    if not urlauth_enabled(session) or not _host_ok(session, url.host):
        raise UrlFailure("Invalid URL: Inappropriate host name")
    if url.user is None:
        raise UrlFailure("Invalid URL: URL lacks user")
    if url.mechanism not in MECHANISMS:
        raise UrlFailure(f"Unsupported URLAUTH mechanism: {url.mechanism}")
    if url.expire is not None and url.expire <= _dt.datetime.now(_dt.UTC):
        raise UrlFailure("URLAUTH has expired")
    access = url.access or ""
    if access.startswith("submit+"):
        raise UrlFailure("Not permitted to use submit URLAUTH")
    if access.startswith("user+") and access[5:] != session.username:
        raise UrlFailure("URLAUTH verification failed")
    owner: MailUser | None = None
    user = session.require_user()
    if url.user != session.username:
        owner = await _open_other(session, url.user)
        user = owner
    try:
        assert url.mailbox is not None
        try:
            key = await user.urlauth_key(url.mailbox)
        except MailboxNotFound:
            key = None
        wanted = token(key, urlauth_rump(text)) if key is not None else ""
        if key is None or not hmac.compare_digest(wanted, url.token or ""):
            raise UrlFailure("URLAUTH verification failed")
    except BaseException:
        if owner is not None:
            await owner.close()
        raise
    return owner


async def _open_other(session: ImapSession, username: str) -> MailUser:
    if session.authenticator is None or session.storage is None:
        raise UrlFailure("URLAUTH verification failed")
    try:
        info = await session.authenticator.lookup_user(username)
    except Exception:
        raise UrlFailure("Temporary failure looking up the user") from None
    if info is None:
        raise UrlFailure("URLAUTH verification failed")
    return await session.storage.open_user(info)


async def _fetch_verified(session: ImapSession, text: str) -> UrlPart:
    try:
        url = parse_url(text)
    except UrlError as exc:
        raise UrlFailure(f"Invalid URL: {exc}") from None
    if url.relative:
        raise UrlFailure("Relative URL not allowed")
    if not url.is_urlauth:
        raise UrlFailure("Invalid URL: Must be a full URLAUTH URL")
    owner = await _verified_owner(session, url, text)
    try:
        return await fetch_part(owner or session.require_user(), url)
    finally:
        if owner is not None:
            await owner.close()


async def resolve_catenate_url(session: ImapSession, text: str) -> bytes:
    """A CATENATE ``URL`` part's data (RFC 4469): a relative URL (``/mailbox/;UID=n``, or
    ``;UID=n`` in the selected mailbox), an absolute one naming the session's user, or a
    full URLAUTH URL. UrlFailure ([BADURL]) when it can't be used."""
    try:
        url = parse_url(text)
    except UrlError as exc:
        raise UrlFailure(f"Invalid IMAP URL: {exc}") from None
    if url.is_urlauth:
        return (await _fetch_verified(session, text)).data
    if url.access is not None:
        raise UrlFailure("Invalid IMAP URL: URLAUTH rump without a verifier")
    if not url.relative:
        if url.user != session.username:
            raise UrlFailure("Invalid IMAP URL: URL names another user")
        if urlauth_enabled(session) and not _host_ok(session, url.host):
            raise UrlFailure("Invalid IMAP URL: Inappropriate host name")
    url = url.resolve(_base(session))
    if url.mailbox is None:
        raise UrlFailure("Invalid IMAP URL: No mailbox selected")
    return (await fetch_part(session.require_user(), url)).data


# ---------------------------------------------------------------------- commands


def _require_urlauth(session: ImapSession) -> None:
    if not urlauth_enabled(session):
        raise CommandError("BAD", "URLAUTH is not enabled.")


async def resetkey(session: ImapSession, cmd: c.ResetKeyCommand) -> Reply:
    _require_urlauth(session)
    user = session.require_user()
    if cmd.mailbox is None:
        await user.reset_urlauth_keys(None)
        return Reply("OK", "All keys removed.")
    if any(m not in MECHANISMS for m in cmd.mechanisms):
        return Reply("NO", "Unsupported URLAUTH mechanism.")
    try:
        await user.reset_urlauth_keys(cmd.mailbox)
    except MailboxNotFound:
        return Reply("NO", f"Mailbox doesn't exist: {cmd.mailbox}")
    return Reply("OK", "Key reset.", "URLMECH INTERNAL")


async def genurlauth(session: ImapSession, cmd: c.GenUrlAuthCommand) -> Reply:
    _require_urlauth(session)
    user = session.require_user()
    out: list[bytes] = []
    for rump, mech in cmd.requests:
        if mech not in MECHANISMS:
            raise CommandError("BAD", f"Unsupported URLAUTH mechanism: {mech}")
        try:
            url = parse_url(rump)
        except UrlError as exc:
            raise CommandError("BAD", f"Invalid URL: {exc}") from None
        if url.relative:
            raise CommandError("BAD", "Invalid URL: Relative URL not allowed")
        if not url.is_urlauth_rump:
            raise CommandError("BAD", "Invalid URL: Must be an URLAUTH rump URL")
        if not _host_ok(session, url.host):
            raise CommandError("BAD", "Invalid URL: Inappropriate host name")
        if url.user != session.username:
            raise CommandError("BAD", f"Not permitted to generate URLAUTH for user {url.user}")
        try:
            await fetch_part(user, url)
            assert url.mailbox is not None
            key = await user.urlauth_key(url.mailbox, create=True)
        except UrlFailure as exc:
            raise CommandError("BAD", f"Invalid URL: {exc}") from None
        except MailboxNotFound:
            raise CommandError(
                "BAD", f"Invalid URL: Mailbox doesn't exist: {url.mailbox}"
            ) from None
        assert key is not None
        full = f"{rump}:internal:{token(key, rump)}"
        out.append(encode_astring(full))
    session.write(b"* GENURLAUTH " + b" ".join(out) + b"\r\n")
    return Reply("OK", "GENURLAUTH completed.")


async def urlfetch(session: ImapSession, cmd: c.UrlFetchCommand) -> Reply:
    _require_urlauth(session)
    for text, opts in cmd.urls:
        head = b"* URLFETCH " + encode_astring(text) + b" "
        try:
            part = await _fetch_verified(session, text)
            body = _urlfetch_data(part, text, opts)
        except (UrlFailure, StorageError) as exc:
            await session.send(head + b"NIL\r\n")
            reason = str(exc).replace('"', "'")
            await session.send(f'* NO Failed to fetch URLAUTH "{text}": {reason}.\r\n'.encode())
            continue
        await session.send(head + body + b"\r\n")
    return Reply("OK", "URLFETCH completed.")


def _urlfetch_data(part: UrlPart, text: str, opts: tuple[str, ...]) -> bytes:
    """The value after the URL: a literal, or RFC 5524's ``(item value ...)``."""
    if not opts:
        return literal_prefix(part.data, b"\x00" in part.data) + part.data
    url = parse_url(text)
    items: list[bytes] = []
    if "BODYPARTSTRUCTURE" in opts:
        items.append(b"BODYPARTSTRUCTURE (" + _bodypartstructure(part.parsed, url.section) + b")")
    if "BINARY" in opts:
        path = _part_path(url.section)
        if path is None:
            raise UrlFailure("BINARY needs a part section")
        try:
            data = binary_section(part.parsed, part.raw, path).data
        except UnknownCte:
            raise UrlFailure("Unknown Content-Transfer-Encoding") from None
        if url.partial is not None:
            origin, length = url.partial
            data = data[origin:] if length is None else data[origin : origin + length]
        items.append(b"BINARY " + literal_prefix(data, True) + data)
    elif "BODY" in opts:
        items.append(b"BODY " + literal_prefix(part.data, b"\x00" in part.data) + part.data)
    return b"(" + b" ".join(items) + b")"


def _bodypartstructure(parsed: ParsedMessage, section: str | None) -> bytes:
    """The extended BODYSTRUCTURE of the part a section names (the message's for none)."""
    path = _part_path((section or "").split(".HEADER")[0].split(".TEXT")[0].split(".MIME")[0])
    part = parsed.part(list(path)) if path else parsed.root
    out = bytearray()
    write_bodystructure(out, part or parsed.root, True)
    return bytes(out)


def _part_path(section: str | None) -> tuple[int, ...] | None:
    if not section:
        return ()
    try:
        return tuple(int(n) for n in section.split("."))
    except ValueError:
        return None
