"""Run ``C:``/``S:`` IMAP transcript scripts over real TCP connections against any host:port.

A script is a text file (``*.imap``) read line by line. Blank lines and lines starting with
``#`` are ignored. Every other line starts with a prefix ``KIND[CONN][MODS]:`` followed by one
optional space and the line's text:

``C: text``
    Send ``text`` + CRLF (a command, or the rest of a command after a literal). When the text
    ends in a literal marker ``{N}`` / ``{N+}`` (LITERAL+) / ``{*}`` / ``{*+}``, the literal's
    data are the ``L:`` lines that follow for the same connection; ``*`` is replaced by their
    length in bytes (each line counts its CRLF), and an explicit ``N`` must equal it. After a
    *synchronising* literal the runner waits for the server's ``+`` continuation before it
    sends the data: write ``S: + *`` next to check it, or leave it out and the runner expects
    ``+ *`` itself. The command goes on with the next ``C:`` line of the connection (an empty
    ``C:`` line ends it).
``L: text``
    One line of literal data (``text`` + CRLF). ``L-: text`` sends ``text`` without the
    CRLF: the last piece of a literal that does not end in a line break.
``R: text``
    Raw bytes, nothing appended: ``text`` with the escapes ``\\r``, ``\\n``, ``\\t``, ``\\\\``
    and ``\\xHH``. For what ``C:`` cannot say (bare LF, NUL bytes, lying literal lengths).
``S: pattern``
    The next response from the server must match ``pattern``. A *response* is one logical
    server response: a line, including any literals it carries (``{N}`` CRLF and N bytes) and
    the text after them, without the final CRLF.
``S+: pattern``
    Continues the previous ``S:``/``S~:`` pattern on a new line: the pattern lines are joined
    with CRLF. This is how a response carrying a literal (``BODY[] {42}``) is written.
``S~: pattern``
    Unordered: a run of consecutive ``S~:`` lines (with their ``S+:`` continuations) matches
    the same number of responses in any order (untagged responses whose order the RFCs leave
    open, such as the ``SELECT`` answers).
``S?: pattern`` / ``S~?: pattern``
    Optional: consumed if the next response (or, in a group, one of the responses) matches;
    otherwise the response is left for the following expectation. For answers that one
    server sends and another may leave out on good grounds (``[HIGHESTMODSEQ]`` without
    CONDSTORE, ``* n RECENT`` after ``IDLE`` notifications). The runner waits at most
    ``OPTIONAL_GRACE`` seconds for an optional response that is not already buffered.

``CONN`` is a connection number (default ``1``): ``C2:``, ``S2:``, ``L2:``, ``S2~:``.
A connection is opened on first use; its greeting is the first response, so a script
starts with ``S: * OK *``.

Pattern syntax (``S`` lines): literal text except

* ``*`` matches any run of characters (possibly empty, across CRLFs inside a response);
* ``%(a b c)`` matches a parenthesised list of exactly these space-separated atoms in any
  order (flag lists, mailbox attributes); a ``*`` among them allows any further atoms:
  ``%(\\Seen *)`` is any list containing ``\\Seen``. The atoms are literal (``\\*`` is the
  flag ``\\*``);
* ``**`` matches one literal ``*``; a ``*`` followed by a space at the very start of a
  response's pattern is the untagged-response marker and is literal too (``* 3 EXISTS``);
* ``${name}``: if ``name`` is already defined (a variable or an earlier capture), its value;
  otherwise it captures one or more characters, available to later ``C:``/``L:``/``S:``
  lines as ``${name}``. Captures within one ``S~:`` group can't refer to each other.

``${name}`` is substituted in ``C:`` and ``L:`` lines too; a bare ``$`` (SEARCHRES, the
``$Forwarded`` keyword) is left alone. Predefined variables: ``user``, ``pass``, ``host``,
``port``, ``auth_plain`` (base64 of NUL user NUL pass, for ``AUTHENTICATE PLAIN``) and
whatever the caller passes.

Directives (``!name [CONN] [args]``):

``!connect N``   open connection N now (normally implicit).
``!close N``     close connection N from the client side.
``!eof N``       the server must close connection N (no further response first).
``!starttls N``  wrap connection N in TLS now (after ``S: tag OK *`` to ``STARTTLS``).
``!sleep SECS``  pause.
``!timeout SECS`` change the per-response timeout for the rest of the script.
``!set NAME VALUE`` define a variable.

When the script ends, no connection may have unread responses.

``FETCH`` and ``STATUS`` responses whose items come in another order than the pattern's
still match, item by item (RFC 3501 leaves that order to the server): ``* 1 FETCH (FLAGS
%(\\Seen) UID 4)`` matches ``* 1 FETCH (UID 4 FLAGS (\\Seen))``.

Run one script by hand: ``python -m tests.transcripts.runner 127.0.0.1:1143 USER PASS
tests/transcripts/fetch.imap -v``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import re
import secrets
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SCRIPTS_DIR",
    "Directive",
    "Expect",
    "ExpectGroup",
    "ScriptError",
    "ScriptFailureError",
    "ScriptResult",
    "Send",
    "all_scripts",
    "parse_script",
    "run_script",
    "script_users",
]

SCRIPTS_DIR = Path(__file__).resolve().parent
DEFAULT_TIMEOUT = 15.0
"""Seconds to wait for an expected response: generous, so a loaded CI machine is no failure."""
OPTIONAL_GRACE = 0.3
CRLF = "\r\n"

_PREFIX = re.compile(r"^(?P<kind>[CLRS])(?P<conn>\d*)(?P<mods>[~?+-]*):(?: |$)(?P<text>.*)$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CMD_LITERAL = re.compile(r"\{(\*|\d+)(\+?)\}$")
_RESP_LITERAL = re.compile(rb"~?\{(\d+)\}$")
_RAW_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|[rnt\\])")


class ScriptError(Exception):
    """The script itself is malformed."""


class ScriptFailureError(Exception):
    """The server did not behave as the script expects."""


@dataclass
class Send:
    """``C:``, ``L:`` or ``R:``: bytes to send on a connection."""

    conn: int
    kind: str
    text: str
    lineno: int
    crlf: bool = True

    def data(self, text: str) -> bytes:
        return (text + CRLF).encode() if self.crlf else text.encode()


@dataclass
class Expect:
    """One expected response (``S:``, ``S~:``, ``S?:``; ``S+:`` lines already joined)."""

    conn: int
    lines: list[str]
    optional: bool
    unordered: bool
    lineno: int

    @property
    def pattern(self) -> str:
        return CRLF.join(self.lines)


@dataclass
class ExpectGroup:
    """A run of ``S~:`` expectations matched in any order."""

    conn: int
    items: list[Expect]
    lineno: int


@dataclass
class Directive:
    """A ``!name`` line."""

    name: str
    args: list[str]
    lineno: int


Step = Send | Expect | ExpectGroup | Directive


@dataclass
class ScriptResult:
    """The outcome of one script run."""

    name: str
    passed: bool
    error: str | None = None
    transcript: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def report(self, tail: int = 40) -> str:
        """The error and the last lines of the transcript, for a failure message."""
        lines = [f"{self.name}: {'PASS' if self.passed else 'FAIL'} ({self.seconds:.2f}s)"]
        if self.error:
            lines.append(self.error)
        if not self.passed and self.transcript:
            lines.append("--- transcript (last lines) ---")
            lines.extend(self.transcript[-tail:])
        return "\n".join(lines)


def all_scripts(directory: Path = SCRIPTS_DIR) -> list[Path]:
    """Every ``*.imap`` script in ``directory``, sorted by name."""
    return sorted(directory.glob("*.imap"))


def parse_script(text: str) -> list[Step]:
    """Parse a script into steps (``S+:`` joined, ``S~:`` runs grouped)."""
    steps: list[Step] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("!"):
            words = line[1:].split()
            if not words:
                raise ScriptError(f"line {lineno}: empty directive")
            steps.append(Directive(words[0], words[1:], lineno))
            continue
        match = _PREFIX.match(line)
        if match is None:
            raise ScriptError(f"line {lineno}: no C:/L:/R:/S: prefix: {line!r}")
        kind, mods, body = match["kind"], match["mods"], match["text"]
        conn = int(match["conn"] or "1")
        if kind != "S":
            if mods and not (kind == "L" and mods == "-"):
                raise ScriptError(f"line {lineno}: modifier {mods!r} not allowed on {kind}:")
            steps.append(Send(conn, kind, body, lineno, crlf=not mods))
            continue
        if "-" in mods:
            raise ScriptError(f"line {lineno}: S lines take no '-' modifier")
        if "+" in mods:
            if mods != "+":
                raise ScriptError(f"line {lineno}: S+: takes no other modifier")
            last = _last_expect(steps, conn)
            if last is None:
                raise ScriptError(f"line {lineno}: S+: without a preceding S: line")
            last.lines.append(body)
            continue
        expect = Expect(conn, [body], "?" in mods, "~" in mods, lineno)
        previous = steps[-1] if steps else None
        if expect.unordered:
            if isinstance(previous, ExpectGroup) and previous.conn == conn:
                previous.items.append(expect)
            else:
                steps.append(ExpectGroup(conn, [expect], lineno))
        else:
            steps.append(expect)
    return steps


def _last_expect(steps: list[Step], conn: int) -> Expect | None:
    if not steps:
        return None
    last = steps[-1]
    if isinstance(last, Expect) and last.conn == conn:
        return last
    if isinstance(last, ExpectGroup) and last.conn == conn:
        return last.items[-1]
    return None


def compile_pattern(pattern: str, variables: Mapping[str, str]) -> re.Pattern[str]:
    """Turn an ``S:`` pattern into an anchored regular expression (see the module docs)."""
    out: list[str] = []
    captured: set[str] = set()
    i = 0
    if pattern.startswith("* "):
        out.append(re.escape("* "))
        i = 2
    while i < len(pattern):
        if pattern.startswith("%(", i) and (end := pattern.find(")", i)) > 0:
            out.append(_atom_set(pattern[i + 2 : end].split()))
            i = end + 1
        elif pattern.startswith("**", i):
            out.append(re.escape("*"))
            i += 2
        elif pattern[i] == "*":
            out.append(".*?")
            i += 1
        elif (var := _VAR.match(pattern, i)) is not None:
            name = var[1]
            if name in variables:
                out.append(re.escape(variables[name]))
            elif name in captured:
                out.append(f"(?P={name})")
            else:
                out.append(f"(?P<{name}>.+?)")
                captured.add(name)
            i = var.end()
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


_ATOM = r"[^()\s]+"


def _atom_set(atoms: list[str]) -> str:
    """Regex for ``%(a b *)``: a parenthesised list holding these atoms in any order."""
    extras = "*" in atoms
    wanted = [a for a in atoms if a != "*"]
    checks = "".join(
        rf"(?=\((?:{_ATOM} )*{re.escape(a)}(?: {_ATOM})*\))" for a in dict.fromkeys(wanted)
    )
    if extras:
        body = rf"\((?:{_ATOM}(?: {_ATOM})*)?\)"
    elif wanted:
        body = rf"\({_ATOM}(?: {_ATOM}){{{len(wanted) - 1}}}\)"
    else:
        body = r"\(\)"
    return checks + body


def match_response(
    pattern: str, response: str, variables: Mapping[str, str]
) -> dict[str, str] | None:
    """The captures if ``response`` matches ``pattern``, else ``None``.

    ``FETCH`` and ``STATUS`` responses also match when their items come in another order
    than the pattern's (RFC 3501 leaves the order of the items to the server)."""
    found = compile_pattern(pattern, variables).fullmatch(response)
    if found is not None:
        return {k: v for k, v in found.groupdict().items() if v is not None}
    return _match_fetch_items(pattern, response, variables)


