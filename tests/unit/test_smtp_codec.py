"""SMTP/LMTP server codec: commands, message streaming, errors, replies."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import pytest

from columba.proto.smtp import (
    Address,
    Auth,
    AuthResponse,
    Bdat,
    ChunkEnd,
    Data,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    Lhlo,
    Mail,
    MessageChunk,
    MessageEnd,
    Noop,
    ProtocolError,
    Quit,
    Rcpt,
    Rset,
    SmtpServerParser,
    StartTls,
    Vrfy,
    XClient,
    ehlo_capabilities,
    ehlo_reply,
    is_valid_domain,
    reply,
    xtext_decode,
    xtext_encode,
)

# --------------------------------------------------------------------------- helpers


def drive(
    parser: SmtpServerParser,
    chunks: Iterable[bytes],
    *,
    accept_data: bool = True,
    accept_tls: bool = True,
    sasl_steps: int = 1,
) -> list[Event]:
    """Play a simple server: accept DATA, run SASL for ``sasl_steps`` lines, accept TLS."""
    out: list[Event] = []
    steps_left = 0
    for chunk in chunks:
        queue: deque[Event] = deque(parser.feed(chunk))
        while queue:
            ev = queue.popleft()
            out.append(ev)
            if isinstance(ev, Data):
                queue.extend(parser.start_data() if accept_data else parser.resume())
            elif isinstance(ev, Auth):
                steps_left = sasl_steps
                if ev.initial_response is None and steps_left:
                    steps_left -= 1
                    queue.extend(parser.expect_auth_line())
                else:
                    queue.extend(parser.resume())
            elif isinstance(ev, AuthResponse):
                if steps_left and not ev.cancelled:
                    steps_left -= 1
                    queue.extend(parser.expect_auth_line())
                else:
                    queue.extend(parser.resume())
            elif isinstance(ev, StartTls):
                if accept_tls:
                    parser.start_tls()
                else:
                    queue.extend(parser.resume())
    return out


def coalesce(events: list[Event]) -> list[Event]:
    """Merge adjacent MessageChunk events (their boundaries carry no meaning)."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, MessageChunk) and out and isinstance(out[-1], MessageChunk):
            out[-1] = MessageChunk(out[-1].data + ev.data)
        elif isinstance(ev, MessageChunk) and not ev.data:
            continue
        else:
            out.append(ev)
    return out


def run(
    data: bytes,
    *,
    accept_data: bool = True,
    accept_tls: bool = True,
    sasl_steps: int = 1,
    **parser_kw: Any,
) -> list[Event]:
    parser = SmtpServerParser(**parser_kw)
    return coalesce(
        drive(parser, [data], accept_data=accept_data, accept_tls=accept_tls, sasl_steps=sasl_steps)
    )


def run_bytewise(data: bytes, **parser_kw: Any) -> list[Event]:
    chunks = [data[i : i + 1] for i in range(len(data))]
    return coalesce(drive(SmtpServerParser(**parser_kw), chunks))


def one(line: bytes, **kw: Any) -> Event:
    events = run(line, **kw)
    assert len(events) == 1, events
    return events[0]


def err(ev: Event) -> tuple[int, str]:
    assert isinstance(ev, ProtocolError), ev
    return ev.code, ev.enhanced


def body_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, MessageChunk))


def data_session(body: bytes, **kw: Any) -> list[Event]:
    events = run(b"DATA\r\n" + body, **kw)
    assert events[0] == Data()
    return events[1:]


# --------------------------------------------------------------------------- verbs


def test_helo_ehlo() -> None:
    assert one(b"HELO client.example\r\n") == Helo("client.example")
    assert one(b"EHLO client.example\r\n") == Ehlo("client.example")
    assert one(b"ehlo [192.0.2.1]\r\n") == Ehlo("[192.0.2.1]")
    assert err(one(b"EHLO\r\n")) == (501, "5.5.4")
    assert err(one(b"HELO \r\n")) == (501, "5.5.4")


def test_lmtp_mode_accepts_only_lhlo() -> None:
    assert one(b"LHLO mx.example\r\n", lmtp=True) == Lhlo("mx.example")
    e = one(b"EHLO mx.example\r\n", lmtp=True)
    assert err(e) == (500, "5.5.2") and "LHLO" in e.text  # type: ignore[union-attr]
    assert err(one(b"HELO mx.example\r\n", lmtp=True)) == (500, "5.5.2")
    assert err(one(b"LHLO mx.example\r\n")) == (500, "5.5.2")
    assert err(one(b"LHLO\r\n", lmtp=True)) == (501, "5.5.4")


def test_mail_basic_and_null_sender() -> None:
    m = one(b"MAIL FROM:<alice@example.com>\r\n")
    assert m == Mail(Address("alice", "example.com"), {})
    assert isinstance(m, Mail) and not m.is_null_sender
    m = one(b"MAIL FROM:<>\r\n")
    assert isinstance(m, Mail) and m.reverse_path is None and m.is_null_sender
    # verbs and FROM: are case-insensitive
    assert one(b"mail from:<a@b.example>\r\n") == Mail(Address("a", "b.example"), {})


