"""SMTP/LMTP codec under random input: only events come out, never an exception; buffering
stays bounded; how the input is split into feeds never changes what comes out; DATA and BDAT
content survives the trip through the codec byte for byte."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.proto.smtp import (
    Auth,
    AuthResponse,
    Bdat,
    ChunkEnd,
    Command,
    Data,
    Ehlo,
    Event,
    Helo,
    Lhlo,
    Mail,
    MessageChunk,
    MessageEnd,
    Noop,
    ProtocolError,
    Rset,
    SmtpServerParser,
    StartTls,
    XClient,
)

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EVENT_TYPES = (Command, AuthResponse, MessageChunk, MessageEnd, ChunkEnd, ProtocolError)

# Pieces of valid (and nearly valid) sessions, in both modes, to build and mutate sessions from.
TOKENS: list[bytes] = [
    b"EHLO client.example\r\n",
    b"HELO x\r\n",
    b"LHLO mx.example\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> SIZE=10 BODY=8BITMIME\r\n",
    "MAIL FROM:<jürgen@bücher.example> SMTPUTF8\r\n".encode(),
    b'MAIL FROM:<"x y"@[192.0.2.1]> RET=HDRS ENVID=a+2Bb AUTH=<>\r\n',
    b"RCPT TO:<u@example.com>\r\n",
    b"RCPT TO:<Postmaster> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u+40x\r\n",
    "RCPT TO:<ü@example.com>\r\n".encode(),
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN dGVzdA==\r\n",
    b"AUTH LOGIN =\r\n",
    b"*\r\n",
    b"XCLIENT NAME=x ADDR=192.0.2.1\r\n",
    b".\r\n",
    b"..\r\n",
    b"..x\r\n",
    b".",
    b"\r\n",
    b"\r",
    b"\n",
    b"\n.\n",
    b"\r\n.\r\n",
    b"Subject: hi\r\n",
    b"x" * 70,
    b"A" * 120,
    b"\x00",
    b"\xff\xfe",
    b" ",
    b"<",
    b">",
    b"@",
    b'"',
    b"=",
]

# Small bounds so that the fuzzer reaches them.
PARSER_KW: dict[str, int] = {
    "max_line_length": 64,
    "max_auth_line_length": 100,
    "max_message_size": 40,
    "max_recipients": 2,
}


def make_parser(lmtp: bool, bare_lf: str) -> SmtpServerParser:
    return SmtpServerParser(lmtp, bare_lf=bare_lf, **PARSER_KW)  # type: ignore[arg-type]


def check_event(ev: object) -> None:
    assert isinstance(ev, EVENT_TYPES), ev
    if isinstance(ev, ProtocolError):
        line = ev.to_reply()
        assert line.endswith(b"\r\n") and line.count(b"\r\n") == 1
        assert 400 <= ev.code <= 599


def drive(
    parser: SmtpServerParser, chunks: Sequence[bytes], decisions: Sequence[bool]
) -> list[Event]:
    """Feed ``chunks`` as a server would, answering DATA/AUTH/STARTTLS from ``decisions``.

    After every feed (and its follow-ups) the parser must not be stopped and must hold no
    more than one partial line. An accepted STARTTLS ends the run.
    """
    out: list[Event] = []
    n = 0

    def decide() -> bool:
        nonlocal n
        n += 1
        return decisions[n % len(decisions)] if decisions else True

    bound = max(parser.max_auth_line_length, parser.max_line_length) + 1
    for chunk in chunks:
        queue: deque[Event] = deque(parser.feed(chunk))
        while queue:
            ev = queue.popleft()
            check_event(ev)
            out.append(ev)
            if isinstance(ev, Data):
                queue.extend(parser.start_data() if decide() else parser.resume())
            elif isinstance(ev, Auth | AuthResponse):
                queue.extend(parser.expect_auth_line() if decide() else parser.resume())
            elif isinstance(ev, StartTls):
                if decide():
                    # Plaintext pipelined after STARTTLS is dropped; what would come next is
                    # the TLS handshake, so the plaintext session (and this run) ends here.
                    dropped = parser.start_tls()
                    assert isinstance(dropped, bytes)
                    assert parser.buffered_bytes == 0 and parser.paused is None
                    return out
                queue.extend(parser.resume())
        assert parser.paused is None
        assert parser.buffered_bytes <= bound
        if parser.in_message:
            assert parser.buffered_bytes <= 2
    return out


def coalesce(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, MessageChunk) and out and isinstance(out[-1], MessageChunk):
            out[-1] = MessageChunk(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks: list[bytes] = []
    prev = 0
    for p in points:
        chunks.append(data[prev:p])
        prev = p
    chunks.append(data[prev:])
    return chunks


def check_messages(events: list[Event]) -> None:
    """No message handed on is larger than the limit.

    A message starts at DATA, or with the first BDAT chunk of a transaction; MAIL, RSET,
    HELO/EHLO/LHLO and XCLIENT start a new transaction.
    """
    size = 0
    for ev in events:
        if isinstance(ev, MessageChunk):
            size += len(ev.data)
            assert size <= PARSER_KW["max_message_size"]
        elif (
            isinstance(ev, MessageEnd | Data | Mail | Rset | Helo | Ehlo | Lhlo | XClient)
            or (isinstance(ev, ChunkEnd) and ev.last)
            or (isinstance(ev, ProtocolError) and ev.data_ended and ev.verb == "DATA")
        ):
            size = 0


def check_session(
    data: bytes, cuts: list[int], decisions: list[bool], lmtp: bool, bare_lf: str
) -> None:
    whole = drive(make_parser(lmtp, bare_lf), [data], decisions)
    pieces = drive(make_parser(lmtp, bare_lf), split(data, cuts), decisions)
    assert coalesce(pieces) == coalesce(whole)
    check_messages(whole)


modes = st.sampled_from(["reject", "normalize", "keep"])


@FUZZ
@given(
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    decisions=st.lists(st.booleans(), max_size=8),
    lmtp=st.booleans(),
    bare_lf=modes,
)
def test_arbitrary_bytes_in_command_mode(
    data: bytes, cuts: list[int], decisions: list[bool], lmtp: bool, bare_lf: str
) -> None:
    check_session(data, cuts, decisions, lmtp, bare_lf)


@FUZZ
@given(
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    bare_lf=modes,
)
def test_arbitrary_bytes_in_data_mode(data: bytes, cuts: list[int], bare_lf: str) -> None:
    check_session(b"DATA\r\n" + data, cuts, [True], False, bare_lf)


@FUZZ
@given(
    size=st.integers(min_value=0, max_value=80),
    last=st.booleans(),
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_arbitrary_bytes_in_bdat_mode(size: int, last: bool, data: bytes, cuts: list[int]) -> None:
    head = b"BDAT %d%s\r\n" % (size, b" LAST" if last else b"")
    check_session(head + data, cuts, [True], True, "reject")


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, val in ops:
        at = pos % (len(buf) + 1)
        if kind == 0:
            buf.insert(at, val)
        elif kind == 1 and buf:
            del buf[at % len(buf)]
        elif kind == 2 and buf:
            buf[at % len(buf)] = val
        elif kind == 3:
            buf[at:at] = TOKENS[val % len(TOKENS)]
        elif kind == 4 and buf:  # duplicate a slice
            end = min(len(buf), at + val % 32)
            buf[at:at] = buf[at:end]
    return bytes(buf)


@FUZZ
@given(
    tokens=st.lists(st.sampled_from(TOKENS), max_size=40),
    ops=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.integers(min_value=0, max_value=10_000),
            st.integers(min_value=0, max_value=255),
        ),
        max_size=10,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    decisions=st.lists(st.booleans(), max_size=8),
    lmtp=st.booleans(),
    bare_lf=modes,
)
def test_mutated_sessions(
    *,
    tokens: list[bytes],
    ops: list[tuple[int, int, int]],
    cuts: list[int],
    decisions: list[bool],
    lmtp: bool,
    bare_lf: str,
) -> None:
    check_session(mutate(b"".join(tokens), ops), cuts, decisions, lmtp, bare_lf)


def dot_stuff(message: bytes) -> bytes:
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines) + b".\r\n"


@FUZZ
@given(
    lines=st.lists(st.binary(max_size=30), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_data_round_trip(lines: list[bytes], cuts: list[int]) -> None:
    # Any bytes ending in CRLF (lines may hold CR, LF, CRLF, dots, NULs) come back exactly.
    message = b"".join(ln + b"\r\n" for ln in lines)
    wire = b"DATA\r\n" + dot_stuff(message) + b"NOOP\r\n"
    events = coalesce(drive(SmtpServerParser(bare_lf="keep"), split(wire, cuts), [True]))
    content = b"".join(e.data for e in events if isinstance(e, MessageChunk))
    assert content == message
    assert events[0] == Data()
    assert events[-2:] == [MessageEnd(), Noop("")]


@FUZZ
@given(
    chunks=st.lists(st.binary(max_size=60), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_bdat_round_trip(chunks: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(b"BDAT %d\r\n" % len(c) + c for c in chunks) + b"BDAT 0 LAST\r\n"
    events = coalesce(drive(SmtpServerParser(), split(wire, cuts), [True]))
    content = b"".join(e.data for e in events if isinstance(e, MessageChunk))
    assert content == b"".join(chunks)
    assert [e for e in events if isinstance(e, Bdat)] == [
        *(Bdat(len(c), False) for c in chunks),
        Bdat(0, True),
    ]
    assert events[-1] == ChunkEnd(0, True)
