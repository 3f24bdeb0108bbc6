"""Not-authenticated state: STARTTLS, LOGIN and AUTHENTICATE (SASL PLAIN and LOGIN, with
SASL-IR), and what a successful login does (userdb lookup, opening the user's storage, the
login log line).

Plaintext credentials are refused with ``NO [PRIVACYREQUIRED]`` unless
:func:`columba.auth.cleartext.plaintext_allowed` says the connection may carry them. A failed
login waits ``AuthResult.delay`` before ``NO [AUTHENTICATIONFAILED] Authentication failed.``;
internal failures answer ``NO [UNAVAILABLE]``. Passwords are never logged.
"""

from __future__ import annotations

import asyncio
import base64

from columba.imap.capability import AUTH_MECHANISMS, capability_code
from columba.imap.session import (
    ALREADY_SENT,
    CommandError,
    ConnectionDone,
    ImapSession,
    Reply,
    State,
    log_event,
)
from columba.proto.imap import commands as c
from columba.proto.imap.events import AuthenticateLine, ProtocolError
from columba.proto.imap.response import continuation
from columba.storage.api import StorageError

__all__ = ["authenticate", "login", "sasl_step", "starttls"]

AUTH_FAILED = Reply("NO", "Authentication failed.", "AUTHENTICATIONFAILED")
PRIVACY_REQUIRED = Reply(
    "NO",
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    "PRIVACYREQUIRED",
)
TEMP_FAILURE = Reply("NO", "Temporary authentication failure.", "UNAVAILABLE")


async def starttls(session: ImapSession, cmd: c.StartTlsCommand) -> Reply:
    if session.tls:
        return Reply("BAD", "TLS is already active.")
    if session.tls_context is None:
        return Reply("BAD", "TLS support isn't enabled.")
    session.tagged(cmd.tag, "OK", "Begin TLS negotiation now.")
    await session.flush()
    # Anything the client pipelined behind STARTTLS was sent in the clear: drop it.
    session.parser.take_buffered()
    await session.start_tls()
    session.push_events(session.parser.resume())
    return ALREADY_SENT


async def login(session: ImapSession, cmd: c.LoginCommand) -> Reply:
    if not session.plaintext_allowed:
        return PRIVACY_REQUIRED
    return await finish_login(session, cmd.username, cmd.password, "LOGIN")


async def sasl_step(session: ImapSession, challenge: bytes) -> bytes:
    """Send ``+ base64(challenge)`` and read the client's decoded response."""
    session.write(continuation(base64.b64encode(challenge).decode("ascii")))
    session.push_events(session.parser.expect_raw_line())
    event = await session.next_event()
    if event is None:
        raise ConnectionDone
    if isinstance(event, AuthenticateLine):
        if event.cancelled:
            raise CommandError("BAD", "Authentication aborted by client.")
        try:
            return event.decode()
        except ValueError:
            raise CommandError("BAD", "Invalid base64 data in continued response.") from None
    if isinstance(event, ProtocolError):
        raise CommandError("BAD", event.message)
    raise CommandError("BAD", "Unexpected input during authentication.")


async def authenticate(session: ImapSession, cmd: c.AuthenticateCommand) -> Reply:
    mech = cmd.mechanism.upper()
    if mech not in AUTH_MECHANISMS:
        return Reply("NO", "Unsupported authentication mechanism.")
    if not session.plaintext_allowed:
        return PRIVACY_REQUIRED
    if mech == "PLAIN":
        response = cmd.initial_response
        if response is None:
            response = await sasl_step(session, b"")
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return Reply("BAD", "Invalid AUTHENTICATE PLAIN response.")
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            # no master users here
            return await _failed(session, _text(authcid), "PLAIN", "authorization id differs")
        return await finish_login(session, _text(authcid), _text(password), "PLAIN")
    # LOGIN: "Username:" then "Password:" (RFC draft-murchison-sasl-login)
    user = cmd.initial_response
    if user is None or user == b"":
        user = await sasl_step(session, b"Username:")
    password = await sasl_step(session, b"Password:")
    return await finish_login(session, _text(user), _text(password), "LOGIN")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


async def _failed(
    session: ImapSession, user: str, method: str, reason: str, delay: float = 0.0
) -> Reply:
    if delay > 0:
        await asyncio.sleep(delay)
    log_event(
        "imap_login_failed",
        user=user[:100],
        method=method,
        reason=reason,
        rip=session.info.remote_ip,
        lip=session.info.local_ip,
        session=session.info.session_id,
    )
    return AUTH_FAILED


async def finish_login(session: ImapSession, username: str, password: str, method: str) -> Reply:
    """Authenticate, look the user up, open their mail; the tagged reply."""
    from columba.auth.service import AuthError, AuthRequest

    authenticator = session.authenticator
    storage = session.storage
    if authenticator is None or storage is None:
        log_event("imap_login_failed", reason="authentication not configured", user=username[:100])
        return TEMP_FAILURE
    secured = session.secured
    request = AuthRequest(
        username=username,
        password=password,
        mechanism=method,
        protocol="imap",
        remote_ip=session.info.remote_ip,
        local_ip=session.info.local_ip,
        secured=secured,
        session=session.info.session_id,
    )
    result = await authenticator.authenticate(request)
    if not result.ok:
        if result.temporary:
            log_event(
                "imap_login_failed",
                user=result.user[:100],
                method=method,
                reason=result.reason,
                session=session.info.session_id,
            )
            return TEMP_FAILURE
        return await _failed(session, result.user or username, method, result.reason, result.delay)
    try:
        info = await authenticator.lookup_user(result.user)
    except AuthError as exc:
        log_event(
            "imap_login_failed", user=result.user, reason=str(exc), session=session.info.session_id
        )
        return TEMP_FAILURE
    if info is None:
        return await _failed(session, result.user, method, "user not found from userdb")
    try:
        user = await storage.open_user(info)
    except StorageError as exc:
        log_event(
            "imap_login_failed",
            user=result.user,
            reason=f"storage: {exc}",
            session=session.info.session_id,
        )
        return Reply("NO", "Temporary failure opening the mailbox storage.", "UNAVAILABLE")
    session.user = user
    session.username = info.username
    session.state = State.AUTHENTICATED
    log_event(
        "imap_login",
        user=info.username,
        method=method,
        rip=session.info.remote_ip,
        lip=session.info.local_ip,
        secured="TLS" if session.tls else ("secured" if secured else "no"),
        session=session.info.session_id,
    )
    return Reply("OK", "Logged in", capability_code(session))
