"""Shared pieces of the load generator: the message corpus, a lean asyncio IMAP/LMTP client,
latency statistics and the multi-process runner.

The clients are deliberately small (``asyncio`` streams, no parsing beyond what the workloads
need: tagged status, literals, a few response codes) so that the load generator is not the
bottleneck; every worker process reports its own CPU time so the report can show its share.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "data" / "imaptest-200.mbox"
PASSWORD = "benchpw"
DOMAIN = "bench.test"

_LITERAL_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_CODE = re.compile(rb"\[([A-Z-]+) ([^\]]*)\]")


def load_corpus(path: Path = CORPUS) -> list[bytes]:
    """The messages of an mbox file, with CRLF line ends and without the ``From `` lines."""
    messages: list[bytes] = []
    current: list[bytes] = []
    previous_blank = True
    for line in path.read_bytes().split(b"\n"):
        if line.startswith(b"From ") and previous_blank:
            if current:
                messages.append(_finish(current))
            current = []
            previous_blank = False
            continue
        current.append(line.rstrip(b"\r"))
        previous_blank = line.strip() == b""
    if current:
        messages.append(_finish(current))
    return [m for m in messages if m.strip()]


def _finish(lines: list[bytes]) -> bytes:
    while lines and not lines[-1].strip():
        lines.pop()
    return b"\r\n".join(lines) + b"\r\n"


def user_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:05d}@{DOMAIN}"


class ProtocolError(Exception):
    """A NO/BAD/unexpected reply or a broken connection."""


@dataclass
class Reply:
    """A tagged reply with the untagged lines before it (literals joined into their line)."""

    status: str
    text: bytes
    untagged: list[bytes]

    def code(self, name: bytes) -> bytes | None:
        """The argument of response code ``name`` in the tagged line, e.g. APPENDUID."""
        for match in _CODE.finditer(self.text):
            if match.group(1) == name:
                return match.group(2)
        return None


class ImapClient:
    """One IMAP connection: ``await command(b"SELECT INBOX")``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.tag = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 30.0) -> ImapClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 22), timeout
        )
        client = cls(reader, writer)
        greeting = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
        if not greeting.startswith(b"* OK"):
            client.close()
            raise ProtocolError(f"greeting: {greeting[:80]!r}")
        return client

    async def read_line(self) -> bytes:
        """One response line with any literals it carries."""
        line = await self.reader.readuntil(b"\r\n")
        match = _LITERAL_END.search(line)
        if match is None:
            return line
        parts = [line]
        while match is not None:
            parts.append(await self.reader.readexactly(int(match.group(1))))
            more = await self.reader.readuntil(b"\r\n")
            parts.append(more)
            match = _LITERAL_END.search(more)
        return b"".join(parts)

    async def command(
        self, text: bytes, literal: bytes | None = None, keep: bool = True, check: bool = True
    ) -> Reply:
        """Send a command (with an optional LITERAL+ argument last) and read up to its reply."""
        self.tag += 1
        tag = b"b%d" % self.tag
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(
                b"".join((tag, b" ", text, b" {%d+}\r\n" % len(literal), literal, b"\r\n"))
            )
        untagged: list[bytes] = []
        prefix = tag + b" "
        while True:
            line = await self.read_line()
            if line.startswith(prefix):
                status = line[len(prefix) :].split(b" ", 1)[0].decode()
                if check and status != "OK":
                    raise ProtocolError(f"{text[:40]!r}: {line[:200]!r}")
                return Reply(status, line, untagged)
            if keep:
                untagged.append(line)

    def close(self) -> None:
        self.writer.close()

    async def logout(self) -> None:
        try:
            await self.command(b"LOGOUT", keep=False)
        finally:
            self.close()


async def imap_login(host: str, port: int, user: str, password: str = PASSWORD) -> ImapClient:
    client = await ImapClient.connect(host, port)
    await client.command(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()), keep=False)
    return client


