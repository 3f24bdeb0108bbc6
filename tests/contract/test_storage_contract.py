"""The storage API contract (columba.storage.api): every configuration in `CONFIGS` passes it.

A new driver or fs stack joins by adding an entry to `CONFIGS`. Configurations whose objects live
only in this process's memory skip the tests that need a second process.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import stat
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from columba.dict.api import create_dict
from columba.fs.api import FsNotFound, FsSpec, create_fs_stack
from columba.storage.api import (
    AppendRequest,
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailStorage,
    MessageExpunged,
    MessageTooBig,
    StorageError,
    StoreMode,
    UserInfo,
)
from columba.storage.factory import AutoMailbox, StorageSettings, build_storage

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


# ---------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    specs: Callable[[Path, UserInfo], list[FsSpec]]
    multiprocess: bool = True


def _sqlite_dict(tmp: Path) -> Callable[[], Any]:
    return lambda: create_dict("sqlite", {"sqlite_path": str(tmp / "dict.db")})


def _posix(tmp: Path) -> FsSpec:
    return FsSpec("posix", {"fs_posix_prefix": str(tmp / "objects")})


def _mem_name(tmp: Path) -> str:
    return "storage-" + hashlib.sha1(str(tmp).encode()).hexdigest()


CONFIGS: dict[str, Config] = {
    "dictmap(sqlite)+posix": Config(
        lambda t, u: [
            FsSpec("dictmap", {"storage_objectid_prefix": f"{u.username}/mails/"}, _sqlite_dict(t)),
            _posix(t),
        ]
    ),
    "compress+dictmap(sqlite)+posix": Config(
        lambda t, u: [
            FsSpec("compress", {"fs_compress_write_method": "zstd"}),
            FsSpec("dictmap", {"storage_objectid_prefix": f"{u.username}/mails/"}, _sqlite_dict(t)),
            _posix(t),
        ]
    ),
    "dictmap(memory)+memory": Config(
        lambda t, u: [
            FsSpec(
                "dictmap",
                {"storage_objectid_prefix": f"{u.username}/mails/"},
                lambda: create_dict("memory", {"memory_name": _mem_name(t)}),
            ),
            FsSpec("memory", {"fs_memory_name": _mem_name(t)}),
        ],
        multiprocess=False,
    ),
    "compress-gz+memory": Config(
        lambda t, u: [
            FsSpec("compress", {"fs_compress_write_method": "gz"}),
            FsSpec("memory", {"fs_memory_name": _mem_name(t)}),
        ],
        multiprocess=False,
    ),
}

AUTO = [
    AutoMailbox("Drafts", "subscribe", frozenset({"\\Drafts"})),
    AutoMailbox("Archive", "create", frozenset({"\\Archive"})),
    AutoMailbox("Sent Messages", "no", frozenset({"\\Sent"})),
]


def make_settings(config: str, tmp: str, **overrides: Any) -> StorageSettings:
    """Settings of a configuration; top-level so a spawned process can rebuild them."""
    entry = CONFIGS[config]
    base = Path(tmp)
    values: dict[str, Any] = {
        "fs_specs": lambda user: entry.specs(base, user),
        "auto_mailboxes": list(AUTO),
    }
    values.update(overrides)
    return StorageSettings(**values)


@dataclass
class Env:
    config: str
    tmp: Path

    def storage(self, **overrides: Any) -> MailStorage:
        return build_storage(make_settings(self.config, str(self.tmp), **overrides))

    def user(self, name: str = "alice") -> UserInfo:
        return UserInfo(name, str(self.tmp / "home" / name))

    def fs(self, user: UserInfo) -> Any:
        return create_fs_stack(CONFIGS[self.config].specs(self.tmp, user))


@pytest.fixture(params=sorted(CONFIGS))
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    return Env(request.param, tmp_path)


def msg(subject: str, body: str = "hello", extra: str = "") -> bytes:
    return (
        f"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n{extra}\r\n{body}\r\n"
    ).encode()


# ---------------------------------------------------------------------- users and mailboxes


def test_open_user_creates_inbox_and_auto_mailboxes(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert [m.name for m in await user.list_mailboxes()] == ["INBOX", "Archive", "Drafts"]
        assert boxes["Drafts"].subscribed and boxes["Drafts"].special_use == {"\\Drafts"}
        assert not boxes["Archive"].subscribed and boxes["Archive"].special_use == {"\\Archive"}
        assert "Sent Messages" not in boxes
        assert len({m.guid for m in boxes.values()}) == 3
        assert all(len(m.guid) == 32 for m in boxes.values())
        # An auto = no mailbox gets its configured special-use once the user creates it.
        await user.create_mailbox("Sent Messages")
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert boxes["Sent Messages"].special_use == {"\\Sent"}
        await user.close()
        # Reopening creates nothing twice.
        user = await storage.open_user(info)
        assert len(await user.list_mailboxes()) == 4
        await user.close()
        await storage.close()
        home = Path(info.home)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "columba-index.db").stat().st_mode) == 0o600

    run(main())


def test_mailbox_names(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        for bad in ["", "a//b", "/a", "a/", "x\x00y", "bad\r\nname", "wild*", "per%cent"]:
            with pytest.raises(InvalidMailboxName):
                await user.create_mailbox(bad if bad != "a/" else "a//")
        with pytest.raises(MailboxExists):
            await user.create_mailbox("inbox")
        await user.create_mailbox("inbox/Sub")
        await user.create_mailbox("trailing/")
        await user.create_mailbox("../escape")
        await user.create_mailbox("Ünïcødé/日本")
        names = [m.name for m in await user.list_mailboxes()]
        assert "INBOX/Sub" in names and "trailing" in names and "../escape" in names
        assert "Ünïcødé/日本" in names
        assert "Ünïcødé" not in names  # implied parents are not created
        inbox = {m.name: m for m in await user.list_mailboxes()}["INBOX"]
        assert inbox.has_children
        view = await user.open_mailbox("iNbOx", readonly=True)
        assert view.name == "INBOX"
        await view.close()
        assert not (env.tmp / "home" / "escape").exists()
        assert not (env.tmp / "escape").exists()
        await user.close()
        await storage.close()

    run(main())


def test_create_delete_rules(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        with pytest.raises(InvalidMailboxName):
            await user.delete_mailbox("INBOX")
        with pytest.raises(MailboxNotFound):
            await user.delete_mailbox("nope")
        await user.create_mailbox("a")
        with pytest.raises(MailboxExists):
            await user.create_mailbox("a")
        await user.create_mailbox("a/b")
        await user.append("a", [AppendRequest(msg("in a"))])
        old_status = await user.status("a")
        # DELETE of a parent with children: \Noselect, messages gone.
        await user.delete_mailbox("a")
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert not boxes["a"].selectable and boxes["a"].has_children
        with pytest.raises(MailboxNotFound):
            await user.status("a")
        with pytest.raises(MailboxNotFound):
            await user.open_mailbox("a", readonly=False)
        with pytest.raises(MailboxNotFound):
            await user.append("a", [AppendRequest(msg("x"))])
        with pytest.raises(MailboxHasChildren):
            await user.delete_mailbox("a")
        # CREATE makes the placeholder a mailbox again, with a new UIDVALIDITY.
        await user.create_mailbox("a")
        st = await user.status("a")
        assert st.messages == 0 and st.uidvalidity != old_status.uidvalidity
        await user.delete_mailbox("a")
        # Deleting the last child removes the placeholder.
        await user.delete_mailbox("a/b")
        assert "a" not in {m.name for m in await user.list_mailboxes()}
        # Re-created mailboxes get a new UIDVALIDITY and GUID.
        await user.create_mailbox("c")
        first = await user.status("c")
        await user.delete_mailbox("c")
        await user.create_mailbox("c")
        second = await user.status("c")
        assert second.uidvalidity != first.uidvalidity and second.mailboxid != first.mailboxid
        with pytest.raises(StorageError):
            await user.create_mailbox("d", frozenset({"\\Bogus"}))
        await user.create_mailbox("e", frozenset({"\\Junk"}))
        assert {m.name: m for m in await user.list_mailboxes()}["e"].special_use == {"\\Junk"}
        await user.close()
        await storage.close()

    run(main())


def test_rename_moves_children_and_subscriptions(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        for name in ["a", "a/b", "a/b/c", "ab"]:
            await user.create_mailbox(name)
        await user.set_subscribed("a/b", True)
        await user.append("a/b", [AppendRequest(msg("kept"), frozenset({"\\Flagged"}))])
        before = await user.status("a/b")
        with pytest.raises(MailboxNotFound):
            await user.rename_mailbox("nope", "x")
        with pytest.raises(MailboxExists):
            await user.rename_mailbox("a", "ab")
        with pytest.raises(InvalidMailboxName):
            await user.rename_mailbox("a", "a/b/z")
        await user.rename_mailbox("a", "x/y")
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert {"x/y", "x/y/b", "x/y/b/c", "ab"} <= set(boxes)
        assert not {"a", "a/b", "a/b/c"} & set(boxes)
        assert boxes["x/y/b"].subscribed
        after = await user.status("x/y/b")
        assert (after.uidvalidity, after.mailboxid, after.messages) == (
            before.uidvalidity,
            before.mailboxid,
            1,
        )
        view = await user.open_mailbox("x/y/b", readonly=True)
        assert b"Subject: kept" in await view.read_message(view.uids()[0])
        await view.close()
        await user.close()
        await storage.close()

    run(main())


def test_rename_inbox_moves_messages_and_leaves_it_empty(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        await user.create_mailbox("INBOX/child")
        for i in range(3):
            await storage.deliver(info, msg(f"m{i}"), flags=frozenset({"$Label1"}))
        inbox_before = await user.status("INBOX")
        selected = await user.open_mailbox("INBOX", readonly=False)
        await user.rename_mailbox("INBOX", "Old")
        old = await user.status("Old")
        inbox = await user.status("INBOX")
        assert old.messages == 3 and inbox.messages == 0
        assert inbox.uidvalidity == inbox_before.uidvalidity
        assert inbox.uidnext == inbox_before.uidnext
        assert "INBOX/child" in {m.name for m in await user.list_mailboxes()}
        changes = await selected.sync()
        assert changes.expunged == (1, 2, 3) and selected.uids() == []
        view = await user.open_mailbox("Old", readonly=True)
        recs = view.records(view.uids())
        assert all("$Label1" in r.flags for r in recs)
        assert b"Subject: m0" in await view.read_message(recs[0].uid)
        r = await storage.deliver(info, msg("new"))
        assert r.mailbox == "INBOX" and r.uid == 4
        await user.close()
        await storage.close()

    run(main())


def test_subscriptions(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        await user.set_subscribed("ghost/child", True)
        await user.set_subscribed("INBOX", True)
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert boxes["ghost/child"].subscribed and not boxes["ghost/child"].exists
        assert not boxes["ghost/child"].selectable
        assert boxes["INBOX"].subscribed
        await user.set_subscribed("ghost/child", False)
        await user.set_subscribed("inbox", False)
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert "ghost/child" not in boxes and not boxes["INBOX"].subscribed
        await user.close()
        await storage.close()

    run(main())


# ---------------------------------------------------------------------- saving and reading


def test_append_assigns_uids_and_stores_objects(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        when = datetime(2024, 2, 29, 13, 14, 15, tzinfo=timezone(timedelta(hours=-5)))
        bare_lf = b"Subject: lf\nFrom: x@y\n\nline1\nline2\n"
        results = await user.append(
            "INBOX",
            [
                AppendRequest(msg("one"), frozenset({"\\Seen", "\\draft"}), when),
                AppendRequest(bare_lf, frozenset({"Work"})),
                AppendRequest(msg("three")),
            ],
        )
        assert [r.uid for r in results] == [1, 2, 3]
        assert len({r.uidvalidity for r in results}) == 1
        assert all(len(r.guid) == 32 and int(r.guid, 16) >= 0 for r in results)
        assert len({r.guid for r in results}) == 3
        status = await user.status("INBOX")
        assert status.messages == 3 and status.uidnext == 4
        assert status.uidvalidity == results[0].uidvalidity
        assert status.highestmodseq > 1
        view = await user.open_mailbox("INBOX", readonly=False)
        assert list(view.uids()) == [1, 2, 3]
        assert (view.uidnext, view.uidvalidity) == (4, results[0].uidvalidity)
        recs = view.records([3, 1, 2, 99])
        assert [r.uid for r in recs] == [1, 2, 3]
        assert recs[0].flags == {"\\Seen", "\\Draft"}
        assert recs[0].internaldate == when and recs[0].internaldate.utcoffset() is not None
        assert recs[1].flags == {"Work"}
        assert recs[0].guid == results[0].guid
        assert all(r.modseq <= view.highestmodseq for r in recs)
        crlf = bare_lf.replace(b"\n", b"\r\n")
        assert recs[1].size == len(crlf)
        assert await view.read_message(2) == crlf
        assert await view.read_message(1) == msg("one")
        assert await view.header_bytes(2) == b"Subject: lf\r\nFrom: x@y\r\n\r\n"
        parsed = await view.parsed(1)
        assert '"one"' in parsed.envelope
        many = await view.parsed_many([1, 2, 3])
        assert sorted(many) == [1, 2, 3] and '"lf"' in many[2].envelope
        headers = await view.header_bytes_many([1, 3])
        assert headers[3].startswith(b"From: Alice") and headers[3].endswith(b"\r\n\r\n")
        assert view.keywords() == ["Work"]
        # The object is at <user>/mailboxes/<mailbox guid>/<guid> with Dovecot metadata.
        fs = env.fs(info)
        path = f"alice/mailboxes/{view.guid}/{results[0].guid}"
        assert await fs.read(path) == msg("one")
        meta = await fs.get_metadata(path)
        assert meta["guid"] == results[0].guid and meta["username"] == "alice"
        assert meta["origbox"] == view.guid and meta["size"] == str(len(msg("one")))
        assert meta["received"] == str(int(when.timestamp()))
        await fs.close()
        await user.close()
        await storage.close()

    run(main())


def test_append_errors_leave_nothing(env: Env) -> None:
    async def main() -> None:
        storage = env.storage(mail_save_max_size=1000)
        info = env.user()
        user = await storage.open_user(info)
        with pytest.raises(MailboxNotFound):
            await user.append("Nope", [AppendRequest(msg("x"))])
        with pytest.raises(MessageTooBig):
            await user.append("INBOX", [AppendRequest(msg("big", "x" * 2000))])
        with pytest.raises(MessageTooBig):
            await storage.deliver(info, msg("big", "x" * 2000))
        with pytest.raises(StorageError):
            await user.append(
                "INBOX",
                [AppendRequest(msg("ok")), AppendRequest(msg("bad"), frozenset({"\\Bogus"}))],
            )
        with pytest.raises(StorageError):
            await user.append("INBOX", [AppendRequest(msg("bad"), frozenset({"two words"}))])
        status = await user.status("INBOX")
        assert status.messages == 0 and status.uidnext == 1
        fs = env.fs(info)
        assert [p async for p in fs.iter_files("alice/mailboxes")] == []
        await fs.close()
        await user.close()
        await storage.close()

    run(main())


def test_deliver_fallback_and_autocreate(env: Env) -> None:
    async def main() -> None:
        info = env.user()
        storage = env.storage()
        r = await storage.deliver(info, msg("x"), "Missing")
        assert r.mailbox == "INBOX" and r.uid == 1
        r = await storage.deliver(info, msg("y"), "bad//name")
        assert r.mailbox == "INBOX"
        await storage.close()
        storage = env.storage(lda_mailbox_autocreate=True, lda_mailbox_autosubscribe=True)
        r = await storage.deliver(info, msg("z"), "Lists/python", frozenset({"\\Seen"}))
        assert r.mailbox == "Lists/python" and r.uid == 1
        user = await storage.open_user(info)
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert boxes["Lists/python"].subscribed
        st = await user.status("Lists/python")
        assert st.messages == 1 and st.unseen == 0
        await user.close()
        await storage.close()

    run(main())


# ---------------------------------------------------------------------- flags


def test_store_flags_modseq_keywords_unchangedsince(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        await user.append("INBOX", [AppendRequest(msg(f"m{i}")) for i in range(4)])
        view = await user.open_mailbox("INBOX", readonly=False)
        base = view.highestmodseq
        res = await view.store_flags([1, 2], StoreMode.ADD, ["\\Seen", "$Label1"])
        assert [r.uid for r in res.updated] == [1, 2]
        assert all(r.flags == {"\\Seen", "$Label1"} for r in res.updated)
        m1 = res.updated[0].modseq
        assert m1 > base
        # Keywords match case-insensitively and keep their first spelling.
        res = await view.store_flags([1, 2, 3], StoreMode.ADD, ["$LABEL1"])
        assert [r.uid for r in res.updated] == [3]
        assert res.updated[0].flags == {"$Label1"}
        assert [r.uid for r in res.unchanged] == [1, 2]
        assert view.keywords() == ["$Label1"]
        res = await view.store_flags([1], StoreMode.REMOVE, ["$label1", "\\SEEN"])
        assert res.updated[0].flags == frozenset()
        res = await view.store_flags([2], StoreMode.REPLACE, ["\\Flagged", "Work"])
        assert res.updated[0].flags == {"\\Flagged", "Work"}
        assert sorted(view.keywords()) == ["$Label1", "Work"]
        # \Recent can't be stored; unknown system flags are refused.
        res = await view.store_flags([4], StoreMode.ADD, ["\\Recent"])
        assert not res.updated and [r.uid for r in res.unchanged] == [4]
        with pytest.raises(StorageError):
            await view.store_flags([4], StoreMode.ADD, ["\\Whatever"])
        # UNCHANGEDSINCE: message 2 changed after m1, message 4 did not.
        rec4 = view.records([4])[0]
        res = await view.store_flags([2, 4], StoreMode.ADD, ["\\Answered"], unchanged_since=m1)
        assert res.failed == (2,)
        assert [r.uid for r in res.updated] == [4] and res.updated[0].modseq > rec4.modseq
        assert view.records([4])[0].flags == {"\\Answered"}
        # Own changes are not reported again by sync; the snapshot already has them.
        changes = await view.sync()
        assert changes.flags_changed == () and changes.added == () and changes.expunged == ()
        assert view.highestmodseq == res.updated[0].modseq
        ro = await user.open_mailbox("INBOX", readonly=True)
        with pytest.raises(StorageError):
            await ro.store_flags([1], StoreMode.ADD, ["\\Seen"])
        with pytest.raises(StorageError):
            await ro.expunge()
        assert ro.records([2])[0].flags == {"\\Flagged", "Work"}
        await user.close()
        await storage.close()

    run(main())


def test_status_counts(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        datas = [msg(f"m{i}", "x" * i * 10) for i in range(5)]
        await user.append("INBOX", [AppendRequest(d) for d in datas])
        view = await user.open_mailbox("INBOX", readonly=False)
        await view.store_flags([1, 2], StoreMode.ADD, ["\\Seen"])
        await view.store_flags([2, 5], StoreMode.ADD, ["\\Deleted"])
        st = await user.status("INBOX")
        assert (st.messages, st.unseen, st.deleted) == (5, 3, 2)
        assert st.size == sum(len(d) for d in datas)
        assert st.deleted_storage == len(datas[1]) + len(datas[4])
        assert st.uidnext == 6 and st.recent == 0  # the rw view claimed them
        assert st.highestmodseq == view.highestmodseq or st.highestmodseq > 1
        boxes = {m.name: m for m in await user.list_mailboxes()}
        assert st.mailboxid == boxes["INBOX"].guid == view.guid
        with pytest.raises(MailboxNotFound):
            await user.status("nope")
        await user.close()
        await storage.close()

    run(main())


# ---------------------------------------------------------------------- expunge, copy, move


def test_expunge_and_vanished(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        results = await user.append("INBOX", [AppendRequest(msg(f"m{i}")) for i in range(4)])
        view = await user.open_mailbox("INBOX", readonly=False)
        other = await user.open_mailbox("INBOX", readonly=False)
        start = view.highestmodseq
        await view.store_flags([2, 3, 4], StoreMode.ADD, ["\\Deleted"])
        assert await view.expunge([1, 2]) == (2,)  # 1 isn't \Deleted
        assert list(view.uids()) == [1, 2, 3, 4]  # gone only at the next sync
        assert await view.read_message(1)
        with pytest.raises(MessageExpunged):
            await view.read_message(2)
        assert await view.expunge() == (3, 4)
        changes = await view.sync()
        assert changes.expunged == (2, 3, 4) and list(view.uids()) == [1]
        assert await view.vanished_since(start) == [2, 3, 4]
        mid = view.highestmodseq
        assert await view.vanished_since(mid) == []
        changes = await other.sync()
        assert changes.expunged == (2, 3, 4)
        assert [r.uid for r in changes.flags_changed] == []  # their flag changes were expunged
        # UIDs are never reused.
        again = await user.append("INBOX", [AppendRequest(msg("again"))])
        assert again[0].uid == 5
        fs = env.fs(info)
        for r in results[1:]:
            assert not await fs.exists(f"alice/mailboxes/{view.guid}/{r.guid}")
        assert await fs.exists(f"alice/mailboxes/{view.guid}/{results[0].guid}")
        await fs.close()
        await user.close()
        await storage.close()

    run(main())


def test_copy_and_move(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        await user.create_mailbox("Dest")
        when = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC_)
        saved = await user.append(
            "INBOX",
            [AppendRequest(msg(f"m{i}"), frozenset({"\\Seen", f"kw{i}"}), when) for i in range(4)],
        )
        src = await user.open_mailbox("INBOX", readonly=False)
        watcher = await user.open_mailbox("INBOX", readonly=False)
        with pytest.raises(MailboxNotFound):
            await src.copy([1], "Nope")
        res = await src.copy([3, 1, 42], "Dest")
        dest_status = await user.status("Dest")
        assert res.source_uids == (1, 3) and res.dest_uids == (1, 2)
        assert res.uidvalidity == dest_status.uidvalidity
        dest = await user.open_mailbox("Dest", readonly=False)
        recs = dest.records(dest.uids())
        assert [r.guid for r in recs] == [saved[0].guid, saved[2].guid]
        assert recs[0].flags == {"\\Seen", "kw0"} and recs[0].internaldate == when
        assert dest.recent_uids() == {1, 2}
        assert dest.keywords() == ["kw0", "kw2"]
        assert (await dest.parsed(2)).envelope == (await src.parsed(3)).envelope
        assert await dest.header_bytes(1) == await src.header_bytes(1)
        # Expunging the source keeps the copy readable (separate reference).
        await src.store_flags([1], StoreMode.ADD, ["\\Deleted"])
        await src.expunge()
        assert await dest.read_message(1) == msg("m0")
        # Copy into the same mailbox gets new UIDs.
        res = await src.copy([2], "INBOX")
        assert res.dest_uids == (5,)
        # MOVE: destination gains, source loses, both in one step for other sessions.
        res = await src.move([2, 4], "Dest")
        assert res.source_uids == (2, 4) and res.dest_uids == (3, 4)
        changes = await watcher.sync()
        assert changes.expunged == (1, 2, 4) and changes.added == (5,)
        dchanges = await dest.sync()
        assert dchanges.added == (3, 4)
        assert await dest.read_message(4) == msg("m3")
        st = await user.status("INBOX")
        assert st.messages == 2
        with pytest.raises(StorageError):
            ro = await user.open_mailbox("INBOX", readonly=True)
            await ro.move([3], "Dest")
        # Copy from a read-only view is allowed.
        ro = await user.open_mailbox("INBOX", readonly=True)
        assert (await ro.copy([3], "Dest")).dest_uids == (5,)
        await user.close()
        await storage.close()

    run(main())


UTC_ = UTC


# ---------------------------------------------------------------------- recent


def test_recent_is_owned_by_the_first_rw_session(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        await storage.deliver(info, msg("a"))
        await storage.deliver(info, msg("b"))
        examine = await user.open_mailbox("INBOX", readonly=True)
        assert examine.recent_uids() == {1, 2}  # EXAMINE sees them without claiming
        assert (await user.status("INBOX")).recent == 2
        first = await user.open_mailbox("INBOX", readonly=False)
        second = await user.open_mailbox("INBOX", readonly=False)
        assert first.recent_uids() == {1, 2} and second.recent_uids() == frozenset()
        assert (await user.status("INBOX")).recent == 0
        await storage.deliver(info, msg("c"))
        assert (await user.status("INBOX")).recent == 1
        assert (await second.sync()).added == (3,)
        assert second.recent_uids() == {3}
        assert (await first.sync()).added == (3,)
        assert first.recent_uids() == {1, 2}
        await first.store_flags([1], StoreMode.ADD, ["\\Deleted"])
        await first.expunge()
        await first.sync()
        assert first.recent_uids() == {2}
        await examine.sync()
        assert examine.recent_uids() == frozenset()
        await user.close()
        await storage.close()

    run(main())


# ---------------------------------------------------------------------- concurrency


def test_two_users_on_one_home_see_each_other(env: Env) -> None:
    async def main() -> None:
        info = env.user()
        storage_a = env.storage()
        storage_b = env.storage()  # separate stores: separate index connections
        user_a = await storage_a.open_user(info)
        user_b = await storage_b.open_user(info)
        await user_a.append("INBOX", [AppendRequest(msg("first"))])
        view_a = await user_a.open_mailbox("INBOX", readonly=False)
        view_b = await user_b.open_mailbox("INBOX", readonly=False)
        assert not await view_a.wait_for_changes(0.3)

        async def later() -> float:
            await asyncio.sleep(0.3)
            await storage_b.deliver(info, msg("second"))
            return time.monotonic()

        task = asyncio.create_task(later())
        assert await view_a.wait_for_changes(10)
        woke = time.monotonic()
        delivered = await task
        assert woke - delivered < 1.0
        changes = await view_a.sync()
        assert changes.added == (2,)
        # Flag changes made by B show up in A's sync; B's own sync doesn't repeat them.
        await view_b.sync()
        await view_b.store_flags([1], StoreMode.ADD, ["\\Flagged"])
        assert await view_a.wait_for_changes(2)
        changes = await view_a.sync()
        assert [(r.uid, r.flags) for r in changes.flags_changed] == [(1, frozenset({"\\Flagged"}))]
        assert (await view_b.sync()).flags_changed == ()
        # An expunge by A reaches B.
        await view_a.store_flags([2], StoreMode.ADD, ["\\Deleted"])
        await view_a.expunge()
        assert await view_b.wait_for_changes(2)
        assert (await view_b.sync()).expunged == (2,)
        # Same store, two users: also works.
        user_c = await storage_a.open_user(info)
        view_c = await user_c.open_mailbox("INBOX", readonly=True)
        task2 = asyncio.create_task(user_a.append("INBOX", [AppendRequest(msg("third"))]))
        assert await view_c.wait_for_changes(2)
        await task2
        assert (await view_c.sync()).added == (3,)
        # A deleted mailbox can't be synced.
        await user_a.create_mailbox("Tmp")
        tmp_view = await user_b.open_mailbox("Tmp", readonly=False)
        await user_a.delete_mailbox("Tmp")
        assert await tmp_view.wait_for_changes(2)
        with pytest.raises(MailboxNotFound):
            await tmp_view.sync()
        await user_c.close()
        await user_a.close()
        await user_b.close()
        await storage_a.close()
        await storage_b.close()

    run(main())


def _child_deliver(config: str, tmp: str, count: int, delay: float, out: Any) -> None:
    async def main() -> None:
        storage = build_storage(make_settings(config, tmp))
        info = UserInfo("alice", str(Path(tmp) / "home" / "alice"))
        await asyncio.sleep(delay)
        for i in range(count):
            r = await storage.deliver(info, msg(f"from child {i}"))
            out.put((r.uid, time.time()))
            await asyncio.sleep(0.4)
        await storage.close()

    asyncio.run(main())


def test_second_process_delivery_wakes_waiter(env: Env) -> None:
    if not CONFIGS[env.config].multiprocess:
        pytest.skip("objects of this configuration live in one process's memory")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()

    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        view = await user.open_mailbox("INBOX", readonly=False)
        child = ctx.Process(target=_child_deliver, args=(env.config, str(env.tmp), 3, 0.5, queue))
        child.start()
        try:
            seen: list[int] = []
            while len(seen) < 3:
                assert await view.wait_for_changes(30)
                woke = time.time()
                changes = await view.sync()
                seen.extend(changes.added)
                uid, delivered_at = await asyncio.to_thread(queue.get, True, 30)
                assert uid in seen
                assert woke - delivered_at < 1.0
                while not queue.empty():
                    queue.get()
            assert seen == [1, 2, 3]
            assert view.recent_uids() == {1, 2, 3}
        finally:
            await asyncio.to_thread(child.join, 30)
        assert child.exitcode == 0
        await user.close()
        await storage.close()

    run(main())


def test_concurrent_appends_get_distinct_uids(env: Env) -> None:
    async def main() -> None:
        info = env.user()
        storages = [env.storage() for _ in range(3)]
        users = [await s.open_user(info) for s in storages]

        async def burst(n: int) -> list[int]:
            out = []
            for i in range(8):
                out += [
                    r.uid for r in await users[n].append("INBOX", [AppendRequest(msg(f"{n}-{i}"))])
                ]
            return out

        uids = [u for part in await asyncio.gather(*(burst(n) for n in range(3))) for u in part]
        assert sorted(uids) == list(range(1, 25))
        view = await users[0].open_mailbox("INBOX", readonly=True)
        modseqs = [r.modseq for r in view.records(view.uids())]
        assert len(set(modseqs)) == 24
        for u in users:
            await u.close()
        for s in storages:
            await s.close()

    run(main())


def test_closed_user_refuses_calls(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        user = await storage.open_user(env.user())
        view = await user.open_mailbox("INBOX", readonly=False)
        await user.close()
        with pytest.raises(StorageError):
            await user.status("INBOX")
        with pytest.raises(StorageError):
            await view.sync()
        await storage.close()
        assert not os.path.exists(env.tmp / "home" / "alice" / "INBOX")

    run(main())


def test_fs_objects_gone_read_as_expunged(env: Env) -> None:
    async def main() -> None:
        storage = env.storage()
        info = env.user()
        user = await storage.open_user(info)
        (r,) = await user.append("INBOX", [AppendRequest(msg("x"))])
        view = await user.open_mailbox("INBOX", readonly=False)
        fs = env.fs(info)
        await fs.delete(f"alice/mailboxes/{view.guid}/{r.guid}")
        with pytest.raises(FsNotFound):
            await fs.read(f"alice/mailboxes/{view.guid}/{r.guid}")
        await fs.close()
        with pytest.raises(MessageExpunged):
            await view.read_message(r.uid)
        await user.close()
        await storage.close()

    run(main())
