"""Terminal fs drivers ``s3`` and ``aws-s3``: objects in an S3 bucket, through `obstore`.

`obstore` (Rust ``object_store`` + tokio, async-native, GIL released) signs with SigV4, pools
connections, retries 5xx answers, connection errors and timeouts with exponential backoff and
jitter, and never blocks the event loop.  See bench/bench_s3_client.py for why it was chosen.

Object key = ``fs_s3_prefix`` + path; metadata = ``x-amz-meta-<key>`` headers.  Operations:
``write`` = one PutObject (whole-object replace; S3 acknowledges only durable writes), or a
multipart upload once the data exceeds ``fs_s3_multipart_threshold``; ``read_stream`` = a
streamed GetObject; ``stat``/``exists``/``get_metadata`` = HeadObject; ``copy`` = server-side
CopyObject (keeps the metadata); ``delete`` = HeadObject + DeleteObject (S3 deletes are silent
about missing keys; the contract wants `FsNotFound`); `S3Fs.delete_many` = bulk DeleteObjects
(1000 keys a request); ``iter_files`` = ListObjectsV2 with pagination.  Listings are collected and
sorted before they are yielded: stores built on a directory tree (SeaweedFS) list ``g/a`` before
``g-x/z``, while the contract wants code point order.

Settings (Dovecot names, values already expanded):

* ``fs_s3_url`` – endpoint, e.g. ``http://127.0.0.1:8333/`` (path style, with
  ``fs_s3_bucket``) or ``https://BUCKET.s3.REGION.amazonaws.com/`` (virtual-host style: the
  bucket is the first host label).  A path in the URL is a key prefix (path style without
  ``fs_s3_bucket``: its first segment is the bucket).
* ``fs_s3_bucket``, ``fs_s3_region`` (default: from an AWS host name, else ``us-east-1``),
  ``fs_s3_access_key``, ``fs_s3_secret``, ``fs_s3_prefix`` (a directory: ``alice/`` or ``alice``).
* ``fs_s3_url_style`` – ``path`` | ``virtual-host`` | empty (auto, see above).
* ``fs_s3_max_retries`` (4), ``fs_s3_timeout_secs`` (60, per request),
  ``fs_s3_connect_timeout_secs`` (5), ``fs_s3_retry_timeout_secs`` (120, all tries of a request).
* ``fs_s3_proxy_url`` – HTTP proxy for all requests (default: none).
* ``fs_s3_max_parallel_requests`` (64) – requests in flight at once from this fs instance.
* ``fs_s3_multipart_threshold`` (8 MiB), ``fs_s3_multipart_part_size`` (8 MiB, at least 5 MiB
  for AWS), ``fs_s3_multipart_concurrency`` (4 parts uploaded at once).

``aws-s3`` is the same driver with AWS defaults: ``fs_s3_url`` may be omitted when bucket and
region are set, and without ``fs_s3_access_key`` the AWS credential chain is used (environment,
web identity, IAM instance role via 169.254.169.254, i.e. ``fs_s3_auth_role``).  ``s3`` requires
the access key and secret.

Metadata keys must be lowercase ``[a-z0-9._-]`` (HTTP header names fold case).  Values that are
not plain printable ASCII are stored RFC 2047 encoded (``=?UTF-8?B?...?=``, what AWS itself
returns for non-ASCII metadata) and decoded on read.

Clients: every `S3Fs` of a process with the same endpoint, bucket, key prefix, credentials and
client/retry options shares one obstore client (its HTTP connection pool): the obox stack is
built per user and the metacache stack per upload, and each used to open its own pool (new TCP
connections for every user and every index upload).  The shared client is reference-counted
and dropped when the last `S3Fs` using it is closed; ``fs_s3_max_parallel_requests`` stays a
limit per fs instance.

Fork: obstore's runtime threads don't survive ``fork()``.  Creating the fs before forking is
fine; S3 I/O in a process forked after its parent did S3 I/O raises `FsError` (instead of
hanging), so masters must leave S3 I/O to their workers.

Errors: 404 → `FsNotFound`; 5xx, timeouts, connection failures (after the retries) →
`FsTemporaryError`; 401/403 → `FsError` naming the bucket and access key (never the secret), not
retried; other 4xx → `FsError`.  A cancelled multipart ``write`` can leave an incomplete upload
behind (invisible; S3 lifecycle rules remove them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import obstore
from obstore.exceptions import (
    BaseError,
    GenericError,
    InvalidPathError,
    JoinError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsData,
    FsError,
    FsNotFound,
    FsSpec,
    FsStat,
    FsTemporaryError,
    check_path,
    dir_prefix,
    register_fs,
    setting_int,
)

if TYPE_CHECKING:
    from obstore import Attributes, ObjectMeta

__all__ = [
    "AwsS3Fs",
    "S3Fs",
    "S3Target",
    "decode_meta_value",
    "encode_meta_value",
    "resolve_target",
]

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
BULK_DELETE_MAX = 1000

# Attributes obstore reports that are not user metadata (x-amz-meta-*).
_STANDARD_ATTRIBUTES = frozenset(
    {
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Type",
        "Cache-Control",
        "Storage-Class",
    }
)
_META_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*")
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_RFC2047_B = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=", re.IGNORECASE)
_AWS_HOST = re.compile(r"^(?:(?P<bucket>.+)\.)?s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
# The process whose S3 I/O started obstore's (tokio) runtime: a forked child can't use it.
_RUNTIME_PID: int | None = None
_STATUS = re.compile(r"status code: (\d{3})")
_SHARED: dict[tuple[Any, ...], list[Any]] = {}
"""Shared clients: key (pid + everything the client is built from) -> [S3Store, users]."""
_S3_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")


# ----------------------------------------------------------------------------- metadata


def encode_meta_value(value: str) -> str:
    """A header-safe form of a metadata value (plain ASCII as is, else RFC 2047 base64)."""
    if value == "" or (_PLAIN_VALUE.fullmatch(value) and not value.startswith("=?")):
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="


def decode_meta_value(value: str) -> str:
    """Inverse of `encode_meta_value` (also reads AWS's encoding of non-ASCII metadata)."""
    match = _RFC2047_B.fullmatch(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match.group(1), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def _encode_metadata(metadata: Mapping[str, str] | None) -> Attributes:
    out: Attributes = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not _META_KEY.fullmatch(key):
            raise FsError(f"s3: invalid metadata key {key!r} (want lowercase [a-z0-9._-])")
        if not isinstance(value, str) or "\0" in value:
            raise FsError(f"s3: invalid metadata value for {key!r}")
        out[key] = encode_meta_value(value)
    return out


def _decode_metadata(attributes: Attributes) -> dict[str, str]:
    return {
        str(key).lower(): decode_meta_value(value)
        for key, value in attributes.items()
        if key not in _STANDARD_ATTRIBUTES
    }


# ----------------------------------------------------------------------------- addressing


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where objects live: endpoint (scheme://host[:port]), bucket, style, region, key prefix."""

    endpoint: str
    bucket: str
    region: str
    virtual_host: bool
    prefix: str  # "" or "a/b/"

    @property
    def allow_http(self) -> bool:
        return self.endpoint.startswith("http://")

    def object_url(self, path: str) -> str:
        """The URL of object `path` (percent-encoded like the request line)."""
        key = urllib.parse.quote(self.prefix + path, safe="/-_.~")
        if self.virtual_host:
            return f"{self.endpoint}/{key}"
        return f"{self.endpoint}/{urllib.parse.quote(self.bucket, safe='')}/{key}"


def _join_prefix(*parts: str) -> str:
    segments = [s for part in parts for s in part.split("/") if s]
    for s in segments:
        if s in (".", ".."):
            raise FsError("fs_s3_prefix: '.' and '..' are not allowed")
    return "/".join(segments) + "/" if segments else ""


def resolve_target(settings: Mapping[str, str], *, aws: bool = False) -> S3Target:
    """Work out endpoint, bucket, URL style, region and key prefix from ``fs_s3_*`` settings."""
    url = settings.get("fs_s3_url", "").strip()
    bucket = settings.get("fs_s3_bucket", "").strip()
    region = settings.get("fs_s3_region", "").strip()
    style = settings.get("fs_s3_url_style", "").strip().lower()
    if style not in ("", "path", "virtual-host"):
        raise FsError(f"fs_s3_url_style: want 'path' or 'virtual-host', not {style!r}")
    if not url:
        if not (aws and bucket):
            raise FsError(f"{'aws-s3' if aws else 's3'} fs: fs_s3_url is not set")
        url = f"https://{bucket}.s3.{region or 'us-east-1'}.amazonaws.com/"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FsError(f"fs_s3_url: not an http(s) URL: {url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise FsError("fs_s3_url: credentials, query and fragment are not allowed in the URL")
    host = parts.hostname.lower()
    endpoint = f"{parts.scheme}://{parts.netloc}"
    url_path = urllib.parse.unquote(parts.path)
    aws_host = _AWS_HOST.match(host)
    if not region and aws_host is not None:
        region = aws_host.group("region") or "us-east-1"
    region = region or "us-east-1"
    if style == "":
        style = "path" if bucket and not host.startswith(bucket.lower() + ".") else "virtual-host"
        if not bucket and url_path.strip("/"):
            style = "path"
    if style == "virtual-host":
        if not bucket:
            if aws_host is not None and aws_host.group("bucket"):
                bucket = aws_host.group("bucket")
            elif "." in host and not host.replace(".", "").isdigit():
                bucket = host.split(".", 1)[0]
            else:
                raise FsError("s3 fs: fs_s3_bucket is not set and the URL host names no bucket")
        prefix = _join_prefix(url_path, settings.get("fs_s3_prefix", ""))
        return S3Target(endpoint, bucket, region, True, prefix)
    if not bucket:
        first, _, rest = url_path.strip("/").partition("/")
        if not first:
            raise FsError("s3 fs: fs_s3_bucket is not set")
        bucket, url_path = first, rest
    prefix = _join_prefix(url_path, settings.get("fs_s3_prefix", ""))
    return S3Target(endpoint, bucket, region, False, prefix)


def _seconds(settings: Mapping[str, str], key: str, default: float) -> float:
    raw = settings.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FsError(f"{key}: not a number of seconds: {raw!r}") from None
    if value <= 0:
        raise FsError(f"{key}: must be positive")
    return value


# ----------------------------------------------------------------------------- driver


@register_fs("s3")
class S3Fs(Fs):
    aws_defaults = False

    def __init__(self, spec: FsSpec) -> None:
        settings = spec.settings
        self.target = resolve_target(settings, aws=self.aws_defaults)
        self.access_key = settings.get("fs_s3_access_key", "")
        secret = settings.get("fs_s3_secret", "")
        if not self.aws_defaults and not (self.access_key and secret):
            raise FsError("s3 fs: fs_s3_access_key and fs_s3_secret must be set")
        if bool(self.access_key) != bool(secret):
            raise FsError("s3 fs: set both fs_s3_access_key and fs_s3_secret, or neither")
        self.max_retries = setting_int(settings, "fs_s3_max_retries", 4)
        self.timeout = _seconds(settings, "fs_s3_timeout_secs", 60.0)
        self.connect_timeout = _seconds(settings, "fs_s3_connect_timeout_secs", 5.0)
        self.retry_timeout = _seconds(settings, "fs_s3_retry_timeout_secs", 120.0)
        self.max_parallel = setting_int(settings, "fs_s3_max_parallel_requests", 64)
        self.multipart_threshold = setting_int(settings, "fs_s3_multipart_threshold", 8 * MIB)
        self.part_size = setting_int(settings, "fs_s3_multipart_part_size", 8 * MIB)
        self.part_concurrency = setting_int(settings, "fs_s3_multipart_concurrency", 4)
        if self.max_retries < 0 or self.max_parallel < 1 or self.part_concurrency < 1:
            raise FsError("s3 fs: retries must be >= 0, parallelism >= 1")
        if self.part_size < 1 or self.multipart_threshold < 1:
            raise FsError("s3 fs: multipart sizes must be positive")
        self.proxy_url = settings.get("fs_s3_proxy_url", "").strip()
        self._semaphore = asyncio.Semaphore(self.max_parallel)
        self._shared_key: tuple[Any, ...] | None = None
        self._store: S3Store | None = self._shared_store(secret)

    def _shared_store(self, secret: str) -> S3Store:
        """This process's client for these settings, created on first use, counted."""
        key = (
            os.getpid(),
            self.target,
            self.access_key,
            hashlib.sha256(secret.encode()).hexdigest(),
            self.max_retries,
            self.timeout,
            self.connect_timeout,
            self.retry_timeout,
            self.proxy_url,
        )
        entry = _SHARED.get(key)
        if entry is None:
            entry = _SHARED[key] = [self._make_store(secret), 0]
        entry[1] += 1
        self._shared_key = key
        store: S3Store = entry[0]
        return store

    def _make_store(self, secret: str) -> S3Store:
        t = self.target
        config: dict[str, Any] = {
            "bucket": t.bucket,
            "region": t.region,
            "endpoint": t.endpoint,
            "virtual_hosted_style_request": t.virtual_host,
        }
        if self.access_key:
            config["access_key_id"] = self.access_key
            config["secret_access_key"] = secret
        client: dict[str, Any] = {
            "allow_http": t.allow_http,
            "timeout": timedelta(seconds=self.timeout),
            "connect_timeout": timedelta(seconds=self.connect_timeout),
        }
        if self.proxy_url:
            client["proxy_url"] = self.proxy_url
        retry: dict[str, Any] = {
            "max_retries": self.max_retries,
            "retry_timeout": timedelta(seconds=self.retry_timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5),
                "base": 2,
            },
        }
        try:
            return S3Store(
                prefix=t.prefix.rstrip("/") or None,
                config=config,  # type: ignore[arg-type]
                client_options=client,  # type: ignore[arg-type]
                retry_config=retry,  # type: ignore[arg-type]
            )
        except (BaseError, ValueError, TypeError) as err:
            raise FsError(f"s3 fs: bad configuration: {_first_line(err)}") from None

    # ------------------------------------------------------------------ helpers

    @property
    def store(self) -> S3Store:
        global _RUNTIME_PID
        if self._store is None:
            raise FsError("s3 fs: closed")
        pid = os.getpid()
        if _RUNTIME_PID is None:
            _RUNTIME_PID = pid
        elif pid != _RUNTIME_PID:
            raise FsError(
                f"s3 fs: S3 I/O started in process {_RUNTIME_PID} before this process was "
                "forked from it; obstore's runtime does not survive fork (do S3 I/O only after "
                "forking workers)"
            )
        return self._store

    def _raise(self, err: BaseException, path: str, *, writing: bool = False) -> NoReturn:
        raise self._map_error(err, path, writing=writing) from None

    def _map_error(self, err: BaseException, path: str, *, writing: bool = False) -> FsError:
        """Translate an obstore/OS error; messages never contain the secret."""
        bucket = self.target.bucket
        text = _first_line(err)
        if isinstance(err, FsError):
            return err
        if isinstance(err, NotFoundError | FileNotFoundError):
            if writing:
                return FsError(f"s3: bucket {bucket!r} not found at {self.target.endpoint}")
            return FsNotFound(path)
        if isinstance(err, PermissionDeniedError | UnauthenticatedError):
            s3_code = _S3_CODE.search(str(err))
            reason = f" ({s3_code.group(1)})" if s3_code else ""
            who = f"access key {self.access_key!r}" if self.access_key else "default credentials"
            return FsError(
                f"s3: access denied (403){reason} to bucket {bucket!r} with {who}: "
                "check fs_s3_access_key/fs_s3_secret and the bucket policy"
            )
        if isinstance(err, InvalidPathError):
            return FsError(f"s3: invalid object path {path!r}")
        status = _STATUS.search(str(err))
        if status is not None:
            code = int(status.group(1))
            if code == 404:
                return FsNotFound(path)
            if code >= 500 or code in (408, 429):
                return FsTemporaryError(f"s3: {path}: server error {code} (after retries)")
            return FsError(f"s3: {path}: HTTP {code}: {text}")
        if isinstance(err, GenericError | JoinError | OSError | TimeoutError):
            # No HTTP status: connection refused/reset, timeout, DNS.
            return FsTemporaryError(f"s3: {path}: {text}")
        return FsError(f"s3: {path}: {text}")

    # ------------------------------------------------------------------ read

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        check_path(path)
        chunk_size = max(1, chunk_size)
        async with self._semaphore:
            try:
                result = await obstore.get_async(self.store, path)
            except Exception as err:
                self._raise(err, path)
        stream = result.stream(min_chunk_size=min(chunk_size, 1 * MIB))
        try:
            async for piece in stream:
                if len(piece) <= chunk_size:
                    yield bytes(piece)
                    continue
                view = memoryview(piece)
                for start in range(0, len(view), chunk_size):
                    yield bytes(view[start : start + chunk_size])
        except FsError:
            raise
        except Exception as err:
            self._raise(err, path)

    async def read(self, path: str) -> bytes:
        check_path(path)
        async with self._semaphore:
            try:
                result = await obstore.get_async(self.store, path)
                return bytes(await result.bytes_async())
            except Exception as err:
                self._raise(err, path)

    # ------------------------------------------------------------------ write

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        check_path(path)
        attributes = _encode_metadata(metadata)
        if isinstance(data, bytes | bytearray | memoryview):
            view = memoryview(data).cast("B")
            if len(view) > self.multipart_threshold:
                await self._put_multipart(path, view, attributes)  # sliced in Rust
            else:
                await self._put_single(path, bytes(view), attributes)
            return
        # Stream: buffer up to the threshold; small objects become one PutObject.
        iterator = aiter(data)
        head: list[bytes] = []
        size = 0
        try:
            async for chunk in iterator:
                if not chunk:
                    continue
                head.append(bytes(chunk))
                size += len(chunk)
                if size > self.multipart_threshold:
                    break
            else:
                await self._put_single(path, head, attributes)
                return
            await self._put_multipart(path, _chain(head, iterator), attributes)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()

    async def _put_single(
        self, path: str, data: bytes | list[bytes], attributes: Attributes
    ) -> None:
        async with self._semaphore:
            try:
                await obstore.put_async(
                    self.store, path, data, attributes=attributes, use_multipart=False
                )
            except Exception as err:
                self._raise(err, path, writing=True)

    async def _put_multipart(
        self, path: str, data: memoryview | AsyncIterator[bytes], attributes: Attributes
    ) -> None:
        async with self._semaphore:
            try:
                await obstore.put_async(
                    self.store,
                    path,
                    data,
                    attributes=attributes,
                    use_multipart=True,
                    chunk_size=self.part_size,
                    max_concurrency=self.part_concurrency,
                )
            except Exception as err:
                self._raise(err, path, writing=True)

    # ------------------------------------------------------------------ metadata ops

    async def _head(self, path: str) -> ObjectMeta:
        check_path(path)
        async with self._semaphore:
            try:
                return await obstore.head_async(self.store, path)
            except Exception as err:
                self._raise(err, path)

    async def stat(self, path: str) -> FsStat:
        meta = await self._head(path)
        return FsStat(meta["size"], meta["last_modified"].timestamp())

    async def exists(self, path: str) -> bool:
        try:
            await self._head(path)
        except FsNotFound:
            return False
        return True

    async def get_metadata(self, path: str) -> dict[str, str]:
        check_path(path)
        async with self._semaphore:
            try:
                result = await obstore.get_async(self.store, path, options={"head": True})
            except Exception as err:
                self._raise(err, path)
        return _decode_metadata(result.attributes)

    async def delete(self, path: str) -> None:
        await self._head(path)
        async with self._semaphore:
            try:
                await obstore.delete_async(self.store, path)
            except Exception as err:
                self._raise(err, path)

    async def delete_many(self, paths: Iterable[str]) -> None:
        """Bulk delete (DeleteObjects, 1000 keys a request); missing paths are ignored."""
        keys = [check_path(p) for p in paths]
        for start in range(0, len(keys), BULK_DELETE_MAX):
            batch = keys[start : start + BULK_DELETE_MAX]
            async with self._semaphore:
                try:
                    await obstore.delete_async(self.store, batch)
                except Exception as err:
                    self._raise(err, batch[0])

    async def copy(self, src: str, dst: str) -> None:
        check_path(src)
        check_path(dst)
        async with self._semaphore:
            try:
                await obstore.copy_async(self.store, src, dst)
            except Exception as err:
                self._raise(err, src)

    # ------------------------------------------------------------------ listing

    async def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        base = dir_prefix(prefix)
        list_prefix = base.rstrip("/") or None
        paths: list[str] = []
        async with self._semaphore:
            try:
                if recursive:
                    async for page in obstore.list(self.store, list_prefix, chunk_size=1000):
                        paths.extend(meta["path"] for meta in page)
                else:
                    result = await obstore.list_with_delimiter_async(self.store, list_prefix)
                    paths.extend(meta["path"] for meta in result["objects"])
            except Exception as err:
                self._raise(err, prefix)
        paths.sort()
        for path in paths:
            if path.startswith(base):
                yield path

    async def close(self) -> None:
        self._store = None
        key, self._shared_key = self._shared_key, None
        if key is None:
            return
        entry = _SHARED.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _SHARED[key]  # the last user: the client and its connections go


@register_fs("aws-s3")
class AwsS3Fs(S3Fs):
    """``aws-s3``: `S3Fs` with AWS defaults (URL from bucket/region, AWS credential chain)."""

    aws_defaults = True


# ----------------------------------------------------------------------------- utilities


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    pending = deque(head)
    head.clear()  # hand the references over, so sent chunks can be freed
    while pending:
        yield pending.popleft()
    async for chunk in rest:
        if chunk:
            yield bytes(chunk)
