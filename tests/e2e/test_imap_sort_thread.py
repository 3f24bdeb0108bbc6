"""SORT, THREAD, ESORT, PARTIAL and CONTEXT against a real ``columba serve``, and the same
SORT/THREAD/ESORT/PARTIAL session against Debian's Dovecot 2.3 (when installed) with the
answers compared line by line (Dovecot's timing suffixes and UIDVALIDITY aside)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.imap_server import USERS, ImapServer, RawClient, imap_server  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

USER = "bob@example.com"


def _msg(subject: str | None, *, frm: str = "a@x", to: str = "b@x", cc: str | None = None,
         date: str | None = "Mon, 7 Feb 1994 21:52:25 -0800", mid: str | None = None,
         refs: str | None = None, irt: str | None = None, extra: str = "") -> bytes:  # fmt: skip
    head = f"From: {frm}\r\nTo: {to}\r\n"
    if cc:
        head += f"Cc: {cc}\r\n"
    if subject is not None:
        head += f"Subject: {subject}\r\n"
    if date:
        head += f"Date: {date}\r\n"
    if mid:
        head += f"Message-ID: {mid}\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    if irt:
        head += f"In-Reply-To: {irt}\r\n"
    return (head + extra + "\r\nbody\r\n").encode()


MESSAGES = [
    _msg(
        "Re: [foo] hello",
        frm='"Zed" <z@a.com>',
        mid="<1@x>",
        cc="undisclosed-recipients:;",
        date="Tue, 8 Feb 1994 21:52:25 -0800",
    ),
    _msg(
        "hello",
        frm="Adam <a@b.com>",
        mid="<2@x>",
        refs="<1@x>",
        to="Émile <e@x>",
        date="Mon, 7 Feb 1994 20:52:25 -0800",
    ),
    _msg(
        "FWD: Hello (fwd)",
        frm="b@c.com",
        mid="<3@x>",
        irt="<2@x>",
        date=None,
        to="=?utf-8?q?=C3=A9mile?= <f@x>",
    ),
    _msg(
        "other",
        frm="=?utf-8?q?=C3=89mile?= <e@b.com>",
        mid="<4@x>",
        date="garbage",
        to="_under <u@x>",
    ),
    _msg(
        "re: other",
        frm="c@d.com",
        mid="<5@x>",
        refs="<4@x>",
        to="a <A@x>",
        date="Mon, 7 Feb 1994 21:52:26 -0800",
    ),
    _msg(
        "[Fwd: other]",
        frm="c@d.com",
        mid="<6@x>",
        refs="<zz@x> <5@x>",
        to="ea <ea@x>",
        date="Mon, 7 Feb 1994 10:00:00 +0000",
    ),
    _msg(
        "été", frm="ex <e@d.com>", mid="<7@x>", to="f <f@x>", date="Mon, 7 Feb 1994 09:00:00 +0000"
    ),
    _msg(
        "ete",
        frm="ez <e@d.com>",
        mid="<8@x>",
        refs="<missing@x>",
        date="Mon, 7 Feb 1994 09:00:00 +0000",
    ),
    _msg(
        "Ete",
        frm="ea <e@d.com>",
        mid="<9@x>",
        refs="<missing@x>",
        date="Sun, 6 Feb 1994 09:00:00 +0000",
    ),
    _msg(None, frm="grp: a@b;", mid="<1@x>", refs="<9@x>", date="Sun, 6 Feb 1994 09:00:00 +0000"),
    _msg("loop", mid="<l1@x>", refs="<l2@x>"),
    _msg("loop", mid="<l2@x>", refs="<l1@x>"),
    _msg("[a] [b]", mid="<b1@x>"),
    _msg("Re: Fwd: [a] re: [b]", mid="<b2@x>", extra="Subject: second\r\n"),
]

KEYS = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO",
        "REVERSE SUBJECT", "REVERSE DATE", "SUBJECT REVERSE DATE", "FROM SUBJECT",
        "DATE REVERSE DATE"]  # fmt: skip

COMMANDS = [
    *[f"SORT ({k}) UTF-8 ALL" for k in KEYS],
    *[f"UID SORT ({k}) UTF-8 2:12" for k in KEYS],
    *[f"THREAD {a} UTF-8 ALL" for a in ("REFERENCES", "ORDEREDSUBJECT", "REFS")],
    *[f"UID THREAD {a} UTF-8 3:*" for a in ("REFERENCES", "ORDEREDSUBJECT", "REFS")],
    *[f"THREAD {a} UTF-8 NOT SUBJECT hello" for a in ("REFERENCES", "ORDEREDSUBJECT", "REFS")],
    "SORT RETURN () (SUBJECT) UTF-8 ALL",
    "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL",
    "UID SORT RETURN (MIN MAX COUNT ALL) (REVERSE DATE) UTF-8 ALL",
    "SORT RETURN (SAVE) (DATE) UTF-8 ALL",
    "SEARCH $",
    "SORT RETURN (SAVE MIN) (DATE) UTF-8 ALL",
    "SEARCH $",
    "SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing",
    "SEARCH RETURN (PARTIAL 2:4) ALL",
    "SEARCH RETURN (PARTIAL 20:40) ALL",
    "SORT RETURN (PARTIAL 4:2 COUNT) (SUBJECT) UTF-8 ALL",
    "SEARCH RETURN (CONTEXT) ALL",
    "SEARCH RETURN (CONTEXT COUNT) ALL",
    "SORT (DATE) UTF-8 NOTHING",
]

_TIMING = re.compile(rb" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)")


def _session(port: int, user: str, password: str) -> list[list[bytes]]:
    with RawClient(port) as client:
        client.command(f"LOGIN {user} {password}")
        client.command("SELECT INBOX")
        for data in MESSAGES:
            lines = client.command('APPEND INBOX "08-Feb-1994 05:52:25 +0000" {}', data)
            assert lines[-1].split(b" ")[1] == b"OK", lines
        client.command("NOOP")
        out = []
        for text in COMMANDS:
            lines = client.command(text)
            out.append([_TIMING.sub(b"", line.split(b" ", 1)[1]) for line in lines])
        return out


@pytest.fixture(scope="module")
def columba_answers(imap_server: ImapServer) -> list[list[bytes]]:  # noqa: F811
    return _session(imap_server.port, USER, USERS[USER])


def test_sort_thread_answers(columba_answers: list[list[bytes]]) -> None:
    answers = dict(zip(COMMANDS, columba_answers, strict=True))
    assert answers["SORT (DATE) UTF-8 ALL"][0] == b"SORT 9 10 7 8 6 2 3 4 11 12 13 14 5 1\r\n"
    assert answers["SORT (SUBJECT) UTF-8 ALL"][0] == b"SORT 10 8 9 7 1 2 3 11 12 4 5 6 13 14\r\n"
    assert answers["THREAD REFERENCES UTF-8 ALL"][0] == (
        b"THREAD ((9 10)(8))(7)(4 5 6)(12 11)(13 14)(1 2 3)\r\n"
    )
    assert answers["THREAD ORDEREDSUBJECT UTF-8 ALL"][0] == (
        b"THREAD (9 8)(10)(7)(6 (4)(5))(2 (3)(1))(11 12)(13 14)\r\n"
    )
    esort = answers["SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL"][0]
    assert esort.split(b") ", 1)[1] == b"MIN 9 MAX 1 ALL 9:10,7:8,6,2:4,11:14,5,1 COUNT 14\r\n"
    assert answers["SORT (DATE) UTF-8 NOTHING"][-1].startswith(b"BAD ")


@pytest.fixture(scope="module")
def dovecot_answers() -> Iterator[list[list[bytes]]]:
    from tests.transcripts.dovecot_oracle import dovecot_binary, dovecot_instance

    if dovecot_binary() is None:
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    with dovecot_instance({"sort": ("sortuser", "pw")}) as dovecot:
        yield _session(dovecot.port, "sortuser", "pw")


def test_same_answers_as_dovecot(
    columba_answers: list[list[bytes]], dovecot_answers: list[list[bytes]]
) -> None:
    for text, ours, theirs in zip(COMMANDS, columba_answers, dovecot_answers, strict=True):
        assert ours[:-1] == theirs[:-1], text
        assert ours[-1].split(b" ")[0] == theirs[-1].split(b" ")[0], text


def test_thread_errors_and_empty_results(imap_server: ImapServer) -> None:  # noqa: F811
    with RawClient(imap_server.port) as client:
        client.login("carol@example.com")
        client.command("SELECT INBOX")
        assert client.command("THREAD FOO UTF-8 ALL")[-1].split(b" ")[1] == b"BAD"
        # RFC 5256: thread-data = "THREAD" [SP 1*thread-list] (Dovecot adds a blank)
        assert client.command("THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD\r\n"
        assert client.command("SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT\r\n"
        assert client.command("SORT (FOO) UTF-8 ALL")[-1].split(b" ")[1] == b"BAD"


def test_context_updates(imap_server: ImapServer) -> None:  # noqa: F811
    user = "alice@example.com"
    with RawClient(imap_server.port) as watcher, RawClient(imap_server.port) as changer:
        watcher.login(user)
        changer.login(user)
        for i in range(5):
            changer.command(
                "APPEND INBOX {}", f"Subject: s{5 - i}\r\nDate: {10 + i} Feb 1994 1:00 +0000\r\n\r\nx\r\n".encode()
            )  # fmt: skip
        watcher.command("SELECT INBOX")
        changer.command("SELECT INBOX")
        first = watcher.command("SEARCH RETURN (UPDATE) UNSEEN")
        t1 = _tag(first)
        assert first[0] == f'* ESEARCH (TAG "{t1}")\r\n'.encode()
        second = watcher.command("UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN")
        t2 = _tag(second)
        assert second[0] == f'* ESEARCH (TAG "{t2}") UID ALL 5,4,3,2,1\r\n'.encode()
        watcher.send(f"{t1} SEARCH RETURN (UPDATE) ALL\r\n".encode())  # a tag in use
        assert watcher.read_until(t1)[-1].split(b" ")[1] == b"BAD"
        changer.command("STORE 2 +FLAGS (\\Seen)")
        changer.command(
            "APPEND INBOX {}", b"Subject: s0\r\nDate: 1 Feb 1994 1:00 +0000\r\n\r\nx\r\n"
        )
        lines = watcher.command("NOOP")
        assert f'* ESEARCH (TAG "{t1}") REMOVEFROM (0 2)\r\n'.encode() in lines
        assert f'* ESEARCH (TAG "{t2}") UID REMOVEFROM (4 2)\r\n'.encode() in lines
        added = f'* ESEARCH (TAG "{t1}") ADDTO (0 6)\r\n'.encode()
        assert lines.index(b"* 6 EXISTS\r\n") < lines.index(added)
        assert f'* ESEARCH (TAG "{t2}") UID ADDTO (1 6)\r\n'.encode() in lines
        changer.command("STORE 4 +FLAGS (\\Deleted)")
        changer.command("EXPUNGE")
        lines = watcher.command("NOOP")
        removal = lines.index(f'* ESEARCH (TAG "{t1}") REMOVEFROM (0 4)\r\n'.encode())
        assert removal < lines.index(b"* 4 EXPUNGE\r\n")
        assert watcher.command(f'CANCELUPDATE "{t1}" "{t2}"')[-1].split(b" ", 1)[1] == (
            b"OK Updates cancelled.\r\n"
        )
        assert watcher.command(f'CANCELUPDATE "{t1}"')[-1].split(b" ")[1] == b"NO"
        changer.command("STORE 1 +FLAGS (\\Seen)")
        assert not any(b"ESEARCH" in line for line in watcher.command("NOOP"))


def _tag(lines: list[bytes]) -> str:
    return lines[-1].split(b" ")[0].decode()
