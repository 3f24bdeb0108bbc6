"""Workload 2, LMTP delivery: messages per second over 1 and 8 connections, 1 and 5 recipients.

Each connection sends LHLO once, then loops transactions (MAIL FROM, one RCPT TO per
recipient, DATA with a corpus message, one reply per recipient) until the time is up, without
pipelining. Recipients are drawn from a pool of users who receive nothing else. A message
counts once however many recipients it has; ``deliveries_per_sec`` counts per recipient.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from bench.common import LmtpClient, WorkerResult, cpu_now, merge, run_processes, split


@dataclass(frozen=True)
class LmtpParams:
    host: str
    port: int
    users: tuple[str, ...]
    connections: int
    recipients: int
    seconds: float
    corpus: tuple[bytes, ...]


async def _connection(p: LmtpParams, seed: int, deadline: float, result: WorkerResult) -> None:
    rng = random.Random(seed)
    client: LmtpClient | None = None
    while time.monotonic() < deadline:
        try:
            if client is None:
                client = await asyncio.wait_for(LmtpClient.connect(p.host, p.port), 30)
            rcpts = rng.sample(p.users, p.recipients)
            start = time.perf_counter()
            await asyncio.wait_for(
                client.deliver("sender@bench.test", rcpts, rng.choice(p.corpus)), 60
            )
            result.op("MESSAGE").add(time.perf_counter() - start)
        except Exception as exc:
            result.error("lmtp", exc)
            if client is not None:
                client.writer.close()
            client = None
            await asyncio.sleep(0.05)
    if client is not None:
        try:
            await asyncio.wait_for(client.quit(), 10)
        except Exception as exc:
            result.error("quit", exc)


def _worker(p: LmtpParams, index: int, start_at: float) -> WorkerResult:
    result = WorkerResult()

    async def main() -> None:
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        cpu0 = cpu_now()
        t0 = time.monotonic()
        deadline = t0 + p.seconds
        await asyncio.gather(
            *(_connection(p, index * 1009 + i, deadline, result) for i in range(p.connections))
        )
        result.elapsed = time.monotonic() - t0
        result.cpu_seconds = cpu_now() - cpu0

    asyncio.run(main())
    return result


def run_lmtp(
    host: str,
    port: int,
    *,
    users: list[str],
    connections: int,
    recipients: int,
    seconds: float,
    corpus: list[bytes],
    processes: int,
) -> WorkerResult:
    processes = max(1, min(processes, connections))
    start_at = time.time() + 0.3
    args = [
        (
            LmtpParams(host, port, tuple(users), n, recipients, seconds, tuple(corpus)),
            i,
            start_at,
        )
        for i, n in enumerate(split(connections, processes))
    ]
    return merge(run_processes(_worker, args, timeout=seconds + 120))


def summarize(
    result: WorkerResult, recipients: int, server_cpu: float, cores: int
) -> dict[str, Any]:
    elapsed = result.elapsed or 1.0
    stats = result.op("MESSAGE").summary(elapsed)
    return {
        "elapsed_s": elapsed,
        "messages": stats["count"],
        "messages_per_sec": stats["per_sec"],
        "deliveries_per_sec": stats["per_sec"] * recipients,
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "errors": result.errors,
        "error_samples": result.error_samples,
        "loadgen_cpu_share": result.cpu_seconds / (elapsed * cores),
        "server_cpu_share": server_cpu / (elapsed * cores),
    }
