"""Unit tests of the ``s3``/``aws-s3`` fs drivers.

Behaviour against storage runs on the real SeaweedFS of `tests.s3_server` (auth, multipart, bulk
delete, metadata headers).  Failure handling (retries, backoff, timeouts, parallelism limits,
URL styles) uses `FlakyServer`, a tiny local HTTP server that answers like S3 after failing a
chosen number of times and records every request.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from columba.fs.api import FsError, FsNotFound, FsSpec, FsTemporaryError, create_fs_stack
from columba.fs.s3 import (
    AwsS3Fs,
    S3Fs,
    decode_meta_value,
    encode_meta_value,
    resolve_target,
)
from tests.s3_server import S3Server, s3_server, sign_request

__all__ = ["s3_server"]

_T = TypeVar("_T")
MIB = 1024 * 1024


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def make_fs(server: S3Server, **extra: str) -> S3Fs:
    fs = create_fs_stack(
        [FsSpec("s3", server.settings(prefix=f"unit/{uuid.uuid4().hex}/", **extra))]
    )
    assert isinstance(fs, S3Fs)
    return fs


def raw_key(fs: S3Fs, path: str) -> str:
    """The request path of object `path` on the server (path style)."""
    return "/" + fs.target.bucket + "/" + urllib.parse.quote(fs.target.prefix + path, safe="/")


# ----------------------------------------------------------------------------- SigV4 helper


def test_sigv4_signer_matches_aws_vectors() -> None:
    """The test helper's signer (used to create buckets and inspect raw objects)."""
    # AWS SigV4 test suite, "get-vanilla".
    signed = sign_request(
        "GET",
        "https://example.amazonaws.com/",
        {"Host": "example.amazonaws.com"},
        hashlib.sha256(b"").hexdigest(),
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="service",
        now=datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC),
    )
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    # Amazon S3 API reference, "Example: GET Object" (signature calculations, header auth).
    signed = sign_request(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9"},
        hashlib.sha256(b"").hexdigest(),
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC),
    )
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


# ----------------------------------------------------------------------------- settings, URLs


def test_resolve_target_path_style() -> None:
    t = resolve_target(
        {"fs_s3_url": "http://127.0.0.1:8333/", "fs_s3_bucket": "mails", "fs_s3_prefix": "alice"}
    )
    assert (t.endpoint, t.bucket, t.virtual_host, t.region, t.prefix) == (
        "http://127.0.0.1:8333",
        "mails",
        False,
        "us-east-1",
        "alice/",
    )
    assert t.allow_http
    assert t.object_url("mailboxes/g 1/ä") == (
        "http://127.0.0.1:8333/mails/alice/mailboxes/g%201/%C3%A4"
    )
    # Bucket as the first URL path segment, the rest is a key prefix.
    t = resolve_target({"fs_s3_url": "https://minio.example:9000/mails/pre/", "fs_s3_prefix": "u/"})
    assert (t.endpoint, t.bucket, t.virtual_host, t.prefix) == (
        "https://minio.example:9000",
        "mails",
        False,
        "pre/u/",
    )
    assert not t.allow_http