def _match_fetch_items(
    pattern: str, response: str, variables: Mapping[str, str]
) -> dict[str, str] | None:
    want = _split_fetch(pattern)
    got = _split_fetch(response)
    if want is None or got is None or len(want[1]) != len(got[1]):
        return None
    head = compile_pattern(want[0], variables).fullmatch(got[0])
    if head is None:
        return None
    captures = {k: v for k, v in head.groupdict().items() if v is not None}
    values = dict(got[1])
    if len(values) != len(got[1]):
        return None
    for name, value_pattern in want[1]:
        if name not in values:
            return None
        known = {**variables, **captures}
        found = compile_pattern(value_pattern, known).fullmatch(values[name])
        if found is None:
            return None
        captures.update({k: v for k, v in found.groupdict().items() if v is not None})
    return captures


def _split_fetch(text: str) -> tuple[str, list[tuple[str, str]]] | None:
    """``* 3 FETCH (A x B (y z))`` → (``* 3``, [(``A``, ``x``), (``B``, ``(y z)``)]); the
    same for ``* STATUS mailbox (A 1 B 2)``."""
    if not text.startswith("* ") or not text.endswith(")"):
        return None
    if text.startswith("* STATUS ") and "\r\n" not in text:
        idx = text.rfind(" (")
        skip = 2
    else:
        idx = text.find(" FETCH (")
        skip = 8
    if idx < 0:
        return None
    data = text[idx + skip : -1].encode("utf-8", "surrogateescape")
    items: list[tuple[str, str]] = []
    pos = 0
    try:
        while pos < len(data):
            start = pos
            while pos < len(data) and data[pos] != 0x20:
                if data[pos] == ord("["):
                    pos = data.index(b"]", pos)
                elif data[pos] == ord("<"):
                    pos = data.index(b">", pos)
                pos += 1
            name = data[start:pos]
            if pos >= len(data) or not name:
                return None
            value_start = pos + 1
            pos = _skip_value(data, value_start)
            items.append(
                (
                    name.decode("utf-8", "surrogateescape").upper(),
                    data[value_start:pos].decode("utf-8", "surrogateescape"),
                )
            )
            if pos < len(data):
                if data[pos] != 0x20:
                    return None
                pos += 1
    except (ValueError, IndexError):
        return None
    return text[:idx], items


