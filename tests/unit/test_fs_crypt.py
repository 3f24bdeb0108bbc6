"""The crypt fs wrapper: format, key rotation, tamper detection, plain fallback, streaming."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import tracemalloc
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import serialization

from columba.fs.api import Fs, FsCorrupt, FsError, FsNotFound, FsSpec, create_fs_stack
from columba.fs.crypt import MAGIC, CryptFs, key_id_of, load_public_key
from columba.fs.memory import MemoryFs
from columba.fs.posix import PosixFs
from tests.crypt_keys import make_keypair

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def key_id_hex(public_pem: Path) -> str:
    return key_id_of(load_public_key(str(public_pem))).hex()


def crypt_over(parent: Fs, settings: dict[str, str]) -> CryptFs:
    return CryptFs(FsSpec("crypt", settings), parent)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {name: make_keypair(tmp_path / "keys", name) for name in ("old", "new")}


def settings_for(
    keys: dict[str, tuple[Path, Path]], public: str | None, privates: list[str], **extra: str
) -> dict[str, str]:
    out = dict(extra)
    if public is not None:
        out["crypt_global_public_key_file"] = str(keys[public][1])
    for name in privates:
        out[f"crypt_private_key_file/{name}"] = str(keys[name][0])
    return out


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("length", [0, 1, 999, 1000, 1001, 2000, 2001, 5555])
def test_roundtrip_and_format(keys: dict[str, tuple[Path, Path]], length: int) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(length))

    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        fs = crypt_over(raw, settings_for(keys, "old", ["old"], fs_crypt_chunk_size="1000"))
        await fs.write("a/bytes", data, {"k": "v"})
        await fs.write("a/stream", chunks(data, 333))
        for name in ("bytes", "stream"):
            path = f"a/{name}"
            assert await fs.read(path) == data
            for size in (1, 7, 1000, 4096):
                parts = [c async for c in fs.read_stream(path, size)]
                assert b"".join(parts) == data
                assert all(0 < len(c) <= size for c in parts)
            assert (await fs.stat(path)).size == length
            sealed = await raw.read(path)
            assert sealed.startswith(MAGIC)
            assert sealed[13:45].hex() == key_id_hex(keys["old"][1])
            if length >= 16:
                assert data[:16] not in sealed
        assert await fs.get_metadata("a/bytes") == {"k": "v"}
        # Same plaintext twice -> different ciphertext (random key and nonce per object).
        assert await raw.read("a/bytes") != await raw.read("a/stream")
        await fs.copy("a/bytes", "b/copy")
        assert await fs.read("b/copy") == data

    run(main())


def test_key_rotation(keys: dict[str, tuple[Path, Path]]) -> None:
    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        before = crypt_over(raw, settings_for(keys, "old", ["old"]))
        await before.write("m/1", b"sealed to the old key")

        rotated = crypt_over(raw, settings_for(keys, "new", ["old", "new"]))
        assert await rotated.read("m/1") == b"sealed to the old key"
        await rotated.write("m/2", b"sealed to the new key")
        assert (await raw.read("m/2"))[13:45].hex() == key_id_hex(keys["new"][1])
        assert await rotated.read("m/2") == b"sealed to the new key"

        only_new = crypt_over(raw, settings_for(keys, "new", ["new"]))
        assert await only_new.read("m/2") == b"sealed to the new key"
        with pytest.raises(FsError) as info:
            await only_new.read("m/1")
        assert key_id_hex(keys["old"][1]) in str(info.value)

    run(main())


def test_wrong_key_names_key_id_never_key_material(keys: dict[str, tuple[Path, Path]]) -> None:
    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        await crypt_over(raw, settings_for(keys, "old", ["old"])).write("x", b"secret mail")
        wrong = crypt_over(raw, settings_for(keys, "new", ["new"]))
        errors: list[str] = []
        with pytest.raises(FsError) as info:
            await wrong.read("x")
        errors.append(str(info.value))
        with pytest.raises(FsError) as info:
            async for _ in wrong.read_stream("x"):
                pass
        errors.append(str(info.value))
        old_id = key_id_hex(keys["old"][1])
        secrets = []
        for name in ("old", "new"):
            pem = keys[name][0].read_bytes()
            key = serialization.load_pem_private_key(pem, None)
            der = key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            secrets += [pem.decode(), der.hex(), der[-32:].hex()]
        for text in errors:
            assert old_id in text
            assert "secret mail" not in text
            for secret in secrets:
                assert secret not in text

    run(main())


@pytest.mark.parametrize(
    "where",
    ["magic", "version", "chunk_size", "key_id", "ephemeral", "wrapped", "nonce", "body", "tag"],
)
def test_tamper_detection(keys: dict[str, tuple[Path, Path]], where: str) -> None:
    data = bytes(range(256)) * 20  # 5120 bytes: 6 chunks of 1000

    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        fs = crypt_over(raw, settings_for(keys, "old", ["old"], fs_crypt_chunk_size="1000"))
        await fs.write("t", data)
        sealed = bytearray(await raw.read("t"))
        offsets = {
            "magic": 0,
            "version": 8,
            "chunk_size": 12,
            "key_id": 20,
            "ephemeral": 50,
            "wrapped": 120,
            "nonce": 160,
            "body": 2000,
            "tag": len(sealed) - 1,
        }
        sealed[offsets[where]] ^= 0x01
        await raw.write("t", bytes(sealed))
        # past the header's identification a broken object is FsCorrupt (IMAP CORRUPTION)
        expected = FsError if where in ("magic", "version", "key_id") else FsCorrupt
        with pytest.raises(expected):
            await fs.read("t")
        with pytest.raises(expected):
            async for _ in fs.read_stream("t", 100):
                pass

    run(main())


def test_truncation_reorder_and_extension(keys: dict[str, tuple[Path, Path]]) -> None:
    data = bytes(range(256)) * 20

    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        fs = crypt_over(raw, settings_for(keys, "old", ["old"], fs_crypt_chunk_size="1000"))
        await fs.write("t", data)
        sealed = await raw.read("t")
        header = 166
        chunk = 1016
        variants = {
            "cut at chunk boundary": sealed[: header + 3 * chunk],
            "cut mid chunk": sealed[: header + 3 * chunk + 500],
            "cut in header": sealed[:100],
            "header only": sealed[:header],
            "swapped chunks": sealed[:header]
            + sealed[header + chunk : header + 2 * chunk]
            + sealed[header : header + chunk]
            + sealed[header + 2 * chunk :],
            "appended": sealed + b"\0" * 16,
        }
        for name, blob in variants.items():
            await raw.write("v", blob)
            with pytest.raises(FsError):
                await fs.read("v")
            with pytest.raises(FsError):
                async for _ in fs.read_stream("v", 4096):
                    pass
            assert name  # (for the failure report)

    run(main())


def test_plain_fallback(keys: dict[str, tuple[Path, Path]]) -> None:
    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        for body in (b"From: a@example.com\r\n\r\nplain\r\n", b"", b"CLM", b"x"):
            await raw.write("plain", body)
            yes = crypt_over(
                raw, settings_for(keys, "old", ["old"], fs_crypt_read_plain_fallback="yes")
            )
            assert await yes.read("plain") == body
            assert b"".join([c async for c in yes.read_stream("plain", 3)]) == body
            assert (await yes.stat("plain")).size == len(body)
            no = crypt_over(raw, settings_for(keys, "old", ["old"]))  # default: no
            with pytest.raises(FsError):
                await no.read("plain")
            with pytest.raises(FsError):
                async for _ in no.read_stream("plain"):
                    pass
            with pytest.raises(FsError):
                await no.stat("plain")
        with pytest.raises(FsNotFound):
            await no.read("missing")

    run(main())


def test_without_keys_passes_through(tmp_path: Path) -> None:
    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        fs = crypt_over(raw, {})
        await fs.write("p", b"plain text")
        assert await raw.read("p") == b"plain text"
        assert await fs.read("p") == b"plain text"
        assert (await fs.stat("p")).size == 10

    run(main())


def test_private_key_only_refuses_writes(keys: dict[str, tuple[Path, Path]]) -> None:
    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        await crypt_over(raw, settings_for(keys, "old", ["old"])).write("x", b"data")
        reader = crypt_over(raw, settings_for(keys, None, ["old"]))
        assert await reader.read("x") == b"data"
        with pytest.raises(FsError):
            await reader.write("y", b"would be plaintext")
        assert not await raw.exists("y")

    run(main())


def test_password_protected_key_and_bare_setting(tmp_path: Path) -> None:
    private, public = make_keypair(tmp_path, "pw", password="s3cret-pass")

    async def main() -> None:
        raw = MemoryFs(FsSpec("memory"))
        fs = crypt_over(
            raw,
            {
                "crypt_global_public_key_file": str(public),
                "crypt_private_key_file": str(private),
                "crypt_private_key_password": "s3cret-pass",
            },
        )
        await fs.write("x", b"data")
        assert await fs.read("x") == b"data"

    run(main())
    with pytest.raises(FsError) as info:
        crypt_over(
            MemoryFs(FsSpec("memory")),
            {"crypt_private_key_file/k": str(private), "crypt_private_key_password/k": "Bad-Pw-42"},
        )
    assert "Bad-Pw-42" not in str(info.value)
    with pytest.raises(FsError):
        crypt_over(MemoryFs(FsSpec("memory")), {"crypt_global_public_key_file": str(private)})
    with pytest.raises(FsError):
        crypt_over(MemoryFs(FsSpec("memory")), {"crypt_private_key_file/x": "/nonexistent.pem"})


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_keys_made_by_openssl(tmp_path: Path) -> None:
    private = tmp_path / "k.pem"
    public = tmp_path / "pub.pem"
    gen = subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey"],
        capture_output=True,
        check=True,
    )
    subprocess.run(
        ["openssl", "pkey", "-out", str(private)], input=gen.stdout, capture_output=True, check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
        capture_output=True,
        check=True,
    )

    async def main() -> None:
        fs = crypt_over(
            MemoryFs(FsSpec("memory")),
            {
                "crypt_global_public_key_file": str(public),
                "crypt_private_key_file/main": str(private),
            },
        )
        await fs.write("o", b"hello")
        assert await fs.read("o") == b"hello"

    run(main())


def test_streams_20mb_in_bounded_memory(keys: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    total = 20

    async def source() -> AsyncIterator[bytes]:
        for i in range(total):
            yield block[i:] + block[:i]

    async def main() -> None:
        parent = PosixFs(FsSpec("posix", {"fs_posix_prefix": str(tmp_path / "objects")}))
        fs = crypt_over(parent, settings_for(keys, "old", ["old"]))
        expected = hashlib.sha256()
        for i in range(total):
            expected.update(block[i:] + block[:i])
        tracemalloc.start()
        try:
            await fs.write("big", source())
            _, write_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            digest = hashlib.sha256()
            async for chunk in fs.read_stream("big", 256 * 1024):
                digest.update(chunk)
            _, read_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert digest.hexdigest() == expected.hexdigest()
        assert write_peak < 8 << 20, write_peak
        assert read_peak - base < 8 << 20, read_peak - base
        assert (await fs.stat("big")).size == total << 20
        sealed_size = (await parent.stat("big")).size
        assert total << 20 < sealed_size < (total << 20) + 20_000

    run(main())


def test_registered_in_stacks(keys: dict[str, tuple[Path, Path]]) -> None:
    async def main() -> None:
        fs = create_fs_stack(
            [FsSpec("crypt", settings_for(keys, "old", ["old"])), FsSpec("memory")]
        )
        assert isinstance(fs, CryptFs)
        await fs.write("z", b"1")
        assert await fs.read("z") == b"1"

    run(main())
