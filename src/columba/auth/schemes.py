"""Dovecot-compatible password schemes.

Stored passwords use Dovecot's ``{SCHEME}data`` form, optionally with an
encoding suffix on the scheme name (``{SHA256.HEX}``, ``{SSHA.B64}``,
``{PLAIN.BASE64}``).  The scheme table, default encodings, salt sizes,
round limits and the weak-scheme rules follow Dovecot's lib-auth
(password-scheme.c, password-scheme-crypt.c, password-scheme-pbkdf2.c,
password-scheme-sodium.c, password-scheme-scram.c); hashes produced by
``doveadm pw`` verify here and hashes generated here verify with
``doveadm pw -t`` (see tests/data/doveadm-pw-vectors.json).

Public API::

    generate(scheme, password, *, rounds=None, user="") -> "{SCHEME}..."
    verify(stored, password, *, user="", allow_weak=False, default_scheme="CRYPT") -> bool
    scheme_of(stored, default_scheme="CRYPT") -> "SCHEME[.ENC]"
    needs_cleartext(stored) -> bool
    credentials(stored, scheme) -> bytes        # e.g. the CRAM-MD5 HMAC context
    SCHEMES                                     # read-only registry by name

Errors: :class:`PasswordSchemeError` (a ``ValueError``) for an unknown scheme
(:class:`UnknownSchemeError`, the message names it), a weak scheme refused by
policy (:class:`WeakSchemeError`), a malformed stored value or bad
``rounds``.  A wrong password is never an error: ``verify`` returns False.

Beyond the common schemes this covers everything Debian's ``doveadm pw -l``
lists except OTP (removed in Dovecot 2.4): SCRAM-SHA-1/-256, DIGEST-MD5 (needs
``user``), PLAIN-MD4/-MD5, LDAP-MD5, HMAC-MD5, PLAIN-TRUNC, ARGON2 (=ARGON2ID).
CRYPT verifies bcrypt, SHA-crypt, MD5-crypt and DES through the libraries and
any other crypt(3) format (yescrypt ``$y$`` ...) through the system libcrypt.
Differences from doveadm: out-of-range ``rounds`` raise instead of being
clamped (BLF-CRYPT rounds=40 would otherwise run for years); passwords longer
than :data:`MAX_PASSWORD_BYTES` never verify.

Threading: the functions here are thread-safe: the registry is immutable
after import, the only lazily built object (the libcrypt binding) is created
under a lock, and the libraries used are re-entrant and release the GIL
where they are slow.  Hashing is deliberately CPU-heavy (bcrypt, Argon2,
SHA-crypt, PBKDF2), so callers on an event loop must not call ``verify`` or
``generate`` directly but run them in a worker thread::

    ok = await asyncio.to_thread(schemes.verify, stored, password, user=user)

Weak schemes: Dovecot 2.4 refuses weak schemes unless
``auth_allow_weak_schemes = yes``; here ``verify(..., allow_weak=True)``.
Columba's weak set (:data:`WEAK_SCHEMES`) is Dovecot's (MD5, MD5-CRYPT,
DES-CRYPT, SMD5, PLAIN-MD4, PLAIN-MD5, LDAP-MD5, unsalted SHA/SHA1, and
CRYPT/SHA*-CRYPT entries holding a DES or ``$1$`` hash). As in Dovecot 2.4,
the cleartext schemes (PLAIN, CLEAR, CLEARTEXT, PLAIN-TRUNC) and the
challenge-response ones (CRAM-MD5, HMAC-MD5, DIGEST-MD5) are not affected.
``credentials()`` (used by challenge-response SASL mechanisms) is not subject
to that policy: enabling such a mechanism is the opt-in.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import hashlib
import hmac
import math
import re
import secrets
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

import bcrypt
from argon2 import exceptions as argon2_exceptions
from argon2 import low_level as argon2_low_level
from passlib import hash as passlib_hash
from passlib.crypto.digest import lookup_hash

__all__ = [
    "CRAM_MD5_CONTEXTLEN",
    "MAX_PASSWORD_BYTES",
    "SCHEMES",
    "WEAK_SCHEMES",
    "PasswordScheme",
    "PasswordSchemeError",
    "ScramCredentials",
    "UnknownSchemeError",
    "WeakSchemeError",
    "cram_md5_context",
    "cram_md5_digest",
    "credentials",
    "generate",
    "is_weak",
    "needs_cleartext",
    "parse_scram",
    "scheme_of",
    "system_crypt",
    "verify",
]


class PasswordSchemeError(ValueError):
    """Unknown or refused scheme, malformed stored password, or bad parameters."""


class UnknownSchemeError(PasswordSchemeError):
    """The ``{SCHEME}`` (or its encoding suffix) is not known."""


class WeakSchemeError(PasswordSchemeError):
    """A weak scheme was used for verification without ``allow_weak``."""


class Encoding(Enum):
    NONE = "none"
    BASE64 = "base64"
    HEX = "hex"


@dataclass(frozen=True, slots=True)
class _Params:
    user: str = ""
    rounds: int | None = None
    allow_weak: bool = False


_Generate = Callable[[bytes, _Params], bytes]
_Verify = Callable[[bytes, bytes, _Params], bool]


@dataclass(frozen=True, slots=True)
class PasswordScheme:
    """One entry of :data:`SCHEMES`.

    ``raw_len`` is the decoded length for fixed-size digests (0 = variable);
    when it is set and no suffix is given, hex vs. base64 is guessed from the
    length like Dovecot does.  ``verify_raw`` is None for schemes verified by
    regenerating and comparing (unsalted digests).  ``cleartext`` marks the
    schemes that store the password itself (they can produce any other
    scheme's credentials).
    """

    name: str
    default_encoding: Encoding
    raw_len: int
    weak: bool
    generate_raw: _Generate
    verify_raw: _Verify | None = None
    cleartext: bool = False
    mech_credential: bool = False


# --------------------------------------------------------------------------
# helpers

_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX_RE = re.compile(rb"\A(?:[0-9a-fA-F]{2})*\Z")
_B64_RE = re.compile(rb"\A[A-Za-z0-9+/]*={0,2}\Z")


def _salt_string(length: int) -> str:
    return "".join(secrets.choice(_SALT_CHARS) for _ in range(length))


def _eq(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _b64decode(data: bytes) -> bytes:
    """Base64 as Dovecot stores it: standard alphabet, padding optional."""
    data = data.strip()
    if not _B64_RE.match(data):
        raise PasswordSchemeError("input isn't valid base64 encoded data")
    body = data.rstrip(b"=")
    if len(body) % 4 == 1:
        raise PasswordSchemeError("input isn't valid base64 encoded data")
    try:
        return base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except binascii.Error as exc:
        raise PasswordSchemeError("input isn't valid base64 encoded data") from exc


def _hexdecode(data: bytes) -> bytes | None:
    if not _HEX_RE.match(data):
        return None
    return bytes.fromhex(data.decode("ascii"))


#: Longest password accepted, in UTF-8 bytes (passlib's limit; a guard against
#: hashing huge client input).  Longer passwords never verify.
MAX_PASSWORD_BYTES = 4096


def _password_bytes(password: str) -> bytes | None:
    """UTF-8 bytes of a password, or None if it can never match.

    Dovecot handles passwords as C strings, so a NUL can never be part of
    one; lone surrogates cannot be encoded; see also MAX_PASSWORD_BYTES.
    """
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if b"\0" in raw or len(raw) > MAX_PASSWORD_BYTES:
        return None
    return raw


def _parse_uint(text: bytes) -> int | None:
    """Dovecot's str_to_uint: decimal digits only, fits in 32 bits."""
    if not text or not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= 0xFFFFFFFF else None


def _check_rounds(scheme: str, rounds: int | None, lo: int, hi: int, default: int) -> int:
    if rounds is None or rounds == 0:
        return default
    if not lo <= rounds <= hi:
        # doveadm silently clamps; an API caller asking for BLF-CRYPT rounds=40
        # would otherwise wait for years, so refuse instead.
        raise PasswordSchemeError(f"{scheme} rounds must be between {lo} and {hi}, got {rounds}")
    return rounds


# --------------------------------------------------------------------------
# MD5 internals for the CRAM-MD5 HMAC context.  hashlib does not expose the
# MD5 chaining state, and Dovecot's CRAM-MD5 credentials *are* that state, so
# the compression function is spelled out here (checked against hashlib in
# the tests).

_MASK = 0xFFFFFFFF
_MD5_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_MD5_S = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
_MD5_K = tuple(int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64))
CRAM_MD5_CONTEXTLEN = 32