def test_resolve_target_virtual_host_style() -> None:
    t = resolve_target({"fs_s3_url": "https://mails.s3.eu-west-1.amazonaws.com/"})
    assert (t.endpoint, t.bucket, t.virtual_host, t.region, t.prefix) == (
        "https://mails.s3.eu-west-1.amazonaws.com",
        "mails",
        True,
        "eu-west-1",
        "",
    )
    assert t.object_url("a/b c") == "https://mails.s3.eu-west-1.amazonaws.com/a/b%20c"
    t = resolve_target(
        {
            "fs_s3_url": "http://store.example/",
            "fs_s3_bucket": "b",
            "fs_s3_url_style": "virtual-host",
        }
    )
    assert t.virtual_host and t.object_url("k") == "http://store.example/k"
    # Explicit path style on an AWS host.
    t = resolve_target(
        {
            "fs_s3_url": "https://s3.eu-central-1.amazonaws.com/",
            "fs_s3_bucket": "b",
            "fs_s3_url_style": "path",
        }
    )
    assert not t.virtual_host and t.region == "eu-central-1"
    assert t.object_url("k") == "https://s3.eu-central-1.amazonaws.com/b/k"
    # aws-s3 builds the URL from bucket and region.
    fs = create_fs_stack(
        [FsSpec("aws-s3", {"fs_s3_bucket": "mails", "fs_s3_region": "ap-south-1"})]
    )
    assert isinstance(fs, AwsS3Fs)
    assert fs.target.object_url("x") == "https://mails.s3.ap-south-1.amazonaws.com/x"


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"fs_s3_url": "ftp://host/", "fs_s3_bucket": "b"},
        {"fs_s3_url": "http://127.0.0.1:1/"},  # no bucket anywhere
        {"fs_s3_url": "http://k:s@host/", "fs_s3_bucket": "b"},
        {"fs_s3_url": "http://host/", "fs_s3_bucket": "b", "fs_s3_url_style": "dns"},
        {"fs_s3_url": "http://host/", "fs_s3_bucket": "b", "fs_s3_prefix": "a/../b"},
    ],
)
def test_bad_settings_rejected(settings: dict[str, str]) -> None:
    full = {"fs_s3_access_key": "k", "fs_s3_secret": "s", **settings}
    with pytest.raises(FsError):
        create_fs_stack([FsSpec("s3", full)])


def test_s3_requires_credentials() -> None:
    with pytest.raises(FsError, match="fs_s3_access_key"):
        create_fs_stack([FsSpec("s3", {"fs_s3_url": "http://h/", "fs_s3_bucket": "b"})])


def test_metadata_value_encoding() -> None:
    for value in ("", "plain", "a b", "ä b", " lead", "trail ", "=?x?=", "tab\there", "日本"):
        encoded = encode_meta_value(value)
        assert encoded.isascii() and "\n" not in encoded
        assert decode_meta_value(encoded) == value
    assert encode_meta_value("alice@example.com") == "alice@example.com"
    # What AWS returns for non-ASCII metadata.
    assert decode_meta_value("=?UTF-8?B?w6QgYg==?=") == "ä b"


# ----------------------------------------------------------------------------- real SeaweedFS


def test_wrong_secret_is_permanent_403_and_not_leaked(s3_server: S3Server) -> None:
    secret = "not-the-secret-" + uuid.uuid4().hex
    fs = make_fs(s3_server, fs_s3_secret=secret, fs_s3_max_retries="5")

    async def body() -> None:
        started = time.monotonic()
        for op in (
            fs.write("a/b", b"x"),
            fs.read("a/b"),
            fs.stat("a/b"),
            fs.get_metadata("a/b"),
        ):
            with pytest.raises(FsError) as info:
                await op
            assert not isinstance(info.value, FsTemporaryError | FsNotFound)
            message = str(info.value)
            assert "403" in message and s3_server.bucket in message and "columba" in message
            assert secret not in message
        # Five retries with backoff would take seconds.
        assert time.monotonic() - started < 2.0

    run(body())


def test_metadata_stored_as_amz_meta_headers(s3_server: S3Server) -> None:
    fs = make_fs(s3_server)
    meta = {"guid": "0123abcd", "fname": "ä b", "username": "alice@example.com"}

    async def body() -> None:
        await fs.write("u/m", b"mail", meta)
        status, headers, _ = s3_server.request("HEAD", raw_key(fs, "u/m"))
        assert status == 200
        assert headers["x-amz-meta-guid"] == "0123abcd"
        assert headers["x-amz-meta-username"] == "alice@example.com"
        assert decode_meta_value(headers["x-amz-meta-fname"]) == "ä b"
        assert await fs.get_metadata("u/m") == meta
        # An object written by another S3 client.
        status, _, _ = s3_server.request(
            "PUT", raw_key(fs, "u/other"), b"x", {"x-amz-meta-origbox": "INBOX"}
        )
        assert status == 200
        assert await fs.get_metadata("u/other") == {"origbox": "INBOX"}
        with pytest.raises(FsError, match="metadata key"):
            await fs.write("u/bad", b"x", {"Bad Key": "v"})

    run(body())