def _skip_value(data: bytes, pos: int) -> int:
    """The offset just past one value (atom, quoted string, literal or list) at ``pos``."""
    depth = 0
    while True:
        if data.startswith(b"%(", pos):  # an unordered-list pattern
            pos += 1
        char = data[pos]
        if char == ord('"'):
            pos += 1
            while data[pos] != ord('"'):
                pos += 2 if data[pos] == ord("\\") else 1
            pos += 1
        elif char in (ord("{"), ord("~")) and (
            literal := re.match(rb"~?\{(\d+)\+?\}\r\n", data[pos:])
        ):
            pos += literal.end() + int(literal[1])
        elif char == ord("("):
            depth += 1
            pos += 1
        elif char == ord(")"):
            if depth == 0:
                raise ValueError("unbalanced )")
            depth -= 1
            pos += 1
        else:
            while pos < len(data) and data[pos] not in b" ()":
                pos += 1
        if depth == 0:
            return pos
        if pos >= len(data):
            raise ValueError("unterminated list")
        if data[pos] == 0x20:
            pos += 1


def decode_raw(text: str) -> bytes:
    """``R:`` text to bytes: ``\\r \\n \\t \\\\ \\xHH`` escapes, the rest as UTF-8."""
    out = bytearray()
    pos = 0
    for esc in _RAW_ESCAPE.finditer(text):
        out += text[pos : esc.start()].encode()
        code = esc[1]
        if code.startswith("x"):
            out.append(int(code[1:], 16))
        else:
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[code]
        pos = esc.end()
    out += text[pos:].encode()
    return bytes(out)


