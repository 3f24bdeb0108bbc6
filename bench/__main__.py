"""``python -m bench``: run the workloads against Columba and Dovecot, write the report.

Options: ``--quick`` (small sizes, under two minutes, results under ``bench/results/quick/``),
``--only imap,lmtp,big,idle,fetch`` (a subset), ``--peers columba,dovecot,columba-s3pg``
(``columba-s3pg``: Columba on S3 (SeaweedFS) + PostgreSQL), ``--cores N`` (CPU set the servers
are pinned to; default all), ``--out DIR``. Full mode writes ``bench/results/``. Each peer is
started fresh, runs the chosen workloads one after another, and is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import big_mailbox, idle_rest, load_fetch, load_imap, load_lmtp, report
from bench.common import (
    PASSWORD,
    load_corpus,
    load_processes,
    raise_nofile,
    seed_users,
    user_name,
)
from bench.peers import Peer, describe, start_columba, start_columba_s3pg, start_dovecot

WORKLOADS = ("imap", "lmtp", "big", "idle", "fetch")
PEERS = ("columba", "dovecot", "columba-s3pg")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sizes:
    """How big each workload is."""

    mix_users: int = 100
    mix_messages: int = 100
    mix_clients: tuple[int, ...] = (10, 50)
    mix_seconds: float = 20.0
    lmtp_users: int = 50
    lmtp_runs: tuple[tuple[int, int], ...] = ((1, 1), (1, 5), (8, 1), (8, 5))
    lmtp_seconds: float = 10.0
    big_messages: int = 100_000
    big_reps: int = 3
    idle_clients: tuple[int, ...] = (1000, 10_000)
    idle_settle: float = 10.0
    fetch_messages: int = 5000
    fetch_clients: int = 8
    fetch_chunk: int = 100
    fetch_seconds: float = 15.0
    processes: int = field(default_factory=load_processes)


FULL = Sizes()
QUICK = Sizes(
    mix_users=20,
    mix_messages=30,
    mix_clients=(10,),
    mix_seconds=5.0,
    lmtp_users=10,
    lmtp_runs=((1, 1), (8, 5)),
    lmtp_seconds=3.0,
    big_messages=2000,
    big_reps=1,
    idle_clients=(200,),
    idle_settle=7.0,
    fetch_messages=2000,
    fetch_clients=4,
    fetch_seconds=4.0,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _users(sizes: Sizes, only: set[str]) -> dict[str, list[str]]:
    idle_users = max(1, max(sizes.idle_clients) // 10) if "idle" in only else 0
    return {
        "mix": [user_name("mix", i) for i in range(sizes.mix_users if "imap" in only else 0)],
        "lmtp": [user_name("lmtp", i) for i in range(sizes.lmtp_users if "lmtp" in only else 0)],
        "big": [user_name("big", 0)] if "big" in only else [],
        "idle": [user_name("idle", i) for i in range(idle_users)],
        "fetch": [user_name("fetch", 0)] if "fetch" in only else [],
    }


def run_peer(
    peer: Peer,
    sizes: Sizes,
    *,
    only: set[str],
    users: dict[str, list[str]],
    corpus: list[bytes],
    cores: int,
) -> dict[str, Any]:
    """All chosen workloads against one running server; results keyed by workload."""
    out: dict[str, Any] = {}

    def guarded(key: str, fn: Any) -> None:
        try:
            out[key] = fn()
        except Exception as exc:
            traceback.print_exc()
            out[key] = {"failed": f"{type(exc).__name__}: {exc}", "errors": 1}
            log(f"{peer.name} {key}: FAILED {exc}; log tail:\n{peer.log_tail(10)}")

    if "imap" in only:
        log(f"{peer.name}: seeding {len(users['mix'])} users x {sizes.mix_messages} messages")
        t0 = time.monotonic()
        asyncio.run(seed_users(peer.host, peer.imap_port, users["mix"], sizes.mix_messages, corpus))
        asyncio.run(seed_users(peer.host, peer.imap_port, users["mix"], 5, corpus, mailbox=b"Sent"))
        log(f"{peer.name}: seeded in {time.monotonic() - t0:.1f}s")
        for clients in sizes.mix_clients:

            def mix(clients: int = clients) -> dict[str, Any]:
                cpu0 = peer.cpu_seconds()
                result = load_imap.run_mix(
                    peer.host,
                    peer.imap_port,
                    users=users["mix"],
                    password=PASSWORD,
                    clients=clients,
                    seconds=sizes.mix_seconds,
                    corpus=corpus,
                    processes=sizes.processes,
                )
                summary = load_imap.summarize(result, peer.cpu_seconds() - cpu0, cores)
                summary["clients"] = clients
                summary["memory"] = peer.memory()
                return summary

            guarded(f"imap_c{clients}", mix)
            item = out[f"imap_c{clients}"]
            log(
                f"{peer.name} imap c={clients}: {item.get('commands_per_sec', 0):.0f} cmd/s, "
                f"errors {item.get('errors')}"
            )
    if "lmtp" in only:
        for connections, recipients in sizes.lmtp_runs:

            def lmtp(c: int = connections, r: int = recipients) -> dict[str, Any]:
                cpu0 = peer.cpu_seconds()
                backend0 = peer.backend_cpu_seconds()
                result = load_lmtp.run_lmtp(
                    peer.host,
                    peer.lmtp_port,
                    users=users["lmtp"],
                    connections=c,
                    recipients=r,
                    seconds=sizes.lmtp_seconds,
                    corpus=corpus,
                    processes=sizes.processes,
                )
                summary = load_lmtp.summarize(result, r, peer.cpu_seconds() - cpu0, cores)
                summary.update(connections=c, recipients=r)
                _backend_share(summary, peer, backend0, cores)
                return summary

            key = f"lmtp_c{connections}_r{recipients}"
            guarded(key, lmtp)
            log(
                f"{peer.name} {key}: {out[key].get('messages_per_sec', 0):.1f} msg/s, "
                f"errors {out[key].get('errors')}"
            )
    if "big" in only:

        def big() -> dict[str, Any]:
            result = big_mailbox.run_big(
                peer.host,
                peer.imap_port,
                user=users["big"][0],
                count=sizes.big_messages,
                corpus=corpus,
                reps=sizes.big_reps,
            )
            result["memory"] = peer.memory()
            return result

        log(f"{peer.name}: big mailbox ({sizes.big_messages} messages)")
        guarded("big", big)
        log(f"{peer.name} big: {out['big']}")
    if "idle" in only:
        for clients in sizes.idle_clients:

            def idle(clients: int = clients) -> dict[str, Any]:
                return idle_rest.run_idle(
                    peer.host,
                    peer.imap_port,
                    lmtp_port=peer.lmtp_port,
                    users=users["idle"][: max(1, clients // 10)],
                    clients=clients,
                    message=corpus[0],
                    processes=max(sizes.processes, clients // 4000 + 1),
                    settle=sizes.idle_settle,
                    memory=peer.memory,
                )

            log(f"{peer.name}: {clients} IDLE clients")
            guarded(f"idle_{clients}", idle)
            item = out[f"idle_{clients}"]
            log(
                f"{peer.name} idle {clients}: established {item.get('established')}, "
                f"PSS {item.get('memory_idle', {}).get('pss_mb', 0):.0f} MiB, "
                f"notify all {item.get('notify_all_s')}, errors {item.get('errors')}"
            )
    if "fetch" in only:
        log(f"{peer.name}: FETCH throughput ({sizes.fetch_messages} messages)")
        guarded("fetch", lambda: run_fetch(peer, sizes, users["fetch"][0], corpus, cores))
        item = out["fetch"]
        for phase, stats in item.get("phases", {}).items():
            log(
                f"{peer.name} fetch {phase}: {stats['messages_per_sec']:.0f} msg/s, "
                f"{stats['mb_per_sec']:.1f} MB/s, errors {stats['errors']}"
            )
    return out


def _backend_share(summary: dict[str, Any], peer: Peer, backend0: float | None, cores: int) -> None:
    backend1 = peer.backend_cpu_seconds()
    if backend0 is not None and backend1 is not None:
        summary["backend_cpu_share"] = (backend1 - backend0) / (summary["elapsed_s"] * cores)


def run_fetch(
    peer: Peer, sizes: Sizes, user: str, corpus: list[bytes], cores: int
) -> dict[str, Any]:
    """The FETCH workload: seed, then bodies and headers (timed), then one cold-cache pass."""
    seed_s, exists = load_fetch.seed(
        peer.host, peer.imap_port, user=user, count=sizes.fetch_messages, corpus=corpus
    )
    log(f"{peer.name}: fetch mailbox seeded ({exists} messages) in {seed_s:.1f}s")
    phases: dict[str, dict[str, Any]] = {}
    plan = [
        ("body", load_fetch.ITEMS["body"], False),
        ("header", load_fetch.ITEMS["header"], False),
        ("body_pass", load_fetch.ITEMS["body"], True),
    ]
    dropped = 0
    for phase, item, one_pass in plan:
        if one_pass:
            dropped = peer.drop_cache()
        cpu0, backend0 = peer.cpu_seconds(), peer.backend_cpu_seconds()
        result = load_fetch.run_fetch(
            peer.host,
            peer.imap_port,
            user=user,
            password=PASSWORD,
            exists=exists,
            clients=sizes.fetch_clients,
            chunk=sizes.fetch_chunk,
            item=item,
            seconds=max(sizes.fetch_seconds * 10, 60.0) if one_pass else sizes.fetch_seconds,
            processes=sizes.processes,
            one_pass=one_pass,
        )
        backend1 = peer.backend_cpu_seconds()
        phases[phase] = load_fetch.summarize(
            result,
            peer.cpu_seconds() - cpu0,
            None if backend0 is None or backend1 is None else backend1 - backend0,
            cores,
        )
    samples = [s for stats in phases.values() for s in stats["error_samples"]]
    return {
        "messages": exists,
        "mailbox_mb": phases["body_pass"]["bytes"] / 1e6,
        "clients": sizes.fetch_clients,
        "chunk": sizes.fetch_chunk,
        "seed_s": seed_s,
        "cache_files_dropped": dropped,
        "phases": phases,
        "errors": sum(int(stats["errors"]) for stats in phases.values()),
        "error_samples": samples[:5],
    }


def run(
    *,
    quick: bool,
    only: set[str],
    peers: list[str],
    cores: int | None = None,
    out_dir: Path | None = None,
    sizes: Sizes | None = None,
) -> dict[str, Any]:
    """Run the bench and write the report; return the report's data."""
    raise_nofile()
    sizes = sizes or (QUICK if quick else FULL)
    available = sorted(os.sched_getaffinity(0))
    cpus = set(available[: cores or len(available)])
    corpus = load_corpus()
    users = _users(sizes, only)
    all_users = [u for group in users.values() for u in group]
    max_clients = max([*(sizes.idle_clients if "idle" in only else ()), *sizes.mix_clients, 100])
    target = out_dir or (RESULTS / "quick" if quick else RESULTS)
    results: dict[str, dict[str, Any]] = {}
    described: dict[str, Any] = {}
    started = time.time()
    for name in peers:
        log(f"starting {name} on CPUs {sorted(cpus)}")
        if name == "columba":
            peer = start_columba(all_users, PASSWORD, cpus)
        elif name == "columba-s3pg":
            peer = start_columba_s3pg(all_users, PASSWORD, cpus)
        elif name == "dovecot":
            peer = start_dovecot(all_users, PASSWORD, cpus, max_clients)
        else:
            raise SystemExit(f"unknown peer {name!r}")
        described[name] = describe(peer)
        try:
            results[name] = run_peer(
                peer, sizes, only=only, users=users, corpus=corpus, cores=len(cpus)
            )
        finally:
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{name}.log.tail").write_text(peer.log_tail(100) + "\n")
            (target / f"{name}.log.problems").write_text(peer.log_problems() + "\n")
            peer.stop()
    data: dict[str, Any] = {
        "meta": {
            "mode": "quick" if quick else "full",
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": time.time() - started,
            "machine": {
                "cpus": os.cpu_count(),
                "server_cpus": sorted(cpus),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_processes": sizes.processes,
            },
            "peers": described,
            "workloads": sorted(only),
            "sizes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(sizes).items()},
            "corpus_messages": len(corpus),
            "note": "other processes (other agents' test runs) may have been using the "
            "machine during this run; numbers are noisy",
        },
        "results": results,
    }
    data["summary"] = report.summarize(data)
    paths = report.write(data, target)
    log("wrote " + ", ".join(str(p) for p in paths))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, < 2 min")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=",".join(WORKLOADS))
    parser.add_argument("--peers", default="columba,dovecot", help=",".join(PEERS))
    parser.add_argument("--cores", type=int, default=None, help="CPUs both servers get")
    parser.add_argument("--out", type=Path, default=None, help="report directory")
    parser.add_argument(
        "--rerender", type=Path, default=None, help="re-write the report from a results.json"
    )
    args = parser.parse_args(argv)
    if args.rerender is not None:
        data = json.loads(args.rerender.read_text())
        data["summary"] = report.summarize(data)
        report.write(data, args.out or args.rerender.parent)
        print(report.markdown(data))
        return 0
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    data = run(quick=args.quick, only=only, peers=peers, cores=args.cores, out_dir=args.out)
    print(report.markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
