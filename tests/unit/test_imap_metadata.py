"""METADATA (RFC 5464): entry-name checks, the index's metadata table (storage semantics,
upgrade of index files made before it existed, RENAME/DELETE) and GETMETADATA/SETMETADATA
in real in-process sessions, with RFC 5464's examples."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from columba.imap.cmd_metadata import check_entry
from columba.imap.session import CommandError
from columba.storage.api import MailboxNotFound, MetadataTooMany
from columba.storage.index import SCHEMA, SCHEMA_VERSION, MailIndex
from tests.unit.test_imap_session import PASSWORD, USER, USER2, Client, serving

pytestmark = pytest.mark.timeout(60)

ENABLED = "imap_metadata = yes\n"


def _status(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n")


async def _login(connect: object, extra_user: str = USER) -> Client:
    c: Client = await connect()  # type: ignore[operator]
    await c.line()
    assert _status(await c.cmd(f"LOGIN {extra_user} {PASSWORD}")).startswith(b"OK")
    return c


# ---------------------------------------------------------------------- entry names


def test_entry_names_checked_and_lowercased() -> None:
    assert check_entry("/Private/Comment", "GETMETADATA") == "/private/comment"
    assert check_entry("/shared/vendor/Example.COM/x", "X") == "/shared/vendor/example.com/x"
    assert check_entry("/private", "X") == "/private"
    assert check_entry("/shared/ÄB", "X") == "/shared/Äb"  # only ASCII is folded
    bad = {
        "private/comment": "Entry name must begin with '/'",
        "/foo": "Entry name must begin with /private or /shared",
        "/privatex/a": "Entry name must begin with /private or /shared",
        "/private/": "Entry name can't end with '/'",
        "/private/a*b": "Entry name can't contain '*'",
        "/private/a%b": "Entry name can't contain '%'",
        "/private//a": "Entry name can't contain consecutive '/'",
        "/private/a\x01": "Entry name can't contain control characters",
        "/private/a\udcff": "Entry name isn't valid UTF-8",
    }
    for entry, why in bad.items():
        with pytest.raises(CommandError) as info:
            check_entry(entry, "SETMETADATA")
        assert info.value.reply.status == "BAD"
        assert info.value.reply.text == f"Error in IMAP command SETMETADATA: {why}"


# ---------------------------------------------------------------------- index


def test_index_metadata_storage(tmp_path: Path) -> None:
    index = MailIndex(tmp_path / "idx.db")
    index.open()
    index.create_mailbox("INBOX", frozenset())
    index.create_mailbox("a", frozenset())
    index.create_mailbox("a/b", frozenset())
    index.set_metadata("", [("/private/x", b"server")], 0)
    index.set_metadata(
        "a",
        [("/private/comment", b"c1"), ("/shared/comment", b""), ("/private/v/x", b"\x00\xff")],
        0,
    )
    index.set_metadata("a/b", [("/private/comment", b"child")], 0)
    assert index.get_metadata("", ["/private/x", "/private/y"], False) == {"/private/x": b"server"}
    assert index.get_metadata("a", ["/private/comment", "/shared/comment"], False) == {
        "/private/comment": b"c1",
        "/shared/comment": b"",
    }
    assert index.get_metadata("a", ["/private"], True) == {
        "/private/comment": b"c1",
        "/private/v/x": b"\x00\xff",
    }
    # the same name under another mailbox, and /private/v is not a prefix of /private/vx
    index.set_metadata("a", [("/private/vx", b"1")], 0)
    assert index.get_metadata("a", ["/private/v"], True) == {"/private/v/x": b"\x00\xff"}
    # last change of an entry wins; NIL removes
    index.set_metadata("a", [("/private/comment", b"one"), ("/private/comment", b"two")], 0)
    assert index.get_metadata("a", ["/private/comment"], False) == {"/private/comment": b"two"}
    index.set_metadata("a", [("/private/comment", None)], 0)
    assert index.get_metadata("a", ["/private/comment"], False) == {}
    with pytest.raises(MailboxNotFound):
        index.get_metadata("nope", ["/private/comment"], False)
    with pytest.raises(MailboxNotFound):
        index.set_metadata("nope", [("/private/comment", b"x")], 0)

    # RENAME carries the entries (children too); DELETE drops them
    index.rename_mailbox("a", "z")
    assert index.get_metadata("z/b", ["/private/comment"], False) == {"/private/comment": b"child"}
    assert index.get_metadata("z", ["/shared/comment"], False) == {"/shared/comment": b""}
    index.delete_mailbox("z/b")
    index.create_mailbox("z/b", frozenset())
    assert index.get_metadata("z/b", ["/private/comment"], False) == {}
    # DELETE of a parent with children leaves a \Noselect placeholder without entries
    index.delete_mailbox("z")
    with pytest.raises(MailboxNotFound):
        index.get_metadata("z", ["/shared/comment"], False)
    index.create_mailbox("z", frozenset())
    assert index.get_metadata("z", ["/shared"], True) == {}
    # server entries are untouched by all that
    assert index.get_metadata("", ["/private"], True) == {"/private/x": b"server"}
    index.close()


def test_index_metadata_limit_is_atomic(tmp_path: Path) -> None:
    index = MailIndex(tmp_path / "idx.db")
    index.open()
    index.create_mailbox("INBOX", frozenset())
    index.set_metadata("INBOX", [("/private/a", b"1"), ("/private/b", b"2")], 3)
    with pytest.raises(MetadataTooMany):
        index.set_metadata("INBOX", [("/private/a", b"changed"), ("/private/c", b"3"),
                                     ("/private/d", b"4")], 3)  # fmt: skip
    assert index.get_metadata("INBOX", ["/private"], True) == {
        "/private/a": b"1",
        "/private/b": b"2",
    }
    # replacing and removing is fine at the limit; the server has its own count
    index.set_metadata("INBOX", [("/private/c", b"3")], 3)
    index.set_metadata(
        "INBOX", [("/private/a", b"x"), ("/private/b", None), ("/private/e", b"")], 3
    )
    index.set_metadata("", [("/private/a", b"1"), ("/private/b", b"2"), ("/shared/c", b"3")], 3)
    with pytest.raises(MetadataTooMany):
        index.set_metadata("", [("/shared/d", b"4")], 3)
    index.close()


def test_index_made_before_metadata_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.commit()
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "metadata" not in tables
    conn.close()
    index = MailIndex(path)
    index.open()
    index.create_mailbox("INBOX", frozenset())
    index.set_metadata("INBOX", [("/shared/comment", b"kept")], 0)
    index.close()
    index = MailIndex(path)
    index.open()
    assert index.get_metadata("INBOX", ["/shared/comment"], False) == {"/shared/comment": b"kept"}
    index.close()


# ---------------------------------------------------------------------- IMAP


def test_disabled_by_default(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path) as (connect, _sessions):
            c = await _login(connect)
            caps = (await c.cmd("CAPABILITY"))[0]
            assert b" METADATA" not in caps
            assert _status(await c.cmd('GETMETADATA "" /shared/comment')) == (
                b"BAD Unknown command GETMETADATA."
            )
            assert _status(await c.cmd('SETMETADATA INBOX (/private/comment "x")')) == (
                b"BAD Unknown command SETMETADATA."
            )

    asyncio.run(main())


def test_rfc5464_examples(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, ENABLED) as (connect, _sessions):
            c = await connect()
            await c.line()
            assert _status(await c.cmd('GETMETADATA "" /shared/comment')) == (
                b"BAD Please authenticate first."
            )
            assert _status(await c.cmd(f"LOGIN {USER} {PASSWORD}")).startswith(b"OK")
            caps = (await c.cmd("CAPABILITY"))[0].split()
            assert b"METADATA" in caps and b"METADATA-SERVER" not in caps

            # 4.3: SETMETADATA with a synchronising literal
            await c.send(b"a SETMETADATA INBOX (/private/comment {33}\r\n")
            assert (await c.line()).startswith(b"+ ")
            await c.send(b"My new comment across\r\ntwo lines.)\r\n")
            assert await c.until("a") == [b"a OK Setmetadata completed.\r\n"]
            lines = await c.cmd("GETMETADATA INBOX /private/comment")
            assert lines[0] == (
                b"* METADATA INBOX (/private/comment {33}\r\nMy new comment across\r\ntwo lines.)\r\n"
            )

            # 4.2: one entry, several entries; absent entries are NIL
            assert _status(await c.cmd('SETMETADATA INBOX (/shared/comment "Shared comment")')) == (
                b"OK Setmetadata completed."
            )
            await c.cmd('SETMETADATA INBOX (/private/comment "My own comment")')
            lines = await c.cmd("GETMETADATA INBOX (/shared/comment /private/comment)")
            assert lines[:-1] == [
                b'* METADATA INBOX (/shared/comment "Shared comment" '
                b'/private/comment "My own comment")\r\n'
            ]
            assert _status(lines) == b"OK Getmetadata completed."
            lines = await c.cmd("GETMETADATA inbox (/PRIVATE/Comment /private/nothing)")
            assert lines[0] == (
                b'* METADATA INBOX (/private/comment "My own comment" /private/nothing NIL)\r\n'
            )

            # 4.2.1 MAXSIZE: the long value is left out, LONGENTRIES says how long it is
            big = b"x" * 2199
            await c.send(b"b SETMETADATA INBOX (/shared/comment {2199+}\r\n" + big + b")\r\n")
            assert _status(await c.until("b")) == b"OK Setmetadata completed."
            lines = await c.cmd(
                "GETMETADATA (MAXSIZE 1024) INBOX (/shared/comment /private/comment)"
            )
            assert lines[0] == b'* METADATA INBOX (/private/comment "My own comment")\r\n'
            assert _status(lines) == b"OK [METADATA LONGENTRIES 2199] Getmetadata completed."
            lines = await c.cmd("GETMETADATA (MAXSIZE 3000) INBOX /shared/comment")
            assert lines[0] == b"* METADATA INBOX (/shared/comment {2199}\r\n" + big + b")\r\n"
            assert _status(lines) == b"OK Getmetadata completed."
            lines = await c.cmd("GETMETADATA (MAXSIZE 5) INBOX /shared/comment")
            assert len(lines) == 1
            assert _status(lines) == b"OK [METADATA LONGENTRIES 2199] Getmetadata completed."

            # 4.2.2 DEPTH
            await c.cmd(
                'SETMETADATA INBOX (/private/filters/values/small "SMALLER than 10240 octets" '
                '/private/filters/values/big "BIGGER than 10240 octets" '
                '/private/filters/values/big/deeper "deeper")'
            )
            lines = await c.cmd("GETMETADATA (DEPTH 1) INBOX (/private/filters/values)")
            assert lines[0] == (
                b'* METADATA INBOX (/private/filters/values/big "BIGGER than 10240 octets" '
                b'/private/filters/values/small "SMALLER than 10240 octets")\r\n'
            )
            lines = await c.cmd("GETMETADATA (DEPTH infinity) INBOX /private/filters")
            assert lines[0] == (
                b'* METADATA INBOX (/private/filters/values/big "BIGGER than 10240 octets" '
                b'/private/filters/values/big/deeper "deeper" '
                b'/private/filters/values/small "SMALLER than 10240 octets")\r\n'
            )
            lines = await c.cmd("GETMETADATA (DEPTH 0) INBOX /private/filters")
            assert lines[0] == b"* METADATA INBOX (/private/filters NIL)\r\n"
            # depth > 0 lists only entries with values: nothing at all here
            lines = await c.cmd("GETMETADATA (DEPTH infinity) INBOX /shared/vendor")
            assert len(lines) == 1 and _status(lines) == b"OK Getmetadata completed."
            lines = await c.cmd("GETMETADATA (DEPTH 1 MAXSIZE 100) INBOX (/private /shared)")
            assert lines[0] == b'* METADATA INBOX (/private/comment "My own comment")\r\n'
            assert _status(lines) == b"OK [METADATA LONGENTRIES 2199] Getmetadata completed."

            # 4.3: NIL removes; an empty string is a value
            await c.cmd('SETMETADATA INBOX (/private/comment NIL /shared/comment "")')
            lines = await c.cmd("GETMETADATA INBOX (/private/comment /shared/comment)")
            assert lines[0] == b'* METADATA INBOX (/private/comment NIL /shared/comment "")\r\n'

            # values are bytes: NUL goes back as literal8, 8-bit as a literal
            await c.send(b"d SETMETADATA INBOX (/private/bin ~{4+}\r\na\x00\xffb)\r\n")
            assert _status(await c.until("d")) == b"OK Setmetadata completed."
            lines = await c.cmd("GETMETADATA INBOX /private/bin")
            assert lines[0] == b"* METADATA INBOX (/private/bin ~{4}\r\na\x00\xffb)\r\n"

            # mailboxes that don't exist
            assert _status(await c.cmd("GETMETADATA Nope /private/comment")) == (
                b"NO [NONEXISTENT] Mailbox doesn't exist: Nope"
            )
            assert _status(await c.cmd('SETMETADATA Nope (/private/comment "x")')) == (
                b"NO [NONEXISTENT] Mailbox doesn't exist: Nope"
            )
            # bad entry names are BAD
            assert _status(await c.cmd("GETMETADATA INBOX /foo")) == (
                b"BAD Error in IMAP command GETMETADATA: Entry name must begin with "
                b"/private or /shared"
            )
            assert _status(await c.cmd('SETMETADATA INBOX (/private "x")')) == (
                b"BAD Error in IMAP command SETMETADATA: Entry name needs a name after /private"
            )
            # a failed SETMETADATA changes nothing
            assert _status(
                await c.cmd('SETMETADATA INBOX (/private/comment "new" /private/a*b "x")')
            ).startswith(b"BAD")
            lines = await c.cmd("GETMETADATA INBOX /private/comment")
            assert lines[0] == b"* METADATA INBOX (/private/comment NIL)\r\n"

    asyncio.run(main())


def test_server_entries_and_configured_values(tmp_path: Path) -> None:
    extra = (
        ENABLED
        + "mail_server_comment = Columba test server\n"
        + "mail_server_admin = mailto:admin@example.com\n"
        + "namespace inbox {\n  mailbox Sent {\n    comment = Sent mail here\n  }\n}\n"
    )

    async def main() -> None:
        async with serving(tmp_path, extra) as (connect, _sessions):
            a = await _login(connect)
            lines = await a.cmd('GETMETADATA "" (/shared/comment /shared/admin /private/motd)')
            assert lines[0] == (
                b'* METADATA "" (/shared/comment "Columba test server" '
                b'/shared/admin "mailto:admin@example.com" /private/motd NIL)\r\n'
            )
            assert _status(await a.cmd('SETMETADATA "" (/shared/admin "mailto:x@y")')) == (
                b"NO [CANNOT] The /shared/admin entry can't be changed."
            )
            assert _status(
                await a.cmd('SETMETADATA "" (/private/motd "hi" /shared/vendor/x/y "1")')
            ) == (b"OK Setmetadata completed.")
            lines = await a.cmd('GETMETADATA (DEPTH infinity) "" (/private /shared)')
            assert lines[0] == (
                b'* METADATA "" (/private/motd "hi" /shared/admin "mailto:admin@example.com" '
                b'/shared/comment "Columba test server" /shared/vendor/x/y "1")\r\n'
            )
            # server entries are not INBOX's
            lines = await a.cmd("GETMETADATA INBOX /private/motd")
            assert lines[0] == b"* METADATA INBOX (/private/motd NIL)\r\n"

            # mailbox_comment is the default of both comments; a stored value wins
            lines = await a.cmd("GETMETADATA Sent (/private/comment /shared/comment)")
            assert lines[0] == (
                b'* METADATA Sent (/private/comment "Sent mail here" '
                b'/shared/comment "Sent mail here")\r\n'
            )
            await a.cmd('SETMETADATA Sent (/private/comment "mine")')
            lines = await a.cmd("GETMETADATA (DEPTH 1) Sent /private")
            assert lines[0] == b'* METADATA Sent (/private/comment "mine")\r\n'
            await a.cmd("SETMETADATA Sent (/private/comment NIL)")
            lines = await a.cmd("GETMETADATA Sent /private/comment")
            assert lines[0] == b'* METADATA Sent (/private/comment "Sent mail here")\r\n'

            # another session of the same user sees the entries; another user doesn't
            b = await _login(connect)
            lines = await b.cmd('GETMETADATA "" /private/motd')
            assert lines[0] == b'* METADATA "" (/private/motd "hi")\r\n'
            other = await _login(connect, USER2)
            lines = await other.cmd('GETMETADATA "" /private/motd')
            assert lines[0] == b'* METADATA "" (/private/motd NIL)\r\n'

    asyncio.run(main())


def test_limits(tmp_path: Path) -> None:
    extra = (
        ENABLED
        + "imap_metadata_max_value_size = 10\n"
        + "imap_metadata_max_entries = 3\n"
        + "imap_metadata_private = no\n"
    )

    async def main() -> None:
        async with serving(tmp_path, extra) as (connect, _sessions):
            c = await _login(connect)
            lines = await c.cmd('SETMETADATA INBOX (/shared/comment "My new comment")')
            assert _status(lines) == (
                b"NO [METADATA MAXSIZE 10] Metadata entry value is too large."
            )
            lines = await c.cmd('SETMETADATA INBOX (/private/comment "My comment")')
            assert _status(lines) == (
                b"NO [METADATA NOPRIVATE] Private metadata entries aren't supported."
            )
            ok = await c.cmd('SETMETADATA INBOX (/shared/a "1" /shared/b "2" /shared/c "3")')
            assert _status(ok) == b"OK Setmetadata completed."
            lines = await c.cmd('SETMETADATA INBOX (/shared/a "x" /shared/d "4")')
            assert _status(lines) == b"NO [METADATA TOOMANY] Too many metadata entries."
            lines = await c.cmd("GETMETADATA INBOX (/shared/a /shared/d)")
            assert lines[0] == b'* METADATA INBOX (/shared/a "1" /shared/d NIL)\r\n'
            # replacing at the limit works, and so does another mailbox
            assert _status(await c.cmd('SETMETADATA INBOX (/shared/a "x")')).startswith(b"OK")
            await c.cmd("CREATE Other")
            lines = await c.cmd('SETMETADATA Other (/shared/a "1" /shared/b "2" /shared/c "3")')
            assert _status(lines).startswith(b"OK")

    asyncio.run(main())


def test_rename_and_delete_keep_entries_with_the_mailbox(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, ENABLED) as (connect, _sessions):
            c = await _login(connect)
            await c.cmd("CREATE Work")
            await c.cmd("CREATE Work/Sub")
            assert _status(await c.cmd('SETMETADATA Work (/private/comment "work")')) == (
                b"OK Setmetadata completed."
            )
            await c.cmd('SETMETADATA Work/Sub (/shared/comment "sub")')
            assert _status(await c.cmd("RENAME Work Job")) == b"OK Rename completed."
            lines = await c.cmd("GETMETADATA Job/Sub /shared/comment")
            assert lines[0] == b'* METADATA Job/Sub (/shared/comment "sub")\r\n'
            lines = await c.cmd("GETMETADATA Job /private/comment")
            assert lines[0] == b'* METADATA Job (/private/comment "work")\r\n'
            assert _status(await c.cmd("GETMETADATA Work /private/comment")).startswith(
                b"NO [NONEXISTENT]"
            )
            await c.cmd("DELETE Job/Sub")
            await c.cmd("CREATE Job/Sub")
            lines = await c.cmd("GETMETADATA Job/Sub /shared/comment")
            assert lines[0] == b"* METADATA Job/Sub (/shared/comment NIL)\r\n"

    asyncio.run(main())
