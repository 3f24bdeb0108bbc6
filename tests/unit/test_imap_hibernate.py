"""IDLE hibernation (``imap_hibernate_timeout``, :mod:`columba.imap.cmd_idle`): a session idling
long enough closes its mailbox view and user; new mail, flag changes and expunges made by
another session still reach it, DONE still answers, and the session works normally after."""

from __future__ import annotations

import asyncio
from pathlib import Path

from columba.imap.session import ImapSession
from tests.unit.test_imap_session import MESSAGE, PASSWORD, USER, Client, serving

HIBERNATE = "imap_hibernate_timeout = 1s\n"


async def _until_hibernated(session: ImapSession, hibernated: bool = True) -> None:
    for _ in range(200):
        if session.hibernated is hibernated:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"session.hibernated never became {hibernated}")


async def _append(client: Client, tag: str) -> None:
    await client.send(
        b"%s APPEND INBOX {%d+}\r\n" % (tag.encode(), len(MESSAGE)) + MESSAGE + b"\r\n"
    )
    await client.until(tag)


def test_hibernated_session_sees_new_mail_and_answers_done(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, HIBERNATE) as (connect, sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await b.cmd(f"LOGIN {USER} {PASSWORD}")
            await a.cmd("SELECT INBOX")
            session = next(s for s in sessions if s.selected is not None)
            view = session.selected.view if session.selected else None
            await a.send(b"i IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"
            await _until_hibernated(session)
            await _append(b, "x")
            assert await a.line(timeout=5) == b"* 1 EXISTS\r\n"
            assert await a.line() == b"* 1 RECENT\r\n"
            assert not session.hibernated
            assert session.selected is not None and session.selected.view is not view
            await a.send(b"DONE\r\n")
            assert await a.line() == b"i OK Idle completed.\r\n"
            lines = await a.cmd("FETCH 1 (FLAGS)")
            assert lines[0] == b"* 1 FETCH (FLAGS (\\Recent))\r\n"
            # DONE while hibernated (a rev1 session holding \Recent never hibernates: reselect
            # on another session's claim first)
            await a.cmd("ENABLE IMAP4rev2")
            await a.cmd("SELECT INBOX")
            await a.send(b"j IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"
            await _until_hibernated(session)
            await a.send(b"DONE\r\n")
            assert await a.line() == b"j OK Idle completed.\r\n"
            assert not session.hibernated
            lines = await a.cmd("NOOP")
            assert lines[-1].endswith(b"OK NOOP completed.\r\n")

    asyncio.run(main())


def test_hibernated_session_sees_flags_and_expunges(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, HIBERNATE) as (connect, sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await b.cmd(f"LOGIN {USER} {PASSWORD}")
            await _append(b, "x1")
            await _append(b, "x2")
            await _append(b, "x3")
            await b.cmd("SELECT INBOX")
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await a.cmd("ENABLE IMAP4rev2")  # no \Recent: may hibernate with messages
            await a.cmd("SELECT INBOX")
            session = next(s for s in sessions if s.username and s.rev2)
            await a.send(b"i IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"

            await _until_hibernated(session)
            await b.cmd("STORE 1 +FLAGS (\\Flagged)")
            assert await a.line(timeout=5) == b"* 1 FETCH (FLAGS (\\Flagged))\r\n"

            await _until_hibernated(session)
            await b.cmd("STORE 2 +FLAGS (\\Deleted)")
            await b.cmd("EXPUNGE")
            line = await a.line(timeout=5)
            if line.startswith(b"* 2 FETCH"):  # woken between the STORE and the EXPUNGE
                line = await a.line(timeout=5)
            assert line == b"* 2 EXPUNGE\r\n"

            await _until_hibernated(session)
            await _append(b, "x4")
            assert await a.line(timeout=5) == b"* 3 EXISTS\r\n"

            await a.send(b"DONE\r\n")
            assert await a.line() == b"i OK Idle completed.\r\n"
            lines = await a.cmd("FETCH 1:* (UID FLAGS)")
            assert lines[:-1] == [
                b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n",
                b"* 2 FETCH (UID 3 FLAGS ())\r\n",
                b"* 3 FETCH (UID 4 FLAGS ())\r\n",
            ]

    asyncio.run(main())


def test_no_hibernation_by_default(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, sessions):
            a = await connect()
            await a.line()
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            assert sessions[0].hibernate_timeout == 0  # Dovecot's default: never
            await a.cmd("ENABLE IMAP4rev2")
            await a.cmd("SELECT INBOX")
            await a.send(b"i IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"
            await a.send(b"DONE\r\n")
            assert await a.line() == b"i OK Idle completed.\r\n"
            assert not sessions[0].hibernated

    asyncio.run(main())


def test_hibernated_session_whose_mailbox_was_deleted_says_bye(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, HIBERNATE) as (connect, sessions):
            a = await connect()
            b = await connect()
            await a.line()
            await b.line()
            await b.cmd(f"LOGIN {USER} {PASSWORD}")
            await b.cmd("CREATE Box")
            await a.cmd(f"LOGIN {USER} {PASSWORD}")
            await a.cmd("SELECT Box")
            session = next(s for s in sessions if s.selected is not None)
            await a.send(b"i IDLE\r\n")
            assert await a.line() == b"+ idling\r\n"
            await _until_hibernated(session)
            await b.cmd("DELETE Box")
            assert await a.line(timeout=5) == (
                b"* BYE Selected mailbox was deleted, have to disconnect.\r\n"
            )
            assert await a.line() == b""

    asyncio.run(main())
