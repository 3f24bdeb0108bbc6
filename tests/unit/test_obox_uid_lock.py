"""The UID allocation lock: one open lock file per store, exclusive across stores (processes),
and still exclusive after the lock file was removed behind an open store's back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from columba.storage import obox
from columba.storage.api import StorageTemporaryError
from columba.storage.obox import UID_LOCK_FILE, ObOxStorage
from tests.unit.test_metacache import info, msg, settings


def test_uid_lock_excludes_other_stores_even_after_the_file_was_replaced(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def blocked(storage: ObOxStorage) -> bool:
        """Does a delivery through `storage` wait (for the other store's lock)?"""
        task = asyncio.create_task(storage.deliver(user, msg(1)))
        done, _ = await asyncio.wait([task], timeout=0.3)
        if not done:
            await asyncio.wait_for(task, 10)
        return not done

    async def scenario() -> None:
        first, second = ObOxStorage(settings(tmp_path)), ObOxStorage(settings(tmp_path))
        await first.deliver(user, msg(0))
        await second.deliver(user, msg(0))
        store = first._stores[str(Path(user.home) / "columba-index.db")]
        third = ObOxStorage(settings(tmp_path))
        for other, replace in ((second, False), (third, True)):
            if replace:  # `first` still has the removed file open; `third` opens the new one
                (Path(user.home) / UID_LOCK_FILE).unlink()
            async with store.uid_lock():
                waiting = asyncio.create_task(other.deliver(user, msg(2)))
                done, _ = await asyncio.wait([waiting], timeout=0.3)
                assert not done  # the other store waits for the lock
            await asyncio.wait_for(waiting, 10)
        assert (Path(user.home) / UID_LOCK_FILE).exists()
        assert not await blocked(first)
        for storage in (first, second, third):
            await storage.close()

    asyncio.run(scenario())


def test_a_timed_out_wait_gives_up_its_lock_file_and_the_next_save_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = info(tmp_path)
    monkeypatch.setattr(obox, "UID_LOCK_TIMEOUT", 0.3)

    async def scenario() -> None:
        first, second = ObOxStorage(settings(tmp_path)), ObOxStorage(settings(tmp_path))
        await first.deliver(user, msg(0))
        await second.deliver(user, msg(1))
        key = str(Path(user.home) / "columba-index.db")
        holder, waiter = first._stores[key], second._stores[key]
        old_fd = waiter._uid_fd
        async with holder.uid_lock():
            with pytest.raises(StorageTemporaryError):
                await second.deliver(user, msg(2))
            assert waiter._uid_fd is None  # handed to the still-waiting lock thread
        for _ in range(100):  # the thread gets the lock, releases it and closes the fd
            await asyncio.sleep(0.01)
            try:
                os.fstat(old_fd)  # type: ignore[arg-type]
            except OSError:
                break
        else:
            raise AssertionError("the abandoned lock fd was not closed")
        assert (await second.deliver(user, msg(3))).uid == 3
        await first.close()
        await second.close()

    asyncio.run(scenario())