def test_multipart_above_threshold(s3_server: S3Server) -> None:
    fs = make_fs(
        s3_server,
        fs_s3_multipart_threshold=str(5 * MIB),
        fs_s3_multipart_part_size=str(5 * MIB),
    )
    big = bytes(range(256)) * (11 * MIB // 256) + b"tail"

    async def stream(data: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    def etag(path: str) -> str:
        status, headers, _ = s3_server.request("HEAD", raw_key(fs, path))
        assert status == 200
        return headers["etag"].strip('"')

    async def body() -> None:
        await fs.write("big/bytes", big, {"guid": "1"})
        await fs.write("big/stream", stream(big, 300_000), {"guid": "2"})
        await fs.write("small/bytes", b"x" * 1000)
        await fs.write("small/stream", stream(b"y" * (5 * MIB - 1), 65536))
        # A multipart ETag is "<md5 of part md5s>-<part count>".
        assert etag("big/bytes").endswith("-3")
        assert etag("big/stream").endswith("-3")
        assert "-" not in etag("small/bytes")
        assert "-" not in etag("small/stream")
        for path, guid in (("big/bytes", "1"), ("big/stream", "2")):
            assert await fs.read(path) == big
            assert (await fs.stat(path)).size == len(big)
            assert await fs.get_metadata(path) == {"guid": guid}
        assert await fs.read("small/stream") == b"y" * (5 * MIB - 1)

    run(body())


def test_bulk_delete(s3_server: S3Server) -> None:
    fs = make_fs(s3_server)
    names = [f"m/{i:05d}" for i in range(1050)]  # two DeleteObjects requests

    async def body() -> None:
        semaphore = asyncio.Semaphore(64)

        async def put(name: str) -> None:
            async with semaphore:
                await fs.write(name, b"x")

        await asyncio.gather(*(put(n) for n in names))
        await fs.write("keep/1", b"k")
        assert len([p async for p in fs.iter_files("m")]) == len(names)
        await fs.delete_many([*names, "m/missing"])
        assert [p async for p in fs.iter_files("")] == ["keep/1"]
        with pytest.raises(FsError):
            await fs.delete_many(["ok", "../escape"])

    run(body())


def test_prefix_isolates_and_forms_the_key(s3_server: S3Server) -> None:
    one, two = make_fs(s3_server), make_fs(s3_server)

    async def body() -> None:
        await one.write("d/x", b"1")
        await two.write("d/y", b"2")
        assert [p async for p in one.iter_files("")] == ["d/x"]
        assert [p async for p in two.iter_files("")] == ["d/y"]
        status, _, data = s3_server.request("GET", raw_key(one, "d/x"))
        assert (status, data) == (200, b"1")
        assert one.target.prefix.startswith("unit/")

    run(body())


def test_use_after_fork_fails_fast(s3_server: S3Server) -> None:
    """obstore's runtime dies with fork: a child must get an error, not a hang."""
    fs = make_fs(s3_server)
    run(fs.write("a", b"x"))  # the runtime now runs in this process
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            fs.store  # noqa: B018
            os.write(write_end, b"no error")
        except FsError as err:
            os.write(write_end, str(err).encode()[:200])
        finally:
            os._exit(0)
    os.close(write_end)
    message = os.read(read_end, 500).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert "fork" in message
    assert run(fs.read("a")) == b"x"  # the parent goes on


def test_client_shared_per_settings_and_closed_with_its_last_user(s3_server: S3Server) -> None:
    """Stacks built per user (and per metacache upload) share one client (connection pool) for
    the same settings; it goes when the last fs using it is closed."""
    from columba.fs import s3 as s3_module

    prefix = f"unit/{uuid.uuid4().hex}/"

    def fs_for(**extra: str) -> S3Fs:
        fs = create_fs_stack([FsSpec("s3", s3_server.settings(prefix=prefix, **extra))])
        assert isinstance(fs, S3Fs)
        return fs

    before = len(s3_module._SHARED)
    a, b = fs_for(), fs_for()
    other = fs_for(fs_s3_timeout_secs="30")  # other client options: its own client
    assert a.store is b.store
    assert other.store is not a.store
    assert len(s3_module._SHARED) == before + 2

    async def main() -> None:
        await a.write("shared", b"one client")
        assert await b.read("shared") == b"one client"
        await a.close()
        with pytest.raises(FsError, match="closed"):
            await a.read("shared")
        assert await b.read("shared") == b"one client"  # still open for the other user
        await a.close()  # twice: no effect on the count
        assert len(s3_module._SHARED) == before + 2
        await b.delete("shared")
        await b.close()
        await other.close()

    run(main())
    assert len(s3_module._SHARED) == before
    c = fs_for()  # a new client after the last one went
    try:
        run(c.write("again", b"x"))
        assert run(c.read("again")) == b"x"
    finally:
        run(c.close())


# ----------------------------------------------------------------------------- flaky server


class FlakyServer:
    """An S3-ish HTTP server: fails the first `fail` requests (status or delay), records all."""

    def __init__(self) -> None:
        self.fail = 0
        self.fail_status = 503
        self.fail_delay = 0.0
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str], float]] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with outer.lock:
                    outer.requests.append(
                        (
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            time.monotonic(),
                        )
                    )
                    failing = len(outer.requests) <= outer.fail
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    if failing:
                        time.sleep(outer.fail_delay)
                        self.answer(outer.fail_status, b"")
                    else:
                        time.sleep(outer.delay)
                        self.answer(200, b"" if self.command in ("PUT", "HEAD") else b"hello")
                finally:
                    with outer.lock:
                        outer.active -= 1

            def answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header(
                        "Content-Length", str(5 if self.command == "HEAD" else len(body))
                    )
                    self.send_header("Last-Modified", "Mon, 30 Nov 2026 01:42:44 GMT")
                    self.send_header("ETag", '"5d41402abc4b2a76b9719d911017c592"')
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_one  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def fs(self, **extra: str) -> S3Fs:
        settings = {
            "fs_s3_url": self.url,
            "fs_s3_bucket": "b",
            "fs_s3_access_key": "AKID",
            "fs_s3_secret": "SECRET",
            "fs_s3_max_retries": "3",
            **extra,
        }
        fs = create_fs_stack([FsSpec("s3", settings)])
        assert isinstance(fs, S3Fs)
        return fs

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    server = FlakyServer()
    yield server
    server.close()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_retried_with_backoff(flaky: FlakyServer, status: int) -> None:
    flaky.fail, flaky.fail_status = 2, status
    fs = flaky.fs()
    assert run(fs.read("x")) == b"hello"
    times = [t for *_, t in flaky.requests]
    assert len(times) == 3
    # Exponential backoff, starting at 100 ms.
    assert times[1] - times[0] >= 0.09
    assert times[2] - times[1] >= 0.09
    flaky.requests.clear()
    flaky.fail = 2
    run(fs.write("y", b"data"))
    assert [r[0] for r in flaky.requests] == ["PUT"] * 3


