"""A mailbox view's sync asks SQLite's ``data_version`` first: with no commit by anyone since
the last sync it returns at once (no index job), and any commit — by this process's index
jobs or by another connection to the file (another process) — is seen by the next sync."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from columba.storage.api import AppendRequest, StoreMode
from columba.storage.index import MailIndex, index_path
from columba.storage.obox import ObOxMailboxView, ObOxStorage
from tests.unit.test_metacache import info, msg, settings


def test_sync_skips_the_index_only_while_nothing_was_committed(tmp_path: Path) -> None:
    user = info(tmp_path)

    async def scenario() -> None:
        storage = ObOxStorage(settings(tmp_path, metacache=False))
        mail = await storage.open_user(user)
        await mail.append("INBOX", [AppendRequest(msg(i)) for i in range(3)])
        view = await mail.open_mailbox("INBOX", readonly=False)
        other = await mail.open_mailbox("INBOX", readonly=False)
        assert isinstance(view, ObOxMailboxView)
        store: Any = view._store
        jobs: list[str] = []
        real_run = store.run

        async def counting_run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            jobs.append(getattr(fn, "__name__", "?"))
            return await real_run(fn, *args, **kwargs)

        store.run = counting_run
        await view.sync()
        await other.sync()
        jobs.clear()
        for _ in range(3):
            changes = await view.sync()
            assert not (changes.added or changes.expunged or changes.flags_changed)
        assert jobs == []  # nothing committed: no index job at all

        # a commit through this process's index jobs (another session's STORE)
        await other.store_flags([view.uids()[0]], StoreMode.ADD, ["\\Flagged"])
        changes = await view.sync()
        assert [r.uid for r in changes.flags_changed] == [view.uids()[0]]
        assert "sync" in jobs

        # a commit by another connection to the file (another process delivering)
        await view.sync()
        jobs.clear()
        elsewhere = MailIndex(index_path(Path(user.home)))
        elsewhere.open()
        try:
            box = elsewhere.get_mailbox("INBOX")
            assert box is not None
            elsewhere.store_flags(
                box.id, box.guid, [view.uids()[1]], StoreMode.ADD, ["\\Seen"], unchanged_since=None
            )
        finally:
            elsewhere.close()
        changes = await view.sync()
        assert [r.uid for r in changes.flags_changed] == [view.uids()[1]]
        assert jobs == ["sync"]

        await view.close()
        await other.close()
        await mail.close()
        await storage.close()

    asyncio.run(scenario())
