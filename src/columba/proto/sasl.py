"""Server side of SASL mechanisms, sans-IO: PLAIN, LOGIN and CRAM-MD5.

A mechanism object runs one authentication exchange.  The protocol layer
(IMAP AUTHENTICATE, SMTP/Submission AUTH, POP3 AUTH, ManageSieve
AUTHENTICATE) feeds it the client's base64 text exactly as received and gets
back one :data:`SaslStep`:

* :class:`Challenge` - send ``challenge.encoded()`` (``+ <b64>`` in IMAP,
  ``334 <b64>`` in SMTP) and pass the client's next line to ``step()``;
* :class:`Success` - the exchange is complete and well-formed.  For PLAIN and
  LOGIN it carries the cleartext password; for CRAM-MD5 a credential
  verifier.  Either way the caller still has to check it against the user's
  stored password, e.g. ``await asyncio.to_thread(result.check, stored)``
  (``verified`` is True when the mechanism already did so through its
  ``lookup`` callback);
* :class:`Failure` - reply NO/535; ``cancelled`` is set when the client sent
  ``*`` (RFC 4954, RFC 9051 AUTHENTICATE).

``start()``/``step()`` never raise on client input, however malformed
(tests/fuzz/test_sasl_fuzz.py); only a user-supplied ``lookup`` callback can.
Input is bounded: each client line (base64 text, without CRLF) may be at most
``max_line`` bytes, and every mechanism takes a fixed number of steps.

    mech = create("PLAIN")
    result = mech.start(initial_response)       # None when the client sent none
    while isinstance(result, Challenge):
        send(b"+ " + result.encoded())
        result = mech.step(read_line())
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from columba.auth import schemes

__all__ = [
    "MAX_LINE",
    "MECHANISMS",
    "Challenge",
    "CramMD5Mechanism",
    "Failure",
    "LoginMechanism",
    "PlainMechanism",
    "SaslMechanism",
    "SaslStep",
    "Success",
    "create",
    "decode_client_line",
    "decode_initial_response",
    "encode_challenge",
]

#: Default bound on one client line (base64 text, without CRLF).  Dovecot's
#: login processes cap SASL data at 8 KiB as well.
MAX_LINE = 8192

_CANCEL = b"*"


# --------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class Challenge:
    """Server challenge; ``data`` is raw (not base64)."""

    data: bytes

    def encoded(self) -> bytes:
        """The challenge as base64 for the wire (empty challenge -> ``b""``)."""
        return encode_challenge(self.data)


@dataclass(frozen=True, slots=True)
class Success:
    """A complete, well-formed exchange.

    ``authzid`` is the identity to act as ("" when none was given or it equals
    ``authcid``); ``authcid`` is the identity whose credentials were
    presented.  Exactly one of ``password`` (PLAIN, LOGIN) and ``verifier``
    (CRAM-MD5: takes the stored ``{SCHEME}...`` value) is set.  Neither is in
    ``repr()``.
    """

    mechanism: str
    authcid: str
    authzid: str = ""
    password: str | None = field(default=None, repr=False)
    verifier: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)
    verified: bool = False

    def check(
        self, stored: str, *, allow_weak: bool = False, default_scheme: str = "CRYPT"
    ) -> bool:
        """Check the presented credentials against the stored password.

        CPU-heavy for slow schemes: run it with ``asyncio.to_thread``.  Raises
        :class:`columba.auth.schemes.PasswordSchemeError` when ``stored`` is
        unusable (unknown/weak scheme, or no CRAM-MD5 credentials derivable).
        """
        if self.password is not None:
            return schemes.verify(
                stored,
                self.password,
                user=self.authcid,
                allow_weak=allow_weak,
                default_scheme=default_scheme,
            )
        if self.verifier is not None:
            return self.verifier(stored)
        return False


@dataclass(frozen=True, slots=True)
class Failure:
    """The exchange failed; ``reason`` is for logs, not necessarily for the client."""

    reason: str
    cancelled: bool = False


SaslStep = Challenge | Success | Failure


# --------------------------------------------------------------------------
# base64 helpers


def encode_challenge(data: bytes) -> bytes:
    """Base64 for a server challenge (RFC 4648, padded, no line breaks)."""
    return base64.b64encode(data)


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def _strict_b64(text: bytes) -> bytes | None:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def decode_client_line(line: bytes, *, max_line: int = MAX_LINE) -> bytes | Failure:
    """Decode a client response line (a trailing CRLF/LF is ignored).

    ``*`` cancels (``Failure(cancelled=True)``); an empty line is a
    zero-length response; anything that is not strict, padded base64 - or is
    longer than ``max_line`` - is a Failure.
    """
    if not isinstance(line, bytes | bytearray | memoryview):
        return Failure("client response is not bytes")
    text = _strip_eol(bytes(line))
    if len(text) > max_line:
        return Failure("client response line too long")
    if text == _CANCEL:
        return Failure("authentication cancelled by client", cancelled=True)
    decoded = _strict_b64(text)
    if decoded is None:
        return Failure("invalid base64 in client response")
    return decoded


def decode_initial_response(
    initial_response: bytes | None, *, max_line: int = MAX_LINE
) -> bytes | Failure | None:
    """Decode a SASL-IR / ``AUTH mech <ir>`` initial response.

    None stays None (no initial response); ``=`` is the zero-length response
    (RFC 4954, RFC 4959); otherwise strict base64.  ``*`` is not a cancel
    here, just invalid base64.
    """
    if initial_response is None:
        return None
    if not isinstance(initial_response, bytes | bytearray | memoryview):
        return Failure("initial response is not bytes")
    text = _strip_eol(bytes(initial_response))
    if len(text) > max_line:
        return Failure("initial response too long")
    if text == b"=":
        return b""
    if text == b"":
        # RFC 4954: an empty initial response must be sent as "="
        return Failure("invalid empty initial response (use '=')")
    decoded = _strict_b64(text)
    if decoded is None:
        return Failure("invalid base64 in initial response")
    return decoded


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------
# mechanisms


class SaslMechanism:
    """One server-side authentication exchange (base class).

    Subclasses implement ``_initial`` (decoded initial response or None) and
    ``_continue`` (decoded client data).  The base class does the decoding,
    bounds, cancel handling and state checks, so results are always a
    :data:`SaslStep`.
    """

    name: ClassVar[str] = ""
    #: True if the password crosses the wire in cleartext (needs TLS, or
    #: ``auth_allow_cleartext``).
    cleartext: ClassVar[bool] = False
    #: Maximum number of client responses after ``start()``.
    max_steps: ClassVar[int] = 1

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._started = False
        self._finished = False
        self._steps = 0

    @property
    def finished(self) -> bool:
        return self._finished

    def _finish(self, result: SaslStep) -> SaslStep:
        if not isinstance(result, Challenge):
            self._finished = True
        return result

    def start(self, initial_response: bytes | None = None) -> SaslStep:
        """Begin the exchange; ``initial_response`` is the base64 text or None."""
        if self._started:
            return self._finish(Failure("authentication exchange already started"))
        self._started = True
        decoded = decode_initial_response(initial_response, max_line=self.max_line)
        if isinstance(decoded, Failure):
            return self._finish(decoded)
        return self._finish(self._initial(decoded))

    def step(self, client_line: bytes) -> SaslStep:
        """Process one client response line (base64 text, or ``*`` to cancel)."""
        if not self._started:
            return Failure("authentication exchange not started")
        if self._finished:
            return Failure("authentication exchange already finished")
        decoded = decode_client_line(client_line, max_line=self.max_line)
        if isinstance(decoded, Failure):
            return self._finish(decoded)
        self._steps += 1
        if self._steps > self.max_steps:
            return self._finish(Failure("too many authentication steps"))
        return self._finish(self._continue(decoded))

    def _initial(self, data: bytes | None) -> SaslStep:
        raise NotImplementedError

    def _continue(self, data: bytes) -> SaslStep:
        raise NotImplementedError


class PlainMechanism(SaslMechanism):
    """RFC 4616 PLAIN: ``[authzid] NUL authcid NUL passwd``.

    Exactly two NULs; all three parts UTF-8; authcid and passwd non-empty.  An
    authzid equal to the authcid is the same as none (Dovecot does the same).
    No initial response (or ``=``) gets an empty challenge first.
    """

    name = "PLAIN"
    cleartext = True
    max_steps = 1

    def _initial(self, data: bytes | None) -> SaslStep:
        if not data:
            return Challenge(b"")
        return self._continue(data)

    def _continue(self, data: bytes) -> SaslStep:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return Failure("invalid PLAIN message: expected exactly two NULs")
        authzid_raw, authcid_raw, password_raw = parts
        authzid, authcid, password = _utf8(authzid_raw), _utf8(authcid_raw), _utf8(password_raw)
        if authzid is None or authcid is None or password is None:
            return Failure("invalid PLAIN message: not UTF-8")
        if not authcid:
            return Failure("invalid PLAIN message: empty authentication identity")
        if not password:
            return Failure("invalid PLAIN message: empty password")
        if authzid == authcid:
            authzid = ""
        return Success(self.name, authcid=authcid, authzid=authzid, password=password)


class LoginMechanism(SaslMechanism):
    """The LOGIN mechanism (draft-murchison-sasl-login): ``Username:``/``Password:``.

    A non-empty initial response is taken as the user name (Dovecot does so),
    so the exchange starts at ``Password:``.
    """

    name = "LOGIN"
    cleartext = True
    max_steps = 2

    USERNAME_PROMPT: ClassVar[bytes] = b"Username:"
    PASSWORD_PROMPT: ClassVar[bytes] = b"Password:"

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line=max_line)
        self._username: str | None = None

    def _initial(self, data: bytes | None) -> SaslStep:
        if not data:
            return Challenge(self.USERNAME_PROMPT)
        self._steps = 1
        return self._continue(data)

    def _continue(self, data: bytes) -> SaslStep:
        text = _utf8(data)
        if text is None:
            return Failure("invalid LOGIN response: not UTF-8")
        if "\0" in text:
            return Failure("invalid LOGIN response: contains NUL")
        if self._username is None:
            if not text:
                return Failure("invalid LOGIN response: empty user name")
            self._username = text
            return Challenge(self.PASSWORD_PROMPT)
        if not text:
            return Failure("invalid LOGIN response: empty password")
        return Success(self.name, authcid=self._username, password=text)


CredentialsLookup = Callable[[str], str | None]


class CramMD5Mechanism(SaslMechanism):
    """RFC 2195 CRAM-MD5: challenge ``<random.time@host>``, response ``user SP hex``.

    The response is verified against stored credentials from which Dovecot's
    CRAM-MD5 HMAC context can be had: ``{CRAM-MD5}``/``{HMAC-MD5}`` or a
    cleartext scheme (:func:`columba.auth.schemes.credentials`).

    With ``lookup`` (user name -> stored password or None) the mechanism
    verifies itself and returns ``Success(verified=True)`` or a Failure;
    without it, the Success carries a ``verifier`` for the caller's own
    (possibly async) lookup: ``result.check(stored)``.
    """

    name = "CRAM-MD5"
    cleartext = False
    max_steps = 1

    def __init__(
        self,
        *,
        hostname: str = "localhost",
        lookup: CredentialsLookup | None = None,
        challenge: bytes | None = None,
        max_line: int = MAX_LINE,
    ) -> None:
        super().__init__(max_line=max_line)
        self._lookup = lookup
        if challenge is None:
            digits = "".join(secrets.choice("0123456789") for _ in range(16))
            challenge = f"<{digits}.{int(time.time())}@{hostname}>".encode()
        self.challenge = challenge

    def _initial(self, data: bytes | None) -> SaslStep:
        if data:
            return Failure("CRAM-MD5 does not take an initial response")
        return Challenge(self.challenge)

    def _continue(self, data: bytes) -> SaslStep:
        if b"\0" in data:
            return Failure("invalid CRAM-MD5 response: NULs in response")
        # user names may contain spaces: the digest follows the rightmost one
        space = data.rfind(b" ")
        if space <= 0:
            return Failure("invalid CRAM-MD5 response: missing user name or digest")
        user = _utf8(data[:space])
        digest_hex = data[space + 1 :].lower()
        if user is None:
            return Failure("invalid CRAM-MD5 response: user name not UTF-8")
        if len(digest_hex) != 32 or any(c not in b"0123456789abcdef" for c in digest_hex):
            return Failure("invalid CRAM-MD5 response: digest is not 32 hex digits")
        response = bytes.fromhex(digest_hex.decode("ascii"))
        challenge = self.challenge

        def verifier(stored: str) -> bool:
            context = schemes.credentials(stored, "CRAM-MD5")
            expected = schemes.cram_md5_digest(context, challenge)
            return hmac.compare_digest(expected, response)

        if self._lookup is None:
            return Success(self.name, authcid=user, verifier=verifier)
        stored = self._lookup(user)
        if stored is None:
            return Failure("authentication failed: unknown user")
        try:
            ok = verifier(stored)
        except schemes.PasswordSchemeError as exc:
            return Failure(f"authentication failed: {exc}")
        if not ok:
            return Failure("authentication failed: password mismatch")
        return Success(self.name, authcid=user, verifier=verifier, verified=True)


MECHANISMS: dict[str, type[SaslMechanism]] = {
    PlainMechanism.name: PlainMechanism,
    LoginMechanism.name: LoginMechanism,
    CramMD5Mechanism.name: CramMD5Mechanism,
}


def create(name: str, **kwargs: object) -> SaslMechanism:
    """A new exchange for mechanism ``name`` (case-insensitive).

    Raises ``KeyError`` for an unknown mechanism (the protocol layer should
    check ``name.upper() in MECHANISMS`` first and answer NO/504).
    """
    cls = MECHANISMS[name.upper()]
    return cls(**kwargs)  # type: ignore[arg-type]
