"""Real IMAP clients against a real Columba: mbsync (isync), curl, openssl s_client, imapclient.

One ``columba serve`` for the module (``tests.transcripts.columba_server``), one account per
test. Every test that drives an external program skips only when that program is missing
(CI installs the Debian packages isync, curl, openssl and swaks). TLS is checked against the
server's own self-signed certificate (it carries ``127.0.0.1`` as a subject alternative name)
wherever the client can be told to trust it.
"""

from __future__ import annotations

import email
import imaplib
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tests.transcripts.columba_server import ColumbaServer, columba_server

pytestmark = [pytest.mark.e2e]

ACCOUNTS = ("mbsync", "curl", "openssl", "imapclient", "idle", "swaks")


@dataclass
class Account:
    user: str
    password: str


@dataclass
class Env:
    server: ColumbaServer
    accounts: dict[str, Account]

    @property
    def port(self) -> int:
        return self.server.imap_port

    @property
    def cert(self) -> Path:
        return self.server.data_dir / "tls" / "cert.pem"

    def imap(self, name: str) -> imaplib.IMAP4:
        acct = self.accounts[name]
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=15)
        client.login(acct.user, acct.password)
        return client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    accounts = {
        name: Account(f"{name}-client@localhost", secrets.token_hex(10)) for name in ACCOUNTS
    }
    data_dir = tmp_path_factory.mktemp("columba-real-clients")
    with columba_server(data_dir, {a.user: a.password for a in accounts.values()}) as server:
        yield Env(server, accounts)


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed")
    return path


def message(subject: str, body: str, sender: str = "sender@example.com") -> bytes:
    return (
        f"From: {sender}\r\nTo: someone@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(6)}@test>\r\n"
        f"\r\n{body}\r\n"
    ).encode()


def subjects(client: imaplib.IMAP4, mailbox: str = "INBOX") -> dict[str, str]:
    """Subject → flags of every message in ``mailbox``."""
    typ, _ = client.select(mailbox, readonly=True)
    assert typ == "OK"
    typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    found: dict[str, str] = {}
    for item in data:
        if isinstance(item, tuple):
            meta, header = item
            parsed: Message = email.message_from_bytes(header)
            found[str(parsed["Subject"])] = meta.decode()
    return found


def run(argv: list[str], stdin: bytes | None = None, timeout: float = 30) -> tuple[int, str]:
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


# ---- mbsync ---------------------------------------------------------------------------------


def _mbsyncrc(env: Env, maildir: Path, tls: bool) -> str:
    acct = env.accounts["mbsync"]
    tls_lines = (
        f"SSLType STARTTLS\nCertificateFile {env.cert}\nSystemCertificates no\n"
        if tls
        else "SSLType None\n"
    )
    return (
        "IMAPAccount columba\n"
        "Host 127.0.0.1\n"
        f"Port {env.port}\n"
        f"User {acct.user}\n"
        f"Pass {acct.password}\n"
        "AuthMechs LOGIN\n"
        f"{tls_lines}"
        "\n"
        "IMAPStore columba-remote\n"
        "Account columba\n"
        "\n"
        "MaildirStore local\n"
        f"Path {maildir}/\n"
        f"Inbox {maildir}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel sync\n"
        "Far :columba-remote:\n"
        "Near :local:\n"
        "Patterns INBOX Archive\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n"
        "Sync All\n"
    )


