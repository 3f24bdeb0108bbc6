"""End-to-end LMTP: the real ``columba serve`` on loopback, driven by smtplib.LMTP, swaks and raw
sockets; deliveries checked in the users' mailboxes through the storage API (opened in-process
with the same configuration).

The server is the demo single-node configuration (``columba.demo.prepare``) with a second user
and ``lmtp_save_to_detail_mailbox = yes``, ``mail_save_max_size = 1M`` added.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from columba.config import load
from columba.context import ServiceContext
from columba.delivery import DeliverySettings
from columba.demo import DEMO_USER, prepare
from columba.lmtp.service import LmtpSession
from columba.net.connection import ConnectionInfo, new_session_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SECOND_USER = "alice@localhost"
MAX_SIZE = 1024 * 1024
EXTRA_CONF = "lmtp_save_to_detail_mailbox = yes\nmail_save_max_size = 1M\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ColumbaServer:
    """``python -m columba.cli serve`` in its own process group, with the demo configuration."""

    def __init__(self, root: Path, extra_conf: str = EXTRA_CONF) -> None:
        self.root = root
        self.data = root / "data"
        self.ports = {"imap": free_port(), "imaps": free_port(), "lmtp": free_port()}
        self.conf = prepare(self.data, ports=self.ports)
        with self.conf.open("a") as f:
            f.write(extra_conf)
        with (self.data / "users").open("a") as f:
            f.write(f"{SECOND_USER}:{{PLAIN}}alice::::::\n")
        self.base = self.data / "run"
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def lmtp_port(self) -> int:
        return self.ports["lmtp"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 30.0) -> None:
        (self.base / "listeners.json").unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "columba.cli", "serve", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            if (self.base / "listeners.json").exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.lmtp_port), 2) as s:
                        if s.recv(512).startswith(b"220 "):
                            return
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (master and workers) at once."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def messages(self, user: str, mailbox: str = "INBOX") -> list[bytes]:
        """Every message in ``user``'s ``mailbox``, read through the storage API."""
        return asyncio.run(read_mailbox(self.conf, user, mailbox))


async def read_mailbox(conf: Path, user: str, mailbox: str) -> list[bytes]:
    context = ServiceContext(load(str(conf)))
    info = await context.authenticator.lookup_user(user)
    assert info is not None, user
    storage = context.storage
    try:
        mail_user = await storage.open_user(info)
        try:
            view = await mail_user.open_mailbox(mailbox, readonly=True)
            try:
                return [await view.read_message(uid) for uid in view.uids()]
            finally:
                await view.close()
        finally:
            await mail_user.close()
    finally:
        await storage.close()


def with_message_id(messages: list[bytes], message_id: str) -> list[bytes]:
    needle = f"\r\nMessage-ID: <{message_id}>\r\n".encode().lower()
    return [m for m in messages if needle in b"\r\n" + m.lower()]


def header_block(message: bytes) -> str:
    return message.split(b"\r\n\r\n", 1)[0].decode()


