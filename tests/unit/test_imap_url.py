"""RFC 5092 IMAP URL parsing and formatting (imap_url), with RFC 4467's URLAUTH parts and the
RFC's own examples."""

from __future__ import annotations

import datetime as dt

import pytest

from columba.imap.imap_url import ImapUrl, UrlError, format_url, parse_url, urlauth_rump

RFC4467_URL = (
    "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:"
    "91354a473744909de610943775f92038"
)


def test_rfc4467_example() -> None:
    url = parse_url(RFC4467_URL)
    assert (url.user, url.host, url.mailbox, url.uid, url.section) == (
        "joe",
        "example.com",
        "INBOX",
        20,
        "1.2",
    )
    assert (url.access, url.mechanism, url.token) == (
        "submit+fred",
        "INTERNAL",
        "91354a473744909de610943775f92038",
    )
    assert url.is_urlauth and not url.is_urlauth_rump
    assert urlauth_rump(RFC4467_URL) == RFC4467_URL[: RFC4467_URL.index(":internal")]


def test_rfc5092_examples() -> None:
    url = parse_url(
        "imap://minbari.example.org/gray-council;UIDVALIDITY=385759045/;UID=20/;PARTIAL=0.1024"
    )
    assert url.mailbox == "gray-council" and url.uidvalidity == 385759045
    assert url.partial == (0, 1024) and url.user is None
    url = parse_url("imap://psicorp.example.org/~peter/%E6%97%A5%E6%9C%AC%E8%AA%9E/;UID=11")
    assert url.mailbox == "~peter/日本語"
    url = parse_url(
        "imap://michael@example.org:143/INBOX/;UID=2;EXPIRE=2006-05-01T23:59:59Z;URLAUTH=anonymous"
    )
    assert url.port == 143
    assert url.expire == dt.datetime(2006, 5, 1, 23, 59, 59, tzinfo=dt.UTC)
    assert url.is_urlauth_rump


def test_relative_forms_resolve() -> None:
    base = ImapUrl(user="u", host="h", mailbox="Sel", uidvalidity=7)
    rel = parse_url(";UID=3/;SECTION=TEXT")
    assert rel.relative and rel.mailbox is None
    got = rel.resolve(base)
    assert (got.user, got.host, got.mailbox, got.uidvalidity, got.uid) == ("u", "h", "Sel", 7, 3)
    path = parse_url("/Other;UIDVALIDITY=9/;UID=4").resolve(base)
    assert (path.mailbox, path.uidvalidity, path.user) == ("Other", 9, "u")


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "imap://h/INBOX",
        "/INBOX/;UID=0",
        "/INBOX/;SECTION=1",
        "/INBOX/;UID=1/;PARTIAL=1.0",
        "/INBOX/;UID=1;URLAUTH=anonymous:internal:0123",
        "/INBOX/;UID=1;URLAUTH=nobody",
        "/INBOX/;UID=1;EXPIRE=yesterday;URLAUTH=anonymous",
        "/IN BOX/;UID=1",
        "http://h/INBOX/;UID=1",
        "/%FF/;UID=1",
        # ;SECTION= and ;PARTIAL= open their own path segment (Dovecot: "Unrecognized
        # IMAP URL extension"); ;URLAUTH= can't stand alone.
        "imap://u%40h@h/INBOX/;uid=1;section=TEXT;urlauth=anonymous",
        "/INBOX/;UID=1;PARTIAL=0.10",
        "/INBOX/;UID=1/;URLAUTH=anonymous",
    ],
)
def test_invalid_urls(text: str) -> None:
    with pytest.raises(UrlError):
        parse_url(text)


@pytest.mark.parametrize(
    "text",
    [
        "imap://fred@example.com/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.2;"
        "EXPIRE=2006-05-01T23:59:59Z;URLAUTH=submit+fred:internal:91354a473744909de610943775f92038",
        "imap://a;AUTH=*@h:143/Foo%20Bar/Baz/;UID=3/;PARTIAL=0.1024",
        "/INBOX/;UID=1",
    ],
)
def test_format_round_trip(text: str) -> None:
    assert format_url(parse_url(text)) == text
