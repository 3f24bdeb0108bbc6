"""Event output: exact formats, secret scrubbing, LogSink, the event bus, emit_event and
the event_exporter drivers."""

from __future__ import annotations

import http.server
import io
import json
import logging
import os
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import columba.events.exporter as exporter_module
from columba.events.exporter import build_exporter
from columba.events.filter import parse_filter
from columba.events.model import Event, EventBus, FieldValue, default_bus, emit_event
from columba.events.output import (
    HIDDEN,
    LogSink,
    clear_secrets,
    format_json,
    format_plain,
    format_tab_text,
    format_time,
    is_secret_field,
    register_secret,
    scrub_event,
    unregister_secret,
)

START = 1560940705.422744
END = 1560940705.424812


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


def dovecot_event() -> Event:
    """The event of Dovecot's export documentation."""
    return Event(
        "imap_command_finished",
        {
            "user": "jeffpc",
            "session": "xlBB1KqLz1isGwB+",
            "tag": "a0005",
            "cmd_name": "SELECT",
            "tagged_reply_state": "OK",
            "tagged_reply": "OK [READ-WRITE] Select completed",
            "last_run_time": "2019-06-19T10:38:25.422709Z",
            "running_usecs": 1953,
            "lock_wait_usecs": 60,
            "net_in_bytes": 7,
            "net_out_bytes": 311,
        },
        ["imap"],
        START,
        END,
    )


# ---------------------------------------------------------------------------
# Formats


def test_json_is_dovecots_shape() -> None:
    assert format_json(dovecot_event(), hostname="dovecot-dev") == (
        '{"event":"imap_command_finished","hostname":"dovecot-dev",'
        '"start_time":"2019-06-19T10:38:25.422744Z","end_time":"2019-06-19T10:38:25.424812Z",'
        '"categories":["imap"],"fields":{"user":"jeffpc","session":"xlBB1KqLz1isGwB+",'
        '"tag":"a0005","cmd_name":"SELECT","tagged_reply_state":"OK",'
        '"tagged_reply":"OK [READ-WRITE] Select completed",'
        '"last_run_time":"2019-06-19T10:38:25.422709Z","running_usecs":1953,'
        '"lock_wait_usecs":60,"net_in_bytes":7,"net_out_bytes":311}}'
    )


def test_json_unix_time_and_include() -> None:
    event = dovecot_event()
    line = format_json(event, "unix", hostname="h")
    assert '"start_time":1560940705.422744,"end_time":1560940705.424812,' in line
    assert json.loads(line)["start_time"] == pytest.approx(START)
    assert format_json(event, include=["name", "timestamps"], hostname="h") == (
        '{"event":"imap_command_finished","start_time":"2019-06-19T10:38:25.422744Z",'
        '"end_time":"2019-06-19T10:38:25.424812Z"}'
    )
    assert format_json(event, include=[]) == "{}"
    with pytest.raises(ValueError, match="include"):
        format_json(event, include=["names"])
    with pytest.raises(ValueError, match="time_format"):
        format_json(event, "iso")


def test_json_value_types_and_escaping() -> None:
    event = Event(
        "x",
        {
            "s": 'quote " backslash \\ nl \n tab \t ctl \x01 ls \u2028 \u00e4',
            "list": ["a", "b,c"],
            "empty": [],
            "f": 1.5,
            "nan": float("nan"),
            "big": 2**70,
            "neg": -3,
            "yes": True,
            "bad": "\udcff",
        },
        [],
        0.0,
        None,
    )
    line = format_json(event, hostname="h")
    assert "\n" not in line and "\u2028" not in line
    parsed = json.loads(line)
    assert parsed["start_time"] == parsed["end_time"] == "1970-01-01T00:00:00.000000Z"
    assert parsed["categories"] == []
    fields = parsed["fields"]
    assert fields["s"] == 'quote " backslash \\ nl \n tab \t ctl \x01 ls \u2028 \u00e4'
    assert fields["list"] == ["a", "b,c"] and fields["empty"] == []
    assert fields["f"] == 1.5 and fields["nan"] == "nan" and fields["big"] == 2**70
    assert fields["neg"] == -3 and fields["yes"] is True
    assert fields["bad"] == "?"
    line.encode("utf-8")  # writable


