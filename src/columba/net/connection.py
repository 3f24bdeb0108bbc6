"""Per-connection info and the worker's accept loop.

``ConnectionInfo`` is what a service handler learns about its client (addresses, listener,
service, ssl, session id). ``ConnectionServer`` accepts on a worker's inherited listening
sockets, runs the registered service handler for each connection, and drains: stop accepting,
let connections finish up to a timeout, then cancel what is left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from columba.net.listeners import LISTEN_BACKLOG, BoundListener, format_hostport
from columba.net.services import ConnectionHandler, get_service, unavailable_reply

Log = Callable[[str], None]
HandlerLookup = Callable[[str], "ConnectionHandler | None"]


@dataclass(frozen=True)
class ConnectionInfo:
    """One accepted client connection. ``ssl`` and ``haproxy`` come from the listener: the
    handler is expected to start TLS / read the PROXY header itself."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    listener: str
    service: str
    ssl: bool
    haproxy: bool
    session_id: str

    def describe(self) -> str:
        return f"rip={self.remote_ip}, lip={self.local_ip}, session=<{self.session_id}>"


def new_session_id() -> str:
    """A Dovecot-like session id: 16 base64 characters, time-ordered prefix then randomness."""
    stamp = (time.time_ns() // 1000).to_bytes(8, "big")[-5:]
    return base64.b64encode(stamp + secrets.token_bytes(7)).decode("ascii")


def _address(sockaddr: object) -> tuple[str, int]:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(sockaddr[0]), int(sockaddr[1])
    return "", 0


def connection_info(writer: asyncio.StreamWriter, listener: BoundListener) -> ConnectionInfo:
    local_ip, local_port = _address(writer.get_extra_info("sockname"))
    remote_ip, remote_port = _address(writer.get_extra_info("peername"))
    if remote_ip.startswith("::ffff:") and "." in remote_ip:
        remote_ip = remote_ip[7:]
    if local_ip.startswith("::ffff:") and "." in local_ip:
        local_ip = local_ip[7:]
    return ConnectionInfo(
        local_ip=local_ip,
        local_port=local_port,
        remote_ip=remote_ip,
        remote_port=remote_port,
        listener=listener.name,
        service=listener.service,
        ssl=listener.ssl,
        haproxy=listener.haproxy,
        session_id=new_session_id(),
    )


class ConnectionServer:
    """Accepts on a set of listening sockets in the current event loop and tracks connections."""

    def __init__(
        self,
        listeners: Sequence[BoundListener],
        log: Log,
        lookup: HandlerLookup = get_service,
    ) -> None:
        self._listeners = list(listeners)
        self._log = log
        self._lookup = lookup
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = False

    @property
    def active(self) -> int:
        """Number of connections being served."""
        return len(self._tasks)

    @property
    def accepting(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        """Start accepting on every listener (the sockets must already be listening)."""
        for listener in self._listeners:
            # asyncio listen()s again on the socket it is given, with its own default backlog
            # of 100 unless told otherwise: a worker busy for a moment under a login burst then
            # overflows the accept queue, and the kernel drops the handshakes' last ACKs (the
            # client believes it is connected and waits for a greeting that never comes).
            server = await asyncio.start_server(
                self._client_callback(listener),
                sock=listener.sock,
                backlog=LISTEN_BACKLOG,
                start_serving=True,
            )
            self._servers.append(server)
        self._accepting = True

    def _client_callback(
        self, listener: BoundListener
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._serve(reader, writer, listener))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return accepted

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: BoundListener
    ) -> None:
        info = connection_info(writer, listener)
        handler = self._lookup(info.service)
        try:
            if handler is None:
                await self._refuse(writer, info)
            else:
                await handler(reader, writer, info)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, TimeoutError):
            pass
        except Exception as exc:
            self._log(
                f"{info.service}: connection from "
                f"{format_hostport(info.remote_ip, info.remote_port)} failed: "
                f"{type(exc).__name__}: {exc} ({info.describe()})"
            )
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _refuse(self, writer: asyncio.StreamWriter, info: ConnectionInfo) -> None:
        self._log(
            f"{info.service}: no handler for service {info.service}, closing connection from "
            f"{format_hostport(info.remote_ip, info.remote_port)} ({info.describe()})"
        )
        reply = b"" if (info.ssl or info.haproxy) else unavailable_reply(info.service)
        if reply:
            writer.write(reply)
            await asyncio.wait_for(writer.drain(), 5.0)
        if writer.can_write_eof():
            writer.write_eof()

    def stop_accepting(self) -> None:
        """Close this process's copies of the listening sockets; connections stay."""
        self._accepting = False
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def drain(self, timeout: float) -> int:
        """Stop accepting, wait up to ``timeout`` seconds for connections to finish, then
        cancel the rest. Returns how many connections had to be cancelled."""
        self.stop_accepting()
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, timeout))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        return len(pending)