def test_mail_leniency() -> None:
    # space after the colon, bare address, tabs, trailing spaces
    assert one(b"MAIL FROM: <a@b.example>\r\n") == Mail(Address("a", "b.example"), {})
    assert one(b"MAIL FROM:a@b.example SIZE=5\r\n") == Mail(
        Address("a", "b.example"), {"SIZE": "5"}, size=5
    )
    assert one(b"MAIL FROM:<a@b.example>  \r\n") == Mail(Address("a", "b.example"), {})
    assert one(b"MAIL FROM:<a@b.example>\tSIZE=1\r\n") == Mail(
        Address("a", "b.example"), {"SIZE": "1"}, size=1
    )


def test_mail_params() -> None:
    m = one(
        b"MAIL FROM:<a@b.example> SIZE=1024 BODY=8bitmime RET=hdrs ENVID=QQ+2B1 "
        b"AUTH=<> X-FOO=bar X-FLAG\r\n"
    )
    assert isinstance(m, Mail)
    assert m.size == 1024
    assert m.body == "8BITMIME"
    assert m.ret == "HDRS"
    assert m.envid == "QQ+1"
    assert m.auth == "<>"
    assert m.params == {
        "SIZE": "1024",
        "BODY": "8bitmime",
        "RET": "hdrs",
        "ENVID": "QQ+2B1",
        "AUTH": "<>",
        "X-FOO": "bar",
        "X-FLAG": None,
    }
    for body in (b"7BIT", b"BINARYMIME"):
        ev = one(b"MAIL FROM:<a@b.example> BODY=" + body + b"\r\n")
        assert isinstance(ev, Mail) and ev.body == body.decode()


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<a@b.example> SIZE=abc",
        b"MAIL FROM:<a@b.example> SIZE=",
        b"MAIL FROM:<a@b.example> SIZE",
        b"MAIL FROM:<a@b.example> SIZE=123456789012345678901",
        b"MAIL FROM:<a@b.example> BODY=9BIT",
        b"MAIL FROM:<a@b.example> SMTPUTF8=yes",
        b"MAIL FROM:<a@b.example> RET=ALL",
        b"MAIL FROM:<a@b.example> ENVID=a+zz",
        b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2",
        b"MAIL FROM:<a@b.example> =x",
        b"MAIL FROM:<a@b.example> -X=1",
        b"MAIL FROM:<a@b.example> X=a=b",
        b"MAIL FROM:<a@b.example>SIZE=1",
        b"MAIL FROM <a@b.example>",
        b"MAIL TO:<a@b.example>",
        b"MAIL",
        b"MAIL FROM:",
    ],
)
def test_mail_bad_params(line: bytes) -> None:
    assert err(one(line + b"\r\n")) == (501, "5.5.4")


def test_mail_size_over_limit() -> None:
    assert err(one(b"MAIL FROM:<a@b.example> SIZE=1001\r\n", max_message_size=1000)) == (
        552,
        "5.3.4",
    )
    ok = one(b"MAIL FROM:<a@b.example> SIZE=1000\r\n", max_message_size=1000)
    assert isinstance(ok, Mail) and ok.size == 1000


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"<user@example.com>", Address("user", "example.com")),
        (b'<"john doe"@example.com>', Address("john doe", "example.com")),
        (b'<"a\\"b\\\\c"@example.com>', Address('a"b\\c', "example.com")),
        (b'<"<>@"@example.com>', Address("<>@", "example.com")),
        (b"<@relay1.example,@relay2.example:user@example.com>", Address("user", "example.com")),
        (b"<user@[192.0.2.1]>", Address("user", "[192.0.2.1]")),
        (b"<user@[IPv6:2001:db8::1]>", Address("user", "[IPv6:2001:db8::1]")),
        (b"<user@[x-tag:abc]>", Address("user", "[x-tag:abc]")),
        (b"<first.last+tag@sub.example.com>", Address("first.last+tag", "sub.example.com")),
        (b"<john..doe@example.jp>", Address("john..doe", "example.jp")),
        (b"<a@under_score.example>", Address("a", "under_score.example")),
    ],
)
def test_address_forms(path: bytes, expected: Address) -> None:
    m = one(b"MAIL FROM:" + path + b"\r\n")
    assert isinstance(m, Mail) and m.reverse_path == expected
    r = one(b"RCPT TO:" + path + b"\r\n")
    assert isinstance(r, Rcpt) and r.forward_path == expected


