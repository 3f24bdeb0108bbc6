"""The per-process cache of idle user stores (index connection, thread, fs stack, watch)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from columba.storage import obox
from columba.storage.api import AppendRequest, UserInfo
from columba.storage.obox import ObOxStorage
from tests.unit.test_metacache import info, msg, settings


def test_released_store_is_reused_then_closed_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(obox, "STORE_IDLE_TIMEOUT", 0.2)
    user = info(tmp_path)

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        first = await storage.deliver(user, msg(1))
        (store,) = storage._stores.values()
        assert store.refs == 0 and store.idle_handle is not None
        second = await storage.deliver(user, msg(2))
        assert list(storage._stores.values()) == [store]  # the same open store
        assert (first.uid, second.uid) == (1, 2)
        await asyncio.sleep(0.5)
        assert storage._stores == {} and storage._idle == {}
        assert store.watch is None
        await storage.close()

    asyncio.run(scenario())


def test_idle_store_with_removed_index_is_reopened(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(user)
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(3)])
        await mail.close()
        (old,) = storage._stores.values()
        # ``metacache clean`` in another process: the local index goes away.
        for path in Path(user.home).glob("columba-index.db*"):
            path.unlink()
        delivered = await storage.deliver(user, msg(9))
        (new,) = storage._stores.values()
        assert new is not old and old.watch is None
        assert delivered.uid == 4  # rebuilt from storage, UIDs continue
        await storage.close()

    asyncio.run(scenario())


def test_idle_stores_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(obox, "STORE_IDLE_MAX", 2)

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        users = [UserInfo(f"u{i}@example.com", str(tmp_path / "home" / f"u{i}")) for i in range(4)]
        for u in users:
            await storage.deliver(u, msg(1))
        assert sorted(s.user.username for s in storage._stores.values()) == [
            "u2@example.com",
            "u3@example.com",
        ]
        await storage.close()
        assert storage._stores == {} and storage._idle == {}

    asyncio.run(scenario())


def test_opening_one_user_does_not_wait_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores are locked per index file: a slow open (a metacache pull, a rebuild) of one user
    doesn't hold up the logins of every other user of the process."""
    slow = UserInfo("slow@example.com", str(tmp_path / "home" / "slow"))
    fast = UserInfo("fast@example.com", str(tmp_path / "home" / "fast"))

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        entered = asyncio.Event()
        release = asyncio.Event()
        real_ensure = storage.metacache.ensure_local

        async def ensure_local(user: UserInfo, *args: object) -> None:
            if user.username == slow.username:
                entered.set()
                await release.wait()
            await real_ensure(user, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(storage.metacache, "ensure_local", ensure_local)
        slow_open = asyncio.create_task(storage.open_user(slow))
        await entered.wait()
        # a deadlock guard, not a timing: with one storage-wide lock this never finishes
        mail = await asyncio.wait_for(storage.open_user(fast), 30)
        assert not slow_open.done()
        await mail.close()
        release.set()
        await (await slow_open).close()
        assert storage._key_locks == {}  # per-user locks don't pile up
        await storage.close()

    asyncio.run(scenario())