def test_tab_text_is_dovecots_format() -> None:
    assert format_tab_text(dovecot_event(), hostname="dovecot-dev") == (
        "event:imap_command_finished\thostname:dovecot-dev\t"
        "start_time:2019-06-19T10:38:25.422744Z\tend_time:2019-06-19T10:38:25.424812Z\t"
        "category:imap\tfield:user=jeffpc\tfield:session=xlBB1KqLz1isGwB+\tfield:tag=a0005\t"
        "field:cmd_name=SELECT\tfield:tagged_reply_state=OK\t"
        "field:tagged_reply=OK [READ-WRITE] Select completed\t"
        "field:last_run_time=2019-06-19T10:38:25.422709Z\tfield:running_usecs=1953\t"
        "field:lock_wait_usecs=60\tfield:net_in_bytes=7\tfield:net_out_bytes=311"
    )


def test_tab_text_escaping_lists_and_include() -> None:
    event = Event(
        "a\tb", {"k\n": "x\ty\r\n\x01\x00", "l": ["p", "q\tr"]}, ["c1", "c2", "c1"], START, END
    )
    assert format_tab_text(event, "unix", hostname="h") == (
        "event:a\x01tb\thostname:h\tstart_time:1560940705.422744\tend_time:1560940705.424812\t"
        "category:c1\tcategory:c2\tfield:k\x01n=x\x01ty\x01r\x01n\x011\x010\t"
        "field:l=p\x01tq\x011tr"
    )
    assert format_tab_text(event, include=["fields"]).startswith("field:k\x01n=")
    assert format_tab_text(event, include=[]) == ""


def test_plain_line() -> None:
    assert format_plain(dovecot_event()) == (
        "2019-06-19T10:38:25.424812Z imap_command_finished user=jeffpc "
        "session=xlBB1KqLz1isGwB+ tag=a0005 cmd_name=SELECT tagged_reply_state=OK "
        'tagged_reply="OK [READ-WRITE] Select completed" '
        "last_run_time=2019-06-19T10:38:25.422709Z running_usecs=1953 lock_wait_usecs=60 "
        "net_in_bytes=7 net_out_bytes=311 duration=2068us"
    )
    odd = Event("odd name", {"a b": "", "n": "x\ny", "l": ["1", "2"], "f": 0.5}, [], START, None)
    assert format_plain(odd, "unix") == (
        '1560940705.422744 "odd name" "a b"="" n="x\\ny" l=["1","2"] f=0.5 duration=0us'
    )
    with pytest.raises(ValueError, match="time_format"):
        format_plain(odd, "local")


def test_every_format_is_one_line() -> None:
    nasty = "a\nb\rc\u2028d\u2029e\x85f\x0bg"
    event = Event(nasty, {nasty: nasty, "l": [nasty]}, [nasty], START, END, nasty)
    for line in (format_plain(event), format_json(event), format_tab_text(event)):
        assert "\n" not in line and "\r" not in line
    assert len(format_plain(event).splitlines()) == 1
    assert len(format_json(event).splitlines()) == 1


def test_time_formats() -> None:
    assert format_time(START) == "2019-06-19T10:38:25.422744Z"
    assert format_time(START, "unix") == "1560940705.422744"
    assert format_time(0.0000004, "unix") == "0.000000"
    assert format_time(1.9999996, "unix") == "2.000000"
    assert format_time(float("nan")) == "1970-01-01T00:00:00.000000Z"
    assert format_time(1e13) == "10000000000000.000000"  # past year 9999: a number


# ---------------------------------------------------------------------------
# Secret scrubbing


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "PASSWORD",
        "master_password",
        "userPassword",
        "pass",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "token",
        "AuthToken",
        "access_token",
        "key",
        "api_key",
        "apikey",
        "X-Api-Key",
        "APIKey",
        "mail_crypt_private_key",
        "authorization",
        "Authorization",
        "proxy-authorization",
        "credentials",
        "cookie",
        "passphrase",
        "resp",
        "sasl_response",
    ],
)
def test_secret_field_names(name: str) -> None:
    assert is_secret_field(name)


