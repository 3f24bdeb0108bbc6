"""Workload 5, IMAP FETCH throughput: several clients reading one big mailbox.

One user's INBOX is seeded with N corpus messages (MULTIAPPEND over 4 connections, not timed;
N = 5 000 in full mode, about 80 MB of mail, more than the s3pg peer's 64 MB fscache). Then C
clients log in, ``EXAMINE INBOX`` and fetch the mailbox in chunks of ``chunk`` messages
(``FETCH a:b (BODY.PEEK[])`` for full bodies, ``FETCH a:b (BODY.PEEK[HEADER])`` for headers),
each client starting at its own offset and wrapping around, for ``seconds``. Reported per
phase: messages/s, MB/s (literal payload, 10^6 bytes), p50/p99 of one chunk, errors (a NO/BAD,
a short reply, a timeout or a broken connection), server and load-generator CPU. The clients
log in and EXAMINE before the common start; only the FETCHes are timed.

The ``body_pass`` phase is one pass over the whole mailbox (split between the clients) right
after the server's local object cache was emptied (``Peer.drop_cache``: the s3pg peer's
fscache, so every body comes from S3, decrypted and decompressed; the posix peer has no such
cache and reads its files from the OS page cache).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from bench.big_mailbox import seed_mailbox
from bench.common import (
    ImapClient,
    ProtocolError,
    WorkerResult,
    command_bulk,
    cpu_now,
    imap_login,
    merge,
    run_processes,
    split,
)

ITEMS = {"body": b"BODY.PEEK[]", "header": b"BODY.PEEK[HEADER]"}
_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n$")
_FETCH_LINE = re.compile(rb"^\* \d+ FETCH \(")


@dataclass(frozen=True)
class FetchParams:
    host: str
    port: int
    user: str
    password: str
    clients: int  # in this load process
    first_client: int  # index of this process's first client among all clients
    total_clients: int
    exists: int
    chunk: int
    item: bytes
    seconds: float
    one_pass: bool


async def fetch_range(client: ImapClient, item: bytes, low: int, high: int) -> tuple[int, int]:
    """``FETCH low:high (item)``; return (FETCH responses, literal bytes) of the reply."""
    client.tag += 1
    tag = b"f%d" % client.tag
    client.writer.write(b"%s FETCH %d:%d (%s)\r\n" % (tag, low, high, item))
    prefix = tag + b" "
    messages = payload = 0
    reader = client.reader
    while True:
        line = await reader.readuntil(b"\r\n")
        if line.startswith(prefix):
            if not line[len(prefix) :].startswith(b"OK"):
                raise ProtocolError(f"FETCH {low}:{high}: {line[:200]!r}")
            return messages, payload
        if _FETCH_LINE.match(line):
            messages += 1
        match = _LITERAL_END.search(line)
        while match is not None:
            size = int(match.group(1))
            await reader.readexactly(size)
            payload += size
            line = await reader.readuntil(b"\r\n")
            match = _LITERAL_END.search(line)


def seed(host: str, port: int, *, user: str, count: int, corpus: list[bytes]) -> tuple[float, int]:
    """Fill ``user``'s INBOX up to ``count`` messages; return (seconds, messages in INBOX)."""

    async def main() -> tuple[float, int]:
        seconds = await seed_mailbox(host, port, user, count, corpus)
        client = await imap_login(host, port, user)
        _, text = await command_bulk(client, b"STATUS INBOX (MESSAGES)")
        await client.logout()
        match = re.search(rb"MESSAGES (\d+)", text)
        return seconds, int(match.group(1)) if match else 0

    return asyncio.run(main())


def _ranges(p: FetchParams, client: int) -> list[tuple[int, int]]:
    """The chunks one client fetches, in order (one pass: its own slice of the mailbox)."""
    if p.one_pass:
        shares = split(p.exists, p.total_clients)
        start = sum(shares[:client])
        end = start + shares[client]
    else:
        start = p.exists * client // p.total_clients
        end = start + p.exists
    out = []
    for low in range(start, end, p.chunk):
        high = min(low + p.chunk, end)
        # wrap: positions beyond the mailbox fold back to its beginning
        a, b = low % p.exists, (high - 1) % p.exists
        if a <= b:
            out.append((a + 1, b + 1))
        else:
            out += [(a + 1, p.exists), (1, b + 1)]
    return out


