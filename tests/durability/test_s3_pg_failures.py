"""S3 (SeaweedFS) or PostgreSQL going away in the middle of a stream of LMTP deliveries.

The acceptance stack of tests/e2e/test_s3_pg_stack.py (compress + crypt + dictmap(PostgreSQL) +
S3, fscache) runs with short S3 timeouts. A client delivers messages one after the other and
records every reply; mid-stream the S3 server (or PostgreSQL) is stopped, kept down for a few
seconds and started again on the same ports. Then:

* deliveries while it was down got temporary errors (``4xx``), never a permanent one;
* every message that got ``250`` is in the INBOX exactly once, and every message in the INBOX
  is complete (its body is exactly what was sent);
* after ``columba obox cleanup`` no object is leaked: the objects under ``<user>/mails/`` in S3
  are exactly those the dictmap rows reference, and the INBOX's rows are exactly its messages.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from columba.demo import DEMO_USER
from columba.dict.api import create_dict
from tests.e2e.test_lmtp import make_message
from tests.e2e.test_s3_pg_stack import Stack, imap, start_stack
from tests.pg_server import PgServer, start_pg_server
from tests.s3_server import _wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

EXTRA = "fs_s3_timeout = 2s\nfs_s3_max_retries = 1\n"
FAIL_AT = 6
AFTER = 6
DOWN_SECONDS = 3.0


def body_of(mid: str) -> str:
    return f"body of {mid}\r\n" + "x" * 200 + "\r\n"


class Deliverer(threading.Thread):
    """Delivers messages one by one, recording each reply code. After FAIL_AT deliveries it
    starts `outage` in another thread and keeps delivering through it, then AFTER more."""

    def __init__(self, port: int, outage: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.outage = threading.Thread(target=outage, daemon=True)
        self.results: dict[str, int] = {}

    def deliver_one(self, i: int) -> None:
        mid = f"dur-{i}-{uuid.uuid4().hex[:8]}@test"
        try:
            with smtplib.LMTP("127.0.0.1", self.port, timeout=30) as lmtp:
                refused = lmtp.sendmail(
                    "sender@example.com", [DEMO_USER], make_message(mid, body_of(mid))
                )
                self.results[mid] = refused[DEMO_USER][0] if refused else 250
        except smtplib.SMTPRecipientsRefused as err:
            self.results[mid] = err.recipients[DEMO_USER][0]
        except smtplib.SMTPDataError as err:
            self.results[mid] = err.smtp_code
        except (smtplib.SMTPException, OSError):
            self.results[mid] = -1

    def run(self) -> None:
        i = 0
        while i < FAIL_AT:
            self.deliver_one(i)
            i += 1
        self.outage.start()
        while self.outage.is_alive() and i < 200:
            self.deliver_one(i)
            i += 1
            time.sleep(0.1)
        for _ in range(AFTER):
            self.deliver_one(i)
            i += 1


def inbox_bodies(stack: Stack) -> list[tuple[str, bytes]]:
    conn: imaplib.IMAP4_SSL = imap(stack.server)
    try:
        assert conn.select("INBOX")[0] == "OK"
        typ, data = conn.uid(
            "FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[TEXT])"
        )
        assert typ == "OK"
        out = []
        items = [d for d in data if isinstance(d, tuple)]
        for head, text in zip(items[0::2], items[1::2], strict=True):
            mid = re.search(rb"<([^>]+)>", head[1]).group(1).decode()  # type: ignore[union-attr]
            out.append((mid, text[1]))
        conn.logout()
        return out
    finally:
        try:
            conn.shutdown()
        except OSError:
            pass


def check_outcome(stack: Stack, results: dict[str, int]) -> None:
    codes = Counter(results.values())
    assert all(c == 250 or 400 <= c < 500 for c in results.values()), codes
    assert any(400 <= c < 500 for c in results.values()), f"no temporary failure seen: {codes}"
    assert codes[250] >= FAIL_AT + AFTER, codes
    stored = inbox_bodies(stack)
    counts = Counter(mid for mid, _ in stored)
    for mid, code in results.items():
        if code == 250:
            assert counts[mid] == 1, (mid, counts[mid])
        else:
            assert counts[mid] <= 1, (mid, counts[mid])
    for mid, text in stored:
        assert mid in results
        assert text == body_of(mid).encode(), mid

    # Leaks: run the cleanup, then S3 objects == the objects the dictmap references.
    done = subprocess.run(
        [sys.executable, "-m", "columba.cli", "obox", "cleanup", "-c", str(stack.server.conf),
         "-u", DEMO_USER, "--grace", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    async def referenced() -> tuple[set[str], int]:
        d = create_dict("postgresql", {"pgsql_url": stack.pgsql_url})
        try:
            rows = await d.iterate(f"shared/dictmap/{DEMO_USER}/")
        finally:
            await d.close()
        oids = {v for _k, v in rows if v}
        mailrows = sum(1 for k, _v in rows if re.search(r"/mailboxes/[0-9a-f]+/[^/]+$", k))
        return oids, mailrows

    oids, mailrows = asyncio.run(referenced())
    in_s3 = {
        k.rsplit("/", 1)[1] for k in stack.object_keys() if k.startswith(f"{DEMO_USER}/mails/")
    }
    assert in_s3 == oids
    assert mailrows == len(stored)


# ---------------------------------------------------------------------- S3


def restart_s3(stack: Stack) -> None:
    proc = stack.s3.process
    args = [str(a) for a in proc.args]  # type: ignore[union-attr]
    proc.terminate()
    proc.wait(15)
    time.sleep(DOWN_SECONDS)
    log = stack.s3.data_dir / "weed.log"
    with open(log, "ab") as out:
        stack.s3.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=stack.s3.data_dir,
        )
    _wait_ready(stack.s3, 60)


@pytest.fixture
def s3_stack(tmp_path: Path) -> Iterator[Stack]:
    st = start_stack(tmp_path, EXTRA)
    try:
        st.server.start()
        yield st
    finally:
        st.server.stop()
        st.s3.stop()


def test_s3_down_mid_stream(s3_stack: Stack) -> None:
    stack = s3_stack
    worker = Deliverer(stack.server.lmtp_port, lambda: restart_s3(stack))
    worker.start()
    worker.join(180)
    assert not worker.is_alive()
    check_outcome(stack, worker.results)


# ---------------------------------------------------------------------- PostgreSQL


def restart_pg(pg: PgServer) -> None:
    pg_ctl = str(pg.bindir / "pg_ctl")
    stopped = pg.run([pg_ctl, "-D", str(pg.datadir), "-m", "immediate", "-w", "stop"])
    assert stopped.returncode == 0, stopped.stderr
    time.sleep(DOWN_SECONDS)
    options = (
        f"-k {pg.root} -p {pg.port} -c listen_addresses=127.0.0.1 "
        "-c max_connections=200 -c fsync=off -c full_page_writes=off"
    )
    started = pg.run(
        [pg_ctl, "-D", str(pg.datadir), "-o", options, "-l", str(pg.root / "server.log"),
         "-w", "-t", "60", "start"],
        timeout=90,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr


@pytest.fixture
def pg_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, PgServer]]:
    from tests import pg_server

    pg = start_pg_server()
    monkeypatch.setattr(pg_server, "_SHARED", pg)  # start_stack creates its database here
    try:
        st = start_stack(tmp_path, EXTRA)
        try:
            st.server.start()
            yield st, pg
        finally:
            st.server.stop()
            st.s3.stop()
    finally:
        pg.stop()


def test_postgresql_down_mid_stream(pg_stack: tuple[Stack, PgServer]) -> None:
    stack, pg = pg_stack
    worker = Deliverer(stack.server.lmtp_port, lambda: restart_pg(pg))
    worker.start()
    worker.join(180)
    assert not worker.is_alive()
    check_outcome(stack, worker.results)