def test_5xx_exhausted_is_temporary(flaky: FlakyServer) -> None:
    flaky.fail = 100
    fs = flaky.fs(fs_s3_max_retries="2")
    with pytest.raises(FsTemporaryError, match="503"):
        run(fs.read("x"))
    assert len(flaky.requests) == 3
    flaky.requests.clear()
    with pytest.raises(FsTemporaryError):
        run(fs.write("x", b"1"))
    assert len(flaky.requests) == 3


@pytest.mark.parametrize("status", [400, 403, 409])
def test_4xx_not_retried(flaky: FlakyServer, status: int) -> None:
    flaky.fail, flaky.fail_status = 100, status
    fs = flaky.fs()
    with pytest.raises(FsError) as info:
        run(fs.write("x", b"1"))
    assert not isinstance(info.value, FsTemporaryError)
    assert "SECRET" not in str(info.value)
    if status == 403:
        assert "'b'" in str(info.value) and "AKID" in str(info.value)
    assert len(flaky.requests) == 1


def test_404_on_write_means_missing_bucket(flaky: FlakyServer) -> None:
    flaky.fail, flaky.fail_status = 100, 404
    fs = flaky.fs()
    with pytest.raises(FsError, match="bucket 'b' not found") as info:
        run(fs.write("a", b"x"))
    assert not isinstance(info.value, FsNotFound)
    with pytest.raises(FsNotFound):
        run(fs.read("a"))
    assert len(flaky.requests) == 2