def _md5_compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        if i < 16:
            f = (b & c) | (~b & d)
            g = i
        elif i < 32:
            f = (d & b) | (~d & c)
            g = (5 * i + 1) % 16
        elif i < 48:
            f = b ^ c ^ d
            g = (3 * i + 5) % 16
        else:
            f = c ^ (b | ~d)
            g = (7 * i) % 16
        f = (f + a + _MD5_K[i] + x[g]) & _MASK
        s = _MD5_S[i]
        a, d, c = d, c, b
        b = (b + (((f << s) | (f >> (32 - s))) & _MASK)) & _MASK
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def _md5_finish(state: tuple[int, int, int, int], data: bytes, prefix_len: int) -> bytes:
    """MD5 digest of (prefix || data), given the state after the 64-byte-aligned prefix."""
    total_bits = ((prefix_len + len(data)) * 8) & 0xFFFFFFFFFFFFFFFF
    msg = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack("<Q", total_bits)
    for off in range(0, len(msg), 64):
        state = _md5_compress(state, msg[off : off + 64])
    return struct.pack("<4I", *state)


def cram_md5_context(password: bytes) -> bytes:
    """Dovecot's CRAM-MD5 credentials: MD5 states after the HMAC opad and ipad blocks."""
    key = hashlib.md5(password).digest() if len(password) > 64 else password
    key = key.ljust(64, b"\0")
    ostate = _md5_compress(_MD5_IV, bytes(k ^ 0x5C for k in key))
    istate = _md5_compress(_MD5_IV, bytes(k ^ 0x36 for k in key))
    return struct.pack("<4I", *ostate) + struct.pack("<4I", *istate)


def cram_md5_digest(context: bytes, challenge: bytes) -> bytes:
    """HMAC-MD5(password, challenge) computed from a 32-byte CRAM-MD5 context."""
    if len(context) != CRAM_MD5_CONTEXTLEN:
        raise PasswordSchemeError("invalid CRAM-MD5 credentials length")
    ostate = struct.unpack("<4I", context[:16])
    istate = struct.unpack("<4I", context[16:])
    inner = _md5_finish((istate[0], istate[1], istate[2], istate[3]), challenge, 64)
    return _md5_finish((ostate[0], ostate[1], ostate[2], ostate[3]), inner, 64)


