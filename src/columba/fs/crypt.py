"""Encryption wrapper: every object sealed with its own random AES-256-GCM key.

Global key pair mode, like Dovecot's mail-crypt/fs-crypt: new objects are sealed to the global
public key; any configured private key opens the objects sealed to it, found by key id (the
SHA-256 of the public key's DER SubjectPublicKeyInfo), so keys can rotate: configure the new
public key plus the old and new private keys, and old objects stay readable while new ones use
the new key.

Settings (FsSpec settings are flat; Dovecot's named list
``crypt_global_private_key NAME { crypt_private_key_file = … crypt_private_key_password = … }``
arrives as one entry per key):

* ``crypt_global_public_key_file``: PEM public key (EC, e.g. prime256v1) new objects are sealed to.
* ``crypt_private_key_file/NAME`` and ``crypt_private_key_password/NAME`` (optional): private
  keys.  A bare ``crypt_private_key_file`` (+ ``crypt_private_key_password``) is key ``default``.
* ``fs_crypt_read_plain_fallback`` (default ``no``): read objects that are not encrypted as they
  are; with ``no`` they raise `FsError`.
* ``fs_crypt_chunk_size`` (default 65536): plaintext bytes per authenticated chunk of new objects.

Without any key configured the layer passes everything through unchanged.  With private keys but
no public key, writes fail (never silently plaintext).

Object format (version 1), all integers big-endian::

    magic  b"CLMBCRYP"  version u8 = 1  chunk_size u32
    key_id 32 bytes     eph_len u8      ephemeral public key (X9.62 uncompressed point)
    wrapped object key (32 bytes + 16-byte GCM tag)   nonce_prefix 7 bytes
    chunks: AES-256-GCM(object key, nonce = nonce_prefix | index u32 | last u8, aad = header)

The wrapping key is HKDF-SHA256(ECDH(ephemeral private, global public), info = "columba-crypt
v1 wrap" + header fields), used once (zero nonce) to seal the object key.  The plaintext is cut
into ``chunk_size`` chunks, the last one (possibly empty) flagged in its nonce, so streams are
processed with bounded memory, and truncation (even at a chunk boundary), reordering or any
flipped byte fails authentication -> `FsError`.  The header is the associated data of every
chunk.  Errors name key ids only, never key material.  ``copy`` copies the sealed bytes (the
object key is not bound to the path).  ``stat().size`` is the plaintext size, computed from the
header and the sealed size without decrypting.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsCorrupt,
    FsData,
    FsError,
    FsSpec,
    FsStat,
    FsWrapper,
    aclose,
    aiter_bytes,
    register_fs,
    setting_bool,
    setting_int,
)

__all__ = ["MAGIC", "CryptFs", "key_id_of", "load_public_key"]

MAGIC = b"CLMBCRYP"
VERSION = 1
TAG = 16
KEY_LEN = 32
NONCE_PREFIX_LEN = 7
DEFAULT_CRYPT_CHUNK = 64 * 1024
_MAX_CHUNK = 16 << 20
_FIXED = struct.Struct(">8sBI32sB")  # magic, version, chunk size, key id, ephemeral key length
_WRAP_INFO = b"columba-crypt v1 wrap"
_THREAD_THRESHOLD = 1 << 20


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo (Dovecot's public key id)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def load_public_key(path: str) -> ec.EllipticCurvePublicKey:
    try:
        with open(path, "rb") as f:
            pem = f.read()
        key = serialization.load_pem_public_key(pem)
    except OSError as err:
        raise FsError(f"crypt_global_public_key_file {path}: {err.strerror}") from err
    except ValueError as err:
        raise FsError(f"crypt_global_public_key_file {path}: not a PEM public key") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise FsError(f"crypt_global_public_key_file {path}: not an EC public key")
    return key


def _load_private_key(name: str, path: str, password: str) -> ec.EllipticCurvePrivateKey:
    where = f"crypt private key {name!r} ({path})"
    try:
        with open(path, "rb") as f:
            pem = f.read()
        key = serialization.load_pem_private_key(pem, password.encode() if password else None)
    except OSError as err:
        raise FsError(f"{where}: {err.strerror}") from err
    except (ValueError, TypeError) as err:
        # Messages of cryptography don't contain key bytes, but keep ours generic anyway.
        raise FsError(f"{where}: can't load (wrong password or not a PEM private key)") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise FsError(f"{where}: not an EC private key")
    return key


@dataclass(frozen=True)
class _Header:
    raw: bytes
    chunk_size: int
    key_id: bytes
    ephemeral: bytes
    wrapped: bytes
    nonce_prefix: bytes

    @property
    def length(self) -> int:
        return len(self.raw)


def _header_length(eph_len: int) -> int:
    return _FIXED.size + eph_len + KEY_LEN + TAG + NONCE_PREFIX_LEN


def _parse_header(data: bytes, path: str) -> _Header | None:
    """The header at the start of `data`; None when more bytes are needed.  Raises on garbage."""
    if len(data) < _FIXED.size:
        return None
    magic, version, chunk_size, key_id, eph_len = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise FsCorrupt(f"{path}: not an encrypted object")
    if version != VERSION:
        raise FsError(f"{path}: unsupported crypt format version {version}")
    if not 0 < chunk_size <= _MAX_CHUNK or not 0 < eph_len <= 200:
        raise FsCorrupt(f"{path}: corrupt crypt header")
    total = _header_length(eph_len)
    if len(data) < total:
        return None
    pos = _FIXED.size
    ephemeral = data[pos : pos + eph_len]
    pos += eph_len
    wrapped = data[pos : pos + KEY_LEN + TAG]
    pos += KEY_LEN + TAG
    nonce_prefix = data[pos : pos + NONCE_PREFIX_LEN]
    return _Header(bytes(data[:total]), chunk_size, key_id, ephemeral, wrapped, nonce_prefix)


def _wrap_key(shared: bytes, header_fields: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_LEN, salt=None, info=_WRAP_INFO + header_fields
    ).derive(shared)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def plain_size(sealed_size: int, header_len: int, chunk_size: int) -> int:
    """Plaintext size of a sealed object of `sealed_size` bytes."""
    body = sealed_size - header_len
    if body < TAG:
        raise FsCorrupt("truncated encrypted object")
    chunks = -(-body // (chunk_size + TAG))
    return body - chunks * TAG


class _Sealer:
    """Encrypts one object: `header` first, then `seal(chunk, last)` per plaintext chunk."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        ephemeral = ec.generate_private_key(public_key.curve)
        eph_pub = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        key_id = key_id_of(public_key)
        object_key = AESGCM.generate_key(bit_length=256)
        nonce_prefix = os.urandom(NONCE_PREFIX_LEN)
        fixed = _FIXED.pack(MAGIC, VERSION, chunk_size, key_id, len(eph_pub)) + eph_pub
        wrap = _wrap_key(ephemeral.exchange(ec.ECDH(), public_key), fixed)
        wrapped = AESGCM(wrap).encrypt(b"\0" * 12, object_key, fixed)
        self.header = fixed + wrapped + nonce_prefix
        self._aead = AESGCM(object_key)
        self._prefix = nonce_prefix
        self._index = 0

    def seal(self, chunk: bytes, last: bool) -> bytes:
        out = self._aead.encrypt(_nonce(self._prefix, self._index, last), chunk, self.header)
        self._index += 1
        return out