def _maildir_messages(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        for path in (folder / sub).glob("*"):
            parsed = email.message_from_bytes(path.read_bytes())
            found[str(parsed["Subject"])] = path
    return found


def test_mbsync_syncs_both_ways(env: Env, tmp_path: Path) -> None:
    mbsync = need("mbsync")
    client = env.imap("mbsync")
    try:
        for n in (1, 2):
            typ, _ = client.append(
                "INBOX", "(\\Flagged)" if n == 1 else "", None, message(f"server {n}", f"body {n}")
            )
            assert typ == "OK"
        typ, _ = client.create("Archive")
        assert typ == "OK"
        typ, _ = client.append("Archive", "", None, message("archived", "old"))
        assert typ == "OK"
    finally:
        client.logout()

    maildir = tmp_path / "Mail"
    maildir.mkdir()
    rc_file = tmp_path / "mbsyncrc"
    rc_file.write_text(_mbsyncrc(env, maildir, tls=True))
    rc_file.chmod(0o600)

    # pull: the server's messages appear in the local Maildir, flags included
    code, out = run([mbsync, "-c", str(rc_file), "-a"])
    assert code == 0, out
    local = _maildir_messages(maildir / "INBOX")
    assert set(local) == {"server 1", "server 2"}, out
    assert local["server 1"].name.rsplit(":2,", 1)[-1].count("F") == 1
    assert set(_maildir_messages(maildir / "Archive")) == {"archived"}

    # push: a new local message and a local flag change reach the server
    new = maildir / "INBOX" / "new" / f"{int(time.time())}.{secrets.token_hex(4)}.test"
    new.write_bytes(message("from local", "pushed by mbsync"))
    seen = local["server 2"]
    seen.rename(seen.parent.parent / "cur" / (seen.name.split(":2,")[0] + ":2,S"))
    code, out = run([mbsync, "-c", str(rc_file), "-a"])
    assert code == 0, out

    client = env.imap("mbsync")
    try:
        on_server = subjects(client)
        assert set(on_server) == {"server 1", "server 2", "from local"}, on_server
        assert "\\Seen" in on_server["server 2"]
        assert "\\Flagged" in on_server["server 1"]
        typ, data = client.search(None, "BODY", '"pushed by mbsync"')
        assert typ == "OK" and data[0], data
        # and a deletion on the server side propagates back down
        client.select("INBOX")
        typ, data = client.search(None, "SUBJECT", '"server 1"')
        assert typ == "OK" and data[0]
        client.store(data[0].decode(), "+FLAGS", "(\\Deleted)")
        client.expunge()
    finally:
        client.logout()
    code, out = run([mbsync, "-c", str(rc_file), "-a"])
    assert code == 0, out
    assert set(_maildir_messages(maildir / "INBOX")) == {"server 2", "from local"}


def test_mbsync_plaintext_on_trusted_loopback(env: Env, tmp_path: Path) -> None:
    """Without TLS (login_trusted_networks covers 127.0.0.0/8) a sync works just the same."""
    mbsync = need("mbsync")
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    rc_file = tmp_path / "mbsyncrc"
    rc_file.write_text(_mbsyncrc(env, maildir, tls=False))
    rc_file.chmod(0o600)
    code, out = run([mbsync, "-c", str(rc_file), "-a"])
    assert code == 0, out
    assert (maildir / "INBOX" / "cur").is_dir()


# ---- curl -----------------------------------------------------------------------------------


def _curl(env: Env, tmp_path: Path, url_path: str, *extra: str) -> tuple[int, str]:
    curl = need("curl")
    acct = env.accounts["curl"]
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {acct.user} password {acct.password}\n")
    netrc.chmod(0o600)
    return run(
        [
            curl,
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--netrc-file",
            str(netrc),
            *extra,
            f"imap://127.0.0.1:{env.port}/{url_path}",
        ]
    )


def test_curl_lists_and_fetches_by_uid(env: Env, tmp_path: Path) -> None:
    need("curl")
    client = env.imap("curl")
    try:
        typ, _ = client.create('"Curl Folder"')
        assert typ == "OK"
        typ, data = client.append("INBOX", "", None, message("for curl", "fetched by curl"))
        assert typ == "OK"
        uid = data[0].decode().split("APPENDUID", 1)[1].split()[1].rstrip("]")
    finally:
        client.logout()

    code, out = _curl(env, tmp_path, "")
    assert code == 0, out
    assert '"/" INBOX' in out and '"Curl Folder"' in out, out
    assert "\\Drafts" in out, out

    code, out = _curl(env, tmp_path, f"INBOX;UID={uid}")
    assert code == 0, out
    assert "Subject: for curl" in out and "fetched by curl" in out, out

    # a UID that doesn't exist is an error, not an empty success
    code, out = _curl(env, tmp_path, "INBOX;UID=999999")
    assert code != 0


def test_curl_starttls_required(env: Env, tmp_path: Path) -> None:
    need("curl")
    client = env.imap("curl")
    try:
        typ, data = client.append("INBOX", "", None, message("over tls", "secret body"))
        assert typ == "OK"
        uid = data[0].decode().split("APPENDUID", 1)[1].split()[1].rstrip("]")
    finally:
        client.logout()
    code, out = _curl(env, tmp_path, f"INBOX;UID={uid}", "--ssl-reqd", "-k", "--verbose")
    assert code == 0, out
    assert "STARTTLS" in out and "SSL connection using" in out, out
    assert "secret body" in out
    # and with the server's certificate really checked
    code, out = _curl(env, tmp_path, f"INBOX;UID={uid}", "--ssl-reqd", "--cacert", str(env.cert))
    assert code == 0, out
    assert "secret body" in out


# ---- openssl s_client -----------------------------------------------------------------------


def test_openssl_starttls_login_and_list(env: Env) -> None:
    openssl = need("openssl")
    acct = env.accounts["openssl"]
    script = (
        f'a1 LOGIN {acct.user} {acct.password}\na2 LIST "" *\na3 CAPABILITY\na4 LOGOUT\n'
    ).encode()
    code, out = run(
        [
            openssl,
            "s_client",
            "-starttls",
            "imap",
            "-connect",
            f"127.0.0.1:{env.port}",
            "-CAfile",
            str(env.cert),
            "-verify_return_error",
            "-crlf",
            "-ign_eof",
            "-brief",
        ],
        stdin=script,
    )
    assert code == 0, out
    assert "Verification: OK" in out, out
    assert "a1 OK" in out and "a4 OK" in out, out
    assert '* LIST (\\HasNoChildren) "/" INBOX' in out, out
    assert "* BYE" in out
    caps = next(line for line in out.splitlines() if line.startswith("* CAPABILITY"))
    assert "STARTTLS" not in caps and "IMAP4rev1" in caps


def test_openssl_implicit_tls_port(env: Env) -> None:
    openssl = need("openssl")
    acct = env.accounts["openssl"]
    script = f"a1 LOGIN {acct.user} {acct.password}\na2 NAMESPACE\na3 LOGOUT\n".encode()
    code, out = run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{env.server.ports['imaps']}",
            "-CAfile",
            str(env.cert),
            "-verify_return_error",
            "-crlf",
            "-ign_eof",
            "-brief",
        ],
        stdin=script,
    )
    assert code == 0, out
    assert "* OK" in out and "a1 OK" in out and '* NAMESPACE (("" "/")) NIL NIL' in out, out


