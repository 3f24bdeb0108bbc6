"""IMAP end to end: the real server (``columba serve``, two workers) driven by imaplib,
imapclient and a byte-exact raw client on loopback.

FETCH answers are compared with what :mod:`columba.storage.mime` computes from the bytes
the test appended, so ENVELOPE/BODYSTRUCTURE/BODY[section] are checked byte for byte.
"""

from __future__ import annotations

import imaplib
import re
import socket
import time

import pytest
from imapclient import IMAPClient

from columba.storage.mime import parse_message
from tests.e2e.imap_server import (
    USERS,
    ImapServer,
    RawClient,
    client_tls_context,
    imap_server,
    read_corpus,
    tagged_status,
)

__all__ = ["imap_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"

PRE_LOGIN = (
    b"IMAP4rev1 IMAP4rev2 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN "
    b"AUTH=LOGIN"
)

SIMPLE = (
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: Simple test\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <simple@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthis is the body.\r\n"
)

MULTIPART = (
    b"From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.com>\r\n"
    b"To: Undisclosed: ;\r\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZQ==?= multipart\r\n"
    b"Date: Tue, 02 Jan 2024 23:30:00 -0500\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XyZ"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XyZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 needle here\r\n"
    b"--XyZ\r\n"
    b'Content-Type: application/octet-stream; name="a.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="a.bin"\r\n'
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--XyZ\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.com\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XyZ--\r\n"
    b"epilogue\r\n"
)


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data if data else b'""'


def _fetch_lines(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if re.match(rb"\* \d+ FETCH ", line)]


def _select_fresh(client: RawClient, name: str) -> None:
    client.command(f'DELETE "{name}"')
    assert tagged_status(client.command(f'CREATE "{name}"')).startswith(b"OK")
    assert tagged_status(client.command(f'SELECT "{name}"')).startswith(b"OK")


# ---------------------------------------------------------------------- greeting, login, TLS


def test_greeting_capabilities_and_login(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        assert c.greeting == b"* OK [CAPABILITY " + PRE_LOGIN + b"] Columba ready.\r\n"
        lines = c.command("CAPABILITY")
        assert lines[0] == b"* CAPABILITY " + PRE_LOGIN + b"\r\n"
        lines = c.login(ALICE)
        status = tagged_status(lines)
        assert status.startswith(
            b"OK [CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE"
        )
        caps = status.split(b"[CAPABILITY ", 1)[1].split(b"]")[0].split()
        for cap in (b"UIDPLUS", b"MOVE", b"IDLE", b"NAMESPACE", b"ESEARCH", b"SPECIAL-USE"):
            assert cap in caps
        # Dovecot's order: UNSELECT before UIDPLUS before ESEARCH before MOVE
        assert caps.index(b"UNSELECT") < caps.index(b"UIDPLUS") < caps.index(b"ESEARCH")
        assert caps.index(b"ESEARCH") < caps.index(b"MOVE") < caps.index(b"SPECIAL-USE")
        assert b"STARTTLS" not in caps
        assert status.endswith(b"] Logged in")
        assert tagged_status(c.command("LOGIN x y")).startswith(b"BAD")
        assert tagged_status(c.command("LOGOUT")) == b"OK Logout completed."


def test_login_failures_then_success(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        assert tagged_status(c.command(f"LOGIN {ALICE} wrong")) == (
            b"NO [AUTHENTICATIONFAILED] Authentication failed."
        )
        assert tagged_status(c.command("LOGIN nobody@example.com x")) == (
            b"NO [AUTHENTICATIONFAILED] Authentication failed."
        )
        assert tagged_status(c.command("SELECT INBOX")).startswith(b"BAD")
        assert tagged_status(c.login(ALICE)).startswith(b"OK")
    assert "alice-secret" not in imap_server.log()
    assert re.search(
        r"imap_login user=alice@example.com method=LOGIN rip=127.0.0.1", imap_server.log()
    )


def test_starttls_with_imaplib(imap_server: ImapServer) -> None:
    conn = imaplib.IMAP4("127.0.0.1", imap_server.port, timeout=15)
    try:
        assert "STARTTLS" in conn.capabilities
        assert conn.starttls(ssl_context=client_tls_context())[0] == "OK"
        typ, caps = conn.capability()
        assert typ == "OK"
        assert b"STARTTLS" not in caps[0].split()
        assert b"AUTH=PLAIN" in caps[0].split()
        assert conn.login(ALICE, USERS[ALICE])[0] == "OK"
        assert conn.select("INBOX")[0] == "OK"
    finally:
        conn.logout()
    assert "secured=TLS" in imap_server.log()


def test_implicit_tls(imap_server: ImapServer) -> None:
    conn = imaplib.IMAP4_SSL(
        "127.0.0.1", imap_server.ssl_port, ssl_context=client_tls_context(), timeout=15
    )
    try:
        assert "STARTTLS" not in conn.capabilities
        assert "AUTH=PLAIN" in conn.capabilities
        assert conn.login(BOB, USERS[BOB])[0] == "OK"
        assert conn.noop()[0] == "OK"
    finally:
        conn.logout()


def test_authenticate_plain_login_and_sasl_ir(imap_server: ImapServer) -> None:
    conn = imaplib.IMAP4("127.0.0.1", imap_server.port, timeout=15)
    try:
        typ, _ = conn.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{USERS[ALICE]}".encode())
        assert typ == "OK"
        assert conn.state == "AUTH"
    finally:
        conn.logout()
    import base64

    with RawClient(imap_server.port) as c:
        ir = base64.b64encode(f"\0{BOB}\0{USERS[BOB]}".encode()).decode()
        assert tagged_status(c.command(f"AUTHENTICATE PLAIN {ir}")).startswith(b"OK [CAPABILITY")
    with RawClient(imap_server.port) as c:
        bad = base64.b64encode(f"\0{BOB}\0nope".encode()).decode()
        assert tagged_status(c.command(f"AUTHENTICATE PLAIN {bad}")) == (
            b"NO [AUTHENTICATIONFAILED] Authentication failed."
        )
        # AUTH=LOGIN: Username:, Password: challenges
        tag = c.next_tag()
        c.send(f"{tag} AUTHENTICATE LOGIN\r\n".encode())
        assert c.read_line() == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
        c.send(base64.b64encode(CAROL.encode()) + b"\r\n")
        assert c.read_line() == b"+ " + base64.b64encode(b"Password:") + b"\r\n"
        c.send(base64.b64encode(USERS[CAROL].encode()) + b"\r\n")
        assert tagged_status(c.read_until(tag)).startswith(b"OK")
    with RawClient(imap_server.port) as c:
        tag = c.next_tag()
        c.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
        assert c.read_line() == b"+ \r\n"
        c.send(b"*\r\n")
        assert tagged_status(c.read_until(tag)).startswith(b"BAD")
        assert tagged_status(c.command("NOOP")) == b"OK NOOP completed."


# ---------------------------------------------------------------------- mailboxes


def test_mailbox_management_with_imapclient(imap_server: ImapServer) -> None:
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False, timeout=15) as client:
        client.login(CAROL, USERS[CAROL])
        names = [name for _, _, name in client.list_folders()]
        assert names[0] == "INBOX"
        assert {"Drafts", "Junk", "Sent", "Trash"} <= set(names)
        client.create_folder("Projects")
        client.create_folder("Projects/Zürich")
        flags = {name: f for f, _, name in client.list_folders()}
        assert b"\\HasChildren" in flags["Projects"]
        assert b"\\HasNoChildren" in flags["Projects/Zürich"]
        assert [n for _, _, n in client.list_folders(pattern="Projects/%")] == ["Projects/Zürich"]
        assert [n for _, _, n in client.list_folders(pattern="%")].count("Projects/Zürich") == 0
        client.rename_folder("Projects", "Work")
        names = [name for _, _, name in client.list_folders()]
        assert "Work/Zürich" in names and "Projects" not in names
        client.subscribe_folder("Work/Zürich")
        assert "Work/Zürich" in [n for _, _, n in client.list_sub_folders()]
        status = client.folder_status("Work/Zürich", ["MESSAGES", "UIDNEXT", "UNSEEN", "SIZE"])
        assert status[b"MESSAGES"] == 0 and status[b"UIDNEXT"] == 1 and status[b"SIZE"] == 0
        client.delete_folder("Work/Zürich")
        client.delete_folder("Work")
        names = [name for _, _, name in client.list_folders()]
        assert "Work" not in names and "Work/Zürich" not in names
        with pytest.raises(IMAPClient.Error):
            client.delete_folder("INBOX")
        with pytest.raises(IMAPClient.Error):
            client.select_folder("Does/Not/Exist")
    with RawClient(imap_server.port) as c:
        c.login(CAROL)
        lines = c.command('LIST "" "Sent"')
        assert lines[0] == b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n'
        lines = c.command('LIST "" ""')
        assert lines[0] == b'* LIST (\\Noselect) "/" ""\r\n'
        lines = c.command('CREATE "Arch" (USE (\\Archive))')
        assert re.fullmatch(
            rb"OK \[MAILBOXID \([0-9a-f]+\)\] Create completed\.", tagged_status(lines)
        )
        lines = c.command('LIST (SPECIAL-USE) "" "*"')
        assert b'* LIST (\\HasNoChildren \\Archive) "/" Arch\r\n' in lines
        assert all(b"INBOX" not in line for line in lines)
        lines = c.command('LIST "" "inbox" RETURN (STATUS (MESSAGES UIDVALIDITY))')
        assert lines[0] == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
        assert lines[1].startswith(b"* STATUS INBOX (MESSAGES 0 UIDVALIDITY ")
        assert tagged_status(c.command('CREATE "Arch"')) == (
            b"NO [ALREADYEXISTS] Mailbox already exists."
        )
        lines = c.command("NAMESPACE")
        assert lines[0] == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
        lines = c.command('ID ("name" "test")')
        assert lines[0] == b'* ID ("name" "Columba")\r\n'


# ---------------------------------------------------------------------- APPEND and FETCH


def test_append_corpus_multiappend_and_fetch_exact(imap_server: ImapServer) -> None:
    corpus = read_corpus()
    assert len(corpus) == 200
    with RawClient(imap_server.port) as c:
        c.login(ALICE)
        _select_fresh(c, "Corpus")
        uids: list[int] = []
        untagged: list[bytes] = []
        for start in range(0, len(corpus), 50):
            batch = corpus[start : start + 50]
            text = "APPEND Corpus" + " (\\Seen) {}" * len(batch)
            lines = c.command(text, *batch)
            untagged.extend(lines[:-1])
            status = tagged_status(lines)
            m = re.match(rb"OK \[APPENDUID (\d+) (\d+):(\d+)\] Append completed\.", status)
            assert m, status
            uids.extend(range(int(m.group(2)), int(m.group(3)) + 1))
        assert len(uids) == 200
        assert b"* 200 EXISTS\r\n" in untagged
        started = time.monotonic()
        lines = c.command("FETCH 1:* (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])")
        elapsed = time.monotonic() - started
        fetches = _fetch_lines(lines)
        assert len(fetches) == 200
        for seq, (raw, line) in enumerate(zip(corpus, fetches, strict=True), start=1):
            parsed = parse_message(raw)
            expected = (
                b"* %d FETCH (UID %d RFC822.SIZE %d ENVELOPE (" % (seq, uids[seq - 1], parsed.size)
                + _enc(parsed.envelope)
                + b") BODYSTRUCTURE ("
                + _enc(parsed.bodystructure)
                + b") BODY[] "
                + _literal(raw.replace(b"\0", b"\x80"))
                + b")\r\n"
            )
            assert line == expected, f"message {seq}"
        assert elapsed < 10
        # headers and BODY come from the index cache
        lines = c.command("UID FETCH 1:* (BODY RFC822.HEADER)")
        fetches = _fetch_lines(lines)
        assert len(fetches) == 200
        for raw, line in zip(corpus, fetches, strict=True):
            parsed = parse_message(raw)
            assert b" BODY (" + _enc(parsed.body) + b") " in line
            assert line.endswith(b"RFC822.HEADER " + _literal(parsed.header_bytes) + b")\r\n")


def test_fetch_every_item(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        c.login(ALICE)
        _select_fresh(c, "Items")
        status = tagged_status(
            c.command(
                'APPEND Items (\\Flagged $Label1) "05-Feb-2024 12:34:56 +0100" {} {}',
                SIMPLE,
                MULTIPART,
            )
        )
        assert status.startswith(b"OK [APPENDUID ")
        c.command("NOOP")
        simple = parse_message(SIMPLE)
        multi = parse_message(MULTIPART)
        lines = c.command("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE UID)")
        assert lines[0] == (
            b"* 1 FETCH (FLAGS (\\Flagged \\Recent $Label1) "
            b'INTERNALDATE "05-Feb-2024 12:34:56 +0100" RFC822.SIZE %d UID 1)\r\n' % len(SIMPLE)
        ) or lines[0] == (
            b"* 1 FETCH (FLAGS (\\Flagged \\Recent $Label1) "
            b'INTERNALDATE "05-Feb-2024 11:34:56 +0000" RFC822.SIZE %d UID 1)\r\n' % len(SIMPLE)
        )
        cases = [
            ("BODY.PEEK[HEADER]", "BODY[HEADER]", "HEADER"),
            ("BODY.PEEK[TEXT]", "BODY[TEXT]", "TEXT"),
            ("BODY.PEEK[1]", "BODY[1]", "1"),
            ("BODY.PEEK[1.MIME]", "BODY[1.MIME]", "1.MIME"),
            ("BODY.PEEK[2]", "BODY[2]", "2"),
            ("BODY.PEEK[3.HEADER]", "BODY[3.HEADER]", "3.HEADER"),
            ("BODY.PEEK[3.TEXT]", "BODY[3.TEXT]", "3.TEXT"),
            ("BODY.PEEK[3.1]", "BODY[3.1]", "3.1"),
            (
                "BODY.PEEK[HEADER.FIELDS (Subject Date)]",
                "BODY[HEADER.FIELDS (Subject Date)]",
                "HEADER.FIELDS (Subject Date)",
            ),
            (
                "BODY.PEEK[HEADER.FIELDS.NOT (Subject)]",
                "BODY[HEADER.FIELDS.NOT (Subject)]",
                "HEADER.FIELDS.NOT (Subject)",
            ),
        ]
        for item, answer, spec in cases:
            lines = c.command(f"FETCH 2 ({item})")
            data = multi.section_bytes(MULTIPART, spec) or b""
            assert lines[0] == (
                b"* 2 FETCH (" + answer.encode() + b" " + _literal(data) + b")\r\n"
            ), item
        lines = c.command("FETCH 2 (BODY.PEEK[TEXT]<10.20>)")
        text = multi.section_bytes(MULTIPART, "TEXT") or b""
        assert lines[0] == b"* 2 FETCH (BODY[TEXT]<10> " + _literal(text[10:30]) + b")\r\n"
        lines = c.command("FETCH 2 (BODY.PEEK[9])")
        assert lines[0] == b'* 2 FETCH (BODY[9] "")\r\n'
        lines = c.command("FETCH 1 (ENVELOPE BODY RFC822.HEADER RFC822.TEXT)")
        header_end = SIMPLE.index(b"\r\n\r\n") + 4
        assert lines[0] == (
            b"* 1 FETCH (ENVELOPE ("
            + _enc(simple.envelope)
            + b") BODY ("
            + _enc(simple.body)
            + b") RFC822.HEADER "
            + _literal(SIMPLE[:header_end])
            + b" RFC822.TEXT "
            + _literal(SIMPLE[header_end:])
            + b" FLAGS (\\Seen \\Flagged \\Recent $Label1))\r\n"
        ).replace(b"(\\Seen \\Flagged", b"(\\Flagged \\Seen")
        assert simple.envelope.startswith('"Mon, 01 Jan 2024 10:00:00 +0000" "Simple test" ')
        lines = c.command("UID FETCH 2 (RFC822 EMAILID SAVEDATE MODSEQ)")
        # MODSEQ enables CONDSTORE (RFC 7162 §3.1): HIGHESTMODSEQ first, as Dovecot does
        assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")
        line = lines[1]
        assert line.startswith(b"* 2 FETCH (UID 2 RFC822 " + _literal(MULTIPART) + b" EMAILID (")
        assert b" SAVEDATE " in line and b" MODSEQ (" in line
        assert line.endswith(b" FLAGS (\\Seen \\Recent))\r\n")  # \Seen was just set
        lines = c.command("FETCH 2 FLAGS")
        assert lines[0] == b"* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n"
        lines = c.command("FETCH 3 FLAGS")
        assert tagged_status(lines) == b"BAD Invalid messageset"
        lines = c.command("FETCH 1 (BODY[")
        assert tagged_status(lines).startswith(b"BAD")


def test_seen_not_set_by_peek_or_examine(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        c.login(ALICE)
        _select_fresh(c, "SeenBox")
        c.command("APPEND SeenBox {}", SIMPLE)
        c.command("APPEND SeenBox {}", SIMPLE)
        c.command("EXAMINE SeenBox")
        lines = c.command("FETCH 1 (BODY[])")
        assert b"FLAGS" not in lines[0]
        c.command("SELECT SeenBox")
        lines = c.command("FETCH 1:2 FLAGS")
        assert all(b"\\Seen" not in line for line in lines[:-1])
        c.command("FETCH 1 BODY.PEEK[]")
        lines = c.command("FETCH 1 FLAGS")
        assert b"\\Seen" not in lines[0]
        lines = c.command("FETCH 1 BODY[TEXT]")
        assert lines[0].endswith(b" FLAGS (\\Seen))\r\n")
        lines = c.command("SEARCH UNSEEN")
        assert lines[0] == b"* SEARCH 2\r\n"
        lines = c.command("STORE 1:2 +FLAGS (\\Deleted)")
        assert lines[0] == b"* 1 FETCH (FLAGS (\\Deleted \\Seen))\r\n"
        assert lines[1] == b"* 2 FETCH (FLAGS (\\Deleted))\r\n"
        lines = c.command("UID STORE 2 -FLAGS.SILENT (\\Deleted)")
        assert lines == [lines[-1]] and tagged_status(lines) == b"OK Store completed."
        lines = c.command("STORE 1 FLAGS (Custom)")
        assert lines[0] == b"* 1 FETCH (FLAGS (Custom))\r\n"
        c.command("EXAMINE SeenBox")
        assert tagged_status(c.command("STORE 1 +FLAGS (\\Seen)")).startswith(b"NO")


# ---------------------------------------------------------------------- SEARCH


def _msg(subject: str, sender: str, date: str, body: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: team@example.com\r\nCc: boss@example.com\r\n"
        f"Subject: {subject}\r\nDate: {date}\r\n{extra}\r\n{body}\r\n"
    ).encode()


def test_search_keys(imap_server: ImapServer) -> None:
    msgs = [
        _msg("Quarterly report", "ann@example.com", "Mon, 01 Jan 2024 10:00:00 +0000", "numbers"),
        _msg("Lunch?", "bill@example.org", "Wed, 15 Feb 2023 12:00:00 +0000", "pizza or sushi"),
        _msg(
            "Re: Quarterly report",
            "carl@example.com",
            "Thu, 01 Feb 2024 09:00:00 +0000",
            "looks good " * 300,
            "X-Priority: 1\r\n",
        ),
        _msg(
            "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=",
            "dora@example.net",
            "Fri, 02 Feb 2024 09:00:00 +0000",
            "Straße",
        ),
    ]
    with RawClient(imap_server.port) as c:
        c.login(BOB)
        _select_fresh(c, "Search")
        dates = ["01-Jan-2024", "15-Feb-2023", "01-Feb-2024", "02-Feb-2024"]
        for raw, day in zip(msgs, dates, strict=True):
            c.command(f'APPEND Search "{day} 10:00:00 +0000" {{}}', raw)
        c.command("NOOP")
        c.command("STORE 2 +FLAGS (\\Flagged $Food)")
        c.command("STORE 3 +FLAGS (\\Answered \\Seen)")

        def search(criteria: str) -> list[int]:
            lines = c.command(f"SEARCH {criteria}")
            assert tagged_status(lines) == b"OK Search completed.", (criteria, lines)
            return [int(x) for x in lines[0].split()[2:]]

        assert search("ALL") == [1, 2, 3, 4]
        assert search("SUBJECT quarterly") == [1, 3]
        assert search("FROM example.com") == [1, 3]
        assert search("NOT FROM example.com") == [2, 4]
        assert search("TO team") == [1, 2, 3, 4]
        assert search("CC boss") == [1, 2, 3, 4]
        assert search("BCC boss") == []
        assert search("HEADER X-Priority 1") == [3]
        assert search('HEADER X-Priority ""') == [3]
        assert search("BODY pizza") == [2]
        assert search("TEXT lunch") == [2]
        assert search("TEXT PIZZA") == [2]
        assert search("FLAGGED") == [2]
        assert search("UNFLAGGED") == [1, 3, 4]
        assert search("KEYWORD $food") == [2]
        assert search("UNKEYWORD $Food") == [1, 3, 4]
        assert search("ANSWERED SEEN") == [3]
        assert search("UNSEEN") == [1, 2, 4]
        assert search("OR FLAGGED ANSWERED") == [2, 3]
        assert search("LARGER 1000") == [3]
        assert search("SMALLER 1000") == [1, 2, 4]
        assert search("BEFORE 1-Jan-2024") == [2]
        assert search("ON 1-Feb-2024") == [3]
        assert search("SINCE 1-Feb-2024") == [3, 4]
        assert search("SENTBEFORE 1-Jan-2024") == [2]
        assert search("SENTON 2-Feb-2024") == [4]
        assert search("SENTSINCE 1-Feb-2024") == [3, 4]
        assert search("2:3") == [2, 3]
        assert search("*") == [4]
        assert search("UID 1,4") == [1, 4]
        assert search("(OR 1 4) NOT DELETED") == [1, 4]
        assert search("NEW") == [1, 2, 4]
        assert search("OLD") == []
        assert search("RECENT") == [1, 2, 3, 4]
        assert search("CHARSET UTF-8 BODY STRASSE") == [4]  # Unicode case folding: ß ~ ss
        lines = c.command("SEARCH CHARSET UTF-8 BODY {}", "straße".encode())
        assert lines[0] == b"* SEARCH 4\r\n"
        assert search("YOUNGER 100000") == []
        assert search("OLDER 100000") == [1, 2, 3, 4]
        assert search("SAVEDSINCE 1-Jan-2000") == [1, 2, 3, 4]
        lines = c.command("SEARCH CHARSET UTF-8 SUBJECT {}", "grüße".encode(), sync=True)
        assert lines[0] == b"* SEARCH 4\r\n"
        lines = c.command("SEARCH CHARSET ISO-8859-15 ALL")
        assert tagged_status(lines).startswith(b"NO [BADCHARSET (UTF-8 US-ASCII)]")
        lines = c.command("UID SEARCH SUBJECT quarterly")
        assert lines[0] == b"* SEARCH 1 3\r\n"
        lines = c.command("SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT quarterly")
        assert (
            lines[0]
            == b'* ESEARCH (TAG "' + lines[-1].split()[0] + b'") MIN 1 MAX 3 ALL 1,3 COUNT 2\r\n'
        )
        lines = c.command("UID SEARCH RETURN () FLAGGED")
        assert lines[0].endswith(b" UID ALL 2\r\n")
        lines = c.command("SEARCH RETURN (SAVE) SUBJECT quarterly")
        assert len(lines) == 1
        lines = c.command("FETCH $ (UID)")
        assert [line[:16] for line in lines[:-1]] == [b"* 1 FETCH (UID 1", b"* 3 FETCH (UID 3"]
        assert c.command("SEARCH $ ANSWERED")[0] == b"* SEARCH 3\r\n"
        assert tagged_status(c.command("SEARCH FOO")).startswith(b"BAD")


# ---------------------------------------------------------------------- COPY / MOVE / EXPUNGE


def test_copy_move_expunge(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        c.login(BOB)
        _select_fresh(c, "Src")
        c.command("DELETE Dst")
        for i in range(5):
            c.command("APPEND Src {}", SIMPLE.replace(b"Simple test", b"Msg %d" % i))
        c.command("NOOP")
        lines = c.command("COPY 2:3 Dst")
        assert tagged_status(lines) == b"NO [TRYCREATE] Mailbox doesn't exist: Dst"
        c.command("CREATE Dst")
        lines = c.command("COPY 2:3 Dst")
        assert re.fullmatch(rb"OK \[COPYUID \d+ 2:3 1:2\] Copy completed\.", tagged_status(lines))
        lines = c.command("UID MOVE 4:5 Dst")
        assert re.fullmatch(rb"\* OK \[COPYUID \d+ 4:5 3:4\] Moved UIDs\.\r\n", lines[0])
        assert lines[1:3] == [b"* 4 EXPUNGE\r\n", b"* 4 EXPUNGE\r\n"]
        assert tagged_status(lines) == b"OK Move completed."
        c.command("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        lines = c.command("UID EXPUNGE 2")
        assert lines[:-1] == [b"* 2 EXPUNGE\r\n"]
        lines = c.command("EXPUNGE")
        assert lines[:-1] == [b"* 1 EXPUNGE\r\n"]
        lines = c.command("STATUS Dst (MESSAGES)")
        assert lines[0] == b"* STATUS Dst (MESSAGES 4)\r\n"
        lines = c.command("STATUS Src (MESSAGES)")
        assert lines[0] == b"* STATUS Src (MESSAGES 1)\r\n"
        assert tagged_status(c.command("CLOSE")) == b"OK Close completed."
        assert tagged_status(c.command("FETCH 1 FLAGS")).startswith(b"BAD")


# ---------------------------------------------------------------------- several sessions


def test_idle_sees_append_from_other_connection(imap_server: ImapServer) -> None:
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False, timeout=15) as watcher:
        watcher.login(CAROL, USERS[CAROL])
        if not watcher.folder_exists("Watched"):
            watcher.create_folder("Watched")
        watcher.select_folder("Watched")
        watcher.idle()
        other = imap_server.imaplib(CAROL)
        try:
            started = time.monotonic()
            assert other.append("Watched", None, None, SIMPLE)[0] == "OK"
            responses = watcher.idle_check(timeout=3)
            elapsed = time.monotonic() - started
        finally:
            other.logout()
        watcher.idle_done()
        assert any(r[1] == b"EXISTS" for r in responses), responses
        assert elapsed < 1.0


def test_sessions_see_each_others_flags_and_expunges(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as a, RawClient(imap_server.port) as b:
        a.login(ALICE)
        b.login(ALICE)
        _select_fresh(a, "Shared")
        for _ in range(3):
            a.command("APPEND Shared {}", SIMPLE)
        a.command("NOOP")
        b.command("SELECT Shared")
        b.command("STORE 2 +FLAGS (\\Flagged)")
        lines = a.command("NOOP")
        assert b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n" in lines
        b.command("STORE 1 +FLAGS (\\Deleted)")
        b.command("EXPUNGE")
        # no EXPUNGE while answering FETCH / STORE / SEARCH
        lines = a.command("FETCH 1:* (UID)")
        assert lines[:-1] == [b"* %d FETCH (UID %d)\r\n" % (n, n) for n in (1, 2, 3)]
        lines = a.command("FETCH 1:* (UID)")  # now the session knows: 1 is gone
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in lines)
        assert lines[:-1] == [b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n"]
        assert tagged_status(lines) == b"NO [EXPUNGEISSUED] Some messages were expunged."
        lines = a.command("SEARCH ALL")
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in lines)
        assert lines[0] == b"* SEARCH 2 3\r\n"
        lines = a.command("STORE 3 +FLAGS (\\Seen)")
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in lines)
        assert lines[0] == b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n" or lines[0].startswith(
            b"* 3 FETCH (FLAGS (\\Seen"
        )
        lines = a.command("NOOP")
        assert lines[:-1] == [b"* 1 EXPUNGE\r\n"]
        lines = a.command("FETCH 1:* (UID)")
        assert lines[:-1] == [b"* 1 FETCH (UID 2)\r\n", b"* 2 FETCH (UID 3)\r\n"]


def test_users_cannot_see_each_other(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as a, RawClient(imap_server.port) as b:
        a.login(ALICE)
        b.login(BOB)
        a.command("CREATE AlicePrivate")
        a.command("APPEND AlicePrivate {}", SIMPLE)
        lines = b.command('LIST "" "*"')
        assert not any(b"AlicePrivate" in line for line in lines)
        assert tagged_status(b.command("SELECT AlicePrivate")).startswith(b"NO [NONEXISTENT]")
        assert tagged_status(b.command("STATUS AlicePrivate (MESSAGES)")).startswith(b"NO")
        lines = b.command("STATUS INBOX (MESSAGES)")
        assert tagged_status(lines) == b"OK Status completed."


# ---------------------------------------------------------------------- bad input


def test_bad_commands_keep_connection_usable(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        c.login(ALICE)
        assert tagged_status(c.command("FOO")).startswith(b"BAD")
        assert tagged_status(c.command("FETCH 1 FLAGS")) == b"BAD No mailbox selected."
        assert tagged_status(c.command('SELECT "unterminated')).startswith(b"BAD")
        assert tagged_status(c.command("NOOP")) == b"OK NOOP completed."
        c.send(b"\r\n")
        assert c.read_line().startswith(b"* BAD")
        assert tagged_status(c.command("NOOP")) == b"OK NOOP completed."
        for _ in range(25):
            c.send(b"x BLAH\r\n")
        lines = []
        with pytest.raises(ConnectionError):
            while True:
                lines.append(c.read_line())
        assert lines[-1] == b"* BYE Too many invalid IMAP commands.\r\n"
        assert sum(line.startswith(b"x BAD") for line in lines) == 20


def test_pipelining_and_sync_literals(imap_server: ImapServer) -> None:
    with RawClient(imap_server.port) as c:
        c.login(BOB)
        c.command("DELETE Pipe")
        c.send(
            b"p1 CREATE Pipe\r\np2 SELECT Pipe\r\np3 APPEND Pipe {%d+}\r\n" % len(SIMPLE)
            + SIMPLE
            + b"\r\np4 NOOP\r\np5 FETCH 1 (UID)\r\n"
        )
        lines = c.read_until("p5")
        tags = [line.split()[0] for line in lines if not line.startswith(b"*")]
        assert tags == [b"p1", b"p2", b"p3", b"p4", b"p5"]
        assert b"* 1 FETCH (UID 1)\r\n" in lines
        # synchronising literal: the server asks with "+ OK" first
        c.send(b"s1 APPEND Pipe {%d}\r\n" % len(SIMPLE))
        assert c.read_line() == b"+ OK\r\n"
        c.send(SIMPLE + b"\r\n")
        assert tagged_status(c.read_until("s1")).startswith(b"OK [APPENDUID")
        # a missing mailbox is refused before the data is sent
        c.send(b"s2 APPEND Nope {%d}\r\n" % len(SIMPLE))
        assert c.read_line() == b"s2 NO [TRYCREATE] Mailbox doesn't exist: Nope\r\n"
        assert tagged_status(c.command("NOOP")).startswith(b"OK")


def test_unexpected_eof_and_socket_close(imap_server: ImapServer) -> None:
    sock = socket.create_connection(("127.0.0.1", imap_server.port), timeout=5)
    sock.recv(1000)
    sock.sendall(b"a LOGIN " + ALICE.encode() + b" {5}\r\n")
    assert sock.recv(100) == b"+ OK\r\n"
    sock.close()
    with RawClient(imap_server.port) as c:
        assert tagged_status(c.login(ALICE)).startswith(b"OK")


def test_big_message_streams_both_ways(imap_server: ImapServer) -> None:
    body = b"".join(
        b"line %07d of a big message body, padded to be long enough\r\n" % i for i in range(60000)
    )
    big = b"From: big@example.com\r\nSubject: big\r\n\r\n" + body
    assert len(big) > 3_000_000
    with RawClient(imap_server.port) as c:
        c.login(CAROL)
        _select_fresh(c, "Big")
        lines = c.command("APPEND Big {}", big, sync=True)
        assert tagged_status(lines).startswith(b"OK [APPENDUID ")
        lines = c.command("FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<3000000.100>)")
        assert lines[0] == (
            b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n" % (len(big), len(big))
            + big
            + b" BODY[TEXT]<3000000> {100}\r\n"
            + body[3000000:3000100]
            + b")\r\n"
        )


def test_imapclient_workflow(imap_server: ImapServer) -> None:
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False, timeout=15) as client:
        client.login(BOB, USERS[BOB])
        if client.folder_exists("Flow"):
            client.delete_folder("Flow")
        client.create_folder("Flow")
        for raw in (SIMPLE, MULTIPART):
            client.append("Flow", raw, flags=(b"$Tag",))
        client.select_folder("Flow")
        data = client.fetch([1, 2], ["ENVELOPE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[1]"])
        assert sorted(data) == [1, 2]
        assert data[1][b"ENVELOPE"].subject == b"Simple test"
        assert data[1][b"ENVELOPE"].from_[0].mailbox == b"alice"
        assert data[1][b"RFC822.SIZE"] == len(SIMPLE)
        assert b"$Tag" in data[2][b"FLAGS"]
        assert data[2][b"BODY[1]"] == b"Caf=C3=A9 needle here"
        assert client.search(["SUBJECT", "multipart"]) == [2]
        assert client.search(["BODY", "needle"]) == [2]
        client.add_flags([1], [b"\\Flagged"])
        assert client.search(["FLAGGED"]) == [1]
        client.create_folder("Flow/Archive")
        client.move([2], "Flow/Archive")
        assert client.search("ALL") == [1]
        assert client.folder_status("Flow/Archive", ["MESSAGES"])[b"MESSAGES"] == 1
        client.unselect_folder()
