"""Unit tests of columba.delivery: addresses, trace headers, mailbox choice, dedupe, error mapping.

Deliveries go to a real obox storage (dictmap over SQLite, posix objects) in tmp_path; faults
come from the real ``randomfail`` fs wrapper and the storage's own size limit.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from columba.delivery import (
    DeliverySettings,
    Envelope,
    Recipient,
    build_message,
    choose_mailbox,
    deliver_message,
    lookup_name,
    map_delivery_error,
    split_detail,
    trace_headers,
)
from columba.dict.api import create_dict
from columba.fs.api import FsSpec
from columba.storage.api import (
    MailboxNotFound,
    MailStorage,
    MessageTooBig,
    OverQuota,
    StorageError,
    StorageTemporaryError,
    UserInfo,
)
from columba.storage.factory import AutoMailbox, StorageSettings, build_storage

SETTINGS = DeliverySettings(hostname="mx.example.org")
ENV = Envelope("sender@example.com", "client.example.com", "192.0.2.7", "SESSION1")
WHEN = datetime(2024, 3, 12, 10, 5, 9, tzinfo=timezone(timedelta(hours=1)))
MESSAGE = b"Subject: hi\r\nMessage-ID: <m1@example.com>\r\n\r\nbody line\r\n"


def user(tmp: Path, name: str) -> UserInfo:
    return UserInfo(name, str(tmp / "home" / name))


# ---------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("local", "delims", "expected"),
    [
        ("user+detail", "+", ("user", "detail")),
        ("user", "+", ("user", "")),
        ("user+a+b", "+", ("user", "a+b")),
        ("user-x+y", "+-", ("user", "x+y")),  # the first delimiter found splits
        ("user+x-y", "-+", ("user", "x-y")),
        ("user+detail", "", ("user+detail", "")),
        ("+detail", "+", ("+detail", "")),  # no empty user part
        ("user+", "+", ("user", "")),
    ],
)
def test_split_detail(local: str, delims: str, expected: tuple[str, str]) -> None:
    assert split_detail(local, delims) == expected


def test_lookup_name_strips_detail_and_keeps_domain() -> None:
    assert lookup_name("demo+Junk", "localhost", "+") == ("demo@localhost", "Junk")
    assert lookup_name("demo", "localhost", "+") == ("demo@localhost", "")
    assert lookup_name("Postmaster", "", "+") == ("Postmaster", "")


# ---------------------------------------------------------------------- headers


def test_trace_headers_like_dovecot(tmp_path: Path) -> None:
    rcpt = Recipient("alice+work@example.org", user(tmp_path, "alice@example.org"), "work")
    assert trace_headers(ENV, rcpt, SETTINGS, WHEN) == (
        b"Return-Path: <sender@example.com>\r\n"
        b"Delivered-To: alice+work@example.org\r\n"
        b"Received: from client.example.com ([192.0.2.7])\r\n"
        b"\tby mx.example.org with LMTP id SESSION1\r\n"
        b"\t(envelope-from <sender@example.com>)\r\n"
        b"\tfor <alice+work@example.org>; Tue, 12 Mar 2024 10:05:09 +0100\r\n"
    )


def test_trace_headers_null_sender_original_and_no_received(tmp_path: Path) -> None:
    rcpt = Recipient("a@x.org", user(tmp_path, "a@x.org"), orcpt="list@x.org")
    original = DeliverySettings("h", hdr_delivery_address="original", add_received_header=False)
    bounce = Envelope("", "c", "192.0.2.1", "S")
    assert trace_headers(bounce, rcpt, original, WHEN) == (
        b"Return-Path: <>\r\nDelivered-To: list@x.org\r\n"
    )
    none = DeliverySettings("h", hdr_delivery_address="none", add_received_header=False)
    assert trace_headers(bounce, rcpt, none, WHEN) == b"Return-Path: <>\r\n"
    # "original" without ORCPT falls back to the final address
    plain = Recipient("a@x.org", user(tmp_path, "a@x.org"))
    assert b"Delivered-To: a@x.org\r\n" in trace_headers(bounce, plain, original, WHEN)


def test_trace_headers_cannot_be_injected(tmp_path: Path) -> None:
    evil = Envelope("a@b\r\nX-Evil: 1", "helo\r\nX-Evil: 2", "192.0.2.1", "S")
    rcpt = Recipient("r@x\nX-Evil: 3", user(tmp_path, "r@x"))
    headers = trace_headers(evil, rcpt, SETTINGS, WHEN)
    assert b"\r\nX-Evil" not in headers and b"\nX-Evil" not in headers


def test_build_message_prepends_headers(tmp_path: Path) -> None:
    rcpt = Recipient("a@x.org", user(tmp_path, "a@x.org"))
    built = build_message(ENV, rcpt, MESSAGE, SETTINGS, WHEN)
    assert built.endswith(MESSAGE)
    assert built.startswith(b"Return-Path: <sender@example.com>\r\nDelivered-To: a@x.org\r\n")
    assert built.count(b"\r\n\r\n") == 1  # one header block, headers on top of the original


def test_trace_headers_use_local_time_when_not_given(tmp_path: Path) -> None:
    rcpt = Recipient("a@x.org", user(tmp_path, "a@x.org"))
    text = trace_headers(ENV, rcpt, SETTINGS).decode()
    year = str(datetime.now().year)
    assert "for <a@x.org>; " in text and year in text.rsplit(";", 1)[1]


# ---------------------------------------------------------------------- mailbox choice


def test_choose_mailbox(tmp_path: Path) -> None:
    detailed = Recipient("a+Junk@x", user(tmp_path, "a@x"), "Junk")
    plain = Recipient("a@x", user(tmp_path, "a@x"))
    on = DeliverySettings("h", save_to_detail_mailbox=True)
    assert choose_mailbox(detailed, SETTINGS) == "INBOX"
    assert choose_mailbox(detailed, on) == "Junk"
    assert choose_mailbox(plain, on) == "INBOX"


# ---------------------------------------------------------------------- error mapping


def test_map_delivery_error() -> None:
    def triple(exc: BaseException) -> tuple[int, str, str]:
        r = map_delivery_error(exc, "a@x")
        assert not r.ok
        return r.code, r.enhanced, r.text

    assert triple(OverQuota("full")) == (552, "5.2.2", "<a@x> Quota exceeded")
    assert triple(StorageTemporaryError("s3 down")) == (
        451,
        "4.3.0",
        "<a@x> Temporary internal error",
    )
    assert triple(MessageTooBig("big")) == (552, "5.3.4", "<a@x> Message too big")
    assert triple(MailboxNotFound("x")) == (451, "4.3.0", "<a@x> Temporary internal error")
    assert triple(RuntimeError("bug")) == (451, "4.3.0", "<a@x> Temporary internal error")


# ---------------------------------------------------------------------- real deliveries


def storage_settings(
    tmp: Path, *, randomfail: dict[str, str] | None = None, **kw: Any
) -> StorageSettings:
    def specs(u: UserInfo) -> list[FsSpec]:
        layers = [
            FsSpec(
                "dictmap",
                {"storage_objectid_prefix": f"{u.username}/mails/"},
                lambda: create_dict("sqlite", {"sqlite_path": str(tmp / "dict.db")}),
            ),
            FsSpec("posix", {"fs_posix_prefix": str(tmp / "objects")}),
        ]
        if randomfail is not None:
            layers.insert(0, FsSpec("randomfail", randomfail))
        return layers

    auto = [AutoMailbox("Junk", "subscribe", frozenset({"\\Junk"}))]
    return StorageSettings(fs_specs=specs, auto_mailboxes=auto, **kw)


async def messages(storage: MailStorage, info: UserInfo, mailbox: str = "INBOX") -> list[bytes]:
    mail_user = await storage.open_user(info)
    try:
        view = await mail_user.open_mailbox(mailbox, readonly=True)
        try:
            return [await view.read_message(uid) for uid in view.uids()]
        finally:
            await view.close()
    finally:
        await mail_user.close()


def test_deliver_dedupes_per_user_and_replies_per_recipient(tmp_path: Path) -> None:
    alice = user(tmp_path, "alice@x.org")
    bob = user(tmp_path, "bob@x.org")
    rcpts = [
        Recipient("alice@x.org", alice, session_id="S"),
        Recipient("bob@x.org", bob, session_id="S:2"),
        Recipient("alice+news@x.org", alice, "news", session_id="S:3"),
        Recipient("alice@x.org", alice, session_id="S:4"),
    ]

    async def run() -> None:
        storage = build_storage(storage_settings(tmp_path))
        try:
            replies = await deliver_message(storage, ENV, rcpts, MESSAGE, SETTINGS)
            assert [(r.code, r.enhanced, r.text) for r in replies] == [
                (250, "2.0.0", "<alice@x.org> S Saved"),
                (250, "2.0.0", "<bob@x.org> S:2 Saved"),
                (250, "2.0.0", "<alice+news@x.org> S:3 Saved"),
                (250, "2.0.0", "<alice@x.org> S:4 Saved"),
            ]
            # the same stored copy answers every address of the user
            assert replies[0].result == replies[2].result == replies[3].result
            assert replies[0].result is not None and replies[0].result.mailbox == "INBOX"
            got_alice = await messages(storage, alice)
            got_bob = await messages(storage, bob)
            assert len(got_alice) == 1 and len(got_bob) == 1
            assert got_alice[0].startswith(b"Return-Path: <sender@example.com>\r\n")
            assert b"Delivered-To: alice@x.org\r\n" in got_alice[0]
            assert b"Delivered-To: bob@x.org\r\n" in got_bob[0]
            assert got_alice[0].endswith(MESSAGE) and got_bob[0].endswith(MESSAGE)
        finally:
            await storage.close()

    asyncio.run(run())


def test_deliver_to_detail_mailbox_and_fallback(tmp_path: Path) -> None:
    alice = user(tmp_path, "alice@x.org")
    bob = user(tmp_path, "bob@x.org")
    on = DeliverySettings("h", save_to_detail_mailbox=True)
    rcpts = [
        Recipient("alice+Junk@x.org", alice, "Junk", session_id="S"),
        Recipient("bob+nosuchbox@x.org", bob, "nosuchbox", session_id="S:2"),
    ]

    async def run() -> None:
        storage = build_storage(storage_settings(tmp_path))
        try:
            replies = await deliver_message(storage, ENV, rcpts, MESSAGE, on)
            assert [r.code for r in replies] == [250, 250]
            assert replies[0].result is not None and replies[0].result.mailbox == "Junk"
            assert replies[1].result is not None and replies[1].result.mailbox == "INBOX"
            assert len(await messages(storage, alice, "Junk")) == 1
            assert await messages(storage, alice, "INBOX") == []
            assert len(await messages(storage, bob, "INBOX")) == 1
        finally:
            await storage.close()

    asyncio.run(run())


def test_temporary_storage_failure_is_451_never_250(tmp_path: Path) -> None:
    alice = user(tmp_path, "alice@x.org")
    rcpts = [Recipient("alice@x.org", alice, session_id="S")]
    failing = storage_settings(tmp_path, randomfail={"fs_randomfail_ops": "write=100"})

    async def run() -> None:
        storage = build_storage(failing)
        try:
            replies = await deliver_message(storage, ENV, rcpts, MESSAGE, SETTINGS)
        finally:
            await storage.close()
        assert [(r.code, r.enhanced, r.text) for r in replies] == [
            (451, "4.3.0", "<alice@x.org> Temporary internal error")
        ]
        assert replies[0].result is None
        healthy = build_storage(storage_settings(tmp_path))
        try:
            assert await messages(healthy, alice) == []  # nothing half-written is visible
        finally:
            await healthy.close()

    asyncio.run(run())


def test_one_user_failing_does_not_fail_the_others(tmp_path: Path) -> None:
    alice = user(tmp_path, "alice@x.org")
    bob = user(tmp_path, "bob@x.org")
    limit = len(build_message(ENV, Recipient("bob@x.org", bob), MESSAGE, SETTINGS)) + 5
    rcpts = [
        Recipient("alice+a-much-longer-detail-part-here@x.org", alice, "d", session_id="S"),
        Recipient("bob@x.org", bob, session_id="S:2"),
    ]

    async def run() -> None:
        storage = build_storage(storage_settings(tmp_path, mail_save_max_size=limit))
        try:
            replies = await deliver_message(storage, ENV, rcpts, MESSAGE, SETTINGS)
            assert [(r.code, r.enhanced) for r in replies] == [(552, "5.3.4"), (250, "2.0.0")]
            assert await messages(storage, alice) == []
            assert len(await messages(storage, bob)) == 1
        finally:
            await storage.close()

    asyncio.run(run())


def test_storage_error_classes_are_storage_errors() -> None:
    # the mapping relies on the storage API's hierarchy
    for cls in (OverQuota, StorageTemporaryError, MessageTooBig):
        assert issubclass(cls, StorageError)
