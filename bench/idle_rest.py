"""Workload 4, connections at rest: N clients logged in, INBOX selected, in IDLE.

Users: N / 10 of them, ten IDLE connections each (a user with phone, laptop, webmail...).
Load processes open the connections (at most 100 logins in flight per process, open-file
limit raised), then the bench waits for the server to settle (Dovecot hibernates idle IMAP
connections after 5 s), measures the resident memory of every server process (summed RSS
and PSS), and delivers one message to every user over LMTP (transactions of 50 recipients,
4 connections). "Notify all" is the time from the start of that delivery until the last
client that got into IDLE has seen its ``* n EXISTS``; p50 is the median client. A client that
could not connect, log in or select is counted in ``errors`` (with the step that failed).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    PASSWORD,
    ImapClient,
    LmtpClient,
    WorkerResult,
    cpu_now,
    percentile,
    raise_nofile,
    split,
)

NOTIFY_TIMEOUT = 120.0


def _worker(
    host: str,
    port: int,
    users: list[str],
    *,
    ready: Any,
    notified: Any,
    stop: Any,
    queue: Any,
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    raise_nofile()
    result = WorkerResult()
    arrivals: list[float] = []

    async def client_task(user: str, gate: asyncio.Semaphore, established: list[int]) -> None:
        async with gate:
            step = "connect"
            try:
                client = await ImapClient.connect(host, port, timeout=120)
                step = "LOGIN"
                await asyncio.wait_for(
                    client.command(b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode())), 120
                )
                step = "SELECT"
                await asyncio.wait_for(client.command(b"SELECT INBOX", keep=False), 120)
                step = "IDLE"
                client.writer.write(b"i1 IDLE\r\n")
                line = await asyncio.wait_for(client.reader.readuntil(b"\r\n"), 120)
                if not line.startswith(b"+"):
                    raise RuntimeError(f"IDLE: {line[:80]!r}")
            except Exception as exc:
                result.error(f"idle ({step}, {user})", exc)
                with ready.get_lock():
                    ready.value += 1
                return
        established[0] += 1
        with ready.get_lock():
            ready.value += 1
        try:
            while True:
                line = await client.reader.readuntil(b"\r\n")
                if line.endswith(b" EXISTS\r\n"):
                    arrivals.append(time.time())
                    with notified.get_lock():
                        notified.value += 1
                    break
        except Exception as exc:
            if not stop.is_set():
                result.error("idle-wait", exc)
        while not stop.is_set():
            await asyncio.sleep(0.5)
        client.close()

    async def main() -> None:
        cpu0 = cpu_now()
        gate = asyncio.Semaphore(100)
        established = [0]
        tasks = [asyncio.create_task(client_task(u, gate, established)) for u in users]
        await asyncio.gather(*tasks)
        result.cpu_seconds = cpu_now() - cpu0
        result.extra["established"] = established[0]

    try:
        asyncio.run(main())
    except BaseException as exc:
        result.error("worker", exc)
    result.extra["arrivals"] = arrivals
    queue.put(result)


async def _deliver_all(host: str, port: int, users: list[str], message: bytes) -> None:
    batches = [users[i : i + 50] for i in range(0, len(users), 50)]

    async def one_connection(mine: list[list[str]]) -> None:
        client = await LmtpClient.connect(host, port)
        for batch in mine:
            await client.deliver("notify@bench.test", batch, message)
        await client.quit()

    await asyncio.gather(*(one_connection(batches[i::4]) for i in range(4) if batches[i::4]))


def run_idle(
    host: str,
    imap_port: int,
    *,
    lmtp_port: int,
    users: list[str],
    clients: int,
    message: bytes,
    processes: int,
    settle: float,
    memory: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    """Hold ``clients`` IDLE connections (users round-robin); measure memory and notify time."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Value("i", 0)
    notified = ctx.Value("i", 0)
    stop = ctx.Event()
    queue = ctx.Queue()
    per_client = [users[i % len(users)] for i in range(clients)]
    shares = split(clients, processes)
    procs = []
    offset = 0
    baseline = memory()
    start = time.monotonic()
    for share in shares:
        mine = per_client[offset : offset + share]
        offset += share
        proc = ctx.Process(
            target=_worker,
            args=(host, imap_port, mine),
            kwargs={"ready": ready, "notified": notified, "stop": stop, "queue": queue},
            daemon=True,
        )
        proc.start()
        procs.append(proc)
    out: dict[str, Any] = {"clients": clients, "users": len(users)}
    deadline = time.monotonic() + 120 + clients / 50
    while ready.value < clients and time.monotonic() < deadline:
        time.sleep(0.2)
    out["connect_s"] = time.monotonic() - start
    time.sleep(settle)
    out["memory_idle"] = memory()
    out["memory_before"] = baseline
    t0 = time.time()
    delivery_error = ""
    try:
        asyncio.run(asyncio.wait_for(_deliver_all(host, lmtp_port, users, message), 120))
    except Exception as exc:
        delivery_error = f"{type(exc).__name__}: {exc}"
    delivered = time.time() - t0
    deadline = time.monotonic() + NOTIFY_TIMEOUT
    while time.monotonic() < deadline:
        if notified.value >= clients:
            break
        time.sleep(0.05)
    out["memory_after_notify"] = memory()
    stop.set()
    results: list[WorkerResult] = []
    for _ in procs:
        try:
            results.append(queue.get(timeout=60))
        except Exception:
            break
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    arrivals = sorted(a - t0 for r in results for a in r.extra.get("arrivals", []))
    established = sum(int(r.extra.get("established", 0)) for r in results)
    errors = sum(r.errors for r in results) + (1 if delivery_error else 0)
    samples = [s for r in results for s in r.error_samples][:5]
    if delivery_error:
        samples.insert(0, "delivery: " + delivery_error)
    out.update(
        {
            "established": established,
            "notified": len(arrivals),
            "delivery_s": delivered,
            # every client that got into IDLE saw its EXISTS (one that never connected is an
            # error of its own, counted in "errors", not a missing notification)
            "notify_all_s": arrivals[-1] if arrivals and len(arrivals) == established else None,
            "notify_p50_s": percentile(arrivals, 0.5) if arrivals else None,
            "notify_max_s": arrivals[-1] if arrivals else None,
            "errors": errors,
            "error_samples": samples,
            "loadgen_cpu_s": sum(r.cpu_seconds for r in results),
        }
    )
    return out
