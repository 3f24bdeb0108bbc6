"""Listening sockets: the listener spec, address parsing, binding, and reconciling on reload.

The master process owns every listening socket. A ``ListenerSpec`` names one Dovecot-style
``inet_listener`` (service, listener name, ``listen`` addresses, port, ssl, haproxy); a
``ListenerSet`` binds the sockets for a tuple of specs and, on reload, keeps every socket whose
address and port are unchanged, binds the new ones and closes the ones that went away.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: Listen backlog for every socket (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = socket.SOMAXCONN


@dataclass(frozen=True)
class ListenerSpec:
    """One ``inet_listener``: ``address`` is Dovecot's ``listen`` (several, space/comma
    separated; ``*`` = all IPv4, ``::`` = all IPv6). ``port`` 0 disables the listener, as in
    Dovecot."""

    service: str
    name: str
    address: str
    port: int
    ssl: bool = False
    haproxy: bool = False


class ListenerError(Exception):
    """A listener could not be set up; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class ResolvedListener:
    """One socket to bind: a spec narrowed to a single address."""

    service: str
    name: str
    family: socket.AddressFamily
    host: str
    port: int
    ssl: bool
    haproxy: bool

    @property
    def key(self) -> tuple[str, int]:
        """Sockets are reused across reloads when this key is unchanged."""
        return (self.host, self.port)


@dataclass
class BoundListener:
    """A bound, listening socket plus the listener it serves (``port`` is the bound port)."""

    service: str
    name: str
    host: str
    port: int
    requested_port: int
    ssl: bool
    haproxy: bool
    sock: socket.socket

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.requested_port)

    def describe(self) -> str:
        """``imap-login/imap 127.0.0.1:143`` (IPv6 addresses in brackets, ``+ssl``/``+haproxy``)."""
        flags = "".join(f for f, on in (("+ssl", self.ssl), ("+haproxy", self.haproxy)) if on)
        return f"{self.service}/{self.name} {format_hostport(self.host, self.port)}{flags}"

    def state(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "name": self.name,
            "address": self.host,
            "port": self.port,
            "requested_port": self.requested_port,
            "ssl": self.ssl,
            "haproxy": self.haproxy,
        }


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_addresses(listen: str) -> list[str]:
    """Split Dovecot's ``listen`` value: addresses separated by spaces and/or commas."""
    return [part for part in listen.replace(",", " ").split() if part]


def resolve_address(address: str) -> list[tuple[socket.AddressFamily, str]]:
    """Turn one ``listen`` word into (family, numeric host) pairs.

    ``*`` is every IPv4 address, ``::`` every IPv6 address, ``[::1]`` may be bracketed, and a
    host name resolves to all of its addresses (like Dovecot).
    """
    if address == "*":
        return [(socket.AF_INET, "0.0.0.0")]
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, str(ip))]
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenerError(f"cannot resolve listen address {address!r}: {exc.strerror}") from exc
    found: list[tuple[socket.AddressFamily, str]] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        pair = (family, str(sockaddr[0]))
        if pair not in found:
            found.append(pair)
    if not found:
        raise ListenerError(f"listen address {address!r} has no IPv4 or IPv6 address")
    return found


def resolve_specs(specs: Iterable[ListenerSpec]) -> list[ResolvedListener]:
    """Expand specs to one entry per socket; port 0 (disabled) yields nothing.

    Raises ListenerError for a bad port or two listeners on the same address and port.
    """
    resolved: list[ResolvedListener] = []
    owners: dict[tuple[str, int], str] = {}
    for spec in specs:
        if spec.port == 0:
            continue
        if not 0 < spec.port < 65536:
            raise ListenerError(f"{spec.service}/{spec.name}: invalid port {spec.port}")
        for family, host in resolve_address_list(spec.address):
            item = ResolvedListener(
                spec.service, spec.name, family, host, spec.port, spec.ssl, spec.haproxy
            )
            owner = f"{spec.service}/{spec.name}"
            if item.key in owners:
                raise ListenerError(
                    f"{format_hostport(host, spec.port)} is used by both {owners[item.key]} "
                    f"and {owner}"
                )
            owners[item.key] = owner
            resolved.append(item)
    return resolved


def resolve_address_list(listen: str) -> list[tuple[socket.AddressFamily, str]]:
    pairs: list[tuple[socket.AddressFamily, str]] = []
    for word in split_addresses(listen):
        for pair in resolve_address(word):
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def bind_socket(
    family: socket.AddressFamily, host: str, port: int, backlog: int = LISTEN_BACKLOG
) -> socket.socket:
    """Bind and listen on one TCP socket (SO_REUSEADDR; IPv6 sockets are IPv6-only so that
    ``*`` and ``::`` can share a port). The socket is non-blocking."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class ListenerChanges:
    added: list[BoundListener]
    removed: list[BoundListener]
    kept: list[BoundListener]


class ListenerSet:
    """The master's listening sockets, keyed by (address, port)."""

    def __init__(self, backlog: int = LISTEN_BACKLOG) -> None:
        self._backlog = backlog
        self._bound: list[BoundListener] = []

    @property
    def listeners(self) -> list[BoundListener]:
        return list(self._bound)

    def apply(self, specs: Iterable[ListenerSpec]) -> ListenerChanges:
        """Make the bound sockets match ``specs``, all or nothing.

        Sockets whose (address, port) stay are kept as they are (their service, name, ssl and
        haproxy flags are updated); new ones are bound; then the ones no longer wanted are
        closed. If anything fails, the sockets bound so far are closed, the set is unchanged and
        ListenerError is raised.
        """
        wanted = resolve_specs(specs)
        existing = {b.key: b for b in self._bound}
        added: list[BoundListener] = []
        result: list[BoundListener] = []
        kept: list[BoundListener] = []
        try:
            for item in wanted:
                old = existing.get(item.key)
                if old is not None:
                    updated = replace(
                        old,
                        service=item.service,
                        name=item.name,
                        ssl=item.ssl,
                        haproxy=item.haproxy,
                    )
                    result.append(updated)
                    kept.append(updated)
                    continue
                try:
                    sock = bind_socket(item.family, item.host, item.port, self._backlog)
                except OSError as exc:
                    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
                    raise ListenerError(
                        f"{item.service}/{item.name}: cannot listen on "
                        f"{format_hostport(item.host, item.port)}: {reason}"
                    ) from exc
                bound = BoundListener(
                    service=item.service,
                    name=item.name,
                    host=item.host,
                    port=int(sock.getsockname()[1]),
                    requested_port=item.port,
                    ssl=item.ssl,
                    haproxy=item.haproxy,
                    sock=sock,
                )
                added.append(bound)
                result.append(bound)
        except BaseException:
            for bound in added:
                bound.sock.close()
            raise
        kept_keys = {b.key for b in result}
        removed = [b for b in self._bound if b.key not in kept_keys]
        for bound in removed:
            bound.sock.close()
        self._bound = result
        return ListenerChanges(added=added, removed=removed, kept=kept)

    def close_all(self) -> list[BoundListener]:
        closed, self._bound = self._bound, []
        for bound in closed:
            bound.sock.close()
        return closed

    def state(self) -> list[dict[str, Any]]:
        return [b.state() for b in self._bound]

    def write_state(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Atomically write ``{"listeners": [...], **extra}`` as JSON to ``path``."""
        payload: dict[str, Any] = dict(extra or {})
        payload["listeners"] = self.state()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
