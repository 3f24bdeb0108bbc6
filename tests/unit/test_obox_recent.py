"""\\Recent bookkeeping of an obox view: right answers, and no copy per call (FETCH asks once
per message; a copy per call made the first FETCH 1:* of a big mailbox quadratic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from columba.storage.api import AppendRequest, StoreMode
from columba.storage.obox import ObOxStorage
from tests.unit.test_metacache import info, msg, settings


def test_recent_claimed_by_first_read_write_view_and_cheap_to_ask(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(user)
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(3)])
        first = await mail.open_mailbox("INBOX", readonly=False)
        recent = first.recent_uids()
        assert recent == frozenset({1, 2, 3})
        assert first.recent_uids() is recent  # no per-call copy
        second = await mail.open_mailbox("INBOX", readonly=False)
        assert second.recent_uids() == frozenset()  # already claimed by the first view
        await mail.append("INBOX", [AppendRequest(msg(9))])
        await first.sync()
        assert first.recent_uids() == frozenset({1, 2, 3, 4})
        await first.store_flags([1], StoreMode.ADD, ["\\Deleted"])
        await first.expunge([1])
        await first.sync()
        assert first.recent_uids() == frozenset({2, 3, 4})
        for view in (first, second):
            await view.close()
        await mail.close()
        await storage.close()

    asyncio.run(scenario())
