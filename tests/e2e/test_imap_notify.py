"""End-to-end NOTIFY (RFC 5465): the real ``columba serve`` (two IMAP workers plus the LMTP
role), one connection that set NOTIFY and stays quiet, changes made by another connection and
by LMTP delivery (another process), notifications read without sending a command."""

from __future__ import annotations

import select
import smtplib
import time

import pytest

from tests.e2e.imap_server import ImapServer, RawClient, imap_server, tagged_status

__all__ = ["imap_server"]

pytestmark = [pytest.mark.e2e]

USER = "carol@example.com"


def unbuffered(client: RawClient) -> RawClient:
    """Read responses byte by byte, so that select() on the socket tells whether a line is
    there (a buffered reader may hold lines select can't see)."""
    client.file.close()
    client.file = client.sock.makefile("rb", buffering=0)  # type: ignore[assignment]
    return client


def _readable(client: RawClient, seconds: float) -> bool:
    """Whether a response line can be read within *seconds* (select on the socket; the
    file object can't go on after a read timeout)."""
    ready, _, _ = select.select([client.sock], [], [], max(0.0, seconds))
    return bool(ready)


def wait_for(client: RawClient, want: bytes, timeout: float = 3.0) -> list[bytes]:
    """Read unsolicited lines (no command sent) until one contains *want*."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while _readable(client, deadline - time.monotonic()):
        line = client.read_line()
        got.append(line)
        if want in line:
            return got
    raise AssertionError(f"no {want!r} within {timeout}s; got {got!r}")


def quiet(client: RawClient, seconds: float = 0.6) -> list[bytes]:
    """What arrives unsolicited within *seconds* (expected: nothing)."""
    got: list[bytes] = []
    while _readable(client, seconds):
        got.append(client.read_line())
    return got


def deliver(server: ImapServer, subject: str) -> None:
    with smtplib.LMTP("127.0.0.1", server.ports["lmtp"]) as lmtp:
        lmtp.sendmail("x@example.net", [USER], f"Subject: {subject}\r\n\r\nbody\r\n")


def test_notify_between_commands_across_processes(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as watcher, RawClient(imap_server.port) as other:
        unbuffered(watcher)
        watcher.login(USER)
        other.login(USER)
        assert b" NOTIFY" in watcher.command("CAPABILITY")[0]
        other.command("CREATE work")
        lines = watcher.command(
            "NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
            "(personal (MessageNew MessageExpunge MailboxName SubscriptionChange))"
        )
        assert tagged_status(lines).startswith(b"OK")
        assert any(line.startswith(b"* STATUS work (MESSAGES 0 ") for line in lines)
        assert any(line.startswith(b"* STATUS INBOX (MESSAGES ") for line in lines)
        lines = watcher.command("SELECT INBOX")
        exists = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))

        # LMTP delivery (the lmtp role: another process) reaches the quiet watcher
        deliver(imap_server, "via lmtp")
        got = wait_for(watcher, b"FETCH")
        assert b"* %d EXISTS\r\n" % (exists + 1) in got
        assert got[-1].startswith(b"* %d FETCH (UID " % (exists + 1))
        assert b"FLAGS (\\Recent)" in got[-1]

        # the other connection's changes to other mailboxes: STATUS and LIST
        other.command("APPEND work {}", b"Subject: w\r\n\r\nw\r\n")
        got = wait_for(watcher, b"* STATUS work")
        assert got[-1] == b"* STATUS work (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
        other.command("SUBSCRIBE work")
        got = wait_for(watcher, b"* LIST")
        assert got[-1] == b'* LIST (\\Subscribed \\HasNoChildren) "/" work\r\n'
        other.command("RENAME work play")
        got = wait_for(watcher, b"* LIST")
        assert got[-1].startswith(b"* LIST (")  # (the subscription moves along)
        assert got[-1].endswith(b' "/" play ("OLDNAME" (work))\r\n')
        other.command("DELETE play")
        got = wait_for(watcher, b"* LIST")
        assert got[-1] == b'* LIST (\\NonExistent) "/" play\r\n'

        # flag change and expunge in the selected mailbox ("selected": expunges at once)
        other.command("SELECT INBOX")
        other.command(f"STORE {exists + 1} +FLAGS (\\Flagged)")
        got = wait_for(watcher, b"FETCH")
        assert got[-1] == b"* %d FETCH (FLAGS (\\Flagged \\Recent))\r\n" % (exists + 1)
        other.command(f"STORE {exists + 1} +FLAGS.SILENT (\\Deleted)")
        other.command("EXPUNGE")
        got = wait_for(watcher, b"EXPUNGE")
        assert got[-1] == b"* %d EXPUNGE\r\n" % (exists + 1)

        # pipelined commands still answered in order, nothing in between lost
        watcher.send(b"p1 NOOP\r\np2 NOOP\r\n")
        lines = watcher.read_until("p2")
        tags = [x.split(b" ", 1)[0] for x in lines if not x.startswith(b"*")]
        assert tags == [b"p1", b"p2"]

        # NOTIFY NONE: nothing more
        assert tagged_status(watcher.command("NOTIFY NONE")).startswith(b"OK")
        other.command("CREATE later")
        assert quiet(watcher) == []
        other.command("DELETE later")


def test_selected_delayed_keeps_expunges_for_a_command(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as watcher, RawClient(imap_server.port) as other:
        unbuffered(watcher)
        watcher.login(USER)
        other.login(USER)
        other.command("CREATE delayed")
        other.command("APPEND delayed {}", b"Subject: d\r\n\r\nd\r\n")
        watcher.command("SELECT delayed")
        lines = watcher.command(
            "NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))"
        )
        assert tagged_status(lines).startswith(b"OK")
        other.command("SELECT delayed")
        other.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        got = wait_for(watcher, b"FETCH")
        assert got[-1].startswith(b"* 1 FETCH (FLAGS (\\Deleted")
        other.command("EXPUNGE")
        assert quiet(watcher) == []  # not while quiet
        lines = watcher.command("FETCH 1 (FLAGS)")  # nor during FETCH by number
        assert b"* 1 EXPUNGE\r\n" not in lines
        lines = watcher.command("NOOP")
        assert b"* 1 EXPUNGE\r\n" in lines


def test_notify_refusals(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as client:
        client.login(USER)
        assert tagged_status(client.command("NOTIFY SET (selected (MessageNew))")).startswith(
            b"BAD"
        )
        lines = client.command("NOTIFY SET (personal (MailboxMetadataChange))")
        assert tagged_status(lines).startswith(b"NO [BADEVENT (")
        many = " ".join(f"m{i}" for i in range(101))
        lines = client.command(f"NOTIFY SET (mailboxes ({many}) (MessageNew MessageExpunge))")
        assert tagged_status(lines).startswith(b"NO [NOTIFICATIONOVERFLOW]")
