"""Unit tests for listener parsing/binding/reconciling, the service registry and the worker's
accept loop (all on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from columba.net.connection import ConnectionInfo, ConnectionServer, new_session_id
from columba.net.listeners import (
    BoundListener,
    ListenerError,
    ListenerSet,
    ListenerSpec,
    resolve_address,
    resolve_specs,
    split_addresses,
)
from columba.net.services import (
    ConnectionHandler,
    get_service,
    register_service,
    unavailable_reply,
    unregister_service,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except ConnectionRefusedError:
        return False


def test_split_addresses_accepts_spaces_and_commas() -> None:
    assert split_addresses("*, ::") == ["*", "::"]
    assert split_addresses("127.0.0.1 ::1,10.0.0.1") == ["127.0.0.1", "::1", "10.0.0.1"]
    assert split_addresses("  ") == []


def test_resolve_address_wildcards_and_literals() -> None:
    assert resolve_address("*") == [(socket.AF_INET, "0.0.0.0")]
    assert resolve_address("::") == [(socket.AF_INET6, "::")]
    assert resolve_address("[::1]") == [(socket.AF_INET6, "::1")]
    assert resolve_address("127.0.0.1") == [(socket.AF_INET, "127.0.0.1")]
    assert (socket.AF_INET, "127.0.0.1") in resolve_address("localhost")


def test_resolve_specs_expands_addresses_and_skips_disabled_ports() -> None:
    specs = [
        ListenerSpec("imap-login", "imap", "127.0.0.1 ::1, 127.0.0.1", 143),
        ListenerSpec("imap-login", "imaps", "*", 0, ssl=True),  # port 0 = disabled
    ]
    resolved = resolve_specs(specs)
    assert [(r.name, r.family, r.host, r.port) for r in resolved] == [
        ("imap", socket.AF_INET, "127.0.0.1", 143),
        ("imap", socket.AF_INET6, "::1", 143),
    ]


def test_resolve_specs_rejects_duplicates_and_bad_ports() -> None:
    with pytest.raises(
        ListenerError, match=r"127\.0\.0\.1:143 is used by both imap-login/a and pop3-login/b"
    ):
        resolve_specs(
            [
                ListenerSpec("imap-login", "a", "127.0.0.1", 143),
                ListenerSpec("pop3-login", "b", "127.0.0.1", 143, ssl=True),
            ]
        )
    with pytest.raises(ListenerError, match="invalid port 70000"):
        resolve_specs([ListenerSpec("imap", "x", "127.0.0.1", 70000)])


def test_listener_set_keeps_unchanged_sockets_and_swaps_the_rest(tmp_path: Path) -> None:
    p1, p2, p3 = free_port(), free_port(), free_port()
    listeners = ListenerSet()
    try:
        first = listeners.apply(
            [
                ListenerSpec("imap", "one", "127.0.0.1", p1),
                ListenerSpec("imap", "two", "127.0.0.1", p2),
            ]
        )
        assert [b.port for b in first.added] == [p1, p2] and not first.removed
        kept_sock = first.added[0].sock
        removed_sock = first.added[1].sock
        # a connection accepted on the listener that goes away must survive it
        client = socket.create_connection(("127.0.0.1", p2), timeout=2)
        removed_sock.setblocking(True)
        accepted, _ = removed_sock.accept()
        assert connects(p1) and connects(p2)

        second = listeners.apply(
            [
                ListenerSpec("imap-login", "renamed", "127.0.0.1", p1, ssl=True),
                ListenerSpec("imap", "three", "127.0.0.1", p3),
            ]
        )
        assert [b.sock for b in second.kept] == [kept_sock]  # same socket object, not rebound
        assert second.kept[0].name == "renamed" and second.kept[0].ssl
        assert second.kept[0].service == "imap-login"
        assert [b.port for b in second.added] == [p3]
        assert [b.port for b in second.removed] == [p2]
        assert removed_sock.fileno() == -1
        assert not connects(p2)
        assert connects(p1) and connects(p3)
        client.sendall(b"ping")
        assert accepted.recv(4) == b"ping"
        accepted.close()
        client.close()

        state_path = tmp_path / "listeners.json"
        listeners.write_state(state_path, {"pid": 42})
        state = json.loads(state_path.read_text())
        assert state["pid"] == 42
        assert [(e["name"], e["port"], e["ssl"], e["service"]) for e in state["listeners"]] == [
            ("renamed", p1, True, "imap-login"),
            ("three", p3, False, "imap"),
        ]
    finally:
        listeners.close_all()
    assert not connects(p1) and not connects(p3)


def test_failed_apply_leaves_the_set_unchanged() -> None:
    p1, p_new = free_port(), free_port()
    listeners = ListenerSet()
    busy = socket.socket()
    try:
        listeners.apply([ListenerSpec("imap", "one", "127.0.0.1", p1)])
        before = listeners.listeners
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        with pytest.raises(
            ListenerError,
            match=rf"imap/busy: cannot listen on 127\.0\.0\.1:{busy_port}: Address already in use",
        ):
            listeners.apply(
                [
                    ListenerSpec("imap", "fresh", "127.0.0.1", p_new),
                    ListenerSpec("imap", "busy", "127.0.0.1", busy_port),
                ]
            )
        assert listeners.listeners == before
        assert connects(p1)
        assert not connects(p_new)  # bound during the failed attempt, then closed again
    finally:
        busy.close()
        listeners.close_all()


def test_bound_listener_describe() -> None:
    sock = socket.socket()
    try:
        bound = BoundListener("imap-login", "imaps", "::1", 993, 993, True, True, sock)
        assert bound.describe() == "imap-login/imaps [::1]:993+ssl+haproxy"
    finally:
        sock.close()


def test_service_registry() -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: ConnectionInfo
    ) -> None:
        return None

    async def other(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: ConnectionInfo
    ) -> None:
        return None

    name = "unit-test-service"
    try:
        assert get_service(name) is None
        assert register_service(name)(handler) is handler
        assert get_service(name) is handler
        register_service(name)(handler)  # registering the same handler again is harmless
        with pytest.raises(ValueError, match="already has a handler"):
            register_service(name)(other)
    finally:
        unregister_service(name)
    assert get_service(name) is None
    with pytest.raises(ValueError):
        register_service("")
    assert unavailable_reply("imap-login").startswith(b"* BYE ")
    assert unavailable_reply("pop3-login").startswith(b"-ERR ")
    assert unavailable_reply("lmtp").startswith(b"421 ")
    assert unavailable_reply("doveadm") == b""


def test_session_ids_are_unique_and_dovecot_sized() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 for i in ids)


def test_connection_server_serves_and_drains() -> None:
    port = free_port()
    listeners = ListenerSet()
    listeners.apply([ListenerSpec("echo", "echo-listener", "127.0.0.1", port)])
    logged: list[str] = []
    seen: list[ConnectionInfo] = []

    async def echo(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: ConnectionInfo
    ) -> None:
        seen.append(info)
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()

    def lookup(service: str) -> ConnectionHandler | None:
        return echo if service == "echo" else None

    async def scenario() -> None:
        server = ConnectionServer(listeners.listeners, logged.append, lookup)
        await server.start()
        quick_r, quick_w = await asyncio.open_connection("127.0.0.1", port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
        for w, r in ((quick_w, quick_r), (slow_w, slow_r)):
            w.write(b"hi\n")
            assert await r.readline() == b"HI\n"
        assert server.active == 2
        quick_w.close()  # finishes on its own during the drain
        cancelled = await server.drain(0.3)
        assert cancelled == 1  # the slow one was cut after the timeout
        assert await slow_r.read() == b""
        assert server.active == 0 and not server.accepting
        slow_w.close()

    try:
        asyncio.run(scenario())
    finally:
        listeners.close_all()
    assert [(i.service, i.listener, i.remote_ip, i.local_port) for i in seen] == [
        ("echo", "echo-listener", "127.0.0.1", port)
    ] * 2
    assert seen[0].session_id != seen[1].session_id
    assert logged == []
