"""Storage durability: kill -9 during delivery, and fs faults during save.

Nothing acknowledged is lost, nothing half-written is visible (DESIGN.md §8).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from columba.dict.api import create_dict
from columba.fs.api import FsSpec, create_fs_stack
from columba.storage.api import AppendRequest, StorageTemporaryError, UserInfo
from columba.storage.factory import StorageSettings, build_storage

CHILD = r"""
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_storage_durability import settings
from columba.storage.api import UserInfo
from columba.storage.factory import build_storage

async def main() -> None:
    tmp = Path(sys.argv[1])
    storage = build_storage(settings(tmp))
    info = UserInfo("alice", str(tmp / "home"))
    i = 0
    while True:
        body = (f"Subject: n{i}\r\nFrom: a@b\r\n\r\n" + "line of text\r\n" * (50 + i % 400)).encode()
        r = await storage.deliver(info, body)
        print(f"{r.guid} {r.uid}", flush=True)
        i += 1

asyncio.run(main())
"""


def specs(tmp: Path, fault: str | None = None) -> list[FsSpec]:
    stack = [
        FsSpec(
            "dictmap",
            {"storage_objectid_prefix": "alice/mails/"},
            lambda: create_dict("sqlite", {"sqlite_path": str(tmp / "dict.db")}),
        ),
        FsSpec("posix", {"fs_posix_prefix": str(tmp / "objects")}),
    ]
    if fault == "outer":
        stack.insert(0, FsSpec("randomfail", {"fs_randomfail_ops": "write=100"}))
    elif fault == "inner":
        stack.insert(1, FsSpec("randomfail", {"fs_randomfail_ops": "write=100"}))
    return stack


def settings(tmp: Path, fault: str | None = None) -> StorageSettings:
    return StorageSettings(fs_specs=lambda user: specs(tmp, fault))


@pytest.mark.slow
def test_sigkill_during_delivery_loses_nothing_acknowledged(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_no in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while len(lines) < 15 + round_no * 5 and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
        time.sleep(0.013 * (round_no + 1))  # land somewhere inside the next delivery
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read().decode()
        proc.wait()
        lines += rest.splitlines(keepends=True)
        assert len(lines) >= 10, "child delivered too little before the kill"
        acked = {ln.split()[0]: int(ln.split()[1]) for ln in lines if ln.strip()}

        async def check(acked: dict[str, int]) -> None:
            storage = build_storage(settings(tmp_path))
            user = await storage.open_user(UserInfo("alice", str(tmp_path / "home")))
            view = await user.open_mailbox("INBOX", readonly=True)
            recs = view.records(view.uids())
            guids = [r.guid for r in recs]
            assert len(guids) == len(set(guids))
            by_guid = {r.guid: r for r in recs}
            for guid, uid in acked.items():
                assert guid in by_guid, f"acknowledged {guid} lost"
                assert by_guid[guid].uid == uid
            # Everything visible is whole and readable (acknowledged or not).
            for r in recs:
                data = await view.read_message(r.uid)
                assert len(data) == r.size
                assert data.endswith(b"line of text\r\n")
                parsed = await view.parsed(r.uid)
                assert parsed.size == r.size
            await user.close()
            await storage.close()

        asyncio.run(check(acked))


@pytest.mark.parametrize("where", ["outer", "inner"])
def test_fs_fault_during_save_leaves_nothing_visible(tmp_path: Path, where: str) -> None:
    async def main() -> None:
        info = UserInfo("alice", str(tmp_path / "home"))
        storage = build_storage(settings(tmp_path, where))
        user = await storage.open_user(info)
        for _ in range(5):
            with pytest.raises(StorageTemporaryError):
                await storage.deliver(info, b"Subject: x\r\n\r\nbody\r\n")
            with pytest.raises(StorageTemporaryError):
                await user.append(
                    "INBOX",
                    [AppendRequest(b"Subject: y\r\n\r\n" + b"z" * 300_000)] * 3,
                )
        st = await user.status("INBOX")
        assert st.messages == 0 and st.uidnext == 1
        await user.close()
        await storage.close()
        # Nothing is listed in the dictmap and no object file is left behind.
        fs = create_fs_stack(specs(tmp_path))
        assert [p async for p in fs.iter_files("")] == []
        await fs.close()
        leftovers = [
            p
            for p in (tmp_path / "objects").rglob("*")
            if p.is_file() and not p.name.startswith(".columba-")
        ]
        assert leftovers == []
        # Without the fault the same storage works.
        storage = build_storage(settings(tmp_path))
        r = await storage.deliver(info, b"Subject: x\r\n\r\nbody\r\n")
        assert r.uid == 1
        await storage.close()

    asyncio.run(main())
