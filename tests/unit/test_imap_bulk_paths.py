"""The whole-set paths for big mailboxes answer byte for byte like the general ones: FETCH of
UID/FLAGS/MODSEQ only (cmd_fetch._fetch_light), SEARCH header keys decided from the index's
header blocks (MailboxView.header_matches, set evaluation), SELECT's first unseen, QRESYNC
resync from the flag columns; and the view's lazily read message details."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from bench.common import CORPUS, load_corpus

from columba.imap import cmd_fetch
from columba.storage import index
from columba.storage.api import MailboxView
from columba.storage.obox import ObOxMailboxView
from tests.unit.test_imap_session import PASSWORD, USER, USER2, Client, serving

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True, params=["eager", "lazy"])
def _details_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small mailboxes get message details at SELECT; "lazy" makes these read them on use, as
    big mailboxes do."""
    if request.param == "lazy":
        monkeypatch.setattr(index, "EAGER_DETAILS", 0)


TAG = re.compile(rb'^c\d+ |\(TAG "c\d+"\)')


def _norm(lines: list[bytes]) -> list[bytes]:
    return [TAG.sub(b"T ", line) for line in lines]


async def _login(connect: object, user: str = USER) -> Client:
    c: Client = await connect()  # type: ignore[operator]
    await c.line()
    await c.cmd(f"LOGIN {user} {PASSWORD}")
    return c


async def _seed(c: Client, messages: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    flags = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "$Work", "$later", "\\Draft"]
    for message in messages:
        chosen = " ".join(rng.sample(flags, rng.randint(0, 3)))
        await c.send(b"A APPEND INBOX (%s) {%d+}\r\n" % (chosen.encode(), len(message)))
        await c.send(message + b"\r\n")
        lines = await c.until("A")
        assert lines[-1].startswith(b"A OK"), lines


FETCHES = [
    "FETCH 1:* (FLAGS)",
    "FETCH 1:* (UID FLAGS)",
    "FETCH 2,5:9,20:* (FLAGS UID)",
    "UID FETCH 1:* (FLAGS)",
    "UID FETCH 3:12 (FLAGS MODSEQ)",
    "FETCH 1:* (MODSEQ FLAGS UID)",
    "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5)",
]


def test_fetch_flags_fast_path_is_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            writer = await _login(connect)
            await _seed(writer, [b"Subject: m%d\r\n\r\nbody\r\n" % i for i in range(40)], 1)
            reader = await _login(connect)
            await reader.cmd("ENABLE CONDSTORE")
            lines = await reader.cmd("SELECT INBOX")  # \Recent: these 40
            assert b"* 40 RECENT\r\n" in lines
            await writer.cmd("SELECT INBOX")
            await _seed(writer, [b"Subject: n%d\r\n\r\nbody\r\n" % i for i in range(10)], 2)
            await writer.cmd("STORE 1:5 +FLAGS (\\Seen $New)")
            await reader.cmd("NOOP")

            async def compare(commands: list[str]) -> list[bytes]:
                statuses = []
                for command in commands:
                    fast = await reader.cmd(command)
                    with monkeypatch.context() as m:
                        m.setattr(cmd_fetch, "_LIGHT_ITEMS", frozenset())
                        slow = await reader.cmd(command)
                    assert _norm(fast) == _norm(slow), command
                    assert len(fast) > 2, command
                    statuses.append(fast[-1].split(b" ")[1])
                return statuses

            assert set(await compare(FETCHES)) == {b"OK"}
            # expunged elsewhere, not yet announced: still numbered, a NO in both paths
            await writer.cmd("UID EXPUNGE 1:50")  # those with \Deleted
            await reader.cmd("FETCH 1 (FLAGS)")  # sees the expunges; may not announce them
            by_seq = [x for x in FETCHES if not x.startswith("UID")]  # (UID ones announce)
            assert set(await compare(by_seq)) == {b"NO"}

    asyncio.run(main())


SEARCHES = [
    "SEARCH SUBJECT report",
    "SEARCH SUBJECT Grüße",
    'SEARCH HEADER Subject ""',
    'SEARCH HEADER X-Nothing ""',
    "SEARCH FROM example.net",
    "SEARCH TO =?utf-8?q",
    "SEARCH TO zoë",
    "SEARCH NOT SUBJECT lunch",
    "SEARCH OR SUBJECT lunch FROM carol",
    "SEARCH SEEN SUBJECT lunch",
    "SEARCH SUBJECT lunch LARGER 1000",
    "UID SEARCH HEADER Message-ID example.org",
    "SEARCH CC walter NOT FLAGGED",
    "SEARCH HEADER Subject a",
    "SEARCH 3:20 SUBJECT e",
    "SEARCH TEXT lunch SUBJECT lunch",
    "SEARCH RETURN (COUNT MIN) SUBJECT newsletter",
]


def test_search_header_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = load_corpus(CORPUS)[:60] if CORPUS.exists() else []
    if not corpus:
        pytest.skip("the bench corpus is not here")

    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await _login(connect, USER2)
            await _seed(c, corpus, 3)
            await c.cmd("SELECT INBOX")
            for command in SEARCHES:
                fast = await c.cmd(command)
                with monkeypatch.context() as m:
                    m.setattr(ObOxMailboxView, "header_matches", MailboxView.header_matches)
                    slow = await c.cmd(command)
                assert _norm(fast) == _norm(slow), command
            hits = await c.cmd("SEARCH SUBJECT lunch")
            assert len(hits[0].split()) > 2  # the corpus has such messages: not vacuous

    asyncio.run(main())


def test_select_unseen_resync_and_lazy_details(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await _login(connect)
            await _seed(c, [b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(30)], 4)
            await c.cmd("SELECT INBOX")
            await c.cmd("STORE 1:* -FLAGS (\\Seen \\Deleted)")
            await c.cmd("STORE 1:12 +FLAGS (\\Seen)")
            lines = await c.cmd("SELECT INBOX")
            assert b"* OK [UNSEEN 13] First unseen.\r\n" in lines
            status = await c.cmd("STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)")
            text = b"".join(status)
            got = re.search(rb"UIDVALIDITY (\d+)", text)
            modseq = re.search(rb"\(HIGHESTMODSEQ (\d+)", text)
            assert got is not None and modseq is not None
            await c.cmd("STORE 20,25 +FLAGS (\\Flagged)")
            r = await _login(connect)
            await r.cmd("ENABLE QRESYNC")
            lines = await r.cmd(
                f"SELECT INBOX (QRESYNC ({got.group(1).decode()} {modseq.group(1).decode()}))"
            )
            fetches = [x for x in lines if b" FETCH " in x]
            assert [x.split(b" ")[1] for x in fetches] == [b"20", b"25"]
            assert all(b"\\Flagged" in x and b"MODSEQ (" in x for x in fetches)
            # details (dates, sizes, objects) are read on demand and agree with the index
            lines = await r.cmd("FETCH 7 (RFC822.SIZE INTERNALDATE BODY[TEXT])")
            assert b"body 6" in lines[0] and b"RFC822.SIZE" in lines[0]
            lines = await r.cmd("UID SEARCH LARGER 10 UID 5:9")
            assert lines[0] == b"* SEARCH 5 6 7 8 9\r\n"

    asyncio.run(main())