# --------------------------------------------------------------------------
# crypt(3)

_BLF_ROUNDS = (4, 31, 5)
_SHA2_ROUNDS = (1000, 999_999_999, 5000)
_BLF_PREFIX_LEN = 7 + 22  # "$2y$05$" + 22 salt chars
_BLF_MAX_PASSWORD = 72  # crypt_blowfish ignores everything after 72 bytes
_DES_RE = re.compile(rb"\A[./0-9A-Za-z]{13}\Z")


class _LibCrypt:
    """Thread-safe access to the system crypt_rn()/crypt_r() for formats passlib lacks.

    Dovecot's CRYPT scheme accepts whatever the system crypt(3) supports
    (yescrypt ``$y$`` is Debian's /etc/shadow default).  crypt_rn() and
    crypt_r() keep all state in the caller-supplied buffer, so no lock is
    needed; the buffer is allocated per call.
    """

    _DATA_SIZE = 262144  # >= sizeof(struct crypt_data) for libxcrypt (32 KiB) and glibc (128 KiB)

    def __init__(self) -> None:
        self._fn: Callable[[bytes, bytes], bytes | None] | None = None
        name = ctypes.util.find_library("crypt")
        if name is None:
            return
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return
        size = self._DATA_SIZE
        if hasattr(lib, "crypt_rn"):
            crypt_rn = lib.crypt_rn
            crypt_rn.restype = ctypes.c_char_p
            crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]

            def call_rn(phrase: bytes, setting: bytes) -> bytes | None:
                buf = ctypes.create_string_buffer(size)
                out: bytes | None = crypt_rn(phrase, setting, buf, size)
                return out

            self._fn = call_rn
        elif hasattr(lib, "crypt_r"):
            crypt_r = lib.crypt_r
            crypt_r.restype = ctypes.c_char_p
            crypt_r.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]

            def call_r(phrase: bytes, setting: bytes) -> bytes | None:
                buf = ctypes.create_string_buffer(size)
                out: bytes | None = crypt_r(phrase, setting, buf)
                return out

            self._fn = call_r

    @property
    def available(self) -> bool:
        return self._fn is not None

    def crypt(self, phrase: bytes, setting: bytes) -> bytes | None:
        if self._fn is None or b"\0" in phrase or b"\0" in setting:
            return None
        out = self._fn(phrase, setting)
        if out is None or out.startswith(b"*"):
            return None  # failure token ("*0"/"*1") or NULL: unsupported setting
        return out


_libcrypt_lock = threading.Lock()
_libcrypt_instance: _LibCrypt | None = None


def _libcrypt() -> _LibCrypt:
    global _libcrypt_instance
    with _libcrypt_lock:
        if _libcrypt_instance is None:
            _libcrypt_instance = _LibCrypt()
        return _libcrypt_instance


def system_crypt(password: str, setting: str) -> str | None:
    """crypt(3) through the system library (None if unavailable or unsupported)."""
    pw = _password_bytes(password)
    if pw is None:
        return None
    out = _libcrypt().crypt(pw, setting.encode("ascii", "replace"))
    return None if out is None else out.decode("ascii", "replace")


def _passlib_verify(handler: object, password: bytes, stored: bytes) -> bool:
    try:
        ok: bool = handler.verify(password, stored.decode("ascii"))  # type: ignore[attr-defined]
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise PasswordSchemeError(f"malformed crypt hash: {exc}") from exc
    return ok


def _blf_verify(password: bytes, stored: bytes, _p: _Params) -> bool:
    if not stored:
        return False
    if (
        len(stored) < _BLF_PREFIX_LEN
        or stored[0:2] != b"$2"
        or not 0x61 <= stored[2] <= 0x7A
        or stored[3:4] != b"$"
    ):
        raise PasswordSchemeError("password is not a blowfish password")
    if stored[2:3] not in (b"a", b"b", b"y"):
        raise PasswordSchemeError(f"unsupported bcrypt variant $2{chr(stored[2])}$")
    try:
        return bcrypt.checkpw(password[:_BLF_MAX_PASSWORD], stored)
    except ValueError as exc:
        raise PasswordSchemeError(f"malformed bcrypt hash: {exc}") from exc


def _crypt_verify(password: bytes, stored: bytes, p: _Params) -> bool:
    if len(stored) > 4 and stored[0:2] == b"$2" and stored[3:4] == b"$":
        return _blf_verify(password, stored, p)
    if not stored:
        return False  # crypt("x", "") would "match"; Dovecot refuses
    if len(stored) > 1 and not p.allow_weak:
        if stored[0:1] != b"$":
            raise WeakSchemeError(
                "weak password scheme 'DES-CRYPT' used and refused "
                "(set auth_allow_weak_schemes / allow_weak to allow)"
            )
        if stored[1:2] == b"1":
            raise WeakSchemeError(
                "weak password scheme 'MD5-CRYPT' used and refused "
                "(set auth_allow_weak_schemes / allow_weak to allow)"
            )
    if stored.startswith(b"$1$"):
        return _passlib_verify(passlib_hash.md5_crypt, password, stored)
    if stored.startswith(b"$5$"):
        return _passlib_verify(passlib_hash.sha256_crypt, password, stored)
    if stored.startswith(b"$6$"):
        return _passlib_verify(passlib_hash.sha512_crypt, password, stored)
    if _DES_RE.match(stored):
        return _passlib_verify(passlib_hash.des_crypt, password, stored)
    lib = _libcrypt()
    if not lib.available:
        raise PasswordSchemeError("unsupported crypt format (no system crypt library)")
    out = lib.crypt(password, stored)
    if out is None:
        raise PasswordSchemeError("unsupported crypt format")
    return _eq(out, stored)


