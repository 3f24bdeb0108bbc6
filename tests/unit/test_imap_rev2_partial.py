"""IMAP4rev2 (RFC 9051) on by default, and PARTIAL (RFC 9394), on in-process sessions over
real storage: IMAP4rev1 clients see RFC 3501 answers; after ``ENABLE IMAP4rev2`` non-NFC
mailbox names are taken in NFC everywhere (APPEND, COPY/MOVE, SUBSCRIBE, LIST/LSUB
patterns), a failed ``SEARCH RETURN (SAVE)`` is ``NO [NOTSAVED]`` with ``$`` emptied, a
message object that can't be read back is ``NO [CORRUPTION]``, a server shutdown ends
with ``* BYE [ALERT]``, and RFC822.* FETCH items still work. PARTIAL: the codec's UID FETCH
modifier and the paged answers of UID FETCH and ESEARCH."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from pathlib import Path

import pytest

from columba.imap.service import session_for
from columba.imap.session import ImapSession
from columba.net.connection import ConnectionInfo
from columba.proto.imap import commands as c
from columba.proto.imap.events import ProtocolError
from columba.storage.api import StorageError
from tests.unit.test_imap_codec import one, parse_all
from tests.unit.test_imap_session import PASSWORD, USER, Client, _context, serving

pytestmark = pytest.mark.timeout(60)

NFC = "R\u00e9sum\u00e9"
NFD = unicodedata.normalize("NFD", NFC)
assert NFC != NFD


def _status(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n")


def _q(name: str) -> str:
    return '"' + name + '"'


async def _login(c: Client) -> None:
    await c.line()
    assert _status(await c.cmd(f"LOGIN {USER} {PASSWORD}")).startswith(b"OK")


async def _fill(c: Client, count: int, mailbox: str = "INBOX") -> None:
    for i in range(1, count + 1):
        body = f"From: a@example.com\r\nSubject: m{i}\r\n\r\nbody {i}\r\n".encode()
        await c.send(f"a{i} APPEND {mailbox} {{{len(body)}+}}\r\n".encode() + body + b"\r\n")
        assert _status(await c.until(f"a{i}")).startswith(b"OK")


def _fetch_uids(lines: list[bytes]) -> list[int]:
    return [int(m) for m in re.findall(rb"FETCH \(UID (\d+)", b"".join(lines))]


# ---------------------------------------------------------------------- IMAP4rev1 unchanged


def test_rev1_client_sees_rfc3501_with_rev2_advertised(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            assert b" IMAP4rev2 " in await c.line()
            assert _status(await c.cmd(f"LOGIN {USER} {PASSWORD}")).startswith(b"OK")
            await _fill(c, 2)
            lines = await c.cmd("SELECT INBOX")
            assert b"* 2 RECENT\r\n" in lines
            assert b"* OK [UNSEEN 1] First unseen.\r\n" in lines
            assert not any(line.startswith(b"* LIST ") for line in lines)
            assert (await c.cmd("SEARCH ALL"))[0] == b"* SEARCH 1 2\r\n"
            assert (await c.cmd("SEARCH RECENT"))[0] == b"* SEARCH 1 2\r\n"
            lines = await c.cmd("FETCH 1 (FLAGS)")
            assert lines[0] == b"* 1 FETCH (FLAGS (\\Recent))\r\n"
            assert _status(await c.cmd("CHECK")) == b"OK Check completed."
            lines = await c.cmd("STATUS Sent (RECENT)")
            assert lines[0] == b"* STATUS Sent (RECENT 0)\r\n"
            lines = await c.cmd('LIST "" "nothere/*"')
            assert _status(lines) == b"OK List completed."

    asyncio.run(main())


# ---------------------------------------------------------------------- NFC mailbox names


def test_rev2_non_nfc_names_are_taken_in_nfc(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            assert (await c.cmd("ENABLE IMAP4rev2"))[0] == b"* ENABLED IMAP4rev2\r\n"
            assert _status(await c.cmd(f"CREATE {_q(NFC)}")).startswith(b"OK")
            # APPEND to the NFD spelling lands in the NFC mailbox
            body = b"Subject: x\r\n\r\nx\r\n"
            await c.send(f"p1 APPEND {_q(NFD)} {{{len(body)}+}}\r\n".encode() + body + b"\r\n")
            assert _status(await c.until("p1")).startswith(b"OK [APPENDUID ")
            lines = await c.cmd(f"STATUS {_q(NFC)} (MESSAGES)")
            assert lines[0] == f"* STATUS {_q(NFC)} (MESSAGES 1)\r\n".encode()
            # COPY and MOVE to the NFD spelling
            await _fill(c, 2)
            await c.cmd("SELECT INBOX")
            assert _status(await c.cmd(f"COPY 1 {_q(NFD)}")).startswith(b"OK [COPYUID ")
            lines = await c.cmd(f"MOVE 2 {_q(NFD)}")
            assert _status(lines) == b"OK Move completed."
            assert any(line.startswith(b"* OK [COPYUID ") for line in lines)
            lines = await c.cmd(f"STATUS {_q(NFC)} (MESSAGES)")
            assert lines[0] == f"* STATUS {_q(NFC)} (MESSAGES 3)\r\n".encode()
            # LIST and LSUB patterns in NFD find the NFC name
            lines = await c.cmd(f'LIST "" {_q(NFD)}')
            assert lines[0] == f'* LIST (\\HasNoChildren) "/" {_q(NFC)}\r\n'.encode()
            lines = await c.cmd(f'LIST "" {_q(NFD[:3] + "%")}')
            assert lines[0] == f'* LIST (\\HasNoChildren) "/" {_q(NFC)}\r\n'.encode()
            # SUBSCRIBE / UNSUBSCRIBE the NFD spelling act on the NFC mailbox
            assert _status(await c.cmd(f"SUBSCRIBE {_q(NFD)}")).startswith(b"OK")
            lines = await c.cmd('LIST (SUBSCRIBED) "" "R*"')
            assert lines[:-1] == [
                f'* LIST (\\Subscribed \\HasNoChildren) "/" {_q(NFC)}\r\n'.encode()
            ]
            lines = await c.cmd(f'LSUB "" {_q(NFD)}')
            assert lines[:-1] == [f'* LSUB () "/" {_q(NFC)}\r\n'.encode()]
            assert _status(await c.cmd(f"UNSUBSCRIBE {_q(NFD)}")).startswith(b"OK")
            lines = await c.cmd('LIST (SUBSCRIBED) "" "R*"')
            assert lines[:-1] == []

    asyncio.run(main())


# ---------------------------------------------------------------------- NOTSAVED, CORRUPTION


def test_failed_search_save_is_notsaved_and_empties_dollar(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 3)
            await c.cmd("ENABLE IMAP4rev2")
            await c.cmd("SELECT INBOX")
            assert _status(await c.cmd("SEARCH RETURN (SAVE) ALL")).startswith(b"OK")
            assert _fetch_uids(await c.cmd("FETCH $ (UID)")) == [1, 2, 3]
            sel = sessions[0].selected
            assert sel is not None

            async def broken(uid: int) -> bytes:
                raise StorageError("reading message: backend says no")

            sel.view.read_message = broken  # type: ignore[method-assign]
            lines = await c.cmd("SEARCH RETURN (SAVE) BODY body")
            assert _status(lines) == b"NO [NOTSAVED] reading message: backend says no"
            assert _fetch_uids(await c.cmd("FETCH $ (UID)")) == []
            # without SAVE the same failure keeps its own answer
            lines = await c.cmd("SEARCH RETURN (COUNT) BODY body")
            assert _status(lines) == b"NO reading message: backend says no"
            # a BAD stays a BAD, and $ is emptied too
            del sel.view.read_message
            assert _status(await c.cmd("SEARCH RETURN (SAVE) ALL")).startswith(b"OK")
            assert _status(await c.cmd("SEARCH RETURN (SAVE) NEW")).startswith(b"BAD")
            assert _fetch_uids(await c.cmd("FETCH $ (UID)")) == []

    asyncio.run(main())


def _is_message(path: Path) -> bool:
    """The demo stores messages zstd-compressed (fs compress) under objects/."""
    import zstandard

    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data.startswith(b"\x28\xb5\x2f\xfd"):
        return False
    try:
        plain = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except zstandard.ZstdError:
        return False
    return b"Subject: m1\r\n" in plain


def test_unreadable_message_object_is_corruption(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 1)
            objects = [p for p in (tmp_path / "objects").rglob("*") if _is_message(p)]
            assert len(objects) == 1
            data = objects[0].read_bytes()
            objects[0].write_bytes(data[: len(data) // 2])  # a truncated zstd object
            await c.cmd("SELECT INBOX")
            lines = await c.cmd("FETCH 1 (BODY.PEEK[])")
            status = _status(lines)
            assert status.startswith(b"NO [CORRUPTION] reading message: ")
            assert not any(b"FETCH (" in line for line in lines)
            # what the cached parse gives still works
            lines = await c.cmd("FETCH 1 (ENVELOPE)")
            assert _status(lines).startswith(b"OK")

    asyncio.run(main())


def test_index_corruption_helpers() -> None:
    import sqlite3

    from columba.fs.api import FsCorrupt, FsError
    from columba.storage.api import StorageCorrupted
    from columba.storage.index import is_corruption
    from columba.storage.obox import _fs_error

    assert is_corruption(sqlite3.DatabaseError("database disk image is malformed"))
    assert is_corruption(sqlite3.DatabaseError("file is not a database"))
    assert not is_corruption(sqlite3.OperationalError("no such table: x"))
    mapped = _fs_error(FsCorrupt("truncated zstd object"), "reading message")
    assert isinstance(mapped, StorageCorrupted) and mapped.imap_code == "CORRUPTION"
    assert _fs_error(FsError("other"), "reading message").imap_code is None


# ---------------------------------------------------------------------- ALERT, RFC822.*


def test_shutdown_says_bye_with_alert(tmp_path: Path) -> None:
    async def main() -> None:
        ctx = _context(tmp_path, "")
        tasks: list[asyncio.Task[None]] = []
        sessions: list[ImapSession] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            info = ConnectionInfo(
                "127.0.0.1", 143, "127.0.0.1", 50000, "imap", "imap-login", False, False, "s"
            )
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
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        c = Client(reader, writer)
        try:
            await _login(c)
            await c.cmd("SELECT INBOX")
            tasks[0].cancel()  # what ConnectionServer.drain does past its grace time
            assert await c.line() == b"* BYE [ALERT] Server shutting down.\r\n"
            assert await c.line() == b""
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
            assert sessions[0].user is None and sessions[0].selected is None  # cleaned up
        finally:
            writer.close()
            server.close()
            await ctx.storage.close()

    asyncio.run(main())


def test_alert_response() -> None:
    session = ImapSession.__new__(ImapSession)
    session._out = bytearray()
    session.enabled = set()
    session.alert("Mailbox quota almost full.")
    assert bytes(session._out) == b"* OK [ALERT] Mailbox quota almost full.\r\n"


def test_rfc822_items_still_work_in_rev2(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 1)
            await c.cmd("ENABLE IMAP4rev2")
            await c.cmd("EXAMINE INBOX")
            lines = await c.cmd("FETCH 1 (RFC822.SIZE RFC822.HEADER RFC822.TEXT RFC822)")
            header = b"From: a@example.com\r\nSubject: m1\r\n\r\n"
            text = b"body 1\r\n"
            assert lines[0] == (
                b"* 1 FETCH (RFC822.SIZE %d RFC822.HEADER {%d}\r\n%s RFC822.TEXT {%d}\r\n%s "
                b"RFC822 {%d}\r\n%s)\r\n"
                % (
                    len(header + text),
                    len(header),
                    header,
                    len(text),
                    text,
                    len(header + text),
                    header + text,
                )
            )
            assert _status(lines) == b"OK Fetch completed."

    asyncio.run(main())


# ---------------------------------------------------------------------- PARTIAL (RFC 9394)


def test_codec_uid_fetch_partial_modifier() -> None:
    cmd = one(b"a UID FETCH 1:* (FLAGS) (PARTIAL -1:-30)\r\n")
    assert isinstance(cmd, c.FetchCommand) and cmd.uid
    assert cmd.partial == (-1, -30)
    cmd = one(b"a UID FETCH 1:* FLAGS (CHANGEDSINCE 5 PARTIAL 500:401)\r\n")
    assert isinstance(cmd, c.FetchCommand)
    assert cmd.partial == (401, 500) and cmd.changedsince == 5
    assert isinstance(one(b"a UID FETCH 1 FLAGS\r\n"), c.FetchCommand)
    assert one(b"a UID FETCH 1 FLAGS\r\n").partial is None  # type: ignore[attr-defined]
    for bad in (
        b"a FETCH 1:* (FLAGS) (PARTIAL 1:10)\r\n",  # UID FETCH only
        b"a UID FETCH 1:* (FLAGS) (PARTIAL 1:10 PARTIAL 11:20)\r\n",
        b"a UID FETCH 1:* (FLAGS) (PARTIAL 0:10)\r\n",
        b"a UID FETCH 1:* (FLAGS) (PARTIAL -1:10)\r\n",
        b"a UID FETCH 1:* (FLAGS) (PARTIAL 1:*)\r\n",
        b"a UID FETCH 1:* (FLAGS) (PARTIAL)\r\n",
    ):
        events = parse_all(bad)
        assert len(events) == 1 and isinstance(events[0], ProtocolError), bad
        assert events[0].status == "BAD"


def test_partial_advertised_and_uid_fetch_pages(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            lines = await c.cmd("CAPABILITY")
            assert b" PARTIAL " in lines[0]
            await _fill(c, 6)
            await c.cmd("SELECT INBOX")
            assert _status(await c.cmd("UID STORE 2 +FLAGS.SILENT (\\Deleted)")).startswith(b"OK")
            assert _status(await c.cmd("EXPUNGE")).startswith(b"OK")  # UIDs 1 3 4 5 6
            assert _fetch_uids(await c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL 1:2)")) == [1, 3]
            assert _fetch_uids(await c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL 3:4)")) == [4, 5]
            assert _fetch_uids(await c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)")) == [5, 6]
            assert _fetch_uids(await c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL 4:100)")) == [5, 6]
            lines = await c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL 6:10)")
            assert lines == [lines[-1]] and _status(lines) == b"OK Fetch completed."
            # the range counts the messages of the UID set (expunged UID 2 doesn't count)
            assert _fetch_uids(await c.cmd("UID FETCH 2:5 (FLAGS) (PARTIAL 2:2)")) == [4]
            lines = await c.cmd("UID FETCH 1:* (UID) (PARTIAL -2:-1)")
            assert lines[:-1] == [b"* 4 FETCH (UID 5)\r\n", b"* 5 FETCH (UID 6)\r\n"]
            # with CHANGEDSINCE the range pages through the changed messages
            lines = await c.cmd("UID FETCH 1:* (MODSEQ)")
            top = max(int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(lines)))
            await c.cmd("UID STORE 1,4,6 +FLAGS.SILENT (\\Flagged)")
            lines = await c.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {top} PARTIAL 1:2)")
            assert _fetch_uids(lines) == [1, 4]
            lines = await c.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {top} PARTIAL -1:-1)")
            assert _fetch_uids(lines) == [6]
            assert b"MODSEQ (" in lines[0]
            assert _status(await c.cmd("FETCH 1:* (FLAGS) (PARTIAL 1:2)")).startswith(b"BAD")

    asyncio.run(main())


def test_partial_esearch_modseq_is_of_the_page(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 4)
            await c.cmd("SELECT INBOX")
            await c.cmd("STORE 4 +FLAGS.SILENT (\\Flagged)")  # message 4 gets the top modseq
            lines = await c.cmd("FETCH 1:4 (MODSEQ)")
            modseqs = [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(lines))]
            assert modseqs[3] == max(modseqs) and modseqs[1] < modseqs[3]
            lines = await c.cmd("SEARCH RETURN (PARTIAL 1:2) MODSEQ 1")
            assert lines[0] == b'* ESEARCH (TAG "c%d") PARTIAL (1:2 1:2) MODSEQ %d\r\n' % (
                c.n,
                max(modseqs[:2]),
            )
            lines = await c.cmd("SEARCH RETURN (PARTIAL 1:2 COUNT) MODSEQ 1")
            assert lines[0] == b'* ESEARCH (TAG "c%d") PARTIAL (1:2 1:2) COUNT 4 MODSEQ %d\r\n' % (
                c.n,
                modseqs[3],
            )
            lines = await c.cmd("UID SEARCH RETURN (PARTIAL -1:-1 MIN) ALL")
            assert lines[0] == b'* ESEARCH (TAG "c%d") UID MIN 1 PARTIAL (-1:-1 4)\r\n' % c.n

    asyncio.run(main())
