"""Unit tests of the per-user SQLite index (storage/index.py), mailbox names and the notifier."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from columba.storage.api import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
    StorageError,
    StoreMode,
)
from columba.storage.index import (
    INDEX_FILENAME,
    MailIndex,
    NewMessage,
    flags_text,
    split_flags,
    uid_ranges,
)
from columba.storage.names import normalize, normalize_new, parents
from columba.storage.notify import ChangeNotifier


def _index(tmp: Path) -> MailIndex:
    idx = MailIndex(tmp / "home" / INDEX_FILENAME, busy_timeout=10)
    idx.open()
    idx.ensure_mailboxes([("INBOX", frozenset(), False)])
    return idx


def _msg(n: int, flags: tuple[str, ...] = ()) -> NewMessage:
    return NewMessage(
        guid=f"{n:032x}",
        object_path=f"u/mailboxes/x/{n:032x}",
        flags=flags,
        internaldate="2024-01-01T00:00:00+01:00",
        savedate="2024-01-01T00:00:00+00:00",
        size=100 + n,
        parsed='{"v":1}',
        header=b"Subject: x\r\n\r\n",
    )


def test_schema_and_pragmas(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    conn = idx.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"mailboxes", "messages", "message_cache", "expunged", "subscriptions", "keywords"} <= (
        tables
    )
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    idx.close()
    conn2 = sqlite3.connect(tmp_path / "home" / INDEX_FILENAME)
    conn2.execute("PRAGMA user_version = 7")
    conn2.close()
    with pytest.raises(StorageError):
        MailIndex(tmp_path / "home" / INDEX_FILENAME).open()


def test_uid_ranges_and_flags() -> None:
    assert uid_ranges([5, 1, 2, 3, 9, 10, 2]) == [(1, 3), (5, 5), (9, 10)]
    assert uid_ranges([]) == []
    bits, kws = split_flags(["\\seen", "Foo", "foo", "\\Recent", "$Bar"])
    assert kws == ["Foo", "$Bar"]
    assert flags_text(bits, kws) == "\\Seen Foo $Bar"
    for bad in ["\\Nope", "a b", "", "x(", "q]"]:
        with pytest.raises(StorageError):
            split_flags([bad])


def test_append_allocates_uids_and_modseqs(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    box = idx.get_mailbox("INBOX")
    assert box is not None and box.uidnext == 1 and box.highestmodseq == 1
    validity, uids = idx.append(box.id, box.guid, [_msg(1), _msg(2, ("\\Seen", "Kw"))])
    assert validity == box.uidvalidity and uids == [1, 2]
    snap = idx.load_view("INBOX")
    assert [m.uid for m in snap.messages] == [1, 2]
    assert snap.messages[1].flags == {"\\Seen", "Kw"}
    assert snap.keywords == ["Kw"]
    assert snap.mailbox.highestmodseq == 2 and snap.mailbox.uidnext == 3
    cached = idx.cached(box.id, [1, 2, 3])
    assert sorted(cached) == [1, 2] and cached[1][1] == b"Subject: x\r\n\r\n"
    with pytest.raises(MailboxNotFound):
        idx.append(box.id, "0" * 32, [_msg(3)])
    counter = idx.change_counter()
    idx.set_subscribed("X", True)
    assert idx.change_counter() == counter + 1


def test_store_expunge_and_sync_delta(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    box = idx.get_mailbox("INBOX")
    assert box is not None
    idx.append(box.id, box.guid, [_msg(i) for i in range(1, 6)])
    start = idx.load_view("INBOX").mailbox
    out = idx.store_flags(
        box.id, box.guid, [1, 2], StoreMode.ADD, ["\\Deleted"], unchanged_since=None
    )
    assert [r.uid for r in out.updated] == [1, 2]
    modseq = out.updated[0].modseq
    out = idx.store_flags(
        box.id, box.guid, [2, 3], StoreMode.ADD, ["X"], unchanged_since=modseq - 1
    )
    assert out.failed == [2] and [r.uid for r in out.updated] == [3]
    uids, paths = idx.expunge(box.id, box.guid, [1, 2, 3, 4, 5])
    assert uids == [1, 2] and len(paths) == 2
    idx.append(box.id, box.guid, [_msg(6)])
    delta = idx.sync(box.id, box.guid, start.highestmodseq, start.uidnext)
    assert delta.expunged == [1, 2]
    assert [r.uid for r in delta.changed] == [3]
    assert [r.uid for r in delta.added] == [6]
    assert idx.vanished_since(box.id, start.highestmodseq) == [1, 2]
    assert idx.vanished_since(box.id, delta.mailbox.highestmodseq) == []
    assert idx.mailbox_state(box.id, box.guid) == (
        delta.mailbox.highestmodseq,
        delta.mailbox.uidnext,
    )


def test_claim_recent_is_exclusive(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    box = idx.get_mailbox("INBOX")
    assert box is not None
    idx.append(box.id, box.guid, [_msg(1), _msg(2)])
    assert idx.claim_recent(box.id, 3) == 1
    assert idx.claim_recent(box.id, 3) is None
    idx.append(box.id, box.guid, [_msg(3)])
    assert idx.claim_recent(box.id, 4) == 3


def test_uidvalidity_never_repeats(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    seen = set()
    for _ in range(5):
        row = idx.create_mailbox("Box", frozenset())
        assert row.uidvalidity not in seen
        seen.add(row.uidvalidity)
        idx.delete_mailbox("Box")
    with pytest.raises(MailboxExists):
        idx.create_mailbox("INBOX", frozenset())


def test_concurrent_writers_in_threads(tmp_path: Path) -> None:
    """Several connections appending at once: BEGIN IMMEDIATE keeps UIDs unique."""
    _index(tmp_path).close()
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            idx = MailIndex(tmp_path / "home" / INDEX_FILENAME)
            box = idx.get_mailbox("INBOX")
            assert box is not None
            for i in range(20):
                _v, uids = idx.append(box.id, box.guid, [_msg(n * 100 + i)])
                with lock:
                    results.extend(uids)
            idx.close()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == list(range(1, 81))


def test_names() -> None:
    assert normalize("inbox") == "INBOX"
    assert normalize("iNbOx/Sub") == "INBOX/Sub"
    assert normalize("Inboxes") == "Inboxes"
    assert normalize("../etc") == "../etc"
    for bad in ["", "/", "a/", "/a", "a//b", "a\x00", "a\tb", "x" * 256, "/".join(["a"] * 40)]:
        with pytest.raises(InvalidMailboxName):
            normalize(bad)
    with pytest.raises(InvalidMailboxName):
        normalize_new("a*")
    assert normalize_new("ok/name") == "ok/name"
    assert parents("a/b/c") == ["a", "a/b"]


def test_notifier_wakes_on_other_connection_commit(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    notifier = ChangeNotifier(interval=0.05)
    watch = notifier.watch(idx.path)

    async def main() -> None:
        await asyncio.sleep(0.2)  # past the first poll, which wakes waiters once
        gen = watch.generation
        assert not await watch.wait(gen, 0.3)
        other = MailIndex(idx.path)

        def commit() -> None:
            time.sleep(0.2)
            other.set_subscribed("Z", True)
            other.close()

        started = time.monotonic()
        thread = threading.Thread(target=commit)
        thread.start()
        assert await watch.wait(gen, 5)
        assert time.monotonic() - started < 1.0
        thread.join()
        gen = watch.generation
        watch.poke()
        assert await watch.wait(gen, 0)

    asyncio.run(main())
    watch.close()
    idx.close()