class _Opener:
    """Decrypts the chunks of one object after its header."""

    def __init__(self, header: _Header, key: ec.EllipticCurvePrivateKey, path: str) -> None:
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, header.ephemeral)
            shared = key.exchange(ec.ECDH(), peer)
        except ValueError as err:
            raise FsCorrupt(f"{path}: corrupt crypt header (ephemeral key)") from err
        fixed = header.raw[: _FIXED.size + len(header.ephemeral)]
        wrap = _wrap_key(shared, fixed)
        try:
            object_key = AESGCM(wrap).decrypt(b"\0" * 12, header.wrapped, fixed)
        except InvalidTag as err:
            raise FsCorrupt(f"{path}: can't unseal the object key (corrupt header)") from err
        self._aead = AESGCM(object_key)
        self._header = header
        self._index = 0
        self.path = path
        self.sealed_chunk = header.chunk_size + TAG

    def open(self, chunk: bytes, last: bool) -> bytes:
        nonce = _nonce(self._header.nonce_prefix, self._index, last)
        try:
            out = self._aead.decrypt(nonce, chunk, self._header.raw)
        except InvalidTag as err:
            what = "truncated or corrupt" if last else "corrupt"
            raise FsCorrupt(f"{self.path}: {what} encrypted object (chunk {self._index})") from err
        self._index += 1
        return out


