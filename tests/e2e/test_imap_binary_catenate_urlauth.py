"""BINARY (RFC 3516), CATENATE (RFC 4469) and URLAUTH (RFC 4467, RFC 5524) end to end: the
real server (``columba serve``, two workers, ``imap_urlauth_host = localhost``) driven by
the byte-exact raw client, with the RFCs' examples adapted to this server's mailboxes."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest

from tests.e2e.imap_server import ImapServer, RawClient, tagged_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALICE = "alice@example.com"
BOB = "bob@example.com"
ALICE_URL = "alice%40example.com"
PAYLOAD = b"hello\x00world \xff\xfe binary"

MULTIPART = (
    b"From: Fred Foobar <foobar@example.com>\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n"
    b"\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=C3=BC=C3=9Fe soft=\r\nbreak=3D\r\n"
    b"--XX\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n") + b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: x-uuencode\r\n"
    b"\r\n"
    b"begin 644 x\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"plain 7bit\r\n"
    b"--XX--\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    srv = ImapServer(
        tmp_path_factory.mktemp("columba-urlauth"), extra_config="imap_urlauth_host = localhost\n"
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _client(server: ImapServer, user: str, mailbox: str | None = None) -> RawClient:
    client = RawClient(server.port)
    assert tagged_status(client.login(user)).startswith(b"OK")
    if mailbox is not None:
        client.command(f"CREATE {mailbox}")
        assert tagged_status(client.command(f"SELECT {mailbox}")).startswith(b"OK")
    return client


def _append(client: RawClient, mailbox: str, data: bytes) -> tuple[int, int]:
    """(uidvalidity, uid) from APPENDUID."""
    status = tagged_status(client.command(f"APPEND {mailbox} ~{{}}", data))
    m = re.search(rb"APPENDUID (\d+) (\d+)", status)
    assert m is not None, status
    return int(m.group(1)), int(m.group(2))


def test_capabilities(server: ImapServer) -> None:
    with _client(server, ALICE) as client:
        caps = client.command("CAPABILITY")[0].split()
        for cap in (b"BINARY", b"CATENATE", b"URL-PARTIAL", b"URLAUTH", b"URLAUTH=BINARY"):
            assert cap in caps


def test_binary_fetch_decodes_parts(server: ImapServer) -> None:
    with _client(server, ALICE, "bin") as client:
        _, uid = _append(client, "bin", MULTIPART)
        lines = client.command(
            f"UID FETCH {uid} (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[4] "
            "BINARY.PEEK[2]<6.5>)"
        )
        text = b"".join(lines)
        assert b"BINARY[1] ~{18}\r\n" + "Grüße softbreak=".encode() in text
        assert b"BINARY[2] ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD in text
        assert b"BINARY.SIZE[2] %d" % len(PAYLOAD) in text
        assert b"BINARY[4] {10}\r\nplain 7bit" in text
        assert b"BINARY[2]<6> ~{5}\r\nworld" in text
        # BINARY.PEEK left \Seen alone; BINARY sets it
        flags = client.command(f"UID FETCH {uid} FLAGS")[0]
        assert b"\\Seen" not in flags
        seen = b"".join(client.command(f"UID FETCH {uid} (BINARY[4])"))
        assert b"\\Seen" in seen


def test_binary_unknown_cte_and_whole_message(server: ImapServer) -> None:
    with _client(server, ALICE, "bin2") as client:
        _, uid = _append(client, "bin2", MULTIPART)
        for item in ("BINARY.PEEK[3]", "BINARY.SIZE[3]", "BINARY.PEEK[]"):
            status = tagged_status(client.command(f"UID FETCH {uid} ({item})"))
            assert status.startswith(b"NO [UNKNOWN-CTE]"), (item, status)
        single = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
        _, uid2 = _append(client, "bin2", single)
        text = b"".join(client.command(f"UID FETCH {uid2} (BINARY.PEEK[] BINARY.SIZE[])"))
        whole = b"Subject: x\r\nContent-Transfer-Encoding: binary\r\n\r\nhello"
        assert b"BINARY[] ~{%d}\r\n" % len(whole) + whole in text
        assert b"BINARY.SIZE[] %d" % len(whole) in text


def test_append_literal8_keeps_nul(server: ImapServer) -> None:
    with _client(server, ALICE, "bin3") as client:
        data = b"Subject: nul\r\n\r\na\x00b\r\n"
        _, uid = _append(client, "bin3", data)
        text = b"".join(client.command(f"UID FETCH {uid} (BINARY.PEEK[1])"))
        assert b"BINARY[1] ~{5}\r\na\x00b\r\n" in text
        # stored as sent: BODY[] has the NUL as 0x80 (a plain literal), BINARY keeps it
        text = b"".join(client.command(f"UID FETCH {uid} (BODY.PEEK[TEXT])"))
        assert b"BODY[TEXT] {5}\r\na\x80b\r\n" in text


def test_catenate_rfc4469_example(server: ImapServer) -> None:
    with _client(server, ALICE, "Drafts2") as client:
        uidvalidity, uid = _append(client, "Drafts2", MULTIPART)
        header = (
            b"From: Fred Foobar <foobar@example.com>\r\n"
            b"Subject: afternoon meeting\r\n"
            b"Content-Type: multipart/mixed; boundary=YY\r\n\r\n"
            b"--YY\r\nContent-Type: text/plain\r\n\r\nHello Joe, see the part.\r\n--YY\r\n"
        )
        tail = b"\r\n--YY--\r\n"
        lines = client.command(
            f'APPEND Drafts2 (\\Seen \\Draft $MDNSent) CATENATE (TEXT {{}} URL "/Drafts2;'
            f'UIDVALIDITY={uidvalidity}/;UID={uid}/;SECTION=2.MIME" URL ";UID={uid}/;SECTION=2"'
            " TEXT {})",
            header,
            tail,
            sync=True,
        )
        status = tagged_status(lines)
        assert status.startswith(b"OK [APPENDUID"), status
        new_uid = int(re.search(rb"APPENDUID \d+ (\d+)", status).group(1))  # type: ignore[union-attr]
        body = b"".join(client.command(f"UID FETCH {new_uid} (BODY.PEEK[] FLAGS)"))
        part_mime = (
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        encoded = base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")[:-2]
        assert header + part_mime + encoded + tail in body
        assert b"\\Draft" in body and b"$MDNSent" in body


def test_catenate_bad_urls(server: ImapServer) -> None:
    with _client(server, ALICE, "cat") as client:
        _, uid = _append(client, "cat", b"Subject: a\r\n\r\nbody\r\n")
        for url, why in (
            ("/cat/;UID=999", b"Message not found"),
            (f"/cat;UIDVALIDITY=1/;UID={uid}", b"Invalid UIDVALIDITY"),
            ("/nosuch/;UID=1", b"Mailbox doesn't exist: nosuch"),
            ("imap://bob%40example.com@localhost/INBOX/;UID=1", b"another user"),
            ("garbage", b"Invalid IMAP URL"),
        ):
            status = tagged_status(client.command(f'APPEND cat CATENATE (URL "{url}")'))
            assert status.startswith(b"NO [BADURL " + url.encode() + b"]"), status
            assert why in status
        status = tagged_status(client.command('APPEND nosuch CATENATE (URL "/cat/;UID=1")'))
        assert status.startswith(b"NO [TRYCREATE]")
        own = f"imap://{ALICE_URL}@localhost/cat/;UID={uid}/;PARTIAL=0.4"
        status = tagged_status(client.command(f'APPEND cat CATENATE (URL "{own}")'))
        assert status.startswith(b"OK [APPENDUID")


def test_urlauth_rfc4467_flow(server: ImapServer) -> None:
    alice = _client(server, ALICE, "Shared")
    bob = _client(server, BOB)
    try:
        uidvalidity, uid = _append(alice, "Shared", MULTIPART)
        rump = (
            f"imap://{ALICE_URL}@localhost/Shared;UIDVALIDITY={uidvalidity}/;UID={uid}"
            "/;SECTION=2;EXPIRE=2099-05-01T23:59:59Z;URLAUTH=authuser"
        )
        lines = alice.command(f'GENURLAUTH "{rump}" INTERNAL')
        assert tagged_status(lines).startswith(b"OK")
        # quoted: "%" isn't an atom character
        m = re.match(rb'\* GENURLAUTH "(\S+)"\r\n', lines[0])
        assert m is not None, lines
        full = m.group(1).decode()
        assert full.startswith(rump + ":internal:")
        # bob fetches alice's part: encoded, and decoded with RFC 5524 BINARY
        fetched = b"".join(bob.command(f'URLFETCH "{full}"'))
        encoded = base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")[:-2]
        assert f'* URLFETCH "{full}" {{{len(encoded)}}}\r\n'.encode() + encoded in fetched
        fetched = b"".join(bob.command(f'URLFETCH ("{full}" BINARY BODYPARTSTRUCTURE)'))
        assert b"BINARY ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD in fetched
        assert b'(BODYPARTSTRUCTURE ("application" "octet-stream"' in fetched
        # a wrong token, a user+ URL for someone else, an expired URL: NIL
        bad = full[:-1] + ("0" if full[-1] != "0" else "1")
        assert f'* URLFETCH "{bad}" NIL'.encode() in b"".join(bob.command(f'URLFETCH "{bad}"'))
        lines = alice.command(
            f'GENURLAUTH "{rump[: rump.index(";EXPIRE")]};URLAUTH=user+x" INTERNAL'
        )
        other = re.match(rb'\* GENURLAUTH "(\S+)"', lines[0]).group(1).decode()  # type: ignore[union-attr]
        assert b" NIL\r\n" in bob.command(f'URLFETCH "{other}"')[0]
        # RESETKEY invalidates what was generated
        assert tagged_status(alice.command("RESETKEY Shared INTERNAL")).startswith(
            b"OK [URLMECH INTERNAL]"
        )
        assert b" NIL\r\n" in bob.command(f'URLFETCH "{full}"')[0]
        # GENURLAUTH refusals
        for rump_bad in (
            f"imap://bob%40example.com@localhost/Shared/;UID={uid};URLAUTH=anonymous",
            f"imap://{ALICE_URL}@elsewhere/Shared/;UID={uid};URLAUTH=anonymous",
            f"imap://{ALICE_URL}@localhost/Shared/;UID={uid}",
            f"/Shared/;UID={uid};URLAUTH=anonymous",
            f"imap://{ALICE_URL}@localhost/Shared/;UID=999;URLAUTH=anonymous",
        ):
            status = tagged_status(alice.command(f'GENURLAUTH "{rump_bad}" INTERNAL'))
            assert status.startswith(b"BAD"), (rump_bad, status)
        assert tagged_status(alice.command("RESETKEY")).startswith(b"OK")
        assert tagged_status(alice.command("RESETKEY nosuch")).startswith(b"NO")
    finally:
        alice.close()
        bob.close()
