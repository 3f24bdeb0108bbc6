"""``mail_fsync = optimized``: the index commits without fsync, so a power loss may drop its
last commits; the first open under a new boot id reconciles it with the dictmap listing and
every acknowledged delivery is back under its UID.

A power loss is simulated by putting back a copy of the index files taken before the last
deliveries (what the disk may hold after the page cache is gone) and changing the boot id.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from columba.storage import index as index_module
from columba.storage.api import DeliveryResult
from columba.storage.obox import ObOxStorage
from tests.unit.test_metacache import inbox, info, msg, settings

INDEX_FILES = ("columba-index.db", "columba-index.db-wal", "columba-index.db-shm")


def _copy_index(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in INDEX_FILES:
        (dest / name).unlink(missing_ok=True)
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)


def test_lost_index_commits_come_back_after_a_reboot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = info(tmp_path)
    home = Path(user.home)
    boot = ["boot-1"]
    monkeypatch.setattr(index_module, "current_boot_id", lambda: boot[0])

    async def deliver(n: range) -> list[DeliveryResult]:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        try:
            return [await storage.deliver(user, msg(i)) for i in n]
        finally:
            await storage.close()

    async def uids() -> list[int]:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        try:
            return sorted((await inbox(storage, user))[1])
        finally:
            await storage.close()

    async def scenario() -> None:
        first = await deliver(range(3))
        _copy_index(home, tmp_path / "before")
        later = await deliver(range(3, 5))
        assert [r.uid for r in first + later] == [1, 2, 3, 4, 5]
        _copy_index(tmp_path / "before", home)  # the disk lost the index's last two commits
        assert await uids() == [1, 2, 3]  # same boot: nothing tells the index it is behind
        boot[0] = "boot-2"
        assert await uids() == [1, 2, 3, 4, 5]  # after the reboot it caught up
        again = await deliver(range(5, 6))
        assert again[0].uid == 6  # and UIDs go on above the recovered ones

    asyncio.run(scenario())


def test_always_means_full_fsync_and_no_check(tmp_path: Path) -> None:
    index = index_module.MailIndex(tmp_path / "i.db", fsync="always")
    index.open()
    try:
        assert index.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        index.close()
    optimized = index_module.MailIndex(tmp_path / "o.db", fsync="optimized")
    optimized.open()
    try:
        level = optimized.conn.execute("PRAGMA synchronous").fetchone()[0]
        assert level == (1 if index_module.current_boot_id() else 2)  # NORMAL where checkable
        if index_module.current_boot_id():
            assert optimized.needs_boot_check()
            optimized.mark_boot()
            assert not optimized.needs_boot_check()
    finally:
        optimized.close()
