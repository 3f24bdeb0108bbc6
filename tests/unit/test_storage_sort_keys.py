"""SORT/THREAD keys stored in the index at save (``sort_keys`` table): the same values as
computing them from the header blocks, kept through COPY/MOVE/EXPUNGE/DELETE, and computed
and stored on first use for messages indexed before the table existed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from columba.storage.api import AppendRequest, MailboxView, StoreMode, UserInfo
from columba.storage.obox import ObOxStorage
from columba.storage.sort_keys import KEY_FIELDS
from tests.unit.test_metacache import info, settings

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def message(n: int) -> bytes:
    variants = [
        b'Subject: =?utf-8?q?R=C3=A9sum=C3=A9?= (fwd)\r\nFrom: "Zo\xc3\xab" <zoe@example.org>\r\n',
        b"Subject: Re: [list] topic\r\nFrom: bob@example.com\r\nCc: Carol <c@x>\r\n",
        b"From: undisclosed-recipients:;\r\nDate: garbage\r\n",
        b"Subject: sep\x1fin subject\r\nFrom: a\x1fb@x\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\n",
        b"Subject: FWD: [x] Hello\r\nIn-Reply-To: <p1@x> <p2@x>\r\nTo: Team: a@x, b@x;\r\n",
    ]
    refs = f"References: <m{n - 1}@t>\r\n <m{n - 2}@t>\r\n".encode() if n % 3 == 0 else b""
    return (
        variants[n % len(variants)]
        + f"Date: Mon, {1 + n % 28} Feb 2021 10:00:00 -0500\r\nMessage-ID: <m{n}@t>\r\n".encode()
        + refs
        + f"\r\nbody {n}\r\n".encode()
    )


def index_db(tmp: Path) -> Path:
    return Path(info(tmp).home) / "columba-index.db"


def rows(tmp: Path, sql: str = "SELECT mailbox_id, uid FROM sort_keys") -> list[Any]:
    conn = sqlite3.connect(index_db(tmp))
    try:
        return sorted(conn.execute(sql).fetchall())
    finally:
        conn.close()


def execute(tmp: Path, sql: str) -> None:
    conn = sqlite3.connect(index_db(tmp))
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


async def keys(tmp: Path, name: str, uids: list[int] | None = None) -> tuple[Any, Any]:
    """(stored keys, keys computed from the header blocks) of a mailbox."""
    storage = ObOxStorage(settings(tmp, metacache=False))
    user: UserInfo = info(tmp)
    mail = await storage.open_user(user)
    try:
        view = await mail.open_mailbox(name, readonly=True)
        wanted = list(view.uids()) if uids is None else uids
        stored = await view.sort_keys_many(wanted, KEY_FIELDS)
        computed = await MailboxView.sort_keys_many(view, wanted, KEY_FIELDS)
        await view.close()
        return stored, computed
    finally:
        await mail.close()
        await storage.close()


async def fill(tmp: Path, count: int) -> None:
    storage = ObOxStorage(settings(tmp, metacache=False))
    mail = await storage.open_user(info(tmp))
    try:
        when = datetime(2022, 3, 4, 5, 6, 7, tzinfo=UTC)
        await mail.append(
            "INBOX", [AppendRequest(message(n), internaldate=when) for n in range(count)]
        )
    finally:
        await mail.close()
        await storage.close()


def test_keys_stored_at_save_match_computed(tmp_path: Path) -> None:
    run(fill(tmp_path, 12))
    assert len(rows(tmp_path)) == 12
    stored, computed = run(keys(tmp_path, "INBOX"))
    assert stored == computed
    assert stored["arrival"][1] == int(datetime(2022, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp())
    assert stored["thread"][4] == ("m3@t", ("m2@t", "m1@t"))
    assert stored["thread"][5] == ("m4@t", ("p1@x",))
    assert stored["date"][4] is None or isinstance(stored["date"][4], int)
    # some UIDs, some gone
    stored, computed = run(keys(tmp_path, "INBOX", [2, 5, 99]))
    assert stored == computed and set(stored["subject"]) == {2, 5}


def test_copy_move_expunge_delete(tmp_path: Path) -> None:
    run(fill(tmp_path, 6))

    async def changes() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(info(tmp_path))
        await mail.create_mailbox("Copy")
        await mail.create_mailbox("Gone")
        view = await mail.open_mailbox("INBOX", readonly=False)
        await view.copy([1, 2, 3], "Copy")
        await view.move([4], "Copy")
        await view.copy([5], "Gone")
        await view.store_flags([6], StoreMode.ADD, ["\\Deleted"])
        await view.expunge()
        await view.close()
        await mail.delete_mailbox("Gone")
        await mail.close()
        await storage.close()

    run(changes())
    assert len(rows(tmp_path)) == 4 + 4  # INBOX 1,2,3,5; Copy 4 messages; Gone none
    stored, computed = run(keys(tmp_path, "Copy"))
    assert stored == computed and len(stored["subject"]) == 4
    orphans = rows(
        tmp_path,
        "SELECT k.mailbox_id, k.uid FROM sort_keys AS k LEFT JOIN messages AS m "
        "ON m.mailbox_id = k.mailbox_id AND m.uid = k.uid WHERE m.uid IS NULL",
    )
    assert orphans == []


def test_old_messages_get_keys_on_first_use(tmp_path: Path) -> None:
    run(fill(tmp_path, 600))
    counter = "SELECT value FROM meta WHERE key = 'change_counter'"
    before = rows(tmp_path, counter)
    # an index from before the table: no rows for most messages, an outdated row for one
    execute(tmp_path, "DELETE FROM sort_keys WHERE uid % 7 != 0")
    execute(tmp_path, "UPDATE sort_keys SET version = 0, subject = 'stale' WHERE uid = 7")
    sparse = list(range(1, 601, 2))  # more ranges than one query takes
    stored, computed = run(keys(tmp_path, "INBOX", sparse))
    assert stored == computed and len(stored["subject"]) == 300
    assert len(rows(tmp_path)) == 300 + len([u for u in range(2, 601, 2) if u % 7 == 0])
    stored, computed = run(keys(tmp_path, "INBOX"))
    assert stored == computed
    assert len(rows(tmp_path)) == 600
    assert rows(tmp_path, "SELECT count(*) FROM sort_keys WHERE version != 1") == [(0,)]
    assert rows(tmp_path, counter) == before  # derived data: not a change


def test_rebuilt_index_has_keys(tmp_path: Path) -> None:
    run(fill(tmp_path, 5))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index_db(tmp_path)}{suffix}").unlink(missing_ok=True)

    async def reopen() -> None:  # the index is rebuilt from the objects
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        await (await storage.open_user(info(tmp_path))).close()
        await storage.close()

    run(reopen())
    assert len(rows(tmp_path)) == 5  # computed by the rebuild, not on first use
    stored, computed = run(keys(tmp_path, "INBOX"))
    assert len(stored["subject"]) == 5 and stored == computed
