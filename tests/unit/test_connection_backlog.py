"""The worker's accept loop keeps the listening socket's backlog (asyncio's ``start_server``
would listen() again with its default of 100): a burst of connections while the worker is busy
waits in the kernel's accept queue instead of having its handshakes dropped."""

from __future__ import annotations

import asyncio
import select
import socket
import time

from columba.net.connection import ConnectionServer
from columba.net.listeners import BoundListener, bind_socket

BURST = 300


def _established(clients: list[socket.socket]) -> int:
    _, writable, _ = select.select([], clients, [], 0)
    return sum(1 for c in writable if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)


def test_a_burst_beyond_asyncios_default_backlog_is_queued() -> None:
    sock = bind_socket(socket.AF_INET, "127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    listener = BoundListener("imap", "imap", "127.0.0.1", port, 0, False, False, sock)

    async def main() -> int:
        server = ConnectionServer([listener], lambda _line: None, lambda _service: None)
        await server.start()
        clients: list[socket.socket] = []
        try:
            # The event loop does not run from here on, so nothing is accepted: every
            # handshake that completes sits in the accept queue.
            for _ in range(BURST):
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                client.setblocking(False)
                client.connect_ex(("127.0.0.1", port))
                clients.append(client)
            deadline = time.monotonic() + 3.0
            while _established(clients) < BURST and time.monotonic() < deadline:
                time.sleep(0.05)
            return _established(clients)
        finally:
            for client in clients:
                client.close()
            server.stop_accepting()

    try:
        assert asyncio.run(main()) == BURST
    finally:
        sock.close()