@pytest.mark.parametrize(
    "name",
    [
        "keywords",
        "user",
        "session",
        "passdb",
        "bypass",
        "cmd_name",
        "monkey",
        "turkey",
        "hotkeys",
        "reason",
    ],
)
def test_ordinary_field_names(name: str) -> None:
    assert not is_secret_field(name)


def all_outputs(event: Event) -> list[str]:
    return [
        format_plain(event),
        format_plain(event, "unix"),
        format_json(event),
        format_json(event, "unix"),
        format_tab_text(event),
        format_tab_text(event, "unix"),
    ]


def test_secret_fields_are_hidden_everywhere() -> None:
    event = Event(
        "auth_request_finished",
        {
            "user": "bob",
            "password": "hunter2hunter2",
            "api_key": 123456789,
            "token": ["tok-1", "tok-2"],
            "error": "Password mismatch: got hunter2hunter2 and tok-1",
            "keywords": ["$Seen"],
        },
        ["auth"],
        START,
        END,
    )
    for line in all_outputs(event):
        for secret in ("hunter2hunter2", "123456789", "tok-1", "tok-2"):
            assert secret not in line, line
        assert "bob" in line and "$Seen" in line
        assert HIDDEN in line
    fields = json.loads(format_json(event))["fields"]
    assert fields["password"] == fields["api_key"] == fields["token"] == HIDDEN
    assert fields["error"] == f"Password mismatch: got {HIDDEN} and {HIDDEN}"
    assert fields["keywords"] == ["$Seen"]
    # the event itself is untouched
    assert event.fields["password"] == "hunter2hunter2"


def test_short_secret_values_are_hidden_in_their_field_only() -> None:
    event = Event("x", {"pin": "12", "count": 12, "note": "a12b"}, [], START, END)
    fields = json.loads(format_json(event))["fields"]
    assert fields == {"pin": HIDDEN, "count": 12, "note": "a12b"}


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("S3cr3tMaster")
    register_secret("4242424242")
    register_secret("")  # ignored
    event = Event(
        "login S3cr3tMaster",
        {
            "user": "master*S3cr3tMaster",
            "S3cr3tMaster": "in a key",
            "number": 4242424242,
            "list": ["x", "S3cr3tMaster"],
            "reply": 'quote " and S3cr3tMaster\n',
        },
        ["S3cr3tMaster"],
        START,
        END,
        "S3cr3tMaster.py:1",
    )
    outputs = [
        *all_outputs(event),
        format_json(event, hostname="S3cr3tMaster"),
        format_tab_text(event, hostname="S3cr3tMaster"),
    ]
    for line in outputs:
        assert "S3cr3tMaster" not in line and "4242424242" not in line, line
    parsed = json.loads(format_json(event))  # still valid JSON
    assert parsed["fields"]["number"] == HIDDEN
    assert parsed["fields"]["user"] == f"master*{HIDDEN}"
    assert scrub_event(event).name == f"login {HIDDEN}"
    unregister_secret("S3cr3tMaster")
    assert "S3cr3tMaster" in format_json(event)
    # the finished line is masked too, even where no field put the secret
    register_secret("10:38:25.424812")
    for line in all_outputs(event):
        assert "10:38:25.424812" not in line


SECRET = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=8,
    max_size=20,
)
SECRET_FIELD = st.sampled_from(["password", "api_key", "AuthToken", "X-Api-Key", "secret", "pass"])


@settings(max_examples=200)
@given(
    secret=SECRET,
    registered=SECRET,
    field=SECRET_FIELD,
    noise=st.text(max_size=10),
    where=st.sampled_from(["name", "category", "key", "value", "list", "location"]),
)
def test_no_secret_reaches_any_output(
    secret: str, registered: str, field: str, noise: str, where: str
) -> None:
    clear_secrets()
    register_secret(registered)
    fields: dict[str, FieldValue] = {field: secret, "error": f"{noise}{secret}{noise}"}
    event = Event("ev", fields, ["imap"], START, END)
    if where == "name":
        event.name = noise + registered
    elif where == "category":
        event.categories.append(registered + noise)
    elif where == "key":
        fields[noise + registered] = "v"
    elif where == "value":
        fields["other"] = noise + registered + noise
    elif where == "list":
        fields["l"] = [noise, registered]
    else:
        event.source_location = registered
    for line in all_outputs(event):
        assert secret not in line
        assert registered not in line
    clear_secrets()


