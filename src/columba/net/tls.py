"""TLS for listeners: server contexts from ``ssl_*`` settings, and self-signed certificates.

Implicit TLS listeners (``inet_listener imaps { ssl = yes }``) wrap the connection at accept;
STARTTLS upgrades it with ``StreamWriter.start_tls``. Contexts are cached per certificate
files so a worker builds each once. ``make run`` uses :func:`ensure_self_signed` to create a
certificate for the demo server (with the ``cryptography`` package).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from columba.config.resolve import SettingsView

_MIN_VERSION = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
    "ANY": ssl.TLSVersion.MINIMUM_SUPPORTED,
}


class TlsConfigError(Exception):
    """TLS is configured wrongly; the message names the setting."""


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str
    key_file: str
    key_password: str
    min_protocol: str
    cipher_list: str

    @classmethod
    def from_view(cls, view: SettingsView) -> TlsSettings:
        return cls(
            view.get_str("ssl_server_cert_file"),
            view.get_str("ssl_server_key_file"),
            view.get_str("ssl_server_key_password"),
            view.get_str("ssl_min_protocol"),
            view.get_str("ssl_cipher_list"),
        )


def tls_enabled(view: SettingsView) -> bool:
    """Whether TLS is offered at all (``ssl = yes|required`` with a certificate)."""
    return view.get_str("ssl") != "no" and bool(view.get_str("ssl_server_cert_file"))


@cache
def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """An SSLContext for serving; TlsConfigError naming the bad setting."""
    if not settings.cert_file:
        raise TlsConfigError("ssl_server_cert_file is not set")
    if not settings.key_file:
        raise TlsConfigError("ssl_server_key_file is not set")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION.get(settings.min_protocol, ssl.TLSVersion.TLSv1_2)
    try:
        context.set_ciphers(settings.cipher_list)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"ssl_cipher_list: {exc}") from exc
    try:
        context.load_cert_chain(
            settings.cert_file, settings.key_file, settings.key_password or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"ssl_server_cert_file/ssl_server_key_file ({settings.cert_file}): {exc}"
        ) from exc
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str = "localhost") -> None:
    """Create a self-signed certificate and key (mode 0600) unless both exist."""
    if cert_path.exists() and key_path.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