@pytest.mark.parametrize(
    "path",
    [
        b"<user>",
        b"<@example.com>",
        b"<user@>",
        b"<user@-bad.example>",
        b"<user@exa mple.com>",
        b"<user@example..com>",
        b"<user@example.com.>",
        b"<us er@example.com>",
        b'<"unterminated@example.com>',
        b"<user@[300.1.1.1]>",
        b"<user@[IPv6:zz::1]>",
        b"<user@example.com",
        b"<a@b@c.example>",
        b"<@bad route:user@example.com>",
        b"<@relay:user@example.com",
        b"<(comment)user@example.com>",
        b"<user@example.com>junk",
    ],
)
def test_bad_addresses(path: bytes) -> None:
    m = one(b"MAIL FROM:" + path + b"\r\n")
    assert isinstance(m, ProtocolError) and m.verb == "MAIL"
    assert (m.code, m.enhanced) in ((501, "5.1.7"), (501, "5.5.4"))
    r = one(b"RCPT TO:" + path + b"\r\n")
    assert isinstance(r, ProtocolError) and r.verb == "RCPT"
    assert (r.code, r.enhanced) in ((501, "5.1.3"), (501, "5.5.4"))


def test_bad_address_codes() -> None:
    assert err(one(b"MAIL FROM:<user@>\r\n")) == (501, "5.1.7")
    assert err(one(b"RCPT TO:<user@>\r\n")) == (501, "5.1.3")
    assert err(one(b"RCPT TO:<>\r\n")) == (501, "5.1.3")


def test_rcpt_postmaster_and_params() -> None:
    r = one(b"RCPT TO:<Postmaster>\r\n")
    assert isinstance(r, Rcpt) and r.forward_path.is_postmaster
    assert str(r.forward_path) == "Postmaster"
    r = one(b"RCPT TO:<b@c.example> NOTIFY=success,delay ORCPT=rfc822;b+40c.example X-Y=1\r\n")
    assert isinstance(r, Rcpt)
    assert r.notify == ("SUCCESS", "DELAY")
    assert r.orcpt == ("rfc822", "b@c.example")
    assert r.params["X-Y"] == "1"
    r = one(b"RCPT TO:<b@c.example> NOTIFY=NEVER\r\n")
    assert isinstance(r, Rcpt) and r.notify == ("NEVER",)
    for bad in (
        b"NOTIFY=NEVER,SUCCESS",
        b"NOTIFY=SOMETIMES",
        b"NOTIFY=SUCCESS,SUCCESS",
        b"ORCPT=rfc822",
        b"ORCPT=;x",
        b"ORCPT=rfc822;a+4",
    ):
        assert err(one(b"RCPT TO:<b@c.example> " + bad + b"\r\n")) == (501, "5.5.4")
    assert err(one(b"RCPT FROM:<b@c.example>\r\n")) == (501, "5.5.4")


def test_smtputf8_addresses() -> None:
    utf = "<jürgen@bücher.example>".encode()
    # without SMTPUTF8 on the MAIL: 553 5.6.7
    assert err(one(b"MAIL FROM:" + utf + b"\r\n")) == (553, "5.6.7")
    assert err(one(b"RCPT TO:" + utf + b"\r\n")) == (553, "5.6.7")
    events = run(b"MAIL FROM:" + utf + b" SMTPUTF8\r\nRCPT TO:" + utf + b"\r\n")
    m, r = events
    assert isinstance(m, Mail) and m.smtputf8
    assert m.reverse_path == Address("jürgen", "bücher.example")
    assert isinstance(r, Rcpt) and r.forward_path == Address("jürgen", "bücher.example")
    assert not r.forward_path.is_ascii
    # the SMTPUTF8 permission ends with the transaction
    events = run(b"MAIL FROM:<a@b.example> SMTPUTF8\r\nRSET\r\nRCPT TO:" + utf + b"\r\n")
    assert err(events[-1]) == (553, "5.6.7")
    # non-ASCII parameter values need SMTPUTF8 too
    assert err(one("MAIL FROM:<a@b.example> X=ü\r\n".encode())) == (501, "5.5.4")
    ok = one("MAIL FROM:<a@b.example> SMTPUTF8 X=ü\r\n".encode())
    assert isinstance(ok, Mail) and ok.params["X"] == "ü"


def test_simple_verbs() -> None:
    assert one(b"RSET\r\n") == Rset()
    assert one(b"NOOP\r\n") == Noop("")
    assert one(b"NOOP hello there\r\n") == Noop("hello there")
    assert one(b"QUIT\r\n") == Quit()
    assert one(b"VRFY postmaster\r\n") == Vrfy("postmaster")
    assert one(b"EXPN staff\r\n") == Expn("staff")
    assert one(b"HELP\r\n") == Help("")
    assert one(b"HELP MAIL\r\n") == Help("MAIL")
    assert one(b"quit\n") == Quit()
    for bad in (b"RSET now", b"QUIT x", b"DATA x", b"STARTTLS x", b"VRFY", b"EXPN"):
        e = one(bad + b"\r\n")
        assert err(e) == (501, "5.5.4")