class LmtpClient:
    """One LMTP connection; ``deliver`` runs one transaction, one reply line per recipient."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> LmtpClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        await client.reply(b"220")
        writer.write(b"LHLO bench.localhost\r\n")
        await client.reply(b"250")
        return client

    async def reply(self, expect: bytes) -> bytes:
        """Read one (possibly multi-line) reply; raise unless it starts with ``expect``."""
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if len(line) < 4 or line[3:4] != b"-":
                break
        if not line.startswith(expect):
            raise ProtocolError(f"LMTP: expected {expect!r}, got {line[:200]!r}")
        return line

    async def deliver(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        self.writer.write(b"MAIL FROM:<%s>\r\n" % sender.encode())
        await self.reply(b"250")
        for rcpt in recipients:
            self.writer.write(b"RCPT TO:<%s>\r\n" % rcpt.encode())
            await self.reply(b"250")
        self.writer.write(b"DATA\r\n")
        await self.reply(b"354")
        self.writer.write(dot_stuff(message) + b".\r\n")
        for _ in recipients:
            await self.reply(b"250")

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        try:
            await self.reply(b"221")
        finally:
            self.writer.close()


def dot_stuff(message: bytes) -> bytes:
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class OpStats:
    """Counts and latency samples of one operation type (merged across processes)."""

    count: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.latencies.append(seconds)

    def summary(self, elapsed: float) -> dict[str, float]:
        values = sorted(self.latencies)
        return {
            "count": self.count,
            "per_sec": self.count / elapsed if elapsed > 0 else 0.0,
            "p50_ms": percentile(values, 0.50) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
        }


@dataclass
class WorkerResult:
    """What one load-generator process sends back."""

    ops: dict[str, OpStats] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def op(self, name: str) -> OpStats:
        stats = self.ops.get(name)
        if stats is None:
            stats = self.ops[name] = OpStats()
        return stats

    def error(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{what}: {type(exc).__name__}: {exc}"[:300])


def merge(results: Sequence[WorkerResult]) -> WorkerResult:
    total = WorkerResult()
    for result in results:
        for name, stats in result.ops.items():
            merged = total.op(name)
            merged.count += stats.count
            merged.latencies.extend(stats.latencies)
        total.errors += result.errors
        total.error_samples.extend(result.error_samples[: 5 - len(total.error_samples)])
        total.cpu_seconds += result.cpu_seconds
        total.elapsed = max(total.elapsed, result.elapsed)
    return total


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _run_child(
    fn: Callable[..., WorkerResult], args: tuple[Any, ...], queue: Any, index: int
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    raise_nofile()
    try:
        result = fn(*args)
    except BaseException as exc:
        result = WorkerResult()
        result.error("worker", exc)
    queue.put((index, result))


def run_processes(
    fn: Callable[..., WorkerResult], args_per_process: Sequence[tuple[Any, ...]], timeout: float
) -> list[WorkerResult]:
    """Run ``fn(*args)`` in one forked process per args tuple; collect their results."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_run_child, args=(fn, args, queue, i), daemon=True)
        for i, args in enumerate(args_per_process)
    ]
    for proc in procs:
        proc.start()
    results: dict[int, WorkerResult] = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(procs):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            index, result = queue.get(timeout=min(remaining, 1.0))
        except Exception:
            if all(not p.is_alive() for p in procs) and queue.empty():
                break
            continue
        results[index] = result
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    out = []
    for i in range(len(procs)):
        if i in results:
            out.append(results[i])
        else:
            missing = WorkerResult()
            missing.error("worker", TimeoutError(f"load process {i} gave no result"))
            out.append(missing)
    return out


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative shares."""
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def load_processes() -> int:
    """Load-generator processes by default: one per core, at least 2, at most 4."""
    return max(2, min(4, os.cpu_count() or 2))


async def append_many(client: ImapClient, mailbox: bytes, messages: Sequence[bytes]) -> None:
    """One MULTIAPPEND command (LITERAL+) carrying all ``messages``."""
    client.tag += 1
    tag = b"b%d" % client.tag
    parts = [tag, b" APPEND ", mailbox]
    for message in messages:
        parts += [b" {%d+}\r\n" % len(message), message]
    parts.append(b"\r\n")
    client.writer.write(b"".join(parts))
    prefix = tag + b" "
    while True:
        line = await client.read_line()
        if line.startswith(prefix):
            if not line[len(prefix) :].startswith(b"OK"):
                raise ProtocolError(f"APPEND: {line[:200]!r}")
            return


async def seed_users(
    host: str,
    port: int,
    users: Sequence[str],
    count: int,
    corpus: Sequence[bytes],
    *,
    mailbox: bytes = b"INBOX",
    concurrency: int = 8,
    batch: int = 100,
) -> None:
    """Give each user ``count`` corpus messages in ``mailbox`` (MULTIAPPEND, not timed)."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(index: int, user: str) -> None:
        async with semaphore:
            client = await imap_login(host, port, user)
            done = 0
            while done < count:
                n = min(batch, count - done)
                chunk = [corpus[(index * 7 + done + i) % len(corpus)] for i in range(n)]
                await append_many(client, mailbox, chunk)
                done += n
            await client.logout()

    await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))


async def command_bulk(client: ImapClient, text: bytes) -> tuple[str, bytes]:
    """A command whose (possibly huge) reply has no literals: read it in big chunks.

    Returns the tagged status and the whole reply text; much cheaper for the load generator
    than one ``readuntil`` per line on a 100 000-line FETCH.
    """
    client.tag += 1
    tag = b"b%d" % client.tag
    client.writer.write(tag + b" " + text + b"\r\n")
    marker = b"\r\n" + tag + b" "
    buffer = bytearray(b"\r\n")
    scanned = 0
    while True:
        chunk = await client.reader.read(1 << 20)
        if not chunk:
            raise ProtocolError(f"{text[:40]!r}: connection closed")
        buffer += chunk
        position = buffer.find(marker, max(0, scanned - len(marker)))
        scanned = len(buffer)
        if position >= 0 and buffer.endswith(b"\r\n"):
            end = buffer.find(b"\r\n", position + 2)
            if end == len(buffer) - 2:
                status = bytes(buffer[position + len(marker) :].split(b" ", 1)[0]).strip()
                return status.decode(), bytes(buffer)