# ---- imapclient -----------------------------------------------------------------------------


def test_imapclient_mailbox_round_trip(env: Env) -> None:
    imapclient = pytest.importorskip("imapclient")
    acct = env.accounts["imapclient"]
    context = ssl.create_default_context(cafile=str(env.cert))
    client = imapclient.IMAPClient("127.0.0.1", port=env.port, ssl=False, timeout=15)
    try:
        client.starttls(context)
        client.login(acct.user, acct.password)
        caps = client.capabilities()
        assert b"IDLE" in caps and b"MOVE" in caps and b"UIDPLUS" in caps
        assert client.namespace().personal[0][1] == "/"
        special = {flags[-1]: name for flags, _, name in client.list_folders() if flags}
        assert special.get(b"\\Sent") == "Sent" and special.get(b"\\Trash") == "Trash"
        client.create_folder("Projects/Ünïcode")
        assert client.folder_exists("Projects/Ünïcode")
        raw = message("round trip", "hello world")
        result = client.append("Projects/Ünïcode", raw, flags=[b"\\Seen", b"Work"])
        assert b"APPENDUID" in result
        info = client.select_folder("Projects/Ünïcode")
        assert info[b"EXISTS"] == 1
        uids = client.search(["KEYWORD", "Work"])
        assert len(uids) == 1
        fetched = client.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE"])
        data = fetched[uids[0]]
        assert data[b"ENVELOPE"].subject == b"round trip"
        assert data[b"BODYSTRUCTURE"][0].lower() == b"text"
        assert set(data[b"FLAGS"]) >= {b"\\Seen", b"Work"}
        assert data[b"RFC822.SIZE"] == len(raw)
        client.create_folder("Archive-Target")
        client.move(uids, "Archive-Target")
        assert client.search(["ALL"]) == []
        assert client.folder_status("Archive-Target", ["MESSAGES"])[b"MESSAGES"] == 1
        client.rename_folder("Archive-Target", "Archive-Renamed")
        assert client.folder_exists("Archive-Renamed") and not client.folder_exists(
            "Archive-Target"
        )
    finally:
        client.logout()


def test_imapclient_idle_sees_append_from_another_client(env: Env) -> None:
    imapclient = pytest.importorskip("imapclient")
    acct = env.accounts["idle"]
    watcher = imapclient.IMAPClient("127.0.0.1", port=env.port, ssl=False, timeout=15)
    watcher.login(acct.user, acct.password)
    try:
        watcher.select_folder("INBOX")
        watcher.idle()

        def deliver() -> None:
            time.sleep(0.3)
            other = env.imap("idle")
            try:
                other.append("INBOX", "", None, message("during idle", "ping"))
            finally:
                other.logout()

        sender = threading.Thread(target=deliver)
        sender.start()
        responses: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            len(r) > 1 and r[1] == b"EXISTS" for r in responses
        ):
            responses.extend(watcher.idle_check(timeout=1))
        sender.join()
        watcher.idle_done()
        assert (1, b"EXISTS") in responses, responses
        assert watcher.search(["SUBJECT", "during idle"]) == [1]
    finally:
        watcher.logout()


# ---- swaks (LMTP delivery, read back over IMAP) ---------------------------------------------


def test_swaks_lmtp_delivery_read_with_imaplib(env: Env) -> None:
    swaks = need("swaks")
    acct = env.accounts["swaks"]
    marker = secrets.token_hex(8)
    code, out = run(
        [
            swaks,
            "--protocol",
            "LMTP",
            "--server",
            f"127.0.0.1:{env.server.ports['lmtp']}",
            "--from",
            "sender@example.com",
            "--to",
            acct.user,
            "--header",
            f"Subject: lmtp {marker}",
            "--body",
            f"delivered by swaks {marker}",
            "--timeout",
            "20",
        ]
    )
    assert code == 0, out
    client = env.imap("swaks")
    try:
        found = subjects(client)
        assert f"lmtp {marker}" in found, found
        typ, data = client.search(None, "BODY", marker)
        assert typ == "OK" and data[0]
    finally:
        client.logout()