def _blf_generate(password: bytes, p: _Params) -> bytes:
    rounds = _check_rounds("BLF-CRYPT", p.rounds, *_BLF_ROUNDS)
    salt = bcrypt.gensalt(rounds=rounds, prefix=b"2b")
    hashed: bytes = bcrypt.hashpw(password[:_BLF_MAX_PASSWORD], b"$2y" + salt[3:])
    return hashed


def _sha_crypt_generate(handler: object, prefix: str) -> _Generate:
    def gen(password: bytes, p: _Params) -> bytes:
        rounds = _check_rounds(f"{prefix}-CRYPT", p.rounds, *_SHA2_ROUNDS)
        out: str = handler.using(  # type: ignore[attr-defined]
            salt=_salt_string(16), rounds=rounds
        ).hash(password)
        if rounds == _SHA2_ROUNDS[2]:
            # like glibc/Dovecot, the default round count is left implicit
            out = out.replace("$rounds=5000$", "$", 1)
        return out.encode("ascii")

    return gen


def _md5_crypt_generate(password: bytes, _p: _Params) -> bytes:
    out: str = passlib_hash.md5_crypt.using(salt=_salt_string(8)).hash(password)
    return out.encode("ascii")


def _md5_crypt_verify(password: bytes, stored: bytes, _p: _Params) -> bool:
    return _passlib_verify(passlib_hash.md5_crypt, password, stored)


def _des_crypt_generate(password: bytes, _p: _Params) -> bytes:
    out: str = passlib_hash.des_crypt.using(salt=_salt_string(2)).hash(password)
    return out.encode("ascii")


# --------------------------------------------------------------------------
# Argon2 (libsodium parameters, like Dovecot's password-scheme-sodium.c)

_ARGON2I_OPS = (4, 6, 8)  # interactive, moderate, sensitive
_ARGON2I_MEM = (32 * 1024, 128 * 1024, 512 * 1024)  # KiB
_ARGON2ID_OPS = (2, 3, 4)
_ARGON2ID_MEM = (64 * 1024, 256 * 1024, 1024 * 1024)  # KiB
_ARGON2_MAX_OPS = 0xFFFFFFFF


def _argon2_generate(kind: argon2_low_level.Type) -> _Generate:
    ops, mem = (
        (_ARGON2I_OPS, _ARGON2I_MEM)
        if kind is argon2_low_level.Type.I
        else (
            _ARGON2ID_OPS,
            _ARGON2ID_MEM,
        )
    )
    name = "ARGON2I" if kind is argon2_low_level.Type.I else "ARGON2ID"
    # libsodium refuses argon2i with fewer than 3 passes; Dovecot raises
    # argon2id's to 3.
    min_ops = 3 if kind is argon2_low_level.Type.I else 1

    def gen(password: bytes, p: _Params) -> bytes:
        rounds = _check_rounds(name, p.rounds, min_ops, _ARGON2_MAX_OPS, ops[0])
        if rounds >= ops[2]:
            memory = mem[2]
        elif rounds >= ops[1]:
            memory = mem[1]
        else:
            memory = mem[0]
        rounds = max(rounds, 3)  # Dovecot works around libsodium 1.0.13 this way
        out: bytes = argon2_low_level.hash_secret(
            password,
            secrets.token_bytes(16),
            time_cost=rounds,
            memory_cost=memory,
            parallelism=1,
            hash_len=32,
            type=kind,
        )
        return out

    return gen


def _argon2_verify(password: bytes, stored: bytes, _p: _Params) -> bool:
    # libsodium's crypto_pwhash_str_verify() accepts both variants whatever
    # the {SCHEME} says, so do the same.
    if stored.startswith(b"$argon2id$"):
        kind = argon2_low_level.Type.ID
    elif stored.startswith(b"$argon2i$"):
        kind = argon2_low_level.Type.I
    else:
        raise PasswordSchemeError("not an argon2i/argon2id hash")
    try:
        return bool(argon2_low_level.verify_secret(stored, password, kind))
    except argon2_exceptions.VerifyMismatchError:
        return False
    except argon2_exceptions.Argon2Error as exc:
        raise PasswordSchemeError(f"malformed argon2 hash: {exc}") from exc


# --------------------------------------------------------------------------
# PBKDF2: Dovecot's own "$1$<salt>$<rounds>$<40 hex>" (SHA-1, 20-byte key)

_PBKDF2_ROUNDS_DEFAULT = 5000


def _pbkdf2_generate(password: bytes, p: _Params) -> bytes:
    rounds = _check_rounds("PBKDF2", p.rounds, 1, 0xFFFFFFFF, _PBKDF2_ROUNDS_DEFAULT)
    salt = _salt_string(16)
    key = hashlib.pbkdf2_hmac("sha1", password, salt.encode("ascii"), rounds, 20)
    return f"$1${salt}${rounds}${key.hex()}".encode("ascii")