_AUTH_WAIT = b"* OK Waiting for authentication process to respond"


class ConnectionClosedError(Exception):
    """The server closed the connection."""


class Connection:
    """One client connection: sends bytes, reads logical responses (lines with literals)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket = sock
        self.buf = bytearray()
        self.pending: deque[str] = deque()
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _complete(self) -> int | None:
        """Offset just past the first complete response in the buffer, if there is one."""
        pos = 0
        while True:
            idx = self.buf.find(b"\r\n", pos)
            if idx < 0:
                return None
            literal = _RESP_LITERAL.search(bytes(self.buf[pos:idx]))
            if literal is None:
                return idx + 2
            end = idx + 2 + int(literal[1])
            if len(self.buf) < end:
                return None
            pos = end

    def next_response(self, timeout: float) -> str | None:
        """The next response, or ``None`` if none arrives within ``timeout`` seconds."""
        if self.pending:
            return self.pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            end = self._complete()
            if end is not None:
                data = bytes(self.buf[: end - 2])
                del self.buf[:end]
                if data.startswith(_AUTH_WAIT):
                    # Dovecot's login process says this before its greeting when its auth
                    # process is slow to answer (a loaded machine); it is no IMAP response.
                    continue
                return data.decode("utf-8", "surrogateescape")
            if self.closed:
                raise ConnectionClosedError(bytes(self.buf).decode("utf-8", "replace"))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except (ConnectionResetError, ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
            self.buf += chunk

    def push_back(self, response: str) -> None:
        self.pending.appendleft(response)

    def unread(self, wait: float) -> str | None:
        """Whatever the server has sent that nobody read (waiting up to ``wait`` seconds)."""
        if self.pending:
            return self.pending[0]
        if self.buf:
            return bytes(self.buf).decode("utf-8", "replace")
        if self.closed:
            return None
        try:
            got = self.next_response(wait)
        except ConnectionClosedError:
            return None
        return got

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _Run:
    """The state of one script run."""

    def __init__(
        self,
        name: str,
        steps: list[Step],
        *,
        host: str,
        port: int,
        variables: Mapping[str, str],
        timeout: float,
    ) -> None:
        self.name = name
        self.steps = steps
        self.host = host
        self.port = port
        self.vars: dict[str, str] = dict(variables)
        self.vars.setdefault("host", host)
        self.vars.setdefault("port", str(port))
        if "user" in self.vars and "pass" in self.vars:
            plain = f"\0{self.vars['user']}\0{self.vars['pass']}".encode()
            self.vars.setdefault("auth_plain", base64.b64encode(plain).decode())
        self.timeout = timeout
        self.conns: dict[int, Connection] = {}
        self.transcript: list[str] = []
        self.secrets = [
            v for k, v in self.vars.items() if (k.startswith("pass") or k == "auth_plain") and v
        ]

    # ---- helpers -------------------------------------------------------------------

    def log(self, direction: str, conn: int, text: str) -> None:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for line in text.split(CRLF):
            self.transcript.append(f"{direction}{conn}: {line}")

    def conn(self, number: int) -> Connection:
        if number not in self.conns:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns[number] = Connection(sock)
            self.transcript.append(f"--{number}: connected to {self.host}:{self.port}")
        return self.conns[number]

    def substitute(self, text: str, lineno: int) -> str:
        def repl(found: re.Match[str]) -> str:
            name = found[1]
            if name not in self.vars:
                raise ScriptError(f"line {lineno}: undefined variable ${{{name}}}")
            return self.vars[name]

        return _VAR.sub(repl, text)

    def fail(self, lineno: int, message: str) -> ScriptFailureError:
        return ScriptFailureError(f"line {lineno}: {message}")

    def receive(self, conn: int, timeout: float, lineno: int, wanted: str) -> str | None:
        try:
            response = self.conn(conn).next_response(timeout)
        except ConnectionClosedError as closed:
            tail = f" (partial data: {closed.args[0]!r})" if closed.args[0] else ""
            raise self.fail(
                lineno, f"connection {conn} closed by the server; expected {wanted!r}{tail}"
            ) from None
        return response

    # ---- steps ---------------------------------------------------------------------

    def run(self) -> None:
        for index, step in enumerate(self.steps):
            if isinstance(step, Send):
                self.do_send(index, step)
            elif isinstance(step, Expect):
                self.do_expect(step)
            elif isinstance(step, ExpectGroup):
                self.do_group(step)
            else:
                self.do_directive(step)
        for number, conn in sorted(self.conns.items()):
            left = conn.unread(0.05)
            if left is not None:
                self.log("S", number, left)
                raise ScriptFailureError(
                    f"end of script: unexpected response on {number}: {left!r}"
                )

    def _literal_lines(self, index: int, conn: int) -> list[Send]:
        """The ``L:`` lines that carry the literal opened by the ``C:`` step at ``index``."""
        found: list[Send] = []
        for step in self.steps[index + 1 :]:
            if isinstance(step, Send) and step.conn == conn:
                if step.kind != "L":
                    break
                found.append(step)
        return found

    def do_send(self, index: int, step: Send) -> None:
        if step.kind == "R":
            data = decode_raw(self.substitute(step.text, step.lineno))
            self.log("R", step.conn, repr(data))
            self.conn(step.conn).send(data)
            return
        text = self.substitute(step.text, step.lineno)
        literal = _CMD_LITERAL.search(text) if step.kind == "C" else None
        if literal is not None:
            lines = self._literal_lines(index, step.conn)
            size = sum(len(s.data(self.substitute(s.text, s.lineno))) for s in lines)
            if literal[1] == "*":
                if not lines:
                    raise ScriptError(f"line {step.lineno}: {{*}} literal without L: lines")
                text = text[: literal.start()] + f"{{{size}{literal[2]}}}"
            elif lines and int(literal[1]) != size:
                raise ScriptError(
                    f"line {step.lineno}: literal says {literal[1]} bytes, L: lines hold {size}"
                )
        self.log("C" if step.kind == "C" else "L", step.conn, text)
        self.conn(step.conn).send(step.data(text))
        if literal is not None and not literal[2] and self._literal_lines(index, step.conn):
            following = self.steps[index + 1] if index + 1 < len(self.steps) else None
            explicit = isinstance(following, Expect) and following.conn == step.conn
            if not explicit:
                self.do_expect(Expect(step.conn, ["+ *"], False, False, step.lineno))

    def do_expect(self, step: Expect) -> None:
        conn = self.conn(step.conn)
        buffered = bool(conn.pending) or conn._complete() is not None
        timeout = self.timeout if not step.optional or buffered else OPTIONAL_GRACE
        response = self.receive(step.conn, timeout, step.lineno, step.pattern)
        if response is None:
            if step.optional:
                return
            raise self.fail(
                step.lineno,
                f"timed out after {timeout}s on connection {step.conn}; expected {step.pattern!r}",
            )
        captures = match_response(step.pattern, response, self.vars)
        if captures is None:
            if step.optional:
                conn.push_back(response)
                return
            self.log("S", step.conn, response)
            raise self.fail(
                step.lineno,
                f"connection {step.conn}:\n  expected: {step.pattern!r}\n  got:      {response!r}",
            )
        self.log("S", step.conn, response)
        self.vars.update(captures)

    def _assign(
        self, responses: list[str], items: list[Expect], cover_required: bool
    ) -> list[tuple[int, dict[str, str]]] | None:
        """Give each response a distinct matching item (and, if asked, use every required one)."""
        table = [[match_response(it.pattern, r, self.vars) for it in items] for r in responses]
        used: list[bool] = [False] * len(items)
        chosen: list[tuple[int, dict[str, str]]] = []

        def search(i: int) -> bool:
            if i == len(responses):
                return not cover_required or all(
                    used[j] or items[j].optional for j in range(len(items))
                )
            for j in range(len(items)):
                caps = table[i][j]
                if not used[j] and caps is not None:
                    used[j] = True
                    chosen.append((j, caps))
                    if search(i + 1):
                        return True
                    used[j] = False
                    chosen.pop()
            return False

        return chosen if search(0) else None

    def do_group(self, group: ExpectGroup) -> None:
        conn = self.conn(group.conn)
        items = group.items
        responses: list[str] = []
        wanted = " | ".join(repr(it.pattern) for it in items)
        while self._assign(responses, items, cover_required=True) is None:
            response = self.receive(group.conn, self.timeout, group.lineno, wanted)
            if response is None:
                raise self.fail(
                    group.lineno,
                    f"timed out after {self.timeout}s on connection {group.conn}; "
                    f"still expecting some of (unordered): {wanted}",
                )
            self.log("S", group.conn, response)
            responses.append(response)
            if self._assign(responses, items, cover_required=False) is None:
                raise self.fail(
                    group.lineno,
                    f"connection {group.conn}: response {response!r} matches none of the "
                    f"remaining unordered expectations: {wanted}",
                )
        while len(responses) < len(items):
            buffered = bool(conn.pending) or conn._complete() is not None
            extra = self.receive(
                group.conn, self.timeout if buffered else OPTIONAL_GRACE, group.lineno, wanted
            )
            if extra is None:
                break
            if self._assign([*responses, extra], items, cover_required=True) is None:
                conn.push_back(extra)
                break
            self.log("S", group.conn, extra)
            responses.append(extra)
        final = self._assign(responses, items, cover_required=True)
        assert final is not None
        for _, caps in final:
            self.vars.update(caps)

    def do_directive(self, step: Directive) -> None:
        name, args = step.name, step.args

        def number() -> int:
            return int(args[0]) if args else 1

        if name == "connect":
            self.conn(number())
        elif name == "close":
            conn = self.conns.pop(number(), None)
            if conn is not None:
                conn.close()
                self.transcript.append(f"--{number()}: closed by the client")
        elif name == "eof":
            try:
                response = self.conn(number()).next_response(self.timeout)
            except ConnectionClosedError:
                self.transcript.append(f"--{number()}: closed by the server")
                self.conns.pop(number()).close()
                return
            if response is None:
                raise self.fail(step.lineno, f"connection {number()} still open after timeout")
            self.log("S", number(), response)
            raise self.fail(step.lineno, f"expected end of connection, got {response!r}")
        elif name == "starttls":
            conn = self.conn(number())
            if conn.pending or conn.buf:
                raise self.fail(step.lineno, "data after the STARTTLS reply (injection?)")
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn.sock = context.wrap_socket(conn.sock, server_hostname=self.host)
            self.transcript.append(f"--{number()}: TLS {conn.sock.version()}")
        elif name == "sleep":
            time.sleep(float(args[0]))
        elif name == "timeout":
            self.timeout = float(args[0])
        elif name == "set":
            self.vars[args[0]] = self.substitute(" ".join(args[1:]), step.lineno)
        else:
            raise ScriptError(f"line {step.lineno}: unknown directive !{name}")

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def run_script(
    script: Path | str,
    host: str,
    port: int,
    variables: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    name: str | None = None,
) -> ScriptResult:
    """Run one script (a path, or the text itself with ``name``) and report how it went."""
    if isinstance(script, Path):
        text = script.read_text(encoding="utf-8")
        name = name or script.stem
    else:
        text = script
        name = name or "<script>"
    started = time.monotonic()
    try:
        steps = parse_script(text)
    except ScriptError as exc:
        return ScriptResult(name, False, f"script error: {exc}")
    run = _Run(name, steps, host=host, port=port, variables=variables, timeout=timeout)
    try:
        run.run()
    except (ScriptFailureError, ScriptError) as exc:
        return ScriptResult(name, False, str(exc), run.transcript, time.monotonic() - started)
    except OSError as exc:
        return ScriptResult(
            name, False, f"network error: {exc!r}", run.transcript, time.monotonic() - started
        )
    except Exception as exc:  # a runner bug must not hide the other scripts' results
        return ScriptResult(
            name, False, f"runner error: {exc!r}", run.transcript, time.monotonic() - started
        )
    finally:
        run.close()
    return ScriptResult(name, True, None, run.transcript, time.monotonic() - started)


def script_users(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """One fresh (user, password) per script, so every script starts from an empty account."""
    return {name: (f"{name.replace('_', '-')}@localhost", secrets.token_hex(8)) for name in names}


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.transcripts.runner HOST:PORT USER PASS [SCRIPT...]`` (manual runs)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("address", help="host:port")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("scripts", nargs="*", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    failed = 0
    for path in args.scripts or all_scripts():
        result = run_script(path, host, int(port), {"user": args.user, "pass": args.password})
        print(result.report() if (args.verbose or not result.passed) else f"{path.stem}: PASS")
        failed += not result.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