@register_fs("crypt")
class CryptFs(FsWrapper):
    def __init__(self, spec: FsSpec, parent: Fs) -> None:
        super().__init__(parent)
        s = spec.settings
        self.read_plain_fallback = setting_bool(s, "fs_crypt_read_plain_fallback", False)
        self.chunk_size = setting_int(s, "fs_crypt_chunk_size", DEFAULT_CRYPT_CHUNK)
        if not 0 < self.chunk_size <= _MAX_CHUNK:
            raise FsError(f"fs_crypt_chunk_size: must be 1..{_MAX_CHUNK}")
        # Files are read here, at construction (small and local, like the config itself).
        public_file = s.get("crypt_global_public_key_file", "").strip()
        self.public_key = load_public_key(public_file) if public_file else None
        self.private_keys: dict[bytes, ec.EllipticCurvePrivateKey] = {}
        entries: dict[str, str] = {}
        if s.get("crypt_private_key_file", "").strip():
            entries["default"] = s["crypt_private_key_file"].strip()
        for name, value in s.items():
            if name.startswith("crypt_private_key_file/") and value.strip():
                entries[name.split("/", 1)[1]] = value.strip()
        for name, path in sorted(entries.items()):
            password_key = (
                "crypt_private_key_password"
                if name == "default" and "crypt_private_key_file" in s
                else f"crypt_private_key_password/{name}"
            )
            key = _load_private_key(name, path, s.get(password_key, ""))
            self.private_keys[key_id_of(key.public_key())] = key
        self.enabled = self.public_key is not None or bool(self.private_keys)

    # ------------------------------------------------------------------ write

    async def _sealed(self, data: FsData) -> AsyncIterator[bytes]:
        assert self.public_key is not None
        sealer = _Sealer(self.public_key, self.chunk_size)
        yield sealer.header
        size = self.chunk_size
        buf = bytearray()
        async for piece in aiter_bytes(data):
            buf += piece
            # Keep at least one byte back: only EOF tells which chunk is the last.
            if len(buf) > size:
                cut = (len(buf) - 1) // size * size
                out = [sealer.seal(bytes(buf[i : i + size]), False) for i in range(0, cut, size)]
                del buf[:cut]
                yield b"".join(out)
        yield sealer.seal(bytes(buf), True)

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        if not self.enabled:
            await self.parent.write(path, data, metadata)
            return
        if self.public_key is None:
            raise FsError("crypt: no crypt_global_public_key_file configured for writing")
        await self.parent.write(path, self._sealed(data), metadata)

    # ------------------------------------------------------------------ read

    def _opener(self, header: _Header, path: str) -> _Opener:
        key = self.private_keys.get(header.key_id)
        if key is None:
            raise FsError(
                f"{path}: encrypted with key id {header.key_id.hex()}, "
                "which no configured private key matches"
            )
        return _Opener(header, key, path)

    def _check_plain(self, path: str) -> None:
        if not self.read_plain_fallback:
            raise FsError(f"{path}: not encrypted (fs_crypt_read_plain_fallback = no)")

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        source = self.parent.read_stream(path, chunk_size)
        try:
            if not self.enabled:
                async for chunk in source:
                    yield chunk
                return
            buf = bytearray()
            header: _Header | None = None
            opener: _Opener | None = None
            plain = False
            pending = bytearray()
            async for piece in source:
                if plain:
                    yield piece
                    continue
                buf += piece
                if opener is None:
                    if len(buf) < len(MAGIC) and MAGIC.startswith(bytes(buf)):
                        continue
                    if not bytes(buf).startswith(MAGIC):
                        self._check_plain(path)
                        plain = True
                        yield bytes(buf)
                        buf.clear()
                        continue
                    header = _parse_header(bytes(buf[: _header_length(200)]), path)
                    if header is None:
                        continue
                    opener = self._opener(header, path)
                    del buf[: header.length]
                sealed = opener.sealed_chunk
                if len(buf) > sealed:
                    cut = (len(buf) - 1) // sealed * sealed
                    for i in range(0, cut, sealed):
                        pending += opener.open(bytes(buf[i : i + sealed]), False)
                    del buf[:cut]
                    while len(pending) >= chunk_size:
                        yield bytes(pending[:chunk_size])
                        del pending[:chunk_size]
            if plain:
                return
            if opener is None:
                if len(buf) >= len(MAGIC):  # starts with the magic, header incomplete
                    raise FsCorrupt(f"{path}: truncated encrypted object (header)")
                # Shorter than the magic: a tiny plain object.
                self._check_plain(path)
                if buf:
                    yield bytes(buf)
                return
            if len(buf) < TAG:
                raise FsCorrupt(f"{path}: truncated encrypted object")
            pending += opener.open(bytes(buf), True)
            for start in range(0, len(pending), chunk_size):
                yield bytes(pending[start : start + chunk_size])
        finally:
            await aclose(source)

    async def read(self, path: str) -> bytes:
        data = await self.parent.read(path)
        if not self.enabled:
            return data
        if len(data) >= _THREAD_THRESHOLD:
            return await asyncio.to_thread(self._open_all, data, path)
        return self._open_all(data, path)

    def _open_all(self, data: bytes, path: str) -> bytes:
        if not data.startswith(MAGIC):
            self._check_plain(path)
            return data
        header = _parse_header(data, path)
        if header is None:
            raise FsCorrupt(f"{path}: truncated encrypted object (header)")
        opener = self._opener(header, path)
        view = memoryview(data)[header.length :]
        if len(view) < TAG:
            raise FsCorrupt(f"{path}: truncated encrypted object")
        sealed = opener.sealed_chunk
        out = []
        last_start = (len(view) - 1) // sealed * sealed
        for start in range(0, last_start, sealed):
            out.append(opener.open(bytes(view[start : start + sealed]), False))
        out.append(opener.open(bytes(view[last_start:]), True))
        return b"".join(out)

    async def stat(self, path: str) -> FsStat:
        st = await self.parent.stat(path)
        if not self.enabled:
            return st
        head = bytearray()
        source = self.parent.read_stream(path, 4096)
        try:
            async for piece in source:
                head += piece
                if len(head) >= _header_length(200):
                    break
        finally:
            await aclose(source)
        if not bytes(head).startswith(MAGIC):
            self._check_plain(path)
            return st
        header = _parse_header(bytes(head), path)
        if header is None:
            raise FsCorrupt(f"{path}: truncated encrypted object (header)")
        return FsStat(plain_size(st.size, header.length, header.chunk_size), st.mtime)
