"""QRESYNC (RFC 7162) end to end on the real server (``columba serve``, two workers), the way
Thunderbird resynchronises: it remembers UIDVALIDITY and HIGHESTMODSEQ, disconnects, another
client changes the mailbox (flags, expunges, new mail), then it reconnects with ``ENABLE
QRESYNC`` and ``SELECT INBOX (QRESYNC (uidvalidity modseq known-uids))`` and must learn every
change from ``VANISHED (EARLIER)`` and the FETCH responses, then stay in sync through IDLE."""

from __future__ import annotations

import re

import pytest

from tests.e2e.imap_server import ImapServer, RawClient, imap_server, tagged_status

__all__ = ["imap_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALICE = "alice@example.com"


def _number(lines: list[bytes], pattern: bytes) -> int:
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"{pattern!r} not in {lines!r}")


def _append(client: RawClient, subject: str) -> int:
    body = f"From: a@example.com\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    lines = client.command("APPEND INBOX {}", body)
    return _number(lines, rb"APPENDUID \d+ (\d+)")


def test_thunderbird_style_resync(imap_server: ImapServer) -> None:
    # first visit: Thunderbird caches UIDs, flags, UIDVALIDITY and HIGHESTMODSEQ
    with RawClient(imap_server.port) as tb:
        tb.login(ALICE)
        uids = [_append(tb, f"m{i}") for i in range(5)]
        assert tagged_status(tb.command("ENABLE QRESYNC")) == b"OK Enabled."
        lines = tb.command("SELECT INBOX")
        uidvalidity = _number(lines, rb"UIDVALIDITY (\d+)")
        modseq = _number(lines, rb"HIGHESTMODSEQ (\d+)")
        lines = tb.command("UID FETCH 1:* (FLAGS MODSEQ)")
        assert len([x for x in lines if b" FETCH " in x]) == 5
        tb.command("LOGOUT")

    # meanwhile another client works on the mailbox
    with RawClient(imap_server.port) as other:
        other.login(ALICE)
        other.command("SELECT INBOX")
        other.command(f"UID STORE {uids[1]} +FLAGS (\\Seen $Label1)")
        other.command(f"UID STORE {uids[2]},{uids[4]} +FLAGS (\\Deleted)")
        assert tagged_status(other.command("EXPUNGE")) == b"OK Expunge completed."
        new_uid = _append(other, "new")
        other.command("LOGOUT")

    # Thunderbird comes back
    with RawClient(imap_server.port) as tb:
        tb.login(ALICE)
        assert tb.command("ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC\r\n"
        known = f"{uids[0]}:{uids[-1]}"
        lines = tb.command(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} {known}))")
        assert tagged_status(lines) == b"OK [READ-WRITE] Select completed."
        assert b"* 4 EXISTS\r\n" in lines
        assert f"* VANISHED (EARLIER) {uids[2]},{uids[4]}\r\n".encode() in lines
        fetches = [x for x in lines if b" FETCH " in x]
        assert len(fetches) == 1  # the new message is outside known-uids: EXISTS tells
        assert re.fullmatch(
            rb"\* 2 FETCH \(UID %d FLAGS \(\\Seen \$Label1\) MODSEQ \((\d+)\)\)\r\n" % uids[1],
            fetches[0],
        )
        new_modseq = _number(lines, rb"HIGHESTMODSEQ (\d+)")
        assert new_modseq > modseq
        # the new message: UID FETCH n:* after UIDNEXT, as a client does
        lines = tb.command(f"UID FETCH {new_uid}:* (UID FLAGS MODSEQ)")
        assert re.fullmatch(
            rb"\* 4 FETCH \(UID %d FLAGS \(\) MODSEQ \(\d+\)\)\r\n" % new_uid, lines[0]
        )

        # live: another session expunges while Thunderbird idles -> VANISHED, HIGHESTMODSEQ
        with RawClient(imap_server.port) as other:
            other.login(ALICE)
            other.command("SELECT INBOX")
            tb.send(b"idle IDLE\r\n")
            assert tb.read_line() == b"+ idling\r\n"
            other.command(f"UID STORE {uids[0]} +FLAGS (\\Deleted)")
            other.command(f"UID EXPUNGE {uids[0]}")
            line = tb.read_line()
            if b" FETCH " in line:  # the \\Deleted change, when seen before the expunge
                assert line.startswith(b"* 1 FETCH (UID %d MODSEQ (" % uids[0])
                line = tb.read_line()
            assert line == b"* VANISHED %d\r\n" % uids[0]
            assert re.fullmatch(rb"\* OK \[HIGHESTMODSEQ \d+\] Highest\r\n", tb.read_line())
            tb.send(b"DONE\r\n")
            assert tb.read_until("idle")[-1] == b"idle OK Idle completed.\r\n"
        lines = tb.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {new_modseq} VANISHED)")
        assert lines[0] == b"* VANISHED (EARLIER) %d\r\n" % uids[0]
        tb.command("LOGOUT")


def test_condstore_unchangedsince_between_clients(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as a, RawClient(imap_server.port) as b:
        a.login("bob@example.com")
        b.login("bob@example.com")
        uid = _append(a, "conflict")
        lines = a.command("SELECT INBOX (CONDSTORE)")
        b.command("SELECT INBOX")
        seq = _number(lines, rb"\* (\d+) EXISTS")  # the new message is the last
        lines = a.command(f"UID FETCH {uid} (MODSEQ)")
        modseq = _number(lines, rb"MODSEQ \((\d+)\)")
        # b changes the flags first; a's conditional store must fail with MODIFIED
        b.command(f"UID STORE {uid} +FLAGS ($Done)")
        lines = a.command(f"UID STORE {uid} (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)")
        assert lines[-1].endswith(b"OK [MODIFIED %d] Conditional store failed.\r\n" % uid)
        # the unsolicited FETCH about b's change carries MODSEQ
        assert any(
            re.fullmatch(
                rb"\* %d FETCH \(MODSEQ \(\d+\) FLAGS \((\\Recent )?\$Done\)\)\r\n" % seq, x
            )
            for x in lines
        ), lines
