"""IMAP4rev2 (RFC 9051) and UTF8=ACCEPT (RFC 6855) end to end: a real server with
``imap4rev2_enable = yes`` and ``mail_utf8_extensions = yes`` advertises both IMAP4rev1 and
IMAP4rev2; a client that sends ``ENABLE IMAP4rev2`` gets RFC 9051 answers (no \\Recent or
RECENT, ESEARCH for SEARCH, a LIST response in SELECT, \\NonExistent, UTF-8 mailbox names)
while an IMAP4rev1 client on the same server keeps RFC 3501 answers."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

import pytest

from tests.e2e.imap_server import ImapServer, RawClient, tagged_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CAROL = "carol@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    srv = ImapServer(
        tmp_path_factory.mktemp("columba-rev2"),
        extra_config="imap4rev2_enable = yes\nmail_utf8_extensions = yes\n",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_rev2_session(server: ImapServer) -> None:
    with RawClient(server.port) as c:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
        lines = c.login(CAROL)
        assert b" UTF8=ACCEPT" in lines[-1]
        body = b"From: a@example.com\r\nSubject: caf\xc3\xa9 \xe2\x82\xac\r\n\r\nx\r\n"
        assert tagged_status(c.command("APPEND INBOX {}", body)).startswith(b"OK [APPENDUID")
        assert c.command("ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2\r\n"
        # 8-bit UTF-8 headers with the UTF8 data item (RFC 6855 §4)
        tag = c.next_tag()
        c.send(tag.encode() + b" APPEND INBOX UTF8 (~{%d+}\r\n" % len(body) + body + b")\r\n")
        assert tagged_status(c.read_until(tag)).startswith(b"OK [APPENDUID")
        lines = c.command("SELECT INBOX")
        assert not any(b"RECENT" in x or b"[UNSEEN" in x for x in lines)
        assert b'* LIST () "/" INBOX\r\n' in lines
        assert tagged_status(lines) == b"OK [READ-WRITE] Select completed."
        assert c.command("FETCH 1:2 (FLAGS)")[:2] == [
            b"* 1 FETCH (FLAGS ())\r\n",
            b"* 2 FETCH (FLAGS ())\r\n",
        ]
        assert c.command("SEARCH UNSEEN")[0] == b'* ESEARCH (TAG "t7") ALL 1:2\r\n'
        assert c.command("UID SEARCH SEEN")[0] == b'* ESEARCH (TAG "t8") UID\r\n'
        lines = c.command("FETCH 2 (BINARY.SIZE[1] BINARY.PEEK[1])")
        assert lines[0] == b"* 2 FETCH (BINARY.SIZE[1] 3 BINARY[1] {3}\r\nx\r\n)\r\n"
        # UTF-8 mailbox names, \NonExistent parents
        assert tagged_status(c.command('CREATE "R\u00e9sum\u00e9/2024"')).startswith(b"OK")
        lines = c.command('LIST "" "R*"')
        assert lines[:-1] == [
            b'* LIST (\\NonExistent \\HasChildren) "/" "R\xc3\xa9sum\xc3\xa9"\r\n',
            b'* LIST (\\HasNoChildren) "/" "R\xc3\xa9sum\xc3\xa9/2024"\r\n',
        ]
        lines = c.command('STATUS "R\u00e9sum\u00e9/2024" (MESSAGES DELETED SIZE)')
        assert lines[0] == b'* STATUS "R\xc3\xa9sum\xc3\xa9/2024" (MESSAGES 0 DELETED 0 SIZE 0)\r\n'
        assert tagged_status(c.command("STATUS INBOX (RECENT)")).startswith(b"BAD")
        lines = c.command('SELECT "R\u00e9sum\u00e9/2024"')
        assert lines[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"
        assert b'* LIST () "/" "R\xc3\xa9sum\xc3\xa9/2024"\r\n' in lines
        c.command("LOGOUT")


def test_rev1_client_unchanged(server: ImapServer) -> None:
    conn = server.imaplib(CAROL)
    try:
        assert "IMAP4REV2" in conn.capabilities
        typ, caps = conn.capability()
        assert typ == "OK" and b" CONDSTORE QRESYNC " in caps[0]
        typ, _ = conn.select("INBOX")
        assert typ == "OK"
        assert conn.untagged_responses.get("RECENT") is not None
        typ, data = conn.search(None, "ALL")
        assert typ == "OK" and data[0]  # classic * SEARCH answer
        assert conn.create("Caf&AOk-/old")[0] == "OK"
        typ, listed = conn.list('""', "Caf*")
        assert typ == "OK"
        # modified UTF-7 and \Noselect (not \NonExistent) for an RFC 3501 client
        assert listed == [
            b'(\\Noselect \\HasChildren) "/" Caf&AOk-',
            b'(\\HasNoChildren) "/" Caf&AOk-/old',
        ]
    finally:
        conn.logout()


def test_imaplib_enable_utf8(server: ImapServer) -> None:
    conn = server.imaplib(CAROL)
    try:
        typ, _ = conn.enable("UTF8=ACCEPT")
        assert typ == "OK" and conn.utf8_enabled
        typ, _ = conn.create('"\u65e5\u672c"')
        assert typ == "OK"
        typ, data = conn.list('""', '"\u65e5*"')
        assert typ == "OK"
        assert data == [b'(\\HasNoChildren) "/" "\xe6\x97\xa5\xe6\x9c\xac"']
    finally:
        conn.logout()


BOB = "bob@example.com"
NFD_CAFE = "Cafe\u0301"  # "Café" with a combining acute accent: not Net-Unicode (NFC)


def _rev2_client(server: ImapServer, user: str) -> RawClient:
    c = RawClient(server.port)
    c.login(user)
    assert c.command("ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2\r\n"
    return c


def test_rev2_removed_commands_and_search_keys(server: ImapServer) -> None:
    """RFC 9051 Appendix E: CHECK and the NEW/OLD/RECENT search keys are gone (BAD), LSUB is
    only deprecated (still answered); the same commands work for an IMAP4rev1 client."""
    body = b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n"
    with RawClient(server.port) as rev1:
        rev1.login(BOB)
        assert tagged_status(rev1.command("APPEND INBOX {}", body)).startswith(b"OK")
        rev1.command("SELECT INBOX")
        assert tagged_status(rev1.command("CHECK")) == b"OK Check completed."
        assert rev1.command("SEARCH NEW")[0].startswith(b"* SEARCH")
    with _rev2_client(server, BOB) as c:
        c.command("SELECT INBOX")
        assert tagged_status(c.command("CHECK")).startswith(b"BAD")
        for key in ("NEW", "OLD", "RECENT", "NOT RECENT", "OR SEEN NEW", "(ALL OLD)"):
            assert tagged_status(c.command(f"SEARCH {key}")).startswith(b"BAD"), key
            assert tagged_status(c.command(f"UID SEARCH RETURN (COUNT) {key}")).startswith(b"BAD")
        assert c.command("SEARCH RETURN (COUNT) ALL")[0].endswith(b" COUNT 1\r\n")
        assert tagged_status(c.command("NOOP")) == b"OK NOOP completed."
        lines = c.command('LSUB "" "*"')
        assert tagged_status(lines) == b"OK Lsub completed."
        assert b'* LSUB () "/" Sent\r\n' in lines


def test_rev2_mailbox_names_normalised_with_oldname(server: ImapServer) -> None:
    """RFC 9051 §5.1, §6.3.2-§6.3.6: a denormalised UTF-8 name is stored as NFC and the
    server says so with an untagged LIST carrying OLDNAME; control characters are refused."""
    nfc = unicodedata.normalize("NFC", NFD_CAFE)
    nfd_wire = NFD_CAFE.encode()
    nfc_wire = nfc.encode()
    with _rev2_client(server, BOB) as c:
        lines = c.command(b'CREATE "' + nfd_wire + b'"')
        assert (
            lines[0] == b'* LIST () "/" "' + nfc_wire + b'" ("OLDNAME" ("' + nfd_wire + b'"))\r\n'
        )
        assert tagged_status(lines).startswith(b"OK [MAILBOXID")
        lines = c.command(b'LIST "" "Caf*"')
        assert lines[:-1] == [b'* LIST (\\HasNoChildren) "/" "' + nfc_wire + b'"\r\n']
        # a name already in NFC: no OLDNAME
        assert c.command(b'CREATE "' + nfc_wire + b'/x"')[0].startswith(b"t")
        lines = c.command(b'SELECT "' + nfd_wire + b'"')
        assert b'* LIST () "/" "' + nfc_wire + b'" ("OLDNAME" ("' + nfd_wire + b'"))\r\n' in lines
        assert tagged_status(lines).startswith(b"OK [READ-WRITE]")
        lines = c.command(b'STATUS "' + nfd_wire + b'" (MESSAGES)')
        assert lines[0] == b'* STATUS "' + nfc_wire + b'" (MESSAGES 0)\r\n'
        # STATUS of the selected mailbox: allowed, but flagged as a client bug (RFC 5530)
        assert tagged_status(lines) == b"OK [CLIENTBUG] Status on selected mailbox completed."
        c.command("UNSELECT")
        lines = c.command(b'RENAME "' + nfc_wire + b'/x" "R' + nfd_wire + b'"')
        assert (
            lines[0] == b'* LIST () "/" "R' + nfc_wire + b'" ("OLDNAME" ("R' + nfd_wire + b'"))\r\n'
        )
        assert tagged_status(lines) == b"OK Rename completed."
        lines = c.command(b'DELETE "R' + nfd_wire + b'"')
        assert lines[0] == (
            b'* LIST (\\NonExistent) "/" "R'
            + nfc_wire
            + b'" ("OLDNAME" ("R'
            + nfd_wire
            + b'"))\r\n'
        )
        assert tagged_status(lines) == b"OK Delete completed."
        # C1 controls, U+2028 and U+2029 are not allowed in mailbox names (RFC 9051 §5.1)
        for bad in ("a\u0085b", "a\u2028b", "a\u2029b", "a\u009fb"):
            lines = c.command(b"CREATE {}", bad.encode(), sync=True)
            assert tagged_status(lines) == b"NO [CANNOT] Mailbox name contains control characters."
        lines = c.command(b'RENAME "' + nfc_wire + b'" {}', "x\u2028".encode(), sync=True)
        assert tagged_status(lines).startswith(b"NO [CANNOT]")
        assert tagged_status(c.command("CREATE " + "/".join(["l"] * 40))).startswith(b"NO [LIMIT]")
        lines = c.command('LIST "" "*"')
        assert not any(b"a\xc2\x85b" in x or b"\xe2\x80\xa8" in x for x in lines)
    with RawClient(server.port) as rev1:  # an IMAP4rev1 client gets no OLDNAME, same storage
        rev1.login(BOB)
        lines = rev1.command("CREATE Cafe&AwE-2")  # "Cafe" + U+0301 + "2" in modified UTF-7
        assert lines == [lines[-1]] and tagged_status(lines).startswith(b"OK")
        assert rev1.command('LIST "" Caf&AOk-2')[0] == b'* LIST (\\HasNoChildren) "/" Caf&AOk-2\r\n'


def test_delete_parent_with_children_is_haschildren(server: ImapServer) -> None:
    """RFC 9051 §6.3.5, §7.1: deleting a \\NonExistent name that has inferiors is refused
    with HASCHILDREN (an existing mailbox with children can be deleted)."""
    with _rev2_client(server, BOB) as c:
        assert tagged_status(c.command("CREATE Parent/Child")).startswith(b"OK")
        assert tagged_status(c.command("DELETE Parent")) == (
            b"NO [HASCHILDREN] Mailbox has children, delete them first."
        )
        assert tagged_status(c.command("DELETE NoSuchParent")).startswith(b"NO [NONEXISTENT]")
        assert tagged_status(c.command("DELETE Parent/Child")) == b"OK Delete completed."
        assert tagged_status(c.command("DELETE Parent")).startswith(b"NO [NONEXISTENT]")


def test_rev2_dollar_keywords_are_kept(server: ImapServer) -> None:
    """RFC 9051 §2.3.2: $Forwarded, $MDNSent, $Junk, $NotJunk and $Phishing are allowed in
    SEARCH and kept by APPEND, COPY and STORE."""
    body = b"From: a@example.com\r\nSubject: k\r\n\r\nbody\r\n"
    with _rev2_client(server, BOB) as c:
        assert tagged_status(c.command("CREATE Kw1")).startswith(b"OK")
        assert tagged_status(c.command("CREATE Kw2")).startswith(b"OK")
        lines = c.command("APPEND Kw1 ($Forwarded $MDNSent) {}", body)
        assert tagged_status(lines).startswith(b"OK [APPENDUID")
        c.command("SELECT Kw1")
        lines = c.command("STORE 1 +FLAGS ($Junk $Phishing $NotJunk)")
        assert lines[0] == b"* 1 FETCH (FLAGS ($Forwarded $Junk $MDNSent $NotJunk $Phishing))\r\n"
        assert c.command("SEARCH KEYWORD $Phishing KEYWORD $MDNSent")[0].endswith(b" ALL 1\r\n")
        assert tagged_status(c.command("COPY 1 Kw2")).startswith(b"OK [COPYUID")
        c.command("SELECT Kw2")
        lines = c.command("FETCH 1 (FLAGS)")
        assert lines[0] == b"* 1 FETCH (FLAGS ($Forwarded $Junk $MDNSent $NotJunk $Phishing))\r\n"
        lines = c.command("SEARCH UNKEYWORD $Junk")
        tag = lines[-1].split(b" ", 1)[0]
        assert lines[0] == b'* ESEARCH (TAG "' + tag + b'")\r\n'