def test_starttls_drops_pipelined_plaintext() -> None:
    p = SmtpServerParser()
    assert p.feed(b"EHLO a\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n") == [
        Ehlo("a"),
        StartTls(),
    ]
    assert p.paused == "STARTTLS"
    assert p.start_tls() == b"MAIL FROM:<evil@x.example>\r\n"
    assert p.paused is None and p.buffered_bytes == 0
    assert p.feed(b"EHLO a\r\n") == [Ehlo("a")]


def test_starttls_refused_resumes() -> None:
    events = run(b"STARTTLS\r\nNOOP\r\n", accept_tls=False)
    assert events == [StartTls(), Noop("")]


def test_auth_commands() -> None:
    assert one(b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n") == Auth("PLAIN", "dGVzdAB0ZXN0AHRlc3Q=")
    assert one(b"AUTH plain =\r\n") == Auth("PLAIN", "")
    for bad in (b"AUTH", b"AUTH PL@IN", b"AUTH PLAIN a b", b"AUTH " + b"X" * 21):
        assert err(one(bad + b"\r\n")) == (501, "5.5.4")


def test_auth_exchange() -> None:
    p = SmtpServerParser()
    assert p.feed(b"AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nNOOP\r\n") == [Auth("LOGIN", None)]
    assert p.paused == "AUTH"
    assert p.expect_auth_line() == [AuthResponse("dXNlcg==")]
    assert p.paused == "AUTH"
    assert p.expect_auth_line() == [AuthResponse("cGFzcw==")]
    assert p.resume() == [Noop("")]


def test_auth_cancel_and_long_lines() -> None:
    events = run(b"AUTH LOGIN\r\n*\r\nNOOP\r\n")
    assert events == [Auth("LOGIN", None), AuthResponse("*"), Noop("")]
    assert isinstance(events[1], AuthResponse) and events[1].cancelled
    # SASL lines may be far longer than command lines (RFC 4954: 12288)
    token = b"A" * 10000
    events = run(b"AUTH GSSAPI\r\n" + token + b"\r\nNOOP\r\n", max_line_length=512)
    assert events == [Auth("GSSAPI", None), AuthResponse(token.decode()), Noop("")]
    events = run(b"AUTH GSSAPI " + token + b"\r\nNOOP\r\n", max_line_length=512)
    assert events == [Auth("GSSAPI", token.decode()), Noop("")]
    # but not unbounded: 500 5.5.6 and the exchange is over
    events = run(b"AUTH GSSAPI\r\n" + b"A" * 20000 + b"\r\nNOOP\r\n")
    assert events[0] == Auth("GSSAPI", None)
    assert err(events[1]) == (500, "5.5.6")
    assert events[2:] == [Noop("")]
    assert run_bytewise(b"AUTH GSSAPI\r\n" + b"A" * 20000 + b"\r\nNOOP\r\n") == events


def test_xclient() -> None:
    x = one(b"XCLIENT NAME=mx.example ADDR=192.0.2.1 login=joe+2Bx HELO=[UNAVAILABLE]\r\n")
    assert x == XClient(
        {"NAME": "mx.example", "ADDR": "192.0.2.1", "LOGIN": "joe+x", "HELO": "[UNAVAILABLE]"}
    )
    for bad in (b"XCLIENT", b"XCLIENT NAME", b"XCLIENT 1=x", b"XCLIENT A=1 A=2", b"XCLIENT A=+Z"):
        assert err(one(bad + b"\r\n")) == (501, "5.5.4")


# --------------------------------------------------------------------------- sessions


SESSION = (
    b"EHLO client.example\r\n"
    b"MAIL FROM:<alice@example.com> SIZE=40\r\n"
    b"RCPT TO:<bob@example.com>\r\n"
    b"RCPT TO:<carol@example.com>\r\n"
    b"DATA\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"..leading dot\r\n"
    b".\r\n"
    b"MAIL FROM:<>\r\n"
    b"RCPT TO:<bob@example.com>\r\n"
    b"BDAT 11\r\n"
    b"Hello\r\n.\r\nX"
    b"BDAT 0 LAST\r\n"
    b"QUIT\r\n"
)

SESSION_EVENTS: list[Event] = [
    Ehlo("client.example"),
    Mail(Address("alice", "example.com"), {"SIZE": "40"}, size=40),
    Rcpt(Address("bob", "example.com")),
    Rcpt(Address("carol", "example.com")),
    Data(),
    MessageChunk(b"Subject: hi\r\n\r\n.leading dot\r\n"),
    MessageEnd(),
    Mail(None),
    Rcpt(Address("bob", "example.com")),
    Bdat(11, False),
    MessageChunk(b"Hello\r\n.\r\nX"),
    ChunkEnd(11, False),
    Bdat(0, True),
    ChunkEnd(0, True),
    Quit(),
]


def test_pipelined_session_in_one_feed() -> None:
    assert run(SESSION) == SESSION_EVENTS


def test_byte_by_byte_gives_identical_events() -> None:
    assert run_bytewise(SESSION) == SESSION_EVENTS


@pytest.mark.parametrize("cut", range(1, len(SESSION)))
def test_every_two_way_split(cut: int) -> None:
    events = coalesce(drive(SmtpServerParser(), [SESSION[:cut], SESSION[cut:]]))
    assert events == SESSION_EVENTS


def test_lmtp_session() -> None:
    data = (
        b"LHLO mx.example\r\n"
        b"MAIL FROM:<a@b.example>\r\n"
        b"RCPT TO:<u1@example.com>\r\n"
        b"RCPT TO:<u2@example.com>\r\n"
        b"DATA\r\nbody\r\n.\r\nQUIT\r\n"
    )
    events = run(data, lmtp=True)
    assert events == [
        Lhlo("mx.example"),
        Mail(Address("a", "b.example")),
        Rcpt(Address("u1", "example.com")),
        Rcpt(Address("u2", "example.com")),
        Data(),
        MessageChunk(b"body\r\n"),
        MessageEnd(),
        Quit(),
    ]


def test_data_refused_then_commands_continue() -> None:
    # the client pipelined content after DATA although DATA was refused: those lines
    # are commands now (RFC 2920 §3.1 makes DATA the end of a pipelined group).
    events = run(b"DATA\r\nNOOP\r\nQUIT\r\n", accept_data=False)
    assert events == [Data(), Noop(""), Quit()]


def test_feed_while_paused_only_buffers() -> None:
    p = SmtpServerParser()
    assert p.feed(b"DATA\r\n") == [Data()]
    assert p.feed(b"line\r\n") == []
    assert p.feed(b".\r\nNOOP\r\n") == []
    assert p.buffered_bytes == len(b"line\r\n.\r\nNOOP\r\n")
    assert p.start_data() == [MessageChunk(b"line\r\n"), MessageEnd(), Noop("")]


def test_misuse_raises_runtime_error() -> None:
    p = SmtpServerParser()
    with pytest.raises(RuntimeError):
        p.start_data()
    with pytest.raises(RuntimeError):
        p.resume()
    p.feed(b"DATA\r\n")
    with pytest.raises(RuntimeError):
        p.expect_auth_line()
    with pytest.raises(RuntimeError):
        p.start_tls()


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        SmtpServerParser(max_line_length=10)
    with pytest.raises(ValueError):
        SmtpServerParser(max_message_size=-1)
    with pytest.raises(ValueError):
        SmtpServerParser(max_recipients=0)
    with pytest.raises(ValueError):
        SmtpServerParser(bare_lf="sometimes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- DATA content


@pytest.mark.parametrize(
    ("wire", "content"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"..x\r\n.\r\n", b".x\r\n"),
        (b".x\r\n.\r\n", b"x\r\n"),  # a stray unstuffed dot is dropped (RFC 5321 4.5.2)
        (b". \r\n.\r\n", b" \r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"a\r\n..\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\n.\r\nb\r\n"),
        (b".\rx\r\n.\r\n", b"\rx\r\n"),
        (b"a.\r\nb.b\r\n.\r\n", b"a.\r\nb.b\r\n"),
        (b"x\r\n.\r\r\n.\r\n", b"x\r\n\r\r\n"),
        (b"a\rb\r\n.\r\n", b"a\rb\r\n"),  # bare CR is content
        (b"\x00\xff\x80\r\n.\r\n", b"\x00\xff\x80\r\n"),
    ],
)
def test_dot_unstuffing(wire: bytes, content: bytes) -> None:
    for events in (
        data_session(wire + b"NOOP\r\n"),
        run_bytewise(b"DATA\r\n" + wire + b"NOOP\r\n")[1:],
    ):
        assert body_of(events) == content
        assert events[-2:] == [MessageEnd(), Noop("")]


@pytest.mark.parametrize(
    "smuggle",
    [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r\n.x\r\n"],
)
def test_smuggling_sequences_do_not_end_data(smuggle: bytes) -> None:
    body = b"a" + smuggle + b"MAIL FROM:<x@y.example>\r\n"
    events = data_session(body + b".\r\n", bare_lf="keep")
    assert [type(e) for e in events] == [MessageChunk, MessageEnd]
    assert b"MAIL FROM" in body_of(events)


def test_terminator_split_at_every_point() -> None:
    wire = b"DATA\r\nab\r\n..c\r\n.\r\nNOOP\r\n"
    expected = [Data(), MessageChunk(b"ab\r\n.c\r\n"), MessageEnd(), Noop("")]
    for i in range(len(wire)):
        for j in range(i, len(wire)):
            chunks = [wire[:i], wire[i:j], wire[j:]]
            assert coalesce(drive(SmtpServerParser(), chunks)) == expected, (i, j)


def test_data_streams_without_holding_the_message() -> None:
    p = SmtpServerParser()
    p.feed(b"DATA\r\n")
    assert p.start_data() == []
    line = b"x" * 1000 + b"\r\n"
    total = 0
    for _ in range(200):
        for ev in p.feed(line):
            assert isinstance(ev, MessageChunk)
            total += len(ev.data)
        assert p.buffered_bytes <= 2
    assert p.in_message
    assert p.feed(b".\r\n") == [MessageEnd()]
    assert total == 200 * len(line)
    assert not p.in_message


def test_data_holds_at_most_two_bytes() -> None:
    p = SmtpServerParser()
    p.feed(b"DATA\r\n")
    p.start_data()
    assert p.feed(b"abc\r") == [MessageChunk(b"abc")]
    assert p.buffered_bytes == 1
    assert p.feed(b"\n") == [MessageChunk(b"\r\n")]
    assert p.feed(b".") == []
    assert p.buffered_bytes == 1
    assert p.feed(b"\r") == []
    assert p.buffered_bytes == 2
    assert p.feed(b"\n") == [MessageEnd()]


def test_bare_lf_reject_default() -> None:
    events = data_session(b"line one\nline two\r\n.\r\nNOOP\r\n")
    assert err(events[-2]) == (550, "5.5.2")
    assert isinstance(events[-2], ProtocolError) and events[-2].data_ended
    assert events[-1] == Noop("")
    # only the bytes before the bare LF were passed on
    assert body_of(events) == b"line one"
    assert run_bytewise(b"DATA\r\nline one\nline two\r\n.\r\nNOOP\r\n")[1:] == events


def test_bare_lf_after_dot_and_at_line_start() -> None:
    events = data_session(b"a\r\n.\nb\r\n.\r\n")
    assert err(events[-1]) == (550, "5.5.2")
    assert body_of(events) == b"a\r\n"


def test_bare_lf_normalize_and_keep() -> None:
    events = data_session(b"a\nb\r\nc\n\n.\r\n", bare_lf="normalize")
    # "<LF>.<CRLF>" does not end the data, even though the LF becomes CRLF in the output
    assert events == [MessageChunk(b"a\r\nb\r\nc\r\n\r\n.\r\n")]
    events = data_session(b"a\nb\r\nc\n\n\r\n.\r\n", bare_lf="normalize")
    assert body_of(events) == b"a\r\nb\r\nc\r\n\r\n\r\n" and events[-1] == MessageEnd()
    events = data_session(b"a\nb\r\n.\r\n", bare_lf="keep")
    assert body_of(events) == b"a\nb\r\n" and events[-1] == MessageEnd()


def test_bare_lf_in_command_line_ends_line() -> None:
    assert run(b"NOOP\nQUIT\r\n") == [Noop(""), Quit()]


def test_message_size_limit_data() -> None:
    ok = data_session(b"12345678\r\n.\r\n", max_message_size=10)
    assert ok[-1] == MessageEnd() and body_of(ok) == b"12345678\r\n"
    events = data_session(b"12345678\r\nmore\r\n..\r\n.\r\nNOOP\r\n", max_message_size=10)
    assert err(events[-2]) == (552, "5.3.4")
    assert isinstance(events[-2], ProtocolError) and events[-2].data_ended
    assert events[-1] == Noop("")
    assert body_of(events) == b"12345678\r\n"
    wire = b"DATA\r\n12345678\r\nmore\r\n..\r\n.\r\nNOOP\r\n"
    assert run_bytewise(wire, max_message_size=10) == [Data(), *events]


def test_message_size_counts_unstuffed_octets() -> None:
    events = data_session(b"..\r\n.\r\n", max_message_size=3)
    assert events == [MessageChunk(b".\r\n"), MessageEnd()]


def test_size_error_does_not_stick_to_the_next_message() -> None:
    wire = b"DATA\r\n" + b"x" * 50 + b"\r\n.\r\nDATA\r\nok\r\n.\r\n"
    events = run(wire, max_message_size=10)
    assert err(events[2]) == (552, "5.3.4")
    assert events[3:] == [Data(), MessageChunk(b"ok\r\n"), MessageEnd()]


# --------------------------------------------------------------------------- BDAT


def test_bdat_passes_bytes_exactly() -> None:
    payload = b"\r\n.\r\n\n.\n\x00..\r\nQUIT\r\n"
    wire = b"BDAT %d LAST\r\n" % len(payload) + payload + b"NOOP\r\n"
    expected = [
        Bdat(len(payload), True),
        MessageChunk(payload),
        ChunkEnd(len(payload), True),
        Noop(""),
    ]
    assert run(wire) == expected
    assert run_bytewise(wire) == expected


def test_bdat_sequence_and_case() -> None:
    wire = b"bdat 3\r\nabcBDAT 2 last\r\nde"
    assert run(wire) == [
        Bdat(3, False),
        MessageChunk(b"abc"),
        ChunkEnd(3, False),
        Bdat(2, True),
        MessageChunk(b"de"),
        ChunkEnd(2, True),
    ]


def test_bdat_streams_large_chunk() -> None:
    p = SmtpServerParser()
    assert p.feed(b"BDAT 100000 LAST\r\n") == [Bdat(100000, True)]
    got = 0
    for _ in range(99):
        events = p.feed(b"y" * 1000)
        assert events == [MessageChunk(b"y" * 1000)]
        got += len(events[0].data)  # type: ignore[union-attr]
        assert p.buffered_bytes == 0 and p.in_message
    assert p.feed(b"y" * 1000 + b"NOOP\r\n") == [
        MessageChunk(b"y" * 1000),
        ChunkEnd(100000, True),
        Noop(""),
    ]
    assert got == 99000 and not p.in_message


def test_bdat_bad_syntax() -> None:
    for bad in (
        b"BDAT",
        b"BDAT x",
        b"BDAT -1",
        b"BDAT 1 FIRST",
        b"BDAT 1 LAST x",
        b"BDAT \xd9\xa3",
    ):
        assert err(one(bad + b"\r\n")) == (501, "5.5.4")


def test_bdat_size_limit_across_chunks() -> None:
    wire = (
        b"MAIL FROM:<a@b.example>\r\n"
        b"BDAT 6\r\n123456"
        b"BDAT 6\r\n789012"
        b"BDAT 3 LAST\r\nabc"
        b"MAIL FROM:<a@b.example>\r\n"
        b"BDAT 3 LAST\r\nxyz"
    )
    events = run(wire, max_message_size=10)
    assert events[:4] == [
        Mail(Address("a", "b.example")),
        Bdat(6, False),
        MessageChunk(b"123456"),
        ChunkEnd(6, False),
    ]
    assert events[4] == Bdat(6, False)
    assert events[5] == MessageChunk(b"7890")
    assert err(events[6]) == (552, "5.3.4")
    assert (
        isinstance(events[6], ProtocolError) and events[6].data_ended and events[6].verb == "BDAT"
    )
    assert events[7] == Bdat(3, True)
    assert err(events[8]) == (552, "5.3.4")  # later chunks of the failed transaction too
    assert events[9:] == [
        Mail(Address("a", "b.example")),
        Bdat(3, True),
        MessageChunk(b"xyz"),
        ChunkEnd(3, True),
    ]
    assert run_bytewise(wire, max_message_size=10) == events


def test_bdat_is_not_subject_to_bare_lf_policy() -> None:
    assert run(b"BDAT 3 LAST\r\na\nb") == [Bdat(3, True), MessageChunk(b"a\nb"), ChunkEnd(3, True)]


# --------------------------------------------------------------------------- errors


def test_unknown_and_malformed_commands() -> None:
    assert err(one(b"FOO bar\r\n")) == (500, "5.5.2")
    assert err(one(b"\r\n")) == (500, "5.5.2")
    assert err(one(b" NOOP\r\n")) == (500, "5.5.2")
    assert err(one(b"NOOP \xff\xfe\r\n")) == (500, "5.5.2")
    assert err(one(b"NOOP a\x00b\r\n")) == (500, "5.5.2")
    assert err(one(b"NOOP a\rb\r\n")) == (500, "5.5.2")
    assert err(one("ＮＯＯＰ\r\n".encode())) == (500, "5.5.2")
    assert err(one("LAſT\r\n".encode())) == (500, "5.5.2")
    e = one(b"FOO\r\n")
    assert isinstance(e, ProtocolError) and e.verb is None and not e.data_ended


def test_errors_then_recovery() -> None:
    wire = b"BOGUS\r\nMAIL FROM:<bad>\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\n"
    events = run(wire)
    assert [type(e) for e in events] == [ProtocolError, ProtocolError, Mail, Noop]


def test_line_too_long_then_recovery() -> None:
    wire = b"NOOP " + b"x" * 5000 + b"\r\nQUIT\r\n"
    events = run(wire)
    assert len(events) == 2
    assert err(events[0]) == (500, "5.5.2")
    assert isinstance(events[0], ProtocolError) and events[0].text == "Line too long"
    assert events[1] == Quit()
    assert run_bytewise(wire) == events


def test_line_length_boundary() -> None:
    ok = b"NOOP " + b"x" * (100 - 5)
    assert run(ok + b"\r\n", max_line_length=100) == [Noop("x" * 95)]
    assert run_bytewise(ok + b"\r\n", max_line_length=100) == [Noop("x" * 95)]
    assert err(one(ok + b"x\r\n", max_line_length=100)) == (500, "5.5.2")
    assert err(run_bytewise(ok + b"x\r\n", max_line_length=100)[0]) == (500, "5.5.2")


def test_long_line_is_not_buffered() -> None:
    p = SmtpServerParser(max_line_length=512)
    events = p.feed(b"x" * 600)
    assert err(events[0]) == (500, "5.5.2")
    for _ in range(1000):
        assert p.feed(b"y" * 1000) == []
        assert p.buffered_bytes == 0
    assert p.feed(b"\r\nNOOP\r\n") == [Noop("")]


def test_too_many_recipients() -> None:
    wire = b"MAIL FROM:<a@b.example>\r\n" + b"RCPT TO:<x@y.example>\r\n" * 3
    events = run(wire, max_recipients=2)
    assert [type(e) for e in events] == [Mail, Rcpt, Rcpt, ProtocolError]
    assert err(events[-1]) == (452, "4.5.3")
    # a new transaction starts counting again
    wire += b"RSET\r\nRCPT TO:<x@y.example>\r\n"
    assert isinstance(run(wire, max_recipients=2)[-1], Rcpt)
    # so does the end of a message
    wire2 = (
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n.\r\n"
        b"RCPT TO:<x@y.example>\r\n"
    )
    assert isinstance(run(wire2, max_recipients=1)[-1], Rcpt)


def test_protocol_error_reply() -> None:
    e = one(b"FOO\r\n")
    assert isinstance(e, ProtocolError)
    assert e.to_reply() == b"500 5.5.2 Syntax error, command unrecognized\r\n"


# --------------------------------------------------------------------------- replies


def test_reply_single_and_multiline() -> None:
    assert reply(250, "2.1.0", "Ok") == b"250 2.1.0 Ok\r\n"
    assert reply(354, None, "End data with <CR><LF>.<CR><LF>") == (
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
    )
    assert reply(550, "5.1.1", ["No such user", "try again"]) == (
        b"550-5.1.1 No such user\r\n550 5.1.1 try again\r\n"
    )
    assert reply(250) == b"250\r\n"
    assert reply(250, "2.0.0") == b"250 2.0.0\r\n"
    assert reply(250, None, ["a", ""]) == b"250-a\r\n250\r\n"
    assert reply(250, None, []) == b"250\r\n"
    assert reply(250, None, "ünïcode") == "250 ünïcode\r\n".encode()


def test_reply_sanitises_text() -> None:
    out = reply(501, "5.1.3", "bad <x\r\n250 ok>")
    assert out == b"501 5.1.3 bad <x  250 ok>\r\n"
    assert out.count(b"\r\n") == 1


def test_reply_rejects_bad_codes() -> None:
    for code, enh in (
        (199, None),
        (600, None),
        (250, "5.0.0"),
        (550, "2.0.0"),
        (354, "3.0.0"),
        (250, "2.0"),
    ):
        with pytest.raises(ValueError):
            reply(code, enh, "x")


def test_ehlo_reply_and_capabilities() -> None:
    caps = ehlo_capabilities(
        max_message_size=1000,
        starttls=True,
        auth_mechanisms=["plain", "login"],
        dsn=True,
        smtputf8=True,
        binarymime=True,
        xclient=["name", "addr"],
        extra=["X-FOO"],
    )
    assert caps == [
        "PIPELINING",
        "SIZE 1000",
        "STARTTLS",
        "AUTH PLAIN LOGIN",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
        "XCLIENT NAME ADDR",
        "X-FOO",
    ]
    assert ehlo_capabilities(chunking=False, binarymime=True) == [
        "PIPELINING",
        "SIZE",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
    ]
    assert ehlo_reply("mx.example", ["PIPELINING", "SIZE"], "Columba") == (
        b"250-mx.example Columba\r\n250-PIPELINING\r\n250 SIZE\r\n"
    )
    assert ehlo_reply("mx.example", []) == b"250 mx.example\r\n"


# --------------------------------------------------------------------------- helpers


def test_address_str_quotes_when_needed() -> None:
    assert str(Address("user", "example.com")) == "user@example.com"
    assert str(Address("john doe", "example.com")) == '"john doe"@example.com'
    assert str(Address('a"b\\c', "x.example")) == '"a\\"b\\\\c"@x.example'
    assert str(Address("john..doe", "x.example")) == '"john..doe"@x.example'
    assert str(Address("jürgen", "bücher.example")) == "jürgen@bücher.example"
    # and what str() gives parses back to the same address
    for a in (
        Address("john doe", "e.example"),
        Address('a"b\\c', "x.example"),
        Address("x.y", "z.example"),
    ):
        m = one(b"MAIL FROM:<" + str(a).encode() + b">\r\n")
        assert isinstance(m, Mail) and m.reverse_path == a


def test_xtext_roundtrip() -> None:
    for s in ("plain", "a+b=c d", "ü€", "", "\x01~"):
        assert xtext_decode(xtext_encode(s)) == s
    assert xtext_encode("a+b=c") == "a+2Bb+3Dc"
    for bad in ("+", "+4", "+GG", "a b", "a=b", "+FF"):
        with pytest.raises(ValueError):
            xtext_decode(bad)


def test_is_valid_domain() -> None:
    assert is_valid_domain("example.com")
    assert is_valid_domain("bücher.example")
    assert not is_valid_domain("bücher.example", utf8=False)
    assert not is_valid_domain("a" * 64 + ".example")
    assert not is_valid_domain(".example")
    assert not is_valid_domain("")
    assert not is_valid_domain("ex ample.com")
