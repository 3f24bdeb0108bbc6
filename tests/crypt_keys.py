"""EC key pairs for crypt tests, in the PEM forms the docs' openssl commands produce.

``openssl ecparam -name prime256v1 -genkey | openssl pkey -out k.pem`` gives a PKCS#8
``PRIVATE KEY``; ``openssl pkey -in k.pem -pubout`` a SubjectPublicKeyInfo ``PUBLIC KEY``.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def make_keypair(directory: Path, name: str, password: str = "") -> tuple[Path, Path]:
    """Write ``NAME.pem`` (private) and ``NAME.pub.pem`` (public) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private.chmod(0o600)
    return private, public


def crypt_settings(directory: Path, name: str = "main") -> dict[str, str]:
    """Settings of a crypt layer with one fresh key pair (created once per directory+name)."""
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    if not private.exists():
        private, public = make_keypair(directory, name)
    return {
        "crypt_global_public_key_file": str(public),
        f"crypt_private_key_file/{name}": str(private),
    }
