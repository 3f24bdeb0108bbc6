"""SORT and THREAD over a big mailbox: wall time per command, and the longest event-loop stall
other sessions of the same worker see while they run.

Run from the repository root: ``.venv/bin/python bench/bench_sort_thread.py [--messages N]
[--data DIR]``. The first run fills ``DIR`` (default ``/tmp/columba-bench-sort``) with N
messages (default 100 000; random subjects with Re:/Fwd:/[tags], senders, dates, References
to earlier messages) through the storage API, which takes a few minutes; later runs reuse it.
Then an in-process IMAP server (real sessions, real storage) answers one client's SORT and
THREAD commands while a ticker task in the same event loop wakes up every millisecond and
records the longest gap between wake-ups, and a second client times NOOP round trips.

Each command runs "cold" (the worker's key cache empty: keys read from the ``sort_keys`` rows
the index stored at save; a mailbox filled before that table existed gets them computed and
stored by its first cold run, once), then ``--runs`` times "warm" (keys cached); ``--only TEXT``
picks commands. Columns: wall seconds, CPU seconds of the process, the longest stall of the
event loop in wall time and the CPU the loop's thread spent in it (on a loaded machine the
wall time includes waiting for a CPU), and the slowest NOOP of the other session. The NOOP
line is the floor. Not run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.unit.test_imap_session import PASSWORD, USER, Client, serving

from columba.config import load
from columba.context import ServiceContext
from columba.demo import prepare
from columba.imap.sort_keys import key_cache
from columba.storage.api import AppendRequest, UserInfo

COMMANDS = [
    "NOOP",  # the floor: what the bench and the worker cost without any sorting
    "UID SORT (ARRIVAL) UTF-8 ALL",
    "UID SORT (REVERSE DATE) UTF-8 ALL",
    "UID SORT (SUBJECT) UTF-8 ALL",
    "UID SORT (FROM REVERSE DATE) UTF-8 ALL",
    "UID SORT (DISPLAYFROM) UTF-8 ALL",
    "UID SORT RETURN (COUNT MIN MAX) (SIZE) UTF-8 ALL",
    "UID SORT (SUBJECT) UTF-8 UNSEEN",
    "UID THREAD REFERENCES UTF-8 ALL",
    "UID THREAD ORDEREDSUBJECT UTF-8 ALL",
    "UID THREAD REFS UTF-8 ALL",
]


def message(i: int, total: int) -> bytes:
    rnd = random.Random(i)
    subject = rnd.choice(["", "", "Re: ", "Fwd: ", "[list] ", "RE: [x] "]) + (
        f"topic {rnd.randrange(total // 5 + 1)}"
    )
    date = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rnd.randrange(10**8))
    refs = f"References: <m{rnd.randrange(i)}@bench>\r\n" if i and rnd.random() < 0.6 else ""
    return (
        f"From: User {rnd.randrange(1000)} <u{rnd.randrange(1000)}@example.com>\r\n"
        f"To: t{rnd.randrange(50)}@example.com\r\nSubject: {subject}\r\n"
        f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <m{i}@bench>\r\n{refs}\r\nbody {i}\r\n"
    ).encode()


async def fill(root: Path, total: int) -> None:
    conf = prepare(root)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    conf.write_text(conf.read_text() + "\nauth_failure_delay = 0\n")
    context = ServiceContext(load(str(conf), []))
    storage = context.storage
    user = await storage.open_user(UserInfo(USER, str(root / "home" / USER)))
    try:
        have = (await user.status("INBOX")).messages
        started = time.monotonic()
        for start in range(have, total, 1000):
            batch = [
                AppendRequest(message(i, total)) for i in range(start, min(total, start + 1000))
            ]
            await user.append("INBOX", batch)
            if start % 10000 == 0:
                print(
                    f"  filled {start + len(batch)} ({time.monotonic() - started:.0f}s)", flush=True
                )
    finally:
        await user.close()
        await storage.close()


class Ticker:
    """Wakes up every millisecond; remembers the longest gap between wake-ups, in wall time
    and in CPU time of the event loop's thread (on a loaded machine the wall time includes
    the time the process waited for a CPU; the CPU time is what the loop itself spent)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_cpu = 0.0
        self.running = True

    async def run(self) -> None:
        last = time.perf_counter()
        last_cpu = time.thread_time()
        while self.running:
            await asyncio.sleep(0.001)
            now, now_cpu = time.perf_counter(), time.thread_time()
            self.longest = max(self.longest, now - last - 0.001)
            self.longest_cpu = max(self.longest_cpu, now_cpu - last_cpu)
            last, last_cpu = now, now_cpu


async def bench(root: Path, total: int, commands: list[str], runs: int) -> None:
    # a "* SORT" line for 100 000 messages is longer than StreamReader's default limit
    asyncio.open_connection = functools.partial(asyncio.open_connection, limit=1 << 26)
    Client.line.__defaults__ = (300.0,)  # long commands: wait for them
    async with serving(root) as (connect, _sessions):
        client, other = await connect(), await connect()
        for c in (client, other):
            await c.line()
            await c.cmd(f"LOGIN {USER} {PASSWORD}")
        started = time.perf_counter()
        lines = await client.cmd("SELECT INBOX")
        print(f"SELECT: {time.perf_counter() - started:.3f}s  {lines[2].decode().strip()}")
        await other.cmd("SELECT INBOX")
        print(
            f"{'command':48} {'pass':5} {'seconds':>8} {'cpu s':>6} {'max stall':>10} "
            f"{'(cpu)':>8} {'max NOOP':>9}"
        )
        for command in commands:
            key_cache.clear()
            for label in ("cold", *["warm"] * runs):
                ticker = Ticker()
                tick = asyncio.ensure_future(ticker.run())
                noop_worst = 0.0
                done = asyncio.Event()

                async def noops(done: asyncio.Event = done) -> float:
                    worst = 0.0
                    while not done.is_set():
                        t0 = time.perf_counter()
                        await other.cmd("NOOP")
                        worst = max(worst, time.perf_counter() - t0)
                        await asyncio.sleep(0.005)
                    return worst

                pinger = asyncio.ensure_future(noops())
                t0, cpu0 = time.perf_counter(), time.process_time()
                lines = await client.cmd(command)
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                done.set()
                noop_worst = await pinger
                ticker.running = False
                await tick
                status = lines[-1].split(b" ")[1].decode()
                size = sum(len(line) for line in lines)
                print(
                    f"{command:48} {label:5} {elapsed:8.3f} {cpu:6.2f} "
                    f"{ticker.longest * 1000:8.1f}ms {ticker.longest_cpu * 1000:6.1f}ms "
                    f"{noop_worst * 1000:7.1f}ms  {status} ({size} bytes)",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/columba-bench-sort"))
    parser.add_argument(
        "--only", action="append", default=[], help="run the commands containing this text"
    )
    parser.add_argument("--runs", type=int, default=1, help="warm runs per command")
    args = parser.parse_args()
    commands = [c for c in COMMANDS if not args.only or any(o in c for o in args.only)]
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"mailbox: {args.messages} messages in {args.data}")
    asyncio.run(fill(args.data, args.messages))
    asyncio.run(bench(args.data, args.messages, commands, args.runs))


if __name__ == "__main__":
    main()