def make_message(message_id: str, body: str = "Hello from the test.\r\n") -> bytes:
    return (
        f"From: sender@example.com\r\nTo: someone@localhost\r\nSubject: test {message_id}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\n{body}"
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColumbaServer]:
    srv = ColumbaServer(tmp_path_factory.mktemp("lmtp"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------------- raw client


class RawLmtp:
    """A line-level LMTP client on a plain socket (for PIPELINING and BDAT)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError(f"connection closed after {lines}")
            assert raw.endswith(b"\r\n"), raw
            line = raw[:-2].decode()
            lines.append(line[4:])
            if line[3] == " ":
                return int(line[:3]), lines

    def line(self) -> str:
        code, lines = self.reply()
        assert len(lines) == 1
        return f"{code} {lines[0]}"

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# ---------------------------------------------------------------------- tests


def test_greeting_lhlo_and_simple_commands(server: ColumbaServer) -> None:
    c = RawLmtp(server.lmtp_port)
    try:
        greeting = c.line()
        assert re.fullmatch(r"220 \S+ Columba LMTP ready", greeting), greeting
        c.send(b"MAIL FROM:<a@b>\r\n")
        assert c.line().startswith("503 5.5.1 ")  # LHLO first
        c.send(b"EHLO client\r\n")
        assert c.line().startswith("500 5.5.2 ")
        c.send(b"LHLO client.example\r\n")
        code, caps = c.reply()
        assert code == 250
        assert caps[0] == greeting.split()[1]
        assert set(caps[1:]) == {
            "PIPELINING",
            f"SIZE {MAX_SIZE}",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "CHUNKING",
        }
        c.send(b"NOOP\r\n")
        assert c.line() == "250 2.0.0 OK"
        c.send(b"VRFY demo@localhost\r\n")
        assert c.line().startswith("252 2.3.3 ")
        c.send(b"STARTTLS\r\n")
        assert c.line().startswith("502 5.5.1 ")
        c.send(b"RCPT TO:<demo@localhost>\r\n")
        assert c.line().startswith("503 5.5.1 ")  # no MAIL yet
        c.send(b"DATA\r\n")
        assert c.line().startswith("503 5.5.1 ")
        c.send(b"MAIL FROM:<a@b> XFOO=1\r\n")
        assert c.line().startswith("555 5.5.4 ")
        c.send(b"MAIL FROM:<a@b>\r\n")
        assert c.line() == "250 2.1.0 OK"
        c.send(b"MAIL FROM:<a@b>\r\n")
        assert c.line().startswith("503 5.5.1 ")
        c.send(b"DATA\r\n")
        assert c.line().startswith("503 5.5.1 ")  # no valid recipients
        c.send(b"RSET\r\n")
        assert c.line() == "250 2.0.0 OK"
        c.send(b"RCPT TO:<demo@localhost>\r\n")
        assert c.line().startswith("503 5.5.1 ")  # RSET ended the transaction
        c.send(b"FROB\r\n")
        assert c.line().startswith("500 5.5.2 ")
        c.send(b"QUIT\r\n")
        assert c.line() == "221 2.0.0 OK"
        assert c.file.read() == b""  # server closed
    finally:
        c.close()


def test_smtplib_lmtp_one_reply_per_recipient(server: ColumbaServer) -> None:
    mid = f"{uuid.uuid4().hex}@smtplib.test"
    lmtp = smtplib.LMTP("127.0.0.1", server.lmtp_port)
    try:
        code, _ = lmtp.ehlo("client.example")
        assert code == 250
        assert lmtp.has_extn("pipelining") and lmtp.has_extn("chunking")
        assert lmtp.mail("sender@example.com") == (250, b"2.1.0 OK")
        assert lmtp.rcpt(DEMO_USER)[0] == 250
        code, text = lmtp.rcpt("nobody@localhost")
        assert (code, text) == (
            550,
            b"5.1.1 <nobody@localhost> User doesn't exist: nobody@localhost",
        )
        assert lmtp.rcpt(SECOND_USER)[0] == 250
        # smtplib reads only the first reply after DATA; LMTP sends one per accepted recipient
        first = lmtp.data(make_message(mid))
        second = lmtp.getreply()
        assert re.fullmatch(rb"2\.0\.0 <demo@localhost> \S+ Saved", first[1]), first
        assert re.fullmatch(rb"2\.0\.0 <alice@localhost> \S+ Saved", second[1]), second
        assert first[0] == second[0] == 250
        assert lmtp.noop()[0] == 250  # nothing else was pending
    finally:
        lmtp.quit()

    for user in (DEMO_USER, SECOND_USER):
        found = with_message_id(server.messages(user), mid)
        assert len(found) == 1, user
        headers = header_block(found[0])
        lines = headers.split("\r\n")
        assert lines[0] == "Return-Path: <sender@example.com>"
        assert lines[1] == f"Delivered-To: {user}"
        assert lines[2] == "Received: from client.example ([127.0.0.1])"
        assert re.fullmatch(r"\tby \S+ with LMTP id \S+", lines[3]), lines[3]
        assert lines[4] == "\t(envelope-from <sender@example.com>)"
        assert re.fullmatch(
            rf"\tfor <{user}>; \w{{3}}, \d+ \w{{3}} \d{{4}} [\d:]{{8}} [+-]\d{{4}}", lines[5]
        )
        assert found[0].endswith(make_message(mid))


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_lmtp_several_recipients(server: ColumbaServer) -> None:
    mid = f"{uuid.uuid4().hex}@swaks.test"
    proc = subprocess.run(
        [
            "swaks",
            "--protocol",
            "LMTP",
            "--server",
            f"127.0.0.1:{server.lmtp_port}",
            "--helo",
            "swaks.example",
            "--from",
            "bounce@example.net",
            "--to",
            f"{DEMO_USER},ghost@localhost,{SECOND_USER}",
            "--header",
            f"Message-Id: <{mid}>",
            "--body",
            "Body sent by swaks.",
            "--pipeline",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert "550 5.1.1 <ghost@localhost> User doesn't exist: ghost@localhost" in out, out
    assert re.search(r"<-  250 2\.0\.0 <demo@localhost> \S+ Saved", out), out
    assert re.search(r"<-  250 2\.0\.0 <alice@localhost> \S+ Saved", out), out
    assert "221 2.0.0 OK" in out, out
    for user in (DEMO_USER, SECOND_USER):
        found = with_message_id(server.messages(user), mid)
        assert len(found) == 1, user
        headers = header_block(found[0])
        assert headers.startswith(f"Return-Path: <bounce@example.net>\r\nDelivered-To: {user}\r\n")
        assert "Received: from swaks.example ([127.0.0.1])\r\n" in headers
        assert f"\tfor <{user}>; " in headers
        assert b"Body sent by swaks." in found[0]


def test_pipelining_in_one_write(server: ColumbaServer) -> None:
    mid = f"{uuid.uuid4().hex}@pipelining.test"
    c = RawLmtp(server.lmtp_port)
    try:
        c.line()
        c.send(
            b"LHLO pipe.example\r\n"
            b"MAIL FROM:<p@example.com>\r\n"
            b"RCPT TO:<alice@localhost>\r\n"
            b"RCPT TO:<nobody@localhost>\r\n"
            b"RCPT TO:<demo@localhost>\r\n"
            b"DATA\r\n"
        )
        assert c.reply()[0] == 250
        assert c.line() == "250 2.1.0 OK"
        assert c.line() == "250 2.1.5 OK"
        assert c.line().startswith("550 5.1.1 <nobody@localhost>")
        assert c.line() == "250 2.1.5 OK"
        assert c.line().startswith("354 ")
        body = make_message(mid, "line one\r\n..dot-stuffed line\r\n")
        # the message, its end and the next commands in one write as well
        c.send(body + b".\r\nNOOP\r\nQUIT\r\n")
        assert re.fullmatch(r"250 2\.0\.0 <alice@localhost> \S+ Saved", c.line())
        assert re.fullmatch(r"250 2\.0\.0 <demo@localhost> \S+ Saved", c.line())
        assert c.line() == "250 2.0.0 OK"
        assert c.line() == "221 2.0.0 OK"
    finally:
        c.close()
    for user in (SECOND_USER, DEMO_USER):
        found = with_message_id(server.messages(user), mid)
        assert len(found) == 1
        assert found[0].endswith(make_message(mid, "line one\r\n.dot-stuffed line\r\n"))


def test_bdat_chunking(server: ColumbaServer) -> None:
    mid = f"{uuid.uuid4().hex}@bdat.test"
    message = make_message(mid, "first part\r\n.a line starting with a dot\r\nlast\r\n")
    part1, part2 = message[:50], message[50:]
    c = RawLmtp(server.lmtp_port)
    try:
        c.line()
        c.send(b"LHLO bdat.example\r\n")
        c.reply()
        c.send(b"MAIL FROM:<b@example.com> BODY=8BITMIME\r\n")
        assert c.line() == "250 2.1.0 OK"
        c.send(b"RCPT TO:<demo@localhost>\r\nRCPT TO:<alice@localhost>\r\n")
        assert c.line() == "250 2.1.5 OK"
        assert c.line() == "250 2.1.5 OK"
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        assert c.line().startswith("250 2.0.0 ")  # one reply for a non-LAST chunk
        c.send(b"DATA\r\n")
        assert c.line().startswith("503 5.5.1 ")  # no DATA once BDAT started
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        assert re.fullmatch(r"250 2\.0\.0 <demo@localhost> \S+ Saved", c.line())
        assert re.fullmatch(r"250 2\.0\.0 <alice@localhost> \S+ Saved", c.line())
        # BDAT outside a transaction is read and refused with one reply
        c.send(b"BDAT 5 LAST\r\nhello")
        assert c.line().startswith("503 5.5.1 ")
        c.send(b"NOOP\r\n")
        assert c.line() == "250 2.0.0 OK"
    finally:
        c.close()
    for user in (DEMO_USER, SECOND_USER):
        found = with_message_id(server.messages(user), mid)
        assert len(found) == 1
        assert found[0].endswith(message)  # BDAT content is exactly as sent (no unstuffing)
        assert header_block(found[0]).startswith("Return-Path: <b@example.com>\r\n")


def test_user_detail_delivery(server: ColumbaServer) -> None:
    mid_junk = f"{uuid.uuid4().hex}@detail.test"
    mid_none = f"{uuid.uuid4().hex}@detail.test"
    lmtp = smtplib.LMTP("127.0.0.1", server.lmtp_port)
    try:
        lmtp.ehlo("detail.example")
        code, _ = lmtp.rcpt("demo+Junk@localhost")
        assert code == 503  # no MAIL yet
        lmtp.mail("d@example.com")
        assert lmtp.rcpt("demo+Junk@localhost")[0] == 250
        assert lmtp.rcpt("ghost+Junk@localhost")[0] == 550
        assert lmtp.data(make_message(mid_junk))[0] == 250
        lmtp.mail("d@example.com")
        assert lmtp.rcpt("alice+no-such-box@localhost")[0] == 250
        assert lmtp.data(make_message(mid_none))[0] == 250
    finally:
        lmtp.quit()
    junk = with_message_id(server.messages(DEMO_USER, "Junk"), mid_junk)
    assert len(junk) == 1
    assert "Delivered-To: demo+Junk@localhost\r\n" in header_block(junk[0])
    assert "\tfor <demo+Junk@localhost>; " in header_block(junk[0])
    assert with_message_id(server.messages(DEMO_USER), mid_junk) == []
    # a detail mailbox that does not exist falls back to INBOX
    inbox = with_message_id(server.messages(SECOND_USER), mid_none)
    assert len(inbox) == 1
    assert "Delivered-To: alice+no-such-box@localhost\r\n" in header_block(inbox[0])


def test_same_user_twice_gets_one_copy(server: ColumbaServer) -> None:
    mid = f"{uuid.uuid4().hex}@dedupe.test"
    c = RawLmtp(server.lmtp_port)
    try:
        c.line()
        c.send(
            b"LHLO dd.example\r\nMAIL FROM:<>\r\n"
            b"RCPT TO:<alice@localhost>\r\nRCPT TO:<ALICE@localhost>\r\n"
            b"RCPT TO:<alice+x@localhost>\r\nDATA\r\n"
        )
        c.reply()
        assert [c.line() for _ in range(4)] == ["250 2.1.0 OK"] + ["250 2.1.5 OK"] * 3
        assert c.line().startswith("354 ")
        c.send(make_message(mid) + b".\r\n")
        replies = [c.line() for _ in range(3)]
        assert re.fullmatch(r"250 2\.0\.0 <alice@localhost> \S+ Saved", replies[0])
        assert re.fullmatch(r"250 2\.0\.0 <ALICE@localhost> \S+ Saved", replies[1])
        assert re.fullmatch(r"250 2\.0\.0 <alice\+x@localhost> \S+ Saved", replies[2])
    finally:
        c.close()
    found = with_message_id(server.messages(SECOND_USER), mid)
    assert len(found) == 1
    assert header_block(found[0]).startswith("Return-Path: <>\r\n")


def test_message_over_size_limit(server: ColumbaServer) -> None:
    mid = f"{uuid.uuid4().hex}@big.test"
    c = RawLmtp(server.lmtp_port)
    try:
        c.line()
        c.send(b"LHLO big.example\r\n")
        c.reply()
        c.send(b"MAIL FROM:<s@example.com> SIZE=%d\r\n" % (MAX_SIZE + 1))
        assert c.line().startswith("552 5.3.4 ")  # refused as soon as the size is known
        c.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<demo@localhost>\r\n")
        c.send(b"RCPT TO:<alice@localhost>\r\nDATA\r\n")
        assert [c.line() for _ in range(3)] == ["250 2.1.0 OK"] + ["250 2.1.5 OK"] * 2
        assert c.line().startswith("354 ")
        line = b"x" * 998 + b"\r\n"
        big = make_message(mid, "") + line * (MAX_SIZE // len(line) + 10)
        c.send(big + b".\r\n")
        assert c.line().startswith("552 5.3.4 ")  # one reply per recipient
        assert c.line().startswith("552 5.3.4 ")
        c.send(b"NOOP\r\n")
        assert c.line() == "250 2.0.0 OK"  # the connection is still usable
    finally:
        c.close()
    assert with_message_id(server.messages(DEMO_USER), mid) == []
    assert with_message_id(server.messages(SECOND_USER), mid) == []


def test_line_too_long_keeps_the_connection(server: ColumbaServer) -> None:
    c = RawLmtp(server.lmtp_port)
    try:
        c.line()
        c.send(b"LHLO " + b"a" * 10000 + b"\r\nNOOP\r\n")
        assert c.line().startswith("500 5.5.")
        assert c.line() == "250 2.0.0 OK"
    finally:
        c.close()


FAILING_OBOX = """obox {
  fs randomfail {
    fs_randomfail_ops {
      write = 100
    }
  }
  fs compress {"""


def test_storage_failure_gives_451_per_recipient_never_250(tmp_path: Path) -> None:
    srv = ColumbaServer(tmp_path)
    text = srv.conf.read_text()
    assert "obox {\n  fs compress {" in text
    srv.conf.write_text(text.replace("obox {\n  fs compress {", FAILING_OBOX))
    mid = f"{uuid.uuid4().hex}@fail.test"
    srv.start()
    try:
        lmtp = smtplib.LMTP("127.0.0.1", srv.lmtp_port)
        try:
            lmtp.ehlo("fail.example")
            lmtp.mail("f@example.com")
            assert lmtp.rcpt(DEMO_USER)[0] == 250
            assert lmtp.rcpt(SECOND_USER)[0] == 250
            first = lmtp.data(make_message(mid))
            second = lmtp.getreply()
            assert first == (451, b"4.3.0 <demo@localhost> Temporary internal error")
            assert second == (451, b"4.3.0 <alice@localhost> Temporary internal error")
            assert lmtp.noop()[0] == 250
        finally:
            lmtp.quit()
        assert with_message_id(srv.messages(DEMO_USER), mid) == []
        assert with_message_id(srv.messages(SECOND_USER), mid) == []
    finally:
        srv.stop()


def test_idle_connection_is_closed_with_421(tmp_path: Path) -> None:
    conf = prepare(tmp_path / "data", ports={"lmtp": free_port()})
    context = ServiceContext(load(str(conf)))

    async def run() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            host, port = writer.get_extra_info("peername")[:2]
            info = ConnectionInfo(
                "127.0.0.1", 0, host, port, "lmtp", "lmtp", False, False, new_session_id()
            )
            session = LmtpSession(
                info,
                DeliverySettings.from_view(context.view("lmtp")),
                context.authenticator_for("lmtp"),
                context.storage,
                idle_timeout=0.3,
            )
            try:
                await session.run(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert (await reader.readline()).startswith(b"220 ")
            writer.write(b"LHLO idle.example\r\n")
            while not (await reader.readline()).startswith(b"250 "):
                pass
            started = time.monotonic()
            line = await asyncio.wait_for(reader.readline(), 10)
            assert line.startswith(b"421 4.4.2 ") and b"inactivity" in line
            assert time.monotonic() - started >= 0.25
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        finally:
            server.close()
            await server.wait_closed()
            await context.storage.close()

    asyncio.run(run())


def test_bdat_over_size_limit(server: ColumbaServer) -> None:
    c = RawLmtp(server.lmtp_port)
    try:
        c.line()
        c.send(b"LHLO big.example\r\nMAIL FROM:<s@example.com>\r\n")
        c.send(b"RCPT TO:<demo@localhost>\r\nRCPT TO:<alice@localhost>\r\n")
        c.reply()
        assert [c.line() for _ in range(3)] == ["250 2.1.0 OK"] + ["250 2.1.5 OK"] * 2
        chunk = b"x" * (MAX_SIZE + 100)
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        assert c.line().startswith("552 5.3.4 ")  # one reply for the chunk
        c.send(b"BDAT 10 LAST\r\n0123456789")
        assert c.line().startswith("552 5.3.4 ")  # then one per recipient
        assert c.line().startswith("552 5.3.4 ")
        c.send(b"NOOP\r\n")
        assert c.line() == "250 2.0.0 OK"
        mid = f"{uuid.uuid4().hex}@after-big.test"
        message = make_message(mid)
        c.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<demo@localhost>\r\n")
        c.send(b"BDAT %d LAST\r\n" % len(message) + message)
        assert c.line() == "250 2.1.0 OK"
        assert c.line() == "250 2.1.5 OK"
        assert re.fullmatch(r"250 2\.0\.0 <demo@localhost> \S+ Saved", c.line())
    finally:
        c.close()
    assert len(with_message_id(server.messages(DEMO_USER), mid)) == 1


def test_userdb_failure_gives_451_at_rcpt(tmp_path: Path) -> None:
    srv = ColumbaServer(tmp_path)
    users = srv.data / "users"
    # the userdb reads DOMAIN.users: a domain without a file is an internal lookup failure
    (srv.data / "localhost.users").write_text(users.read_text())
    text = srv.conf.read_text()
    userdb = text.index("userdb passwd-file {")
    srv.conf.write_text(
        text[:userdb]
        + text[userdb:].replace(f"= {users}\n", f"= {srv.data}/%{{domain}}.users\n", 1)
    )
    mid = f"{uuid.uuid4().hex}@userdb.test"
    srv.start()
    try:
        lmtp = smtplib.LMTP("127.0.0.1", srv.lmtp_port)
        try:
            lmtp.ehlo("u.example")
            lmtp.mail("u@example.com")
            assert lmtp.rcpt("x@missing.example") == (
                451,
                b"4.3.0 <x@missing.example> Temporary internal error",
            )
            assert lmtp.rcpt(DEMO_USER)[0] == 250
            code, text_ = lmtp.data(make_message(mid))
            assert code == 250 and text_.startswith(b"2.0.0 <demo@localhost> ")
            assert lmtp.noop()[0] == 250  # exactly one reply: one accepted recipient
        finally:
            lmtp.quit()
        assert len(with_message_id(srv.messages(DEMO_USER), mid)) == 1
    finally:
        srv.stop()