def _pbkdf2_verify(password: bytes, stored: bytes, _p: _Params) -> bool:
    if not stored.startswith(b"$1$"):
        raise PasswordSchemeError("invalid PBKDF2 passdb entry prefix")
    fields = stored[3:].split(b"$")
    if len(fields) != 3:
        raise PasswordSchemeError("invalid PBKDF2 passdb entry format")
    salt, rounds_text, hex_key = fields
    rounds = _parse_uint(rounds_text)
    if rounds is None or rounds == 0:
        raise PasswordSchemeError("invalid PBKDF2 passdb entry format")
    key = _hexdecode(hex_key) if len(hex_key) == 40 else None
    if key is None:
        raise PasswordSchemeError("PBKDF2 hash not 160bit hex-encoded")
    return _eq(hashlib.pbkdf2_hmac("sha1", password, salt, rounds, 20), key)


# --------------------------------------------------------------------------
# SCRAM-SHA-1 / SCRAM-SHA-256: "iter,salt_b64,StoredKey_b64,ServerKey_b64"

_SCRAM_MIN_ITER = 4096
_SCRAM_MAX_ITER = 0x7FFFFFFF


def _scram_keys(digest: str, password: bytes, salt: bytes, iters: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac(digest, password, salt, iters)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    return stored_key, server_key


def _scram_generate(digest: str, name: str) -> _Generate:
    def gen(password: bytes, p: _Params) -> bytes:
        iters = _check_rounds(name, p.rounds, _SCRAM_MIN_ITER, _SCRAM_MAX_ITER, _SCRAM_MIN_ITER)
        salt = secrets.token_bytes(16)
        stored_key, server_key = _scram_keys(digest, password, salt, iters)
        return b",".join(
            [
                str(iters).encode("ascii"),
                base64.b64encode(salt),
                base64.b64encode(stored_key),
                base64.b64encode(server_key),
            ]
        )

    return gen


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """Parsed Dovecot SCRAM credentials (for a future SCRAM SASL mechanism)."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


def parse_scram(raw: bytes, digest: str) -> ScramCredentials:
    size = hashlib.new(digest).digest_size
    fields = raw.split(b",")
    if len(fields) != 4:
        raise PasswordSchemeError("invalid SCRAM passdb entry format")
    iters = _parse_uint(fields[0])
    if iters is None or not _SCRAM_MIN_ITER <= iters <= _SCRAM_MAX_ITER:
        raise PasswordSchemeError("invalid SCRAM iteration count in passdb")
    salt = _b64decode(fields[1])
    stored_key = _b64decode(fields[2])
    server_key = _b64decode(fields[3])
    if len(stored_key) != size or len(server_key) != size:
        raise PasswordSchemeError("invalid SCRAM StoredKey/ServerKey in passdb")
    return ScramCredentials(iters, salt, stored_key, server_key)


def _scram_verify(digest: str) -> _Verify:
    def ver(password: bytes, stored: bytes, _p: _Params) -> bool:
        creds = parse_scram(stored, digest)
        stored_key, _ = _scram_keys(digest, password, creds.salt, creds.iterations)
        return _eq(stored_key, creds.stored_key)

    return ver


# --------------------------------------------------------------------------
# salted / unsalted digests

_SALT_LEN = 4  # SSHA, SSHA256, SSHA512, SMD5


def _digest_generate(digest: str) -> _Generate:
    def gen(password: bytes, _p: _Params) -> bytes:
        return hashlib.new(digest, password).digest()

    return gen


def _salted_generate(digest: str) -> _Generate:
    def gen(password: bytes, _p: _Params) -> bytes:
        salt = secrets.token_bytes(_SALT_LEN)
        return hashlib.new(digest, password + salt).digest() + salt

    return gen


def _salted_verify(digest: str, name: str) -> _Verify:
    size = hashlib.new(digest).digest_size

    def ver(password: bytes, stored: bytes, _p: _Params) -> bool:
        if len(stored) <= size:
            raise PasswordSchemeError(f"{name} password is too short")
        return _eq(hashlib.new(digest, password + stored[size:]).digest(), stored[:size])

    return ver


def _md4_generate(password: bytes, _p: _Params) -> bytes:
    # OpenSSL 3 hides MD4 in its legacy provider; passlib ships a fallback.
    digest: bytes = lookup_hash("md4").const(password).digest()
    return digest


def _plain_generate(password: bytes, _p: _Params) -> bytes:
    return password


def _plain_verify(password: bytes, stored: bytes, _p: _Params) -> bool:
    return _eq(password, stored)


def _plain_trunc_generate(password: bytes, _p: _Params) -> bytes:
    # doveadm writes PLAIN-TRUNC without the "<length>-" prefix, which its own
    # verifier then rejects; write the form the verifier expects.
    return str(len(password)).encode("ascii") + b"-" + password


def _plain_trunc_verify(password: bytes, stored: bytes, _p: _Params) -> bool:
    match = re.match(rb"\A([0-9]*)-", stored)
    if match is None:
        raise PasswordSchemeError("PLAIN-TRUNC missing length: prefix")
    trunc_len = int(match.group(1) or b"0")
    body = stored[match.end() :]
    if len(body) == trunc_len and len(password) >= trunc_len:
        return _eq(password[:trunc_len], body)
    return _eq(password, body)


def _cram_md5_generate(password: bytes, _p: _Params) -> bytes:
    return cram_md5_context(password)


def _digest_md5_generate(password: bytes, p: _Params) -> bytes:
    if not p.user:
        raise PasswordSchemeError("DIGEST-MD5 needs the user name (user=...)")
    user, sep, realm = p.user.rpartition("@")
    if not sep:
        user, realm = p.user, ""
    return hashlib.md5(
        user.encode("utf-8") + b":" + realm.encode("utf-8") + b":" + password
    ).digest()


def _md5_verify(password: bytes, stored: bytes, p: _Params) -> bool:
    """{MD5} holds either an MD5-CRYPT hash or a bare PLAIN-MD5 digest."""
    if stored.startswith(b"$1$"):
        return _passlib_verify(passlib_hash.md5_crypt, password, stored)
    raw = _decode(stored, _SCHEME_TABLE["PLAIN-MD5"], None)
    return _eq(hashlib.md5(password).digest(), raw)


# --------------------------------------------------------------------------
# registry


def _s(
    name: str,
    encoding: Encoding,
    raw_len: int,
    generate_raw: _Generate,
    verify_raw: _Verify | None = None,
    *,
    weak: bool = False,
    cleartext: bool = False,
    mech_credential: bool = False,
) -> PasswordScheme:
    return PasswordScheme(
        name, encoding, raw_len, weak, generate_raw, verify_raw, cleartext, mech_credential
    )


_N, _B, _H = Encoding.NONE, Encoding.BASE64, Encoding.HEX
_T = argon2_low_level.Type
# One generator object per algorithm: schemes sharing it are aliases.
_GEN_SHA1 = _digest_generate("sha1")
_GEN_MD5 = _digest_generate("md5")
_GEN_ARGON2ID = _argon2_generate(_T.ID)

_SCHEME_LIST: tuple[PasswordScheme, ...] = (
    # crypt(3) family
    _s("CRYPT", _N, 0, _blf_generate, _crypt_verify),
    _s("BLF-CRYPT", _N, 0, _blf_generate, _blf_verify),
    _s(
        "SHA256-CRYPT",
        _N,
        0,
        _sha_crypt_generate(passlib_hash.sha256_crypt, "SHA256"),
        _crypt_verify,
    ),
    _s(
        "SHA512-CRYPT",
        _N,
        0,
        _sha_crypt_generate(passlib_hash.sha512_crypt, "SHA512"),
        _crypt_verify,
    ),
    _s("DES-CRYPT", _N, 0, _des_crypt_generate, _crypt_verify, weak=True),
    _s("MD5-CRYPT", _N, 0, _md5_crypt_generate, _md5_crypt_verify, weak=True),
    _s("MD5", _N, 0, _md5_crypt_generate, _md5_verify, weak=True),
    # key derivation
    _s("ARGON2I", _N, 0, _argon2_generate(_T.I), _argon2_verify),
    _s("ARGON2ID", _N, 0, _GEN_ARGON2ID, _argon2_verify),
    _s("ARGON2", _N, 0, _GEN_ARGON2ID, _argon2_verify),
    _s("PBKDF2", _N, 0, _pbkdf2_generate, _pbkdf2_verify),
    _s(
        "SCRAM-SHA-1",
        _N,
        0,
        _scram_generate("sha1", "SCRAM-SHA-1"),
        _scram_verify("sha1"),
        mech_credential=True,
    ),
    _s(
        "SCRAM-SHA-256",
        _N,
        0,
        _scram_generate("sha256", "SCRAM-SHA-256"),
        _scram_verify("sha256"),
        mech_credential=True,
    ),
    # salted digests
    _s("SSHA", _B, 0, _salted_generate("sha1"), _salted_verify("sha1", "SSHA")),
    _s("SSHA256", _B, 0, _salted_generate("sha256"), _salted_verify("sha256", "SSHA256")),
    _s("SSHA512", _B, 0, _salted_generate("sha512"), _salted_verify("sha512", "SSHA512")),
    _s("SMD5", _B, 0, _salted_generate("md5"), _salted_verify("md5", "SMD5"), weak=True),
    # unsalted digests
    _s("SHA", _B, 20, _GEN_SHA1, weak=True),
    _s("SHA1", _B, 20, _GEN_SHA1, weak=True),
    _s("SHA256", _B, 32, _digest_generate("sha256")),
    _s("SHA512", _B, 64, _digest_generate("sha512")),
    _s("PLAIN-MD5", _H, 16, _GEN_MD5, weak=True),
    _s("LDAP-MD5", _B, 16, _GEN_MD5, weak=True),
    _s("PLAIN-MD4", _H, 16, _md4_generate, weak=True),
    # cleartext
    _s("PLAIN", _N, 0, _plain_generate, _plain_verify, cleartext=True),
    _s("CLEAR", _N, 0, _plain_generate, _plain_verify, cleartext=True),
    _s("CLEARTEXT", _N, 0, _plain_generate, _plain_verify, cleartext=True),
    _s("PLAIN-TRUNC", _N, 0, _plain_trunc_generate, _plain_trunc_verify),
    # challenge-response mechanism credentials
    _s("CRAM-MD5", _H, CRAM_MD5_CONTEXTLEN, _cram_md5_generate, mech_credential=True),
    _s("HMAC-MD5", _H, CRAM_MD5_CONTEXTLEN, _cram_md5_generate, mech_credential=True),
    _s("DIGEST-MD5", _H, 16, _digest_md5_generate, mech_credential=True),
)

_SCHEME_TABLE: dict[str, PasswordScheme] = {s.name: s for s in _SCHEME_LIST}

#: Read-only registry of supported schemes by (upper-case) Dovecot name.
SCHEMES: Mapping[str, PasswordScheme] = MappingProxyType(_SCHEME_TABLE)

#: Names refused by ``verify`` unless ``allow_weak=True``.
WEAK_SCHEMES: frozenset[str] = frozenset(s.name for s in _SCHEME_LIST if s.weak)

# Schemes whose generator is the same function are aliases (Dovecot's
# password_scheme_is_alias): CRAM-MD5 = HMAC-MD5, SHA = SHA1, PLAIN = CLEAR...
_ALIASES: dict[str, frozenset[str]] = {
    s.name: frozenset(t.name for t in _SCHEME_LIST if t.generate_raw is s.generate_raw)
    for s in _SCHEME_LIST
}


# --------------------------------------------------------------------------
# parsing stored values


def _lookup(name: str) -> tuple[PasswordScheme, Encoding | None]:
    """Scheme plus explicit encoding (None = the scheme's default)."""
    base, dot, suffix = name.partition(".")
    scheme = _SCHEME_TABLE.get(base.upper())
    if scheme is None:
        raise UnknownSchemeError(f"unknown password scheme {name!r}")
    if not dot:
        return scheme, None
    low = suffix.lower()
    if low in ("b64", "base64"):
        return scheme, Encoding.BASE64
    if low == "hex":
        return scheme, Encoding.HEX
    raise UnknownSchemeError(f"unknown password scheme {name!r} (unknown encoding {suffix!r})")


def _split(stored: str, default_scheme: str) -> tuple[str, str]:
    """Dovecot's password_get_scheme(): (scheme name, remaining data)."""
    if stored.startswith("$1$"):
        # bare MD5-CRYPT: $1$<salt>$<password>[$<ignored>]
        dollar = stored.find("$", 3)
        if dollar != -1:
            end = stored.find("$", dollar + 1)
            return "MD5-CRYPT", stored if end == -1 else stored[:end]
    if stored.startswith("{"):
        end = stored.find("}")
        if end != -1:
            return stored[1:end], stored[end + 1 :]
    return default_scheme, stored


def _decode(data: bytes, scheme: PasswordScheme, explicit: Encoding | None) -> bytes:
    """Dovecot's password_decode(): stored text -> raw password bytes."""
    encoding = scheme.default_encoding if explicit is None else explicit
    guessed = False
    if explicit is None and encoding is not Encoding.NONE and scheme.raw_len:
        encoding = Encoding.HEX if len(data) == scheme.raw_len * 2 else Encoding.BASE64
        guessed = True
    raw: bytes | None
    if encoding is Encoding.NONE:
        raw = data
    elif encoding is Encoding.HEX:
        raw = _hexdecode(data)
        if raw is None:
            if not guessed:
                raise PasswordSchemeError("input isn't valid hex encoded data")
            raw = _b64decode(data)
    else:
        raw = _b64decode(data)
    if scheme.raw_len and len(raw) != scheme.raw_len:
        raise PasswordSchemeError(
            f"{scheme.name} input length isn't valid ({len(raw)} instead of {scheme.raw_len})"
        )
    return raw


def _encode(raw: bytes, scheme: PasswordScheme, explicit: Encoding | None) -> str:
    encoding = scheme.default_encoding if explicit is None else explicit
    if encoding is Encoding.HEX:
        return raw.hex()
    if encoding is Encoding.BASE64:
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8")


def _parse(stored: str, default_scheme: str) -> tuple[str, PasswordScheme, Encoding | None, bytes]:
    name, data = _split(stored, default_scheme)
    scheme, explicit = _lookup(name)
    try:
        raw = data.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PasswordSchemeError("stored password is not valid UTF-8 text") from exc
    return name, scheme, explicit, raw


# --------------------------------------------------------------------------
# public API


def scheme_of(stored: str, default_scheme: str = "CRYPT") -> str:
    """The scheme name of ``stored`` (upper-case, with any encoding suffix).

    ``{SHA256.HEX}...`` -> ``"SHA256.HEX"``; a bare ``$1$salt$hash`` is
    ``"MD5-CRYPT"`` like Dovecot; anything without a ``{...}`` prefix gets
    ``default_scheme``.  The name is not checked against :data:`SCHEMES`.
    """
    return _split(stored, default_scheme)[0].upper()


def is_weak(stored: str, default_scheme: str = "CRYPT") -> bool:
    """Would ``verify`` refuse ``stored`` without ``allow_weak``? (Unknown -> error.)"""
    _, scheme, explicit, data = _parse(stored, default_scheme)
    if scheme.weak:
        return True
    if scheme.verify_raw is _crypt_verify:
        raw = _decode(data, scheme, explicit)
        if len(raw) > 4 and raw[0:2] == b"$2" and raw[3:4] == b"$":
            return False
        return len(raw) > 1 and (raw[0:1] != b"$" or raw[1:2] == b"1")
    return False


def generate(scheme: str, password: str, *, rounds: int | None = None, user: str = "") -> str:
    """Hash ``password`` with ``scheme`` and return ``{SCHEME}data``.

    ``scheme`` may carry an encoding suffix (``"SHA256.HEX"``); the prefix is
    written upper-case like doveadm does.  ``rounds`` applies to BLF-CRYPT/
    CRYPT (4-31, default 5), SHA256-CRYPT/SHA512-CRYPT (1000-999999999,
    default 5000), PBKDF2 (default 5000), ARGON2I/ARGON2ID (libsodium ops
    limit, which also picks the memory limit), SCRAM-* (>= 4096); other
    schemes ignore it.  ``user`` is needed by DIGEST-MD5 (``user@realm``).
    CPU-heavy: see the module docstring about threads.
    """
    entry, explicit = _lookup(scheme)
    if rounds is not None and rounds < 0:
        raise PasswordSchemeError(f"rounds must not be negative, got {rounds}")
    pw = _password_bytes(password)
    if pw is None:
        raise PasswordSchemeError(
            "password contains NUL, is not encodable as UTF-8 or is longer than "
            f"{MAX_PASSWORD_BYTES} bytes"
        )
    raw = entry.generate_raw(pw, _Params(user=user, rounds=rounds))
    return "{" + scheme.upper() + "}" + _encode(raw, entry, explicit)


def verify(
    stored: str,
    password: str,
    *,
    user: str = "",
    allow_weak: bool = False,
    default_scheme: str = "CRYPT",
) -> bool:
    """Check ``password`` against a stored ``{SCHEME}data`` value.

    Returns False on mismatch (comparisons are constant-time).  Raises
    :class:`UnknownSchemeError` for an unknown scheme, :class:`WeakSchemeError`
    for a weak scheme without ``allow_weak`` (Dovecot 2.4
    ``auth_allow_weak_schemes``) and :class:`PasswordSchemeError` for a
    malformed stored value.  ``user`` is used by DIGEST-MD5.  CPU-heavy: run it
    with ``asyncio.to_thread`` from async code.
    """
    _, scheme, explicit, data = _parse(stored, default_scheme)
    if scheme.weak and not allow_weak:
        raise WeakSchemeError(
            f"weak password scheme {scheme.name!r} used and refused "
            "(set auth_allow_weak_schemes / allow_weak to allow)"
        )
    raw = _decode(data, scheme, explicit)
    pw = _password_bytes(password)
    if pw is None:
        return False
    params = _Params(user=user, allow_weak=allow_weak)
    if scheme.verify_raw is not None:
        return scheme.verify_raw(pw, raw, params)
    return _eq(scheme.generate_raw(pw, params), raw)


_CHEAP_SCHEMES: frozenset[str] = frozenset(
    {
        "SSHA", "SSHA256", "SSHA512", "SMD5",
        "SHA", "SHA1", "SHA256", "SHA512",
        "PLAIN-MD5", "LDAP-MD5", "PLAIN-MD4",
        "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC",
        "CRAM-MD5", "HMAC-MD5", "DIGEST-MD5",
    }
)  # fmt: skip
"""Schemes whose verification is one or two hash blocks (microseconds, no key stretching):
cheaper to run on the event loop than to hand to a thread."""


def is_cheap(stored: str, default_scheme: str = "CRYPT") -> bool:
    """Can ``verify`` check ``stored`` in microseconds (no rounds, no key derivation)? False
    for the deliberately slow schemes (crypt family, Argon2, PBKDF2, SCRAM) and for values
    that don't parse (``verify`` reports those)."""
    try:
        _, scheme, _, _ = _parse(stored, default_scheme)
    except PasswordSchemeError:
        return False
    return scheme.name in _CHEAP_SCHEMES


def needs_cleartext(stored: str, default_scheme: str = "CRYPT") -> bool:
    """True if ``stored`` can only be checked against a cleartext password.

    Such users can authenticate only with mechanisms that send the password
    (PLAIN, LOGIN).  False for cleartext schemes (PLAIN, CLEARTEXT, ...),
    which can produce any credentials, and for mechanism credentials
    (CRAM-MD5/HMAC-MD5, DIGEST-MD5, SCRAM-*), which their challenge-response
    mechanism uses directly.  Unknown scheme -> :class:`UnknownSchemeError`.
    """
    _, scheme, _, _ = _parse(stored, default_scheme)
    return not (scheme.cleartext or scheme.mech_credential)


def credentials(
    stored: str, scheme: str, *, user: str = "", default_scheme: str = "CRYPT"
) -> bytes:
    """Raw credentials of ``scheme`` (e.g. ``"CRAM-MD5"``) for a stored password.

    Like Dovecot's credentials lookup: a stored value of the same scheme (or
    an alias: CRAM-MD5/HMAC-MD5) is decoded; a cleartext stored value
    (PLAIN, CLEAR, CLEARTEXT, PLAIN-TRUNC) is hashed into ``scheme`` on the
    fly.  For CRAM-MD5 the result is the 32-byte HMAC-MD5 context; feed it to
    :func:`cram_md5_digest`.  Anything else raises
    :class:`PasswordSchemeError`.  Not subject to the weak-scheme policy.
    """
    wanted, wanted_enc = _lookup(scheme)
    if wanted_enc is not None:
        raise PasswordSchemeError("credentials() takes a scheme name without encoding suffix")
    name, have, explicit, data = _parse(stored, default_scheme)
    raw = _decode(data, have, explicit)
    if have.name in _ALIASES[wanted.name]:
        return raw
    if have.cleartext:
        if b"\0" in raw:
            raise PasswordSchemeError("cleartext password contains NUL")
        return wanted.generate_raw(raw, _Params(user=user))
    raise PasswordSchemeError(
        f"stored password scheme {name.upper()!r} cannot provide {wanted.name} credentials"
    )
