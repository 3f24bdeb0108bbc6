"""Workload 1, the IMAP mix: C concurrent clients, each looping one mail-client session.

Each client owns its own slice of the user pool (so no two sessions touch one mailbox at once
and every NO/BAD is the server's fault). A session (one user picked at random from the slice,
INBOX seeded with corpus messages): connect, LOGIN, LIST, 2× STATUS, SELECT INBOX, FETCH 1:*
(UID FLAGS), FETCH of the newest 20 messages' headers (RFC822.SIZE + the usual HEADER.FIELDS),
3× FETCH of a full body, 2× STORE of a flag, APPEND of a corpus message, UID STORE \\Deleted on
it and EXPUNGE (so mailbox sizes stay stable), LOGOUT. That is 17 commands per session, login-
heavy like a busy server with webmail and phone clients. Clients are spread over several load
processes (asyncio + uvloop); each command type gets a count, a rate, p50/p99 latency; every
NO/BAD, timeout or broken connection is an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from bench.common import (
    ImapClient,
    WorkerResult,
    cpu_now,
    merge,
    run_processes,
    split,
)

HEADER_FIELDS = (
    b"(UID RFC822.SIZE FLAGS"
    b" BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID Content-Type)])"
)
OPS = (
    "CONNECT",
    "LOGIN",
    "LIST",
    "STATUS",
    "SELECT",
    "FETCH_FLAGS",
    "FETCH_HEADERS",
    "FETCH_BODY",
    "STORE",
    "APPEND",
    "EXPUNGE",
    "LOGOUT",
)


@dataclass(frozen=True)
class MixParams:
    host: str
    port: int
    users: tuple[str, ...]
    password: str
    clients: int
    total: int
    seconds: float
    corpus: tuple[bytes, ...]


async def _timed(result: WorkerResult, name: str, coro: Any) -> Any:
    start = time.perf_counter()
    value = await asyncio.wait_for(coro, 60)
    result.op(name).add(time.perf_counter() - start)
    return value


async def _session(
    p: MixParams, users: tuple[str, ...], rng: random.Random, result: WorkerResult
) -> None:
    user = rng.choice(users)
    client: ImapClient = await _timed(result, "CONNECT", ImapClient.connect(p.host, p.port))
    try:
        cmd = client.command
        await _timed(
            result,
            "LOGIN",
            cmd(b'LOGIN "%s" "%s"' % (user.encode(), p.password.encode()), keep=False),
        )
        await _timed(result, "LIST", cmd(b'LIST "" "*"', keep=False))
        for box in (b"Sent", b"Trash"):
            await _timed(result, "STATUS", cmd(b"STATUS %s (MESSAGES UNSEEN UIDNEXT)" % box))
        reply = await _timed(result, "SELECT", cmd(b"SELECT INBOX"))
        exists = 0
        for line in reply.untagged:
            if line.endswith(b" EXISTS\r\n"):
                exists = int(line.split()[1])
        if exists == 0:
            raise RuntimeError("INBOX is empty")
        await _timed(result, "FETCH_FLAGS", cmd(b"FETCH 1:* (UID FLAGS)", keep=False))
        first = max(1, exists - 19)
        await _timed(
            result, "FETCH_HEADERS", cmd(b"FETCH %d:%d %s" % (first, exists, HEADER_FIELDS))
        )
        for _ in range(3):
            seq = rng.randint(1, exists)
            await _timed(result, "FETCH_BODY", cmd(b"FETCH %d (BODY.PEEK[])" % seq, keep=False))
        for flag in (b"+FLAGS.SILENT (\\Seen)", b"-FLAGS.SILENT (\\Flagged)"):
            seq = rng.randint(1, exists)
            await _timed(result, "STORE", cmd(b"STORE %d %s" % (seq, flag), keep=False))
        message = rng.choice(p.corpus)
        reply = await _timed(result, "APPEND", cmd(b"APPEND INBOX", literal=message, keep=False))
        code = reply.code(b"APPENDUID")
        if code is None:
            raise RuntimeError(f"no APPENDUID: {reply.text[:100]!r}")
        uid = code.split()[1]
        await _timed(
            result, "STORE", cmd(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % uid, keep=False)
        )
        await _timed(result, "EXPUNGE", cmd(b"EXPUNGE", keep=False))
        await _timed(result, "LOGOUT", cmd(b"LOGOUT", keep=False))
    finally:
        client.close()


async def _client(
    p: MixParams, users: tuple[str, ...], seed: int, deadline: float, result: WorkerResult
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        try:
            await _session(p, users, rng, result)
        except Exception as exc:
            result.error("session", exc)
            await asyncio.sleep(0.05)


def _worker(p: MixParams, index: int, first: int, start_at: float) -> WorkerResult:
    result = WorkerResult()

    async def main() -> None:
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        cpu0 = cpu_now()
        t0 = time.monotonic()
        deadline = t0 + p.seconds
        await asyncio.gather(
            *(
                _client(p, p.users[first + i :: p.total], index * 10007 + i, deadline, result)
                for i in range(p.clients)
            )
        )
        result.elapsed = time.monotonic() - t0
        result.cpu_seconds = cpu_now() - cpu0

    asyncio.run(main())
    return result


def run_mix(
    host: str,
    port: int,
    *,
    users: list[str],
    password: str,
    clients: int,
    seconds: float,
    corpus: list[bytes],
    processes: int,
) -> WorkerResult:
    """Run the mix with ``clients`` clients over ``processes`` load processes."""
    processes = max(1, min(processes, clients))
    start_at = time.time() + 0.5
    if len(users) < clients:
        raise ValueError(f"{clients} clients need at least as many users ({len(users)})")
    shares = split(clients, processes)
    args = [
        (
            MixParams(host, port, tuple(users), password, n, clients, seconds, tuple(corpus)),
            i,
            sum(shares[:i]),
            start_at,
        )
        for i, n in enumerate(shares)
    ]
    return merge(run_processes(_worker, args, timeout=seconds + 180))


def summarize(result: WorkerResult, server_cpu: float, cores: int) -> dict[str, Any]:
    """The JSON-ready summary of one mix run."""
    elapsed = result.elapsed or 1.0
    ops = {name: result.ops[name].summary(elapsed) for name in OPS if name in result.ops}
    commands = sum(int(v["count"]) for k, v in ops.items() if k != "CONNECT")
    return {
        "elapsed_s": elapsed,
        "sessions_per_sec": ops.get("LOGOUT", {}).get("per_sec", 0.0),
        "commands_per_sec": commands / elapsed,
        "ops": ops,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "loadgen_cpu_share": result.cpu_seconds / (elapsed * cores),
        "server_cpu_share": server_cpu / (elapsed * cores),
    }