async def _open(p: FetchParams, result: WorkerResult) -> ImapClient | None:
    """A logged-in client with INBOX examined (None after an error, counted)."""
    try:
        conn = await asyncio.wait_for(imap_login(p.host, p.port, p.user, p.password), 30)
        await asyncio.wait_for(conn.command(b"EXAMINE INBOX", keep=False), 60)
    except Exception as exc:
        result.error("login", exc)
        return None
    return conn


async def _client(
    p: FetchParams, client: int, conn: ImapClient | None, deadline: float, result: WorkerResult
) -> None:
    ranges = _ranges(p, client)
    position = 0
    while position < len(ranges) or not p.one_pass:
        if time.monotonic() >= deadline:
            break
        try:
            if conn is None:
                conn = await _open(p, result)
                if conn is None:
                    await asyncio.sleep(0.05)
                    continue
            low, high = ranges[position % len(ranges)]
            start = time.perf_counter()
            messages, payload = await asyncio.wait_for(fetch_range(conn, p.item, low, high), 120)
            result.op("CHUNK").add(time.perf_counter() - start)
            if messages != high - low + 1:
                raise ProtocolError(f"FETCH {low}:{high} returned {messages} messages")
            result.extra["messages"] = result.extra.get("messages", 0) + messages
            result.extra["bytes"] = result.extra.get("bytes", 0) + payload
            position += 1
        except Exception as exc:
            result.error("fetch", exc)
            if conn is not None:
                conn.close()
            conn = None
            position += 1  # never retry one chunk forever
            await asyncio.sleep(0.05)
    if conn is not None:
        try:
            await asyncio.wait_for(conn.logout(), 10)
        except Exception as exc:
            result.error("logout", exc)


def _worker(p: FetchParams, start_at: float) -> WorkerResult:
    result = WorkerResult()

    async def main() -> None:
        # log in and EXAMINE before the common start: the timed part is FETCH only
        conns = await asyncio.gather(*(_open(p, result) for _ in range(p.clients)))
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        cpu0 = cpu_now()
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                _client(p, p.first_client + i, conn, t0 + p.seconds, result)
                for i, conn in enumerate(conns)
            )
        )
        result.elapsed = time.monotonic() - t0
        result.cpu_seconds = cpu_now() - cpu0

    asyncio.run(main())
    return result


def run_fetch(
    host: str,
    port: int,
    *,
    user: str,
    password: str,
    exists: int,
    clients: int,
    chunk: int,
    item: bytes,
    seconds: float,
    processes: int,
    one_pass: bool = False,
) -> WorkerResult:
    """One phase: ``clients`` clients over ``processes`` load processes, for ``seconds`` (or,
    with ``one_pass``, until the mailbox was read once, at most ``seconds``)."""
    if exists <= 0:
        raise ValueError("the mailbox is empty")
    processes = max(1, min(processes, clients))
    start_at = time.time() + 1.0
    shares = split(clients, processes)
    args = [
        (
            FetchParams(
                host,
                port,
                user,
                password,
                n,
                sum(shares[:i]),
                clients,
                exists,
                chunk,
                item,
                seconds,
                one_pass,
            ),
            start_at,
        )
        for i, n in enumerate(shares)
    ]
    results = run_processes(_worker, args, timeout=seconds + 180)
    total = merge(results)
    total.extra = {key: sum(r.extra.get(key, 0) for r in results) for key in ("messages", "bytes")}
    return total


def summarize(
    result: WorkerResult, server_cpu: float, backend_cpu: float | None, cores: int
) -> dict[str, Any]:
    elapsed = result.elapsed or 1.0
    chunks = result.op("CHUNK").summary(elapsed)
    messages = int(result.extra.get("messages", 0))
    payload = int(result.extra.get("bytes", 0))
    out: dict[str, Any] = {
        "elapsed_s": elapsed,
        "messages": messages,
        "bytes": payload,
        "messages_per_sec": messages / elapsed,
        "mb_per_sec": payload / elapsed / 1e6,
        "chunks": chunks["count"],
        "chunk_p50_ms": chunks["p50_ms"],
        "chunk_p99_ms": chunks["p99_ms"],
        "errors": result.errors,
        "error_samples": result.error_samples,
        "loadgen_cpu_share": result.cpu_seconds / (elapsed * cores),
        "server_cpu_share": server_cpu / (elapsed * cores),
    }
    if backend_cpu is not None:
        out["backend_cpu_share"] = backend_cpu / (elapsed * cores)
    return out