# ---------------------------------------------------------------------------
# LogSink


def test_log_sink_to_a_stream() -> None:
    out = io.StringIO()
    for fmt in ("plain", "json", "tab-text"):
        LogSink(out, fmt, "unix", hostname="h")(dovecot_event())
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 4
    assert lines[0] == format_plain(dovecot_event(), "unix")
    assert lines[1] == format_json(dovecot_event(), "unix", hostname="h")
    assert lines[2] == format_tab_text(dovecot_event(), "unix", hostname="h")


def test_log_sink_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    LogSink()(dovecot_event())
    assert capsys.readouterr().err == format_plain(dovecot_event()) + "\n"


def test_log_sink_to_a_file_appends_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_text("old\n")
    sink = LogSink(path, "json")
    assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o644)  # existing file keeps its mode
    sink(dovecot_event())
    assert path.read_text().splitlines()[0] == "old"
    assert json.loads(path.read_text().splitlines()[1])["event"] == "imap_command_finished"
    path.rename(tmp_path / "events.log.1")  # rotation
    sink.reopen()
    sink(dovecot_event())
    assert len(path.read_text().splitlines()) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sink.close()


def test_log_sink_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        LogSink(io.StringIO(), "xml")
    with pytest.raises(ValueError, match="time_format"):
        LogSink(io.StringIO(), "json", "local")
    with pytest.raises(OSError):
        LogSink(tmp_path / "missing" / "dir.log")


def test_log_sink_to_syslog(tmp_path: Path) -> None:
    address = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(5)
    try:
        sink = LogSink("syslog", "json", syslog_address=address)
        register_secret("hunter2hunter2")
        event = dovecot_event()
        event.fields["reply"] = "100% hunter2hunter2"
        sink(event)
        data = receiver.recv(65536).decode()
        sink.close()
    finally:
        receiver.close()
    assert data.startswith("<22>columba: {")  # facility mail, priority info
    assert '"reply":"100% <hidden>"' in data


# ---------------------------------------------------------------------------
# EventBus and emit_event


def test_bus_delivers_by_filter_and_unsubscribes() -> None:
    bus = EventBus()
    everything: list[Event] = []
    imap: list[Event] = []
    assert not bus.has_subscribers
    bus.subscribe(None, everything.append)
    cancel = bus.subscribe(parse_filter("category=imap"), imap.append)
    a, b = Event("a", categories=["imap"]), Event("b")
    bus.emit(a)
    bus.emit(b)
    assert everything == [a, b] and imap == [a]
    cancel()
    bus.emit(a)
    assert imap == [a] and len(everything) == 3


def test_a_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("disk full")

    bus.subscribe(None, broken)
    bus.subscribe(None, got.append)
    bus.emit(Event("x"))
    assert len(got) == 1
    assert "event sink" in caplog.text and "disk full" in caplog.text


def test_sinks_that_emit_do_not_loop_forever() -> None:
    bus = EventBus()
    calls: list[int] = []

    def echo(event: Event) -> None:
        calls.append(1)
        bus.emit(Event("echo"))

    bus.subscribe(None, echo)
    bus.emit(Event("start"))
    assert 1 < len(calls) <= 10


def test_emit_event_times_and_emits() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(None, got.append)
    with emit_event("imap_command_finished", cmd_name="LIST", categories=["imap"], bus=bus) as ev:
        line = sys._getframe().f_lineno - 1
        ev.fields["tagged_reply_state"] = "OK"
        assert got == []
    assert got == [ev]
    assert ev.fields == {"cmd_name": "LIST", "tagged_reply_state": "OK"}
    assert ev.categories == ["imap"]
    assert ev.source_location == f"test_event_output.py:{line}"
    assert ev.end_time is not None and ev.end_time >= ev.start_time
    assert ev.duration_usecs >= 0


