"""Metacache bundles and index rebuild on real drivers (dictmap over SQLite, posix objects).

* bundle names order by time, diffs name their base, and the newest lineage is chosen;
* a diff made against a base and applied to it reproduces the index (flags, expunges, new
  mailboxes);
* flush -> wipe -> open restores flags from the bundles; deliveries made after the last upload
  come back from the dictmap listing with their UIDs;
* without any bundle, the index is rebuilt from the listing: names, UIDVALIDITY, UIDs;
* ``force-resync`` and ``obox cleanup`` act on rows the index doesn't know.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from columba.dict.api import create_dict
from columba.fs.api import FsSpec
from columba.storage.api import AppendRequest, StoreMode, UserInfo
from columba.storage.factory import StorageSettings
from columba.storage.metacache import (
    apply_diff,
    choose_bundles,
    make_diff,
    new_base_name,
    new_diff_name,
    parse_bundle,
    snapshot,
)
from columba.storage.obox import ObOxStorage

_T = TypeVar("_T")
USER = "alice@example.com"


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def msg(n: int) -> bytes:
    return f"From: a@b\r\nSubject: m{n}\r\nMessage-ID: <m{n}@t>\r\n\r\nbody {n}\r\n".encode()


def settings(tmp: Path, *, metacache: bool = True) -> StorageSettings:
    def dictmap(**extra: str) -> FsSpec:
        return FsSpec(
            "dictmap",
            extra,
            lambda: create_dict("sqlite", {"sqlite_path": str(tmp / "dict.db")}),
        )

    posix = FsSpec("posix", {"fs_posix_prefix": str(tmp / "objects")})
    return StorageSettings(
        fs_specs=lambda u: [
            FsSpec("compress", {"fs_compress_write_method": "zstd"}),
            dictmap(storage_objectid_prefix=f"{u.username}/mails/"),
            posix,
        ],
        metacache_specs=(
            (lambda u: [FsSpec("compress", {}), dictmap(storage_passthrough_paths="full"), posix])
            if metacache
            else None
        ),
        metacache_close_delay=3600,
    )


def info(tmp: Path) -> UserInfo:
    return UserInfo(USER, str(tmp / "home" / USER))


async def inbox(storage: ObOxStorage, user: UserInfo) -> tuple[int, dict[int, frozenset[str]]]:
    mail = await storage.open_user(user)
    try:
        view = await mail.open_mailbox("INBOX", readonly=True)
        records = {r.uid: r.flags for r in view.records(view.uids())}
        uidvalidity = view.uidvalidity
        await view.close()
        return uidvalidity, records
    finally:
        await mail.close()


def test_bundle_names_and_choice() -> None:
    base1 = new_base_name()
    diff1 = new_diff_name(base1)
    base2 = new_base_name()
    diff2 = new_diff_name(base1)  # newer diff of the older base: that lineage is newest
    p = parse_bundle(diff1)
    assert p is not None and p.is_diff and p.base == base1
    assert parse_bundle("bundle.zz") is None
    assert choose_bundles([base1, diff1, base2]) == (base2, None)
    assert choose_bundles([base1, diff1, base2, diff2]) == (base1, diff2)
    assert choose_bundles([diff1]) is None
    assert choose_bundles([]) is None


def test_diff_roundtrip(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        user = info(tmp_path)
        mail = await storage.open_user(user)
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(5)])
        await mail.close()
        await storage.close()

    run(scenario())
    index = Path(info(tmp_path).home) / "columba-index.db"
    base = tmp_path / "base.db"
    snapshot(index, base)

    async def changes() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(info(tmp_path))
        view = await mail.open_mailbox("INBOX", readonly=False)
        await view.store_flags([1, 2], StoreMode.ADD, ["\\Seen", "$Work"])
        await view.store_flags([3], StoreMode.ADD, ["\\Deleted"])
        await view.expunge()
        await view.close()
        await mail.create_mailbox("Projects")
        await mail.append("Projects", [AppendRequest(msg(9))])
        await mail.close()
        await storage.close()

    run(changes())
    snap = tmp_path / "snap.db"
    diff = tmp_path / "diff.db"
    snapshot(index, snap)
    assert make_diff(snap, base, diff)
    conn = sqlite3.connect(diff)
    try:  # only what changed: two flag changes and one new message; one expunge
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 3
        deletes = conn.execute("SELECT tbl FROM _bundle_deletes").fetchall()
        assert sorted(t for (t,) in deletes) == ["message_cache", "messages", "sort_keys"]
        # the new message's stored sort keys, not the unchanged ones
        assert conn.execute("SELECT count(*) FROM sort_keys").fetchone()[0] == 1
    finally:
        conn.close()
    restored = tmp_path / "restored.db"
    shutil.copy(base, restored)
    apply_diff(restored, diff)

    def dump(path: Path) -> list[Any]:
        conn = sqlite3.connect(path)
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return [(t, sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables]
        finally:
            conn.close()

    assert dump(restored) == dump(snap)


def test_flush_wipe_restore_and_late_delivery(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def before() -> tuple[int, dict[int, frozenset[str]]]:
        storage = ObOxStorage(settings(tmp_path))
        mail = await storage.open_user(user)
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(4)])
        view = await mail.open_mailbox("INBOX", readonly=False)
        await view.store_flags([2], StoreMode.ADD, ["\\Flagged", "$Later"])
        await view.close()
        await mail.close()
        await storage.close()  # flushall: uploads a bundle
        storage = ObOxStorage(settings(tmp_path))
        delivered = await storage.deliver(user, msg(10))  # not uploaded: close_delay is long
        state = await inbox(storage, user)
        storage.metacache._due.clear()  # a crash: nothing more is uploaded
        for store in list(storage._stores.values()):
            await store.close()
        assert delivered.uid == 5
        return state

    uidvalidity, expected = run(before())
    assert expected[2] == frozenset({"\\Flagged", "$Later"})
    shutil.rmtree(tmp_path / "home")

    async def after() -> tuple[int, dict[int, frozenset[str]]]:
        storage = ObOxStorage(settings(tmp_path))
        try:
            return await inbox(storage, user)
        finally:
            await storage.close()

    assert run(after()) == (uidvalidity, expected)


def test_rebuild_without_bundles(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def before() -> tuple[int, dict[int, frozenset[str]], list[str]]:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(user)
        await mail.create_mailbox("Work/Reports")
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(3)])
        await mail.append("INBOX", [AppendRequest(msg(7), frozenset({"\\Seen"}))])
        await mail.append("Work/Reports", [AppendRequest(msg(8))])
        view = await mail.open_mailbox("INBOX", readonly=False)
        await view.store_flags([2], StoreMode.ADD, ["\\Deleted"])
        await view.expunge()
        await view.close()
        names = sorted(m.name for m in await mail.list_mailboxes() if m.selectable)
        await mail.close()
        state = await inbox(storage, user)
        await storage.close()
        return *state, names

    uidvalidity, expected, names = run(before())
    assert sorted(expected) == [1, 3, 4]
    shutil.rmtree(tmp_path / "home")

    async def after() -> tuple[int, dict[int, frozenset[str]], list[str]]:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        try:
            mail = await storage.open_user(user)
            got = sorted(m.name for m in await mail.list_mailboxes() if m.selectable)
            status = await mail.status("Work/Reports")
            assert status.messages == 1
            await mail.close()
            return *(await inbox(storage, user)), got
        finally:
            await storage.close()

    # UIDs and UIDVALIDITY survive; flags given at save time too (later ones need a bundle).
    assert run(after()) == (uidvalidity, expected, names)


def test_resync_and_cleanup(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(user)
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(3)])
        await mail.close()
        # A message row the index doesn't know (as if delivered by another index's owner).
        store = await storage._acquire(user)
        box = await store.run(store.index.get_mailbox, "INBOX")
        assert box is not None
        path = store.object_path(box.guid, "0" * 32)
        metadata = {"guid": "0" * 32, "uid": "4", "origbox": box.guid, "saved": "1"}
        await store.fs.write(path, msg(4), metadata)
        stray = store.object_path(box.guid, "f" * 32)
        await store.fs.write(stray, msg(5), {"uid": "1", "origbox": box.guid})  # a leftover
        await storage._release(store)
        report = await storage.resync(user)
        assert report.added == 1 and report.skipped == [stray]
        assert sorted((await inbox(storage, user))[1]) == [1, 2, 3, 4]
        rows, objects = await storage.cleanup(user, grace=0)
        assert (rows, objects) == (1, 0)
        assert sorted((await inbox(storage, user))[1]) == [1, 2, 3, 4]
        await storage.close()

    run(scenario())


def test_release_postpones_upload_within_upload_interval(tmp_path: Path) -> None:
    """A user released again within ``metacache_close_delay`` (a stream of deliveries) is not
    uploaded every close delay: the upload waits for a quiet close delay, but never longer than
    ``metacache_upload_interval`` after the first pending release."""
    import dataclasses

    from columba.storage.metacache import Metacache

    base = dataclasses.replace(
        settings(tmp_path), metacache_close_delay=0.2, metacache_upload_interval=0.6
    )
    user = info(tmp_path)
    directory = tmp_path / "home" / USER

    async def main() -> list[float]:
        cache = Metacache(base)
        uploads: list[float] = []
        loop = asyncio.get_running_loop()

        async def flush(*_args: object, **_kwargs: object) -> None:
            uploads.append(loop.time())

        cache.flush = flush  # type: ignore[method-assign]
        start = loop.time()
        # Released every 50 ms for 1 s: without postponing, an upload every 0.2 s (5).
        while loop.time() - start < 1.0:
            cache.released(user, directory)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.4)  # quiet: the last release's upload comes 0.2 s later
        return [t - start for t in uploads]

    uploads = run(main())
    assert 2 <= len(uploads) <= 3, uploads  # bounded by the interval, then once when quiet
    assert uploads[0] >= 0.55, uploads  # postponed up to the interval, not at 0.2 s
    assert uploads[-1] >= 1.15, uploads  # close_delay after the last release
