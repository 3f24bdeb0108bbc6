"""CONDSTORE / QRESYNC (RFC 7162), UTF8=ACCEPT (RFC 6855) and ``ENABLE IMAP4rev2`` (RFC 9051)
on in-process sessions over real storage: the RFCs' examples with this server's modseqs
(captured from its own answers, since obox numbers them itself), checked item by item."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from columba.imap.condstore import uses_modseq, vanished_line
from columba.proto.imap.search import SearchAll, SearchAnd, SearchModSeq, SearchNot
from tests.unit.test_imap_session import PASSWORD, USER, Client, serving

pytestmark = pytest.mark.timeout(60)

REV2 = "imap4rev2_enable = yes\nmail_utf8_extensions = yes\n"


def _status(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n")


def _modseq(lines: list[bytes], pattern: bytes) -> int:
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"{pattern!r} not in {lines!r}")


async def _login(c: Client) -> None:
    await c.line()
    assert _status(await c.cmd(f"LOGIN {USER} {PASSWORD}")).startswith(b"OK")


async def _raw(c: Client, text: bytes) -> list[bytes]:
    c.n += 1
    tag = f"c{c.n}"
    await c.send(tag.encode() + b" " + text + b"\r\n")
    return await c.until(tag)


async def _fill(c: Client, count: int) -> None:
    for i in range(count):
        body = f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode()
        await c.send(f"a{i} APPEND INBOX {{{len(body)}+}}\r\n".encode() + body + b"\r\n")
        assert _status(await c.until(f"a{i}")).startswith(b"OK")


def test_helpers() -> None:
    assert vanished_line([5, 3, 4, 9]) == b"* VANISHED 3:5,9\r\n"
    assert vanished_line([7], earlier=True) == b"* VANISHED (EARLIER) 7\r\n"
    assert vanished_line([]) == b""
    assert uses_modseq(SearchAnd((SearchAll(), SearchNot(SearchModSeq(modseq=4)))))
    assert not uses_modseq(SearchAnd((SearchAll(),)))


def test_capabilities_and_enable(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            greeting = await c.line()
            # imap4rev2_enable defaults to yes: advertised next to IMAP4rev1, before and
            # after login; UTF8=ACCEPT still waits for mail_utf8_extensions
            assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR ")
            lines = await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert b" CONDSTORE QRESYNC " in lines[-1]
            assert b"UTF8=ACCEPT" not in lines[-1] and b"IMAP4rev1 IMAP4rev2 " in lines[-1]
            lines = await c.cmd("ENABLE QRESYNC UTF8=ACCEPT IMAP4rev2")
            assert lines[0] == b"* ENABLED QRESYNC IMAP4rev2\r\n"
            # QRESYNC implied CONDSTORE: nothing new to enable
            assert (await c.cmd("ENABLE CONDSTORE"))[0] == b"* ENABLED\r\n"

        async with serving(tmp_path / "off", "imap4rev2_enable = no\n") as (connect, _sessions):
            c = await connect()
            assert b"IMAP4rev2" not in await c.line()
            lines = await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert b"IMAP4rev2" not in lines[-1]
            lines = await c.cmd("ENABLE IMAP4rev2")
            assert lines[0] == b"* ENABLED\r\n"

        async with serving(tmp_path / "rev2", REV2) as (connect, _sessions):
            c = await connect()
            assert b"IMAP4rev1 IMAP4rev2 " in await c.line()
            lines = await c.cmd(f"LOGIN {USER} {PASSWORD}")
            assert b"IMAP4rev1 IMAP4rev2 " in lines[-1] and b" UTF8=ACCEPT]" in lines[-1]
            lines = await c.cmd("ENABLE UTF8=ACCEPT IMAP4rev2")
            assert lines[0] == b"* ENABLED UTF8=ACCEPT IMAP4rev2\r\n"

    (tmp_path / "rev2").mkdir()
    (tmp_path / "off").mkdir()
    asyncio.run(main())


def test_condstore_rfc7162_examples(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 4)
            await c.cmd("SELECT INBOX")  # takes \\Recent, so the flags below are plain
            # RFC 7162 §3.1.2: SELECT (CONDSTORE) answers HIGHESTMODSEQ (obox: never NOMODSEQ)
            lines = await c.cmd("SELECT INBOX (CONDSTORE)")
            high = _modseq(lines, rb"\* OK \[HIGHESTMODSEQ (\d+)\]")
            assert not any(b"NOMODSEQ" in line for line in lines)
            # §3.1.4 FETCH MODSEQ
            lines = await c.cmd("FETCH 1:* (MODSEQ)")
            seqs = [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(lines))]
            assert len(seqs) == 4 and max(seqs) == high
            # §3.1.3 STORE UNCHANGEDSINCE: a success reports the new MODSEQ
            lines = await c.cmd(f"STORE 1 (UNCHANGEDSINCE {seqs[0]}) +FLAGS (\\Seen)")
            m1 = _modseq(lines, rb"\* 1 FETCH \(MODSEQ \((\d+)\) FLAGS \(\\Seen\)\)")
            assert m1 > high and _status(lines) == b"OK Store completed."
            # ... and messages changed since get [MODIFIED]; the others are stored
            lines = await c.cmd(f"STORE 1:2 (UNCHANGEDSINCE {seqs[1]}) +FLAGS ($Work)")
            assert _status(lines) == b"OK [MODIFIED 1] Conditional store failed."
            assert re.fullmatch(rb"\* 2 FETCH \(MODSEQ \((\d+)\) FLAGS \(\$Work\)\)\r\n", lines[0])
            m2 = _modseq(lines, rb"MODSEQ \((\d+)\)")
            # UNCHANGEDSINCE 0 always fails (§3.1.3)
            lines = await c.cmd("UID STORE 3 (UNCHANGEDSINCE 0) +FLAGS (\\Flagged)")
            assert _status(lines) == b"OK [MODIFIED 3] Conditional store failed."
            # .SILENT still reports the new MODSEQ (§3.1.3)
            lines = await c.cmd("STORE 4 +FLAGS.SILENT (\\Answered)")
            m4 = _modseq(lines, rb"^\* 4 FETCH \(MODSEQ \((\d+)\)\)\r\n$")
            # §3.1.4.1 FETCH CHANGEDSINCE: only changed messages, MODSEQ added
            lines = await c.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {m1})")
            assert lines[:-1] == [
                b"* 2 FETCH (FLAGS ($Work) MODSEQ (%d))\r\n" % m2,
                b"* 4 FETCH (FLAGS (\\Answered) MODSEQ (%d))\r\n" % m4,
            ]
            # §3.1.5 SEARCH MODSEQ: (MODSEQ highest-of-the-results)
            lines = await c.cmd(f"SEARCH MODSEQ {m2}")
            assert lines[0] == b"* SEARCH 2 4 (MODSEQ %d)\r\n" % m4
            lines = await c.cmd(f"UID SEARCH RETURN (COUNT) MODSEQ {m1}")
            assert lines[0] == b'* ESEARCH (TAG "c%d") UID COUNT 3 MODSEQ %d\r\n' % (c.n, m4)
            assert (await c.cmd("SEARCH MODSEQ 999999"))[0] == b"* SEARCH\r\n"
            # §3.1.6 STATUS HIGHESTMODSEQ
            lines = await c.cmd("STATUS INBOX (HIGHESTMODSEQ)")
            assert lines[0] == b"* STATUS INBOX (HIGHESTMODSEQ %d)\r\n" % m4

            # another session's flag change: MODSEQ in the unsolicited FETCH
            d = await connect()
            await _login(d)
            await d.cmd("SELECT INBOX")
            lines = await d.cmd("STORE 3 +FLAGS (\\Flagged)")
            assert lines[0] == b"* 3 FETCH (FLAGS (\\Flagged))\r\n"  # d never enabled it
            lines = await c.cmd("NOOP")
            assert re.fullmatch(rb"\* 3 FETCH \(MODSEQ \(\d+\) FLAGS \(\\Flagged\)\)\r\n", lines[0])

    asyncio.run(main())


def test_enabling_commands_send_highestmodseq(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 2)
            await c.cmd("SELECT INBOX")  # takes \\Recent
            await c.cmd("UNSELECT")
            lines = await c.cmd("SELECT INBOX")
            high = _modseq(lines, rb"HIGHESTMODSEQ (\d+)")
            assert (await c.cmd("STORE 1 +FLAGS (\\Seen)"))[0] == b"* 1 FETCH (FLAGS (\\Seen))\r\n"
            # FETCH MODSEQ enables CONDSTORE: HIGHESTMODSEQ first (as Dovecot)
            lines = await c.cmd("FETCH 2 (MODSEQ)")
            assert lines[0] == b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % (high + 1)
            lines = await c.cmd("STORE 2 +FLAGS (\\Seen)")
            assert lines[0] == b"* 2 FETCH (MODSEQ (%d) FLAGS (\\Seen))\r\n" % (high + 2)

    asyncio.run(main())


def test_qresync(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 6)
            await c.cmd("SELECT INBOX")  # takes \\Recent
            await c.cmd("UNSELECT")
            lines = await c.cmd("SELECT INBOX (QRESYNC (1 1))")
            assert _status(lines).startswith(b"BAD")  # QRESYNC not enabled
            await c.cmd("ENABLE QRESYNC")
            lines = await c.cmd("SELECT INBOX")
            uidvalidity = _modseq(lines, rb"UIDVALIDITY (\d+)")
            base = _modseq(lines, rb"HIGHESTMODSEQ (\d+)")
            # changes: flags on UID 2, UIDs 3 and 5 expunged
            await c.cmd("UID STORE 3,5 +FLAGS.SILENT (\\Deleted)")
            lines = await c.cmd("EXPUNGE")
            # §3.2.10: VANISHED instead of EXPUNGE, HIGHESTMODSEQ in the tagged OK
            assert lines[0] == b"* VANISHED 3,5\r\n"
            high = _modseq(lines, rb"OK \[HIGHESTMODSEQ (\d+)\] Expunge completed")
            lines = await c.cmd("UID STORE 2 +FLAGS (\\Answered)")
            m2 = _modseq(lines, rb"\* 2 FETCH \(UID 2 MODSEQ \((\d+)\) FLAGS \(\\Answered\)\)")
            assert m2 > high
            # §3.2.5: SELECT (QRESYNC ...) replaces the mailbox: CLOSED, then the changes
            lines = await c.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity} {base}))")
            assert lines[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"
            assert b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % m2 in lines
            tail = lines[lines.index(b"* VANISHED (EARLIER) 3,5\r\n") :]
            assert tail[1] == b"* 2 FETCH (UID 2 FLAGS (\\Answered) MODSEQ (%d))\r\n" % m2
            assert _status(tail[2:]) == b"OK [READ-WRITE] Select completed."
            # known-uids limit both the VANISHED set and the FETCHes
            lines = await c.cmd(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {base} 1,3:4 (1:3 1,3:4)))")
            assert b"* VANISHED (EARLIER) 3\r\n" in lines
            assert not any(b"FETCH" in line for line in lines)
            # wrong UIDVALIDITY: a plain SELECT
            lines = await c.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {base}))")
            assert not any(b"VANISHED" in line or b"FETCH" in line for line in lines)
            # UID FETCH (CHANGEDSINCE VANISHED) §3.2.6
            lines = await c.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {base} VANISHED)")
            assert lines[:-1] == [
                b"* VANISHED (EARLIER) 3,5\r\n",
                b"* 2 FETCH (UID 2 FLAGS (\\Answered) MODSEQ (%d))\r\n" % m2,
            ]
            assert _status(await c.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")).startswith(
                b"BAD"
            )
            # another session expunges: VANISHED at the next NOOP with the new HIGHESTMODSEQ
            d = await connect()
            await _login(d)
            await d.cmd("SELECT INBOX")
            await d.cmd("UID STORE 6 +FLAGS.SILENT (\\Deleted)")
            assert (await d.cmd("EXPUNGE"))[0] == b"* 4 EXPUNGE\r\n"
            lines = await c.cmd("NOOP")
            assert lines[0] == b"* VANISHED 6\r\n"
            assert re.fullmatch(rb"c\d+ OK \[HIGHESTMODSEQ \d+\] NOOP completed\.\r\n", lines[-1])

    asyncio.run(main())


def test_rev2_and_utf8(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, REV2) as (connect, _sessions):
            c = await connect()
            await _login(c)
            await _fill(c, 3)
            body = "Subject: caf\u00e9\r\n\r\nx\r\n".encode()
            lines = await _raw(c, b"APPEND INBOX UTF8 (~{%d+}\r\n" % len(body) + body + b")")
            assert _status(lines).startswith(b"BAD")  # UTF8 APPEND needs UTF8=ACCEPT first
            await c.cmd("ENABLE IMAP4rev2")
            lines = await _raw(c, b"APPEND INBOX UTF8 (~{%d+}\r\n" % len(body) + body + b")")
            assert _status(lines).startswith(b"OK [APPENDUID")
            assert _status(await c.cmd('CREATE "Caf\u00e9/sub"')).startswith(b"OK")
            lines = await c.cmd('LIST "" "Caf*"')
            assert lines[:-1] == [
                b'* LIST (\\NonExistent \\HasChildren) "/" "Caf\xc3\xa9"\r\n',
                b'* LIST (\\HasNoChildren) "/" "Caf\xc3\xa9/sub"\r\n',
            ]
            lines = await c.cmd("SELECT INBOX")
            assert not any(b"RECENT" in line or b"UNSEEN" in line for line in lines)
            assert b'* LIST () "/" INBOX\r\n' in lines
            assert (await c.cmd("FETCH 4 (FLAGS)"))[0] == b"* 4 FETCH (FLAGS ())\r\n"
            lines = await c.cmd("SEARCH ALL")
            assert lines[0] == b'* ESEARCH (TAG "c%d") ALL 1:4\r\n' % c.n
            lines = await c.cmd("UID SEARCH DELETED")
            assert lines[0] == b'* ESEARCH (TAG "c%d") UID\r\n' % c.n
            assert _status(await c.cmd("STATUS INBOX (RECENT)")).startswith(b"BAD")
            lines = await c.cmd("STATUS INBOX (MESSAGES DELETED)")
            assert lines[0] == b"* STATUS INBOX (MESSAGES 4 DELETED 0)\r\n"
            lines = await c.cmd("EXAMINE INBOX")
            assert lines[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"

    asyncio.run(main())