def test_emit_event_records_failure_and_reraises() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(None, got.append)
    with pytest.raises(KeyError), emit_event("mail_delivery_finished", bus=bus):
        raise KeyError("no such mailbox")
    assert got[0].fields == {"error": "'no such mailbox'", "error_type": "KeyError"}
    with pytest.raises(ValueError), emit_event("x", bus=bus) as ev:
        ev.fields["error"] = "Quota exceeded"
        raise ValueError
    assert got[1].fields == {"error": "Quota exceeded", "error_type": "ValueError"}


def test_emit_event_uses_the_default_bus() -> None:
    got: list[Event] = []
    cancel = default_bus.subscribe(parse_filter("event=columba_test_event"), got.append)
    try:
        with emit_event("columba_test_event", n=1):
            pass
    finally:
        cancel()
    assert len(got) == 1 and got[0].fields == {"n": 1}


def test_duration() -> None:
    assert Event("x", start_time=10.0).duration_usecs == 0
    assert Event("x", start_time=10.0, end_time=10.0025).duration_usecs == 2500
    assert Event("x", start_time=10.0, end_time=9.0).duration_usecs == 0


# ---------------------------------------------------------------------------
# Exporters


def test_build_exporter_defaults() -> None:
    exp = build_exporter("log", {})
    assert (exp.driver, exp.format, exp.time_format, exp.mime_type) == (
        "log",
        "json",
        "rfc3339",
        "application/json",
    )
    assert build_exporter("t", {"format": "tab-text"}).mime_type == "text/plain"


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"driver": "syslog"}, "driver"),
        ({"format": "xml"}, "format"),
        ({"time_format": "local"}, "time_format"),
        ({"transport": "log"}, "unknown setting(s) transport"),
        ({"driver": "file"}, "file_path"),
        ({"driver": "unix"}, "unix_path"),
        ({"driver": "http-post"}, "http_post_url"),
        ({"driver": "http-post", "http_post_url": "ftp://x/"}, "http_post_url"),
        (
            {"driver": "http-post", "http_post_url": "http://x/", "http_post_timeout": "5"},
            "http_post_timeout",
        ),
        (
            {"driver": "http-post", "http_post_url": "http://x/", "http_post_timeout": "0"},
            "http_post_timeout",
        ),
        (
            {"driver": "unix", "unix_path": "/x", "unix_connect_timeout": "soon"},
            "unix_connect_timeout",
        ),
    ],
)
def test_build_exporter_validates(settings: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match="event_exporter ex: ") as info:
        build_exporter("ex", settings)
    assert words in str(info.value)


def test_log_driver(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="columba.events.export")
    build_exporter("log", {"format": "tab-text"}, hostname="h")(dovecot_event())
    assert caplog.records[-1].getMessage() == format_tab_text(dovecot_event(), hostname="h")


def test_drop_driver_formats_and_discards() -> None:
    exp = build_exporter("off", {"driver": "drop"})
    exp(dovecot_event())
    assert exp.format_event(dovecot_event()).startswith('{"event":')
    assert (
        build_exporter("none", {"driver": "drop", "format": "none"}).format_event(dovecot_event())
        == ""
    )


def test_file_driver(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "export.log"
    register_secret("hunter2hunter2")
    exp = build_exporter("f", {"driver": "file", "file_path": str(path), "time_format": "unix"})
    event = dovecot_event()
    event.fields["password"] = "hunter2hunter2"
    exp(event)
    exp.export(event, include=["name"])
    assert path.read_text().splitlines() == [
        format_json(event, "unix"),
        '{"event":"imap_command_finished"}',
    ]
    assert "hunter2hunter2" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.rename(tmp_path / "old")
    exp.reopen()
    exp(event)
    assert len(path.read_text().splitlines()) == 1
    exp.close()
    # an unwritable path: the event is dropped, the error logged, nothing raised
    bad = build_exporter("bad", {"driver": "file", "file_path": str(tmp_path / "no" / "x")})
    bad(event)
    bad(event)
    assert caplog.text.count("event exporter file") == 1  # rate limited


def _serve_unix(path: str, kind: int) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, kind)
    server.bind(path)
    if kind == socket.SOCK_STREAM:
        server.listen(1)
    server.settimeout(5)
    return server


