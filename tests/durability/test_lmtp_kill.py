"""kill -9 during LMTP delivery: nothing acknowledged is lost or doubled, nothing is half-written.

A client thread streams deliveries (two recipients each) to the real server and records every
(recipient, Message-ID) that got a ``250``. Mid-stream the server's whole process group gets
SIGKILL. After a restart, through the storage API:

* every acknowledged message is in the recipient's INBOX exactly once;
* every stored message is complete (its bytes are exactly what was sent, after the trace
  headers), acknowledged or not;
* the restarted server accepts the messages that were not acknowledged (an MTA's retry), and
  still no acknowledged message appears twice.
"""

from __future__ import annotations

import re
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from columba.demo import DEMO_USER
from tests.e2e.test_lmtp import SECOND_USER, ColumbaServer, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

N = 200
KILL_AFTER = 60
RECIPIENTS = (DEMO_USER, SECOND_USER)
_MID = re.compile(rb"^Message-ID: <([^>]+)>\r$", re.M | re.I)


def body_for(mid: str) -> str:
    # ~40 KB, so that a kill often lands while a message is being written
    return "".join(f"{mid} line {i:05d} " + "x" * 60 + "\r\n" for i in range(500))


def message_for(mid: str) -> bytes:
    return make_message(mid, body_for(mid))


class Streamer(threading.Thread):
    """Delivers N messages over one LMTP connection until the server goes away."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.attempted: list[str] = []
        self.acked: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def run(self) -> None:
        try:
            lmtp = smtplib.LMTP("127.0.0.1", self.port)
            lmtp.ehlo("stream.example")
            for i in range(N):
                mid = f"kill-{i:04d}@durability.test"
                self.attempted.append(mid)
                assert lmtp.mail("stream@example.com")[0] == 250
                for rcpt in RECIPIENTS:
                    assert lmtp.rcpt(rcpt)[0] == 250
                replies = [lmtp.data(message_for(mid))]
                replies.append(lmtp.getreply())
                for rcpt, (code, _text) in zip(RECIPIENTS, replies, strict=True):
                    if code == 250:
                        with self._lock:
                            self.acked.append((rcpt, mid))
        except (OSError, smtplib.SMTPException) as exc:
            self.error = exc  # the server was killed


def stored_ids(server: ColumbaServer, user: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for message in server.messages(user):
        m = _MID.search(message.split(b"\r\n\r\n", 1)[0] + b"\r\n")
        assert m is not None, message[:300]
        mid = m[1].decode()
        # complete: trace headers on top of exactly the bytes that were sent
        assert message.endswith(message_for(mid)), f"{user}: {mid} is damaged"
        assert message.startswith(b"Return-Path: <stream@example.com>\r\n")
        counts[mid] += 1
    return counts


def test_acknowledged_deliveries_survive_sigkill(tmp_path: Path) -> None:
    server = ColumbaServer(tmp_path, extra_conf="")
    server.start()
    try:
        streamer = Streamer(server.lmtp_port)
        streamer.start()
        deadline = time.monotonic() + 120
        while streamer.acked_count() < KILL_AFTER * len(RECIPIENTS) and streamer.is_alive():
            assert time.monotonic() < deadline, "deliveries too slow"
            time.sleep(0.005)
        assert streamer.is_alive(), f"stream ended before the kill: {streamer.error}"
        server.kill()
        streamer.join(60)
        assert not streamer.is_alive()
        assert isinstance(streamer.error, OSError | smtplib.SMTPException), streamer.error
        attempted = list(streamer.attempted)
        acked = list(streamer.acked)
        assert len(attempted) < N, "the kill came after the last message"

        server.start()
        for user in RECIPIENTS:
            counts = stored_ids(server, user)
            acked_here = {mid for rcpt, mid in acked if rcpt == user}
            for mid in acked_here:
                assert counts[mid] == 1, f"{user}: acknowledged {mid} stored {counts[mid]} times"
            assert set(counts) <= set(attempted)
            # at most the message in flight at the kill can be stored without a 250
            assert len(set(counts) - acked_here) <= 1

        # an MTA retries each recipient that got no 250; the restarted server takes them
        retry = [(mid, [r for r in RECIPIENTS if (r, mid) not in acked]) for mid in attempted]
        retry = [(mid, rcpts) for mid, rcpts in retry if rcpts]
        assert retry, "the message in flight at the kill must be unacknowledged"
        lmtp = smtplib.LMTP("127.0.0.1", server.lmtp_port)
        try:
            lmtp.ehlo("retry.example")
            for mid, rcpts in retry:
                lmtp.mail("stream@example.com")
                for rcpt in rcpts:
                    assert lmtp.rcpt(rcpt)[0] == 250
                assert lmtp.data(message_for(mid))[0] == 250
                for _ in rcpts[1:]:
                    assert lmtp.getreply()[0] == 250
        finally:
            lmtp.quit()
        for user in RECIPIENTS:
            counts = stored_ids(server, user)
            for mid in attempted:
                assert counts[mid] >= 1, f"{user}: {mid} missing after the retry"
            for rcpt, mid in acked:
                if rcpt == user:
                    assert counts[mid] == 1, f"{user}: acknowledged {mid} doubled"
    finally:
        server.stop()
