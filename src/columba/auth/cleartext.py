"""When a client may send a plaintext password (Dovecot's rules).

A connection is *secured* when it is TLS, comes from ``login_trusted_networks``, or comes from
the same IP it connected to (local). Plaintext authentication (LOGIN, AUTH=PLAIN) needs a
secured connection unless ``auth_allow_cleartext = yes``; ``ssl = required`` demands TLS
for every connection that is not from a trusted network.
"""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache

from columba.config.resolve import SettingsView


@cache
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for word in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return tuple(networks)


@lru_cache(maxsize=4096)
def in_networks(ip: str, networks_text: str) -> bool:
    """Is ``ip`` in one of the networks of ``networks_text`` (cached: asked at every greeting
    and login, for the few addresses a server sees most)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in _networks(networks_text))


def is_trusted(view: SettingsView, remote_ip: str) -> bool:
    return in_networks(remote_ip, view.get_str("login_trusted_networks"))


def is_secured(view: SettingsView, *, tls: bool, remote_ip: str, local_ip: str) -> bool:
    return tls or is_trusted(view, remote_ip) or (bool(remote_ip) and remote_ip == local_ip)


def plaintext_allowed(view: SettingsView, *, tls: bool, remote_ip: str, local_ip: str) -> bool:
    """Whether LOGIN / AUTHENTICATE PLAIN may be used on this connection now."""
    if view.get_str("ssl") == "required" and not tls and not is_trusted(view, remote_ip):
        return False
    if view.get_bool("auth_allow_cleartext"):
        return True
    return is_secured(view, tls=tls, remote_ip=remote_ip, local_ip=local_ip)
