"""Workload 3, the big mailbox: one user with N messages (100 000 in full mode) in INBOX.

Seeding (MULTIAPPEND over a few connections, not timed) is followed by ``reps`` fresh sessions,
each timing, after an untimed LOGIN: ``SELECT INBOX``, ``FETCH 1:* (FLAGS)``,
``UID SEARCH HEADER Subject "quarterly"`` and ``SORT (DATE) UTF-8 ALL``. Then the resync: a
client remembers UIDVALIDITY/HIGHESTMODSEQ, another changes a flag on 1 000 messages spread
over the mailbox (10 UID STOREs of 100), and a fresh session times
``SELECT INBOX (QRESYNC (uidvalidity modseq))``, which returns the 1 000 changed messages
(falling back to ``SELECT (CONDSTORE)`` + ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE m)`` when
QRESYNC is missing). A command the server rejects is reported as "not supported".
Time is wall-clock from sending the command to its tagged reply, the reply read in bulk.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

from bench.common import ImapClient, command_bulk, imap_login, seed_users

OPERATIONS = {
    "SELECT": b"SELECT INBOX",
    "FETCH_FLAGS": b"FETCH 1:* (FLAGS)",
    "SEARCH_HEADER": b'UID SEARCH HEADER Subject "quarterly"',
    "SORT_DATE": b"SORT (DATE) UTF-8 ALL",
}
TARGETS = {"SELECT": 0.2, "FETCH_FLAGS": 0.5, "SORT_DATE": 1.0}


def _number(text: bytes, pattern: bytes) -> int | None:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else None


async def seed_mailbox(host: str, port: int, user: str, count: int, corpus: list[bytes]) -> float:
    """Seed ``count`` messages with 4 connections appending concurrently; return seconds."""
    start = time.monotonic()
    client = await imap_login(host, port, user)
    _, text = await command_bulk(client, b"STATUS INBOX (MESSAGES)")
    have = _number(text, rb"MESSAGES (\d+)") or 0
    await client.logout()
    missing = count - have
    if missing > 0:
        parts = 4
        shares = [missing // parts + (1 if i < missing % parts else 0) for i in range(parts)]
        await asyncio.gather(
            *(
                seed_users(host, port, [user], n, corpus[i * 50 :] + corpus[: i * 50], batch=250)
                for i, n in enumerate(shares)
                if n
            )
        )
    return time.monotonic() - start


async def _timed(client: ImapClient, command: bytes) -> tuple[str, float, bytes]:
    start = time.perf_counter()
    status, text = await asyncio.wait_for(command_bulk(client, command), 600)
    return status, time.perf_counter() - start, text


async def _measure(host: str, port: int, user: str, reps: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in OPERATIONS}
    unsupported: dict[str, str] = {}
    exists = 0
    for _ in range(reps):
        client = await imap_login(host, port, user)
        for name, command in OPERATIONS.items():
            if name in unsupported:
                continue
            status, seconds, text = await _timed(client, command)
            if status != "OK":
                unsupported[name] = text.strip().splitlines()[-1].decode(errors="replace")[:200]
                continue
            samples[name].append(seconds)
            if name == "SELECT":
                exists = _number(text, rb"\* (\d+) EXISTS") or 0
        await client.logout()
    resync = await _resync(host, port, user, exists)
    ops: dict[str, Any] = {}
    for name, values in samples.items():
        if name in unsupported:
            ops[name] = {"supported": False, "reason": unsupported[name]}
        elif values:
            ops[name] = {
                "supported": True,
                "first_s": values[0],
                "median_s": statistics.median(values),
                "min_s": min(values),
            }
    ops["RESYNC_1000"] = resync
    return {"messages": exists, "ops": ops}


async def _resync(host: str, port: int, user: str, exists: int) -> dict[str, Any]:
    client = await imap_login(host, port, user)
    status, text = await command_bulk(client, b"SELECT INBOX (CONDSTORE)")
    if status != "OK":
        await client.logout()
        return {"supported": False, "reason": "SELECT (CONDSTORE) rejected"}
    validity = _number(text, rb"UIDVALIDITY (\d+)")
    modseq = _number(text, rb"HIGHESTMODSEQ (\d+)")
    status, text = await command_bulk(client, b"UID SEARCH ALL")
    uids = [int(x) for x in text.split(b"\r\n* SEARCH", 1)[-1].split(b"\r\n", 1)[0].split()]
    await client.logout()
    if validity is None or modseq is None or not uids:
        return {"supported": False, "reason": "no UIDVALIDITY/HIGHESTMODSEQ/UIDs"}
    step = max(1, len(uids) // 1000)
    changed = uids[::step][:1000]
    writer = await imap_login(host, port, user)
    await command_bulk(writer, b"SELECT INBOX")
    for i in range(0, len(changed), 100):
        chunk = b",".join(b"%d" % uid for uid in changed[i : i + 100])
        status, text = await command_bulk(writer, b"UID STORE %s +FLAGS.SILENT (\\Flagged)" % chunk)
        if status != "OK":
            await writer.logout()
            return {"supported": False, "reason": "UID STORE failed"}
    await writer.logout()
    reader = await imap_login(host, port, user)
    status, _, _ = await _timed(reader, b"ENABLE QRESYNC")
    method = "SELECT (QRESYNC)"
    if status == "OK":
        status, seconds, text = await _timed(
            reader, b"SELECT INBOX (QRESYNC (%d %d))" % (validity, modseq)
        )
        if status != "OK":
            await reader.logout()
            return {"supported": False, "reason": "SELECT (QRESYNC) rejected"}
    else:
        method = "SELECT (CONDSTORE) + UID FETCH CHANGEDSINCE"
        status, first, _ = await _timed(reader, b"SELECT INBOX (CONDSTORE)")
        status, second, text = await _timed(
            reader, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % modseq
        )
        seconds = first + second
    await reader.logout()
    returned = text.count(b" FETCH (")
    return {
        "supported": True,
        "first_s": seconds,
        "median_s": seconds,
        "min_s": seconds,
        "method": method,
        "changes": len(changed),
        "fetch_lines": returned,
    }


def run_big(
    host: str, port: int, *, user: str, count: int, corpus: list[bytes], reps: int
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        seed_seconds = await seed_mailbox(host, port, user, count, corpus)
        result = await _measure(host, port, user, reps)
        result["seed_s"] = seed_seconds
        return result

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    return asyncio.run(main())
