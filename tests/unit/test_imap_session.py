"""IMAP sessions in-process: real ImapSession objects on real storage (the single-node config
in tmp_path) served by an asyncio server on loopback, each test with its own settings and
connection addresses (so LOGINDISABLED, STARTTLS, timeouts and limits can be exercised)."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from columba.config import load
from columba.context import ServiceContext
from columba.demo import prepare
from columba.imap.service import session_for
from columba.imap.session import ImapSession
from columba.net.connection import ConnectionInfo

pytestmark = pytest.mark.timeout(60)

USER = "u1@example.com"
USER2 = "u2@example.com"
PASSWORD = "pw-123"
MESSAGE = b"From: a@example.com\r\nSubject: hello\r\n\r\nbody\r\n"


def _context(tmp_path: Path, extra: str) -> ServiceContext:
    conf = prepare(tmp_path)
    (tmp_path / "users").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}::::::\n{USER2}:{{PLAIN}}{PASSWORD}::::::\n"
    )
    conf.write_text(conf.read_text() + "\nauth_failure_delay = 0\n" + extra)
    return ServiceContext(load(str(conf), []))


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.n = 0

    async def line(self, timeout: float = 5.0) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        out = bytearray(line)
        while out.endswith(b"}\r\n"):
            size = int(out[out.rfind(b"{") + 1 : -3].rstrip(b"+"))
            out += await asyncio.wait_for(self.reader.readexactly(size), timeout)
            out += await asyncio.wait_for(self.reader.readline(), timeout)
        return bytes(out)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            line = await self.line()
            if not line:
                raise ConnectionError("closed")
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    async def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = f"c{self.n}"
        await self.send(f"{tag} {text}\r\n".encode())
        return await self.until(tag)


Connect = Callable[..., Awaitable[Client]]


@asynccontextmanager
async def serving(
    tmp_path: Path,
    extra: str = "",
    *,
    remote_ip: str = "127.0.0.1",
    local_ip: str = "127.0.0.1",
    ssl_listener: bool = False,
    accept_delay: float = 0.0,
) -> AsyncIterator[tuple[Connect, list[ImapSession]]]:
    ctx = _context(tmp_path, extra)
    sessions: list[ImapSession] = []
    tasks: list[asyncio.Task[None]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = ConnectionInfo(
            local_ip, 143, remote_ip, 50000, "imap", "imap-login", ssl_listener, False, "sid"
        )
        await asyncio.sleep(accept_delay)  # let the client's first bytes arrive first
        session = session_for(reader, writer, info, ctx)
        sessions.append(session)
        try:
            await session.run()
        finally:
            writer.close()

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.ensure_future(handler(reader, writer)))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients: list[Client] = []

    async def connect(*, tls: bool = False) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=_client_tls() if tls else None,
            ssl_handshake_timeout=5 if tls else None,
        )
        client = Client(reader, writer)
        clients.append(client)
        return client

    try:
        yield connect, sessions
    finally:
        for client in clients:
            client.writer.close()
        server.close()
        for task in tasks:
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        await ctx.storage.close()


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _status(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n")


# ---------------------------------------------------------------------------------------------


def test_logindisabled_until_starttls(tmp_path: Path) -> None:
    async def main() -> None:
        extra = "login_trusted_networks =\n"
        async with serving(tmp_path, extra, remote_ip="192.0.2.7", local_ip="192.0.2.1") as (
            connect,
            sessions,
        ):
            c = await connect()
            greeting = await c.line()
            assert greeting == (
                b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
                b"LITERAL+ STARTTLS LOGINDISABLED] Columba ready.\r\n"
            )
            lines = await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert _status(lines) == (
                b"NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
                b"(SSL/TLS) connections."
            )
            lines = await c.cmd("AUTHENTICATE PLAIN AHUxQGV4YW1wbGUuY29tAHB3LTEyMw==")
            assert _status(lines).startswith(b"NO [PRIVACYREQUIRED]")
            lines = await c.cmd("STARTTLS")
            assert _status(lines) == b"OK Begin TLS negotiation now."
            await c.writer.start_tls(_client_tls())
            lines = await c.cmd("CAPABILITY")
            assert b"AUTH=PLAIN AUTH=LOGIN" in lines[0]
            assert b"STARTTLS" not in lines[0] and b"LOGINDISABLED" not in lines[0]
            lines = await c.cmd("AUTHENTICATE PLAIN AHUxQGV4YW1wbGUuY29tAHB3LTEyMw==")
            assert _status(lines).startswith(b"OK [CAPABILITY IMAP4rev1")
            assert sessions[0].tls and sessions[0].username == USER

    asyncio.run(main())


def test_implicit_tls_listener(tmp_path: Path) -> None:
    async def main() -> None:
        # the ClientHello reaches the server before its handler starts TLS
        async with serving(tmp_path, ssl_listener=True, accept_delay=0.2) as (connect, _sessions):
            c = await connect(tls=True)
            greeting = await c.line()
            assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
            assert b"STARTTLS" not in greeting
            assert _status(await c.cmd(f"LOGIN {USER} {PASSWORD}")).startswith(b"OK")

    asyncio.run(main())


def test_pipelined_input_split_byte_by_byte(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await c.line()
            script = (
                (
                    f"a LOGIN {USER} {PASSWORD}\r\n"
                    "b CREATE Box\r\n"
                    "c SELECT Box\r\n"
                    f"d APPEND Box {{{len(MESSAGE)}+}}\r\n"
                ).encode()
                + MESSAGE
                + b"\r\ne FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])\r\nf LOGOUT\r\n"
            )
            for i in range(len(script)):
                c.writer.write(script[i : i + 1])
            await c.writer.drain()
            lines = await c.until("f")
            tags = [line.split()[0] for line in lines if not line.startswith(b"*")]
            assert tags == [b"a", b"b", b"c", b"d", b"e", b"f"]
            assert b"* 1 EXISTS\r\n" in lines
            assert (
                b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n"
                b" FLAGS (\\Seen \\Recent))\r\n" in lines
            )
            assert lines[-2:] == [b"* BYE Logging out\r\n", b"f OK Logout completed.\r\n"]

    asyncio.run(main())


def test_too_many_bad_commands_disconnect(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await c.line()
            for i in range(19):
                lines = await c.cmd(f"BOGUS{i}")
                assert _status(lines).startswith(b"BAD")
            # a good command resets the count
            assert _status(await c.cmd("NOOP")) == b"OK NOOP completed."
            for _ in range(19):
                await c.cmd("BOGUS")
            await c.send(b"z BOGUS\r\n")
            assert (await c.line()).startswith(b"z BAD")
            assert await c.line() == b"* BYE Too many invalid IMAP commands.\r\n"
            assert await c.line() == b""

    asyncio.run(main())


def test_preauth_inactivity_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImapSession, "preauth_timeout", 0.3)

    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await c.line()
            assert await c.line(timeout=3) == b"* BYE Disconnected for inactivity.\r\n"
            assert await c.line() == b""

    asyncio.run(main())


def test_appendlimit_and_literal_minus(tmp_path: Path) -> None:
    async def main() -> None:
        extra = "mail_save_max_size = 1k\nimap_literal_minus = yes\n"
        async with serving(tmp_path, extra) as (connect, _sessions):
            c = await connect()
            greeting = await c.line()
            assert b" LITERAL- " in greeting and b"LITERAL+" not in greeting
            lines = await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert b"APPENDLIMIT=1024]" in lines[-1]
            await c.send(b"a1 APPEND INBOX {2000}\r\n")
            assert await c.line() == b"a1 NO [TOOBIG] Message too large (APPENDLIMIT=1024)\r\n"
            lines = await c.cmd("STATUS INBOX (MESSAGES APPENDLIMIT)")
            assert lines[0] == b"* STATUS INBOX (MESSAGES 0 APPENDLIMIT 1024)\r\n"
            await c.send(b"a2 APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
            assert (await c.until("a2"))[-1].startswith(b"a2 OK [APPENDUID ")
            await c.send(b"a3 APPEND INBOX {5000+}\r\n")
            lines = [await c.line(), await c.line()]
            assert lines[0].startswith(b"a3 BAD [TOOBIG]") or lines[0].startswith(b"a3 NO")
            assert lines[1].startswith(b"* BYE")

    asyncio.run(main())


def test_expunges_wait_for_an_allowed_command(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await b.cmd(f"LOGIN {USER} {PASSWORD}")
            for _ in range(4):
                await a.send(b"x APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
                await a.until("x")
            await a.cmd("SELECT INBOX")
            await b.cmd("SELECT INBOX")
            await b.cmd("STORE 2,3 +FLAGS.SILENT (\\Deleted)")
            lines = await b.cmd("EXPUNGE")
            assert lines[:-1] == [b"* 2 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
            for command in ("FETCH 1:4 (FLAGS)", "STORE 4 +FLAGS (\\Seen)", "SEARCH ALL"):
                lines = await a.cmd(command)
                assert not any(line.endswith(b" EXPUNGE\r\n") for line in lines), lines
            lines = await a.cmd("SEARCH ALL")
            assert lines[0] == b"* SEARCH 1 4\r\n"  # numbers as the client knows them
            lines = await a.cmd("UID SEARCH ALL")
            assert lines[:-1] == [b"* SEARCH 1 4\r\n", b"* 2 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
            lines = await a.cmd("SEARCH ALL")
            assert lines[0] == b"* SEARCH 1 2\r\n"

    asyncio.run(main())


def test_idle_keepalive_and_wakeup(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, "imap_idle_notify_interval = 1s\n") as (connect, _sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await b.cmd(f"LOGIN {USER} {PASSWORD}")
            await a.cmd("SELECT INBOX")
            await a.send(b"i IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"
            assert await a.line(timeout=3) == b"* OK Still here\r\n"
            loop = asyncio.get_running_loop()
            started = loop.time()
            await b.send(b"x APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
            await b.until("x")
            assert await a.line(timeout=3) == b"* 1 EXISTS\r\n"
            assert loop.time() - started < 1.0
            assert await a.line() == b"* 1 RECENT\r\n"
            await a.send(b"DONE\r\n")
            assert await a.line() == b"i OK Idle completed.\r\n"
            await a.send(b"j IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"
            await a.send(b"NOTDONE\r\n")
            assert await a.line() == b"j BAD Expected DONE.\r\n"
            assert _status(await a.cmd("NOOP")) == b"OK NOOP completed."

    asyncio.run(main())


def test_misc_commands(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await c.line()
            assert _status(await c.cmd("SELECT INBOX")) == b"BAD Please authenticate first."
            await c.cmd(f"LOGIN {USER} {PASSWORD}")
            lines = await c.cmd("ENABLE X-UNKNOWN")
            assert lines[0] == b"* ENABLED\r\n"
            assert _status(await c.cmd("CHECK")) == b"BAD No mailbox selected."
            lines = await c.cmd("EXAMINE INBOX")
            assert b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n" in lines
            assert _status(lines) == b"OK [READ-ONLY] Examine completed."
            assert _status(await c.cmd("CHECK")) == b"OK Check completed."
            assert _status(await c.cmd("UNSELECT")) == b"OK Unselect completed."
            assert _status(await c.cmd("UNSELECT")) == b"BAD No mailbox selected."
            await c.cmd("CREATE a/b/c")
            await c.cmd("SUBSCRIBE a/b/c")
            lines = await c.cmd('LSUB "" "a/%"')
            assert lines[0] == b'* LSUB (\\Noselect) "/" a/b\r\n'
            lines = await c.cmd('LIST "" "a/%"')
            assert lines[0] == b'* LIST (\\NonExistent \\HasChildren) "/" a/b\r\n' or lines[0] == (
                b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n'
            )
            lines = await c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "a/%"')
            assert (
                lines[0]
                == b'* LIST (\\NonExistent \\HasChildren) "/" a/b ("CHILDINFO" ("SUBSCRIBED"))\r\n'
            )
            lines = await c.cmd('LIST "" "*" RETURN (SUBSCRIBED)')
            assert b'* LIST (\\Subscribed \\HasNoChildren) "/" a/b/c\r\n' in lines
            lines = await c.cmd("CREATE &AOQ-bc")
            assert re.fullmatch(
                rb"OK \[MAILBOXID \([0-9a-f]+\)\] Create completed\.", _status(lines)
            )
            lines = await c.cmd('LIST "" "&AOQ-*"')
            assert lines[0] == b'* LIST (\\HasNoChildren) "/" &AOQ-bc\r\n'
            assert re.match(
                rb"\* STATUS &AOQ-bc \(MESSAGES 0\)", (await c.cmd("STATUS &AOQ-bc (MESSAGES)"))[0]
            )

    asyncio.run(main())


def test_selected_mailbox_deleted_elsewhere(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await b.cmd(f"LOGIN {USER} {PASSWORD}")
            await a.cmd("CREATE Doomed")
            assert _status(await a.cmd("SELECT Doomed")).startswith(b"OK [READ-WRITE]")
            assert _status(await b.cmd("DELETE Doomed")) == b"OK Delete completed."
            lines = await a.cmd("NOOP")
            assert lines[-1] == b"c4 OK NOOP completed.\r\n"
            assert await a.line() == b"* BYE Selected mailbox was deleted, have to disconnect.\r\n"
            assert await a.line() == b""

    asyncio.run(main())


def test_user_isolation_in_process(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await b.cmd(f"LOGIN {USER2} {PASSWORD}")
            await a.send(b"x APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
            await a.until("x")
            lines = await b.cmd("STATUS INBOX (MESSAGES)")
            assert lines[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
            lines = await a.cmd("STATUS INBOX (MESSAGES)")
            assert lines[0] == b"* STATUS INBOX (MESSAGES 1)\r\n"

    asyncio.run(main())
