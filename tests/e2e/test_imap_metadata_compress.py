"""METADATA (RFC 5464) and COMPRESS=DEFLATE (RFC 4978) end to end: the real server
(``columba serve``, two workers, ``imap_metadata = yes``) driven by the byte-exact raw client
and by Python's imaplib with zlib doing the client's side of COMPRESS (plain, after
STARTTLS and on the implicit-TLS port)."""

from __future__ import annotations

import imaplib
import io
import ssl
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.e2e.imap_server import (
    USERS,
    ImapServer,
    RawClient,
    client_tls_context,
    tagged_status,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# imaplib's table of commands and the states it may send them in (xatom() would register
# an unknown one for the current state only)
for _name in ("COMPRESS", "GETMETADATA", "SETMETADATA"):
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"

EXTRA = (
    "imap_metadata = yes\n"
    "imap_metadata_max_value_size = 4K\n"
    "imap_metadata_max_entries = 5\n"
    "mail_server_admin = mailto:postmaster@example.com\n"
    "namespace inbox {\n  mailbox Trash {\n    comment = Deleted mail\n  }\n}\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    srv = ImapServer(tmp_path_factory.mktemp("columba-md"), extra_config=EXTRA)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class DeflateMixin(imaplib.IMAP4):
    """imaplib's I/O hooks (read, readline, send) over raw DEFLATE once :meth:`compress`
    succeeded; zlib does the work."""

    _inflater: zlib._Decompress | None = None
    _deflater: zlib._Compress | None = None
    _inbuf = b""
    raw_in = 0

    def compress(self) -> tuple[str, list[object]]:
        typ, data = self.xatom("COMPRESS", "DEFLATE")
        if typ == "OK":
            self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._inflater = zlib.decompressobj(-15)
        return typ, data

    def send(self, data: ReadableBuffer) -> None:
        if self._deflater is not None:
            data = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self) -> None:
        assert self._inflater is not None
        file = self.file
        assert isinstance(file, io.BufferedReader)
        raw = file.read1(65536)
        if not raw:
            raise ConnectionError("server closed the connection")
        self.raw_in += len(raw)
        self._inbuf += self._inflater.decompress(raw)

    def read(self, size: int) -> bytes:
        if self._inflater is None:
            return super().read(size)
        while len(self._inbuf) < size:
            self._fill()
        out, self._inbuf = self._inbuf[:size], self._inbuf[size:]
        return out

    def readline(self) -> bytes:
        if self._inflater is None:
            return super().readline()
        while b"\n" not in self._inbuf:
            self._fill()
        end = self._inbuf.index(b"\n") + 1
        out, self._inbuf = self._inbuf[:end], self._inbuf[end:]
        return out


class DeflateIMAP4(DeflateMixin):
    pass


class DeflateIMAP4SSL(DeflateMixin, imaplib.IMAP4_SSL):
    pass


def _capabilities(conn: imaplib.IMAP4) -> list[bytes]:
    typ, data = conn.capability()
    assert typ == "OK" and isinstance(data[0], bytes)
    return data[0].split()


def _metadata(conn: imaplib.IMAP4) -> list[object]:
    typ, data = conn.response("METADATA")
    assert typ == "METADATA"
    return list(data)


# ---------------------------------------------------------------------- METADATA


def test_capabilities(server: ImapServer) -> None:
    with RawClient(server.port) as c:
        assert b"METADATA" not in c.greeting and b"COMPRESS" not in c.greeting
        lines = c.login(ALICE)
        caps = tagged_status(lines).split(b"]")[0].split()
        assert b"METADATA" in caps and b"COMPRESS=DEFLATE" in caps
        assert b"METADATA-SERVER" not in caps  # METADATA includes it (RFC 5464 §1)


def test_rfc5464_examples_raw(server: ImapServer) -> None:
    with RawClient(server.port) as c:
        c.login(ALICE)
        # 4.3: a synchronising literal, then reading it back
        lines = c.command(
            "SETMETADATA INBOX (/private/comment {})",
            b"My new comment across\r\ntwo lines.",
            sync=True,
        )
        assert tagged_status(lines) == b"OK Setmetadata completed."
        lines = c.command("GETMETADATA INBOX /private/comment")
        assert lines[0] == (
            b"* METADATA INBOX (/private/comment {33}\r\nMy new comment across\r\ntwo lines.)\r\n"
        )
        # 4.3 with several entries, 4.2 reading several
        lines = c.command(
            'SETMETADATA INBOX (/shared/comment "Shared comment" /private/comment "My own comment")'
        )
        assert tagged_status(lines) == b"OK Setmetadata completed."
        lines = c.command("GETMETADATA INBOX (/shared/comment /private/comment)")
        assert lines[0] == (
            b'* METADATA INBOX (/shared/comment "Shared comment" '
            b'/private/comment "My own comment")\r\n'
        )
        # 4.2.1 MAXSIZE and LONGENTRIES
        long_value = b"L" * 2199
        assert tagged_status(
            c.command("SETMETADATA INBOX (/shared/vendor/example.com/long {})", long_value)
        ) == (b"OK Setmetadata completed.")
        lines = c.command(
            "GETMETADATA (MAXSIZE 1024) INBOX (/shared/vendor/example.com/long /private/comment)"
        )
        assert lines[0] == b'* METADATA INBOX (/private/comment "My own comment")\r\n'
        assert tagged_status(lines) == b"OK [METADATA LONGENTRIES 2199] Getmetadata completed."
        # 4.2.2 DEPTH
        c.command(
            'SETMETADATA INBOX (/private/filters/values/small "SMALLER than 10240 octets" '
            '/private/filters/values/big "BIGGER than 10240 octets")'
        )
        lines = c.command("GETMETADATA (DEPTH 1) INBOX (/private/filters/values)")
        assert lines[0] == (
            b'* METADATA INBOX (/private/filters/values/big "BIGGER than 10240 octets" '
            b'/private/filters/values/small "SMALLER than 10240 octets")\r\n'
        )
        lines = c.command("GETMETADATA (DEPTH infinity MAXSIZE 100) INBOX /shared")
        assert lines[0] == b'* METADATA INBOX (/shared/comment "Shared comment")\r\n'
        assert tagged_status(lines) == b"OK [METADATA LONGENTRIES 2199] Getmetadata completed."
        # NIL removes
        assert tagged_status(c.command("SETMETADATA INBOX (/private/filters/values/big NIL)")) == (
            b"OK Setmetadata completed."
        )
        lines = c.command("GETMETADATA INBOX /private/filters/values/big")
        assert lines[0] == b"* METADATA INBOX (/private/filters/values/big NIL)\r\n"
        # limits: 4K values, 5 entries per mailbox
        lines = c.command("SETMETADATA INBOX (/private/big {})", b"x" * 4097)
        assert tagged_status(lines) == (
            b"NO [METADATA MAXSIZE 4096] Metadata entry value is too large."
        )
        lines = c.command('SETMETADATA INBOX (/private/e5 "5" /private/e6 "6")')
        assert tagged_status(lines) == b"NO [METADATA TOOMANY] Too many metadata entries."
        lines = c.command("GETMETADATA INBOX /private/e5")
        assert lines[0] == b"* METADATA INBOX (/private/e5 NIL)\r\n"


def test_server_entries_and_persistence(server: ImapServer) -> None:
    with RawClient(server.port) as c:
        c.login(BOB)
        lines = c.command('GETMETADATA "" (/shared/admin /shared/comment)')
        assert lines[0] == (
            b'* METADATA "" (/shared/admin "mailto:postmaster@example.com" /shared/comment NIL)\r\n'
        )
        lines = c.command('SETMETADATA "" (/shared/comment "mine")')
        assert tagged_status(lines) == b"NO [CANNOT] The /shared/comment entry can't be changed."
        lines = c.command('SETMETADATA "" (/private/vendor/example.com/motd "Welcome")')
        assert tagged_status(lines) == b"OK Setmetadata completed."
        lines = c.command("GETMETADATA Trash (/shared/comment)")
        assert lines[0] == b'* METADATA Trash (/shared/comment "Deleted mail")\r\n'
        c.command('SETMETADATA Trash (/shared/comment "Bin")')
    # several connections (two worker processes): the entries live in the user's index
    for _ in range(4):
        with RawClient(server.port) as c:
            c.login(BOB)
            lines = c.command('GETMETADATA (DEPTH infinity) "" /private')
            assert lines[0] == b'* METADATA "" (/private/vendor/example.com/motd "Welcome")\r\n'
            lines = c.command("GETMETADATA Trash /shared/comment")
            assert lines[0] == b'* METADATA Trash (/shared/comment "Bin")\r\n'
    with RawClient(server.port) as c:
        c.login(CAROL)
        lines = c.command('GETMETADATA "" /private/vendor/example.com/motd')
        assert lines[0] == b'* METADATA "" (/private/vendor/example.com/motd NIL)\r\n'


def test_metadata_follows_rename_and_goes_with_delete(server: ImapServer) -> None:
    with RawClient(server.port) as c:
        c.login(CAROL)
        c.command("CREATE Projects")
        c.command("CREATE Projects/Alpha")
        c.command('SETMETADATA Projects/Alpha (/private/comment "alpha")')
        assert tagged_status(c.command("RENAME Projects Archive")) == b"OK Rename completed."
        lines = c.command("GETMETADATA Archive/Alpha /private/comment")
        assert lines[0] == b'* METADATA Archive/Alpha (/private/comment "alpha")\r\n'
        assert tagged_status(c.command("DELETE Archive/Alpha")) == b"OK Delete completed."
        assert tagged_status(c.command("GETMETADATA Archive/Alpha /private/comment")) == (
            b"NO [NONEXISTENT] Mailbox doesn't exist: Archive/Alpha"
        )
        c.command("CREATE Archive/Alpha")
        lines = c.command("GETMETADATA Archive/Alpha /private/comment")
        assert lines[0] == b"* METADATA Archive/Alpha (/private/comment NIL)\r\n"


def test_metadata_with_imaplib(server: ImapServer) -> None:
    conn = imaplib.IMAP4("127.0.0.1", server.port, timeout=15)
    try:
        conn.login(ALICE, USERS[ALICE])
        assert b"METADATA" in _capabilities(conn)
        typ, _ = conn.xatom("SETMETADATA", "INBOX", '(/private/vendor/imaplib/x "from imaplib")')
        assert typ == "OK"
        typ, _ = conn.xatom("GETMETADATA", "INBOX", "/private/vendor/imaplib/x")
        assert typ == "OK"
        assert _metadata(conn) == [b'INBOX (/private/vendor/imaplib/x "from imaplib")']
    finally:
        conn.logout()


# ---------------------------------------------------------------------- COMPRESS


def _exercise_compressed(conn: DeflateMixin) -> None:
    body = b"Subject: compressed\r\n\r\n" + b"".join(
        b"line %d of a rather repetitive body\r\n" % i for i in range(20000)
    )
    typ, _ = conn.append("INBOX", "", imaplib.Time2Internaldate(0), body)
    assert typ == "OK"
    typ, selected = conn.select("INBOX")
    assert typ == "OK" and isinstance(selected[0], bytes)
    count = int(selected[0])
    before = conn.raw_in
    typ, fetched = conn.fetch(str(count), "(BODY.PEEK[])")
    assert typ == "OK"
    item = fetched[0]
    assert isinstance(item, tuple) and item[1] == body
    assert conn.raw_in - before < len(body) // 5  # it really was compressed
    typ, again = conn.compress()
    assert (typ, again) == ("NO", [b"[COMPRESSIONACTIVE] COMPRESSION=DEFLATE already enabled."])
    assert conn.noop()[0] == "OK"


def test_compress_with_imaplib(server: ImapServer) -> None:
    conn = DeflateIMAP4("127.0.0.1", server.port, timeout=15)
    try:
        conn.login(BOB, USERS[BOB])
        assert b"COMPRESS=DEFLATE" in _capabilities(conn)
        typ, data = conn.xatom("COMPRESS", "LZ4")
        assert (typ, data) == ("NO", [b"Unknown compression mechanism."])
        typ, data = conn.compress()
        assert (typ, data) == ("OK", [b"Begin compression."])
        _exercise_compressed(conn)
        typ, data = conn.xatom("GETMETADATA", '""', "/shared/admin")
        assert typ == "OK"
        assert _metadata(conn) == [b'"" (/shared/admin "mailto:postmaster@example.com")']
    finally:
        conn.logout()


def test_compress_after_starttls(server: ImapServer) -> None:
    conn = DeflateIMAP4("127.0.0.1", server.port, timeout=15)
    try:
        assert conn.starttls(ssl_context=client_tls_context())[0] == "OK"
        conn.login(CAROL, USERS[CAROL])
        assert isinstance(conn.sock, ssl.SSLSocket)
        typ, data = conn.compress()
        assert (typ, data) == ("OK", [b"Begin compression."])
        _exercise_compressed(conn)
    finally:
        conn.logout()


def test_compress_on_implicit_tls(server: ImapServer) -> None:
    conn = DeflateIMAP4SSL(
        "127.0.0.1", server.ssl_port, ssl_context=client_tls_context(), timeout=15
    )
    try:
        conn.login(ALICE, USERS[ALICE])
        assert conn.compress()[0] == "OK"
        _exercise_compressed(conn)
    finally:
        conn.logout()


def test_compress_with_pipelined_command_raw(server: ImapServer) -> None:
    with RawClient(server.port) as c:
        c.login(ALICE)
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflater = zlib.decompressobj(-15)
        noop = deflater.compress(b"p2 NOOP\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH)
        c.send(b"p1 COMPRESS DEFLATE\r\n" + noop)
        assert c.file.readline() == b"p1 OK Begin compression.\r\n"
        out = b""
        while not out.endswith(b"p2 OK NOOP completed.\r\n"):
            raw = c.file.read1(65536)
            assert raw, "connection closed"
            out += inflater.decompress(raw)
        assert out == b"p2 OK NOOP completed.\r\n"