def test_unix_driver_stream(tmp_path: Path) -> None:
    path = str(tmp_path / "events.sock")
    server = _serve_unix(path, socket.SOCK_STREAM)
    exp = build_exporter("u", {"driver": "unix", "unix_path": path, "format": "tab-text"})
    try:
        exp(dovecot_event())
        exp(dovecot_event())
        conn, _ = server.accept()
        conn.settimeout(5)
        data = b""
        while data.count(b"\n") < 2:
            data += conn.recv(65536)
        conn.close()
    finally:
        exp.close()
        server.close()
    line = format_tab_text(dovecot_event()).encode()
    assert data == line + b"\n" + line + b"\n"


def test_unix_driver_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "events.dgram")
    server = _serve_unix(path, socket.SOCK_DGRAM)
    exp = build_exporter("u", {"driver": "unix", "unix_path": path})
    try:
        exp(dovecot_event())
        exp(dovecot_event())
        first, second = server.recv(65536), server.recv(65536)
    finally:
        exp.close()
        server.close()
    assert first == second == format_json(dovecot_event()).encode()


def test_unix_driver_reconnects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporter_module, "RECONNECT_INTERVAL", 0.0)
    path = str(tmp_path / "late.sock")
    exp = build_exporter("u", {"driver": "unix", "unix_path": path})
    exp(dovecot_event())  # nobody listening: dropped, no exception
    server = _serve_unix(path, socket.SOCK_STREAM)
    try:
        exp(Event("second", start_time=START, end_time=END))
        conn, _ = server.accept()
        conn.settimeout(5)
        data = conn.recv(65536)
        conn.close()
    finally:
        exp.close()
        server.close()
    assert data.startswith(b'{"event":"second"')


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append((self.path, self.headers["Content-Type"], self.rfile.read(length)))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[Callable[[int], tuple[str, list[tuple[str, str, bytes]]]]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int) -> tuple[str, list[tuple[str, str, bytes]]]:
        received: list[tuple[str, str, bytes]] = []
        handler = type("H", (_Recorder,), {"received": received, "status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/events", received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_http_post_driver(
    http_server: Callable[[int], tuple[str, list[tuple[str, str, bytes]]]],
) -> None:
    url, received = http_server(200)
    exp = build_exporter(
        "h", {"driver": "http-post", "http_post_url": url, "http_post_timeout": "2s"}
    )
    assert threading.active_count() >= 1
    exp(dovecot_event())
    exp(Event("second", start_time=START, end_time=END))
    exp.close()  # waits for the queue to drain
    assert [r[0] for r in received] == ["/events", "/events"]
    assert received[0][1] == "application/json"
    assert received[0][2] == format_json(dovecot_event()).encode()
    assert json.loads(received[1][2])["event"] == "second"


def test_http_post_errors_are_logged_not_raised(
    http_server: Callable[[int], tuple[str, list[tuple[str, str, bytes]]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = http_server(500)
    exp = build_exporter("h", {"driver": "http-post", "http_post_url": url, "format": "tab-text"})
    exp(dovecot_event())
    exp.close()
    assert received[0][1] == "text/plain"
    assert "POST failed: 500" in caplog.text


def test_http_post_thread_starts_only_when_used() -> None:
    before = {t.name for t in threading.enumerate()}
    exp = build_exporter("h", {"driver": "http-post", "http_post_url": "http://127.0.0.1:9/"})
    assert {t.name for t in threading.enumerate()} == before
    exp.close()


def test_exporter_as_a_bus_sink(tmp_path: Path) -> None:
    path = tmp_path / "bus.log"
    bus = EventBus()
    exp = build_exporter("f", {"driver": "file", "file_path": os.fspath(path)})
    bus.subscribe(parse_filter("event=imap_command_finished AND cmd_name=LIST"), exp)
    with emit_event("imap_command_finished", cmd_name="LIST", bus=bus):
        pass
    with emit_event("imap_command_finished", cmd_name="SELECT", bus=bus):
        pass
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["fields"] == {"cmd_name": "LIST"}
    exp.close()