def test_timeouts_retried(flaky: FlakyServer) -> None:
    flaky.fail, flaky.fail_delay = 1, 2.0
    fs = flaky.fs(fs_s3_timeout_secs="0.5")
    started = time.monotonic()
    assert run(fs.read("x")) == b"hello"
    assert len(flaky.requests) == 2
    assert time.monotonic() - started < 1.9
    flaky.requests.clear()
    flaky.fail = 100
    with pytest.raises(FsTemporaryError):
        run(flaky.fs(fs_s3_timeout_secs="0.3", fs_s3_max_retries="1").stat("x"))
    assert len(flaky.requests) == 2


def test_connection_refused_is_temporary() -> None:
    with socket_port() as port:
        pass  # now closed: nothing listens there
    fs = create_fs_stack(
        [
            FsSpec(
                "s3",
                {
                    "fs_s3_url": f"http://127.0.0.1:{port}/",
                    "fs_s3_bucket": "b",
                    "fs_s3_access_key": "k",
                    "fs_s3_secret": "s",
                    "fs_s3_max_retries": "1",
                },
            )
        ]
    )
    with pytest.raises(FsTemporaryError):
        run(fs.read("x"))


def test_parallel_requests_bounded(flaky: FlakyServer) -> None:
    flaky.delay = 0.15
    fs = flaky.fs(fs_s3_max_parallel_requests="3")

    async def body() -> None:
        await asyncio.gather(*(fs.stat(f"o{i}") for i in range(9)))

    run(body())
    assert len(flaky.requests) == 9
    assert 2 <= flaky.max_active <= 3


def test_url_styles_on_the_wire(flaky: FlakyServer) -> None:
    """Requests through an HTTP proxy show the absolute URL the driver builds."""
    proxy = flaky.url.rstrip("/")
    virtual = create_fs_stack(
        [
            FsSpec(
                "s3",
                {
                    "fs_s3_url": "http://mails.s3.eu-west-1.amazonaws.com/",
                    "fs_s3_access_key": "AKID",
                    "fs_s3_secret": "SECRET",
                    "fs_s3_prefix": "alice",
                    "fs_s3_proxy_url": proxy,
                },
            )
        ]
    )
    path_style = create_fs_stack(
        [
            FsSpec(
                "s3",
                {
                    "fs_s3_url": "http://storage.test:9000/",
                    "fs_s3_bucket": "mails",
                    "fs_s3_access_key": "AKID",
                    "fs_s3_secret": "SECRET",
                    "fs_s3_prefix": "alice",
                    "fs_s3_proxy_url": proxy,
                },
            )
        ]
    )
    run(virtual.write("g/a b", b"x", {"guid": "1"}))
    run(path_style.write("g/a b", b"x"))
    (m1, u1, h1, _), (m2, u2, h2, _) = flaky.requests
    assert (m1, u1) == ("PUT", "http://mails.s3.eu-west-1.amazonaws.com/alice/g/a%20b")
    assert (m2, u2) == ("PUT", "http://storage.test:9000/mails/alice/g/a%20b")
    assert "/eu-west-1/s3/aws4_request" in h1["authorization"]
    assert "Credential=AKID/" in h1["authorization"] and "SECRET" not in h1["authorization"]
    assert "/us-east-1/s3/aws4_request" in h2["authorization"]
    assert h1["x-amz-meta-guid"] == "1"


class socket_port:  # noqa: N801 - used like a function
    """A free loopback port (bound while inside the with block)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
