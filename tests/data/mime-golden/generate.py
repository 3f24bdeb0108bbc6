#!/usr/bin/env python3
"""Regenerate the MIME golden answers from Debian's Dovecot (the oracle).

What it does, step by step:

1. Splits ``shared/data/imaptest-200.mbox`` into messages with :func:`split_mbox`
   (a ``From `` line at the start of the file or after an empty line starts a
   message; the empty separator line before it is not part of the previous
   message; ``>From`` lines are kept as they are, nothing is unquoted).  The
   hand-written edge cases in ``tricky/*.eml`` are read as they are.  Every
   message is converted to CRLF (bare LF -> CRLF), as Columba stores it.
2. Starts a throwaway Dovecot under a temporary directory: maildir storage, a
   passwd-file user per data set, an IMAP listener on 127.0.0.1 with an
   unprivileged port (needed only because ``doveadm`` talks to the auth
   service through the running master).
3. Saves the messages in order with ``doveadm save`` (so UID n is message n-1).
4. Opens a preauthenticated IMAP session (``doveadm exec imap`` over a pipe, read
   byte-exactly by :class:`ImapPipe` - literals and 8-bit bytes kept, which
   ``doveadm -f json fetch`` would not) and records RFC822.SIZE, ENVELOPE, BODY and
   BODYSTRUCTURE (without the outer parentheses, as ``imap.bodystructure`` prints them).
5. In the same session fetches, for every message, BODY[HEADER],
   BODY[TEXT], BODY[1], BODY[1.MIME], a HEADER.FIELDS and a HEADER.FIELDS.NOT
   section, a part that does not exist, and for every part found in Dovecot's
   own BODYSTRUCTURE: BODY[p], BODY[p.MIME] and, for message/rfc822 parts,
   BODY[p.HEADER], BODY[p.TEXT] and BODY[p.HEADER.FIELDS (Subject From)].
   Section contents are stored as length + sha256 (and the bytes themselves
   when short) to keep the files small.
6. Writes ``corpus.json`` (the 200 corpus messages) and ``tricky.json`` (the
   edge cases) beside this script.

Strings are stored as UTF-8 with undecodable bytes as lone surrogates (Python's
``surrogateescape``), so ``s.encode("utf-8", "surrogateescape")`` gives Dovecot's bytes.

Run it as root on a Debian machine with ``apt-get install -y dovecot-imapd``:

    python3 tests/data/mime-golden/generate.py [--mbox PATH]

Dovecot version used for the committed files: recorded in each JSON file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEFAULT_MBOX = REPO.parent / "shared/data/imaptest-200.mbox"
MAX_SECTION_PARTS = 40  # parts per message whose sections are recorded
INLINE_MAX = 400  # section bytes up to this size are stored verbatim (base64)

_FROM_LINE = re.compile(rb"From [^\n]*\n")


def split_mbox(data: bytes) -> list[bytes]:
    """Split an mbox file into raw messages (From_ line and separator removed)."""
    messages: list[bytes] = []
    starts: list[tuple[int, int]] = []  # (start of From_ line, start of message)
    pos = 0
    while pos < len(data):
        if data.startswith(b"From ", pos) and (
            pos == 0 or data[pos - 2 : pos] == b"\n\n" or data[pos - 3 : pos] == b"\n\r\n"
        ):
            m = _FROM_LINE.match(data, pos)
            if m is not None:
                starts.append((pos, m.end()))
                pos = m.end()
                continue
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    for i, (_, body_start) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(data)
        msg = data[body_start:end]
        # the empty line that separates messages belongs to the mbox, not the message
        if msg.endswith(b"\r\n\r\n") or msg.endswith(b"\n\r\n"):
            msg = msg[:-2]
        elif msg.endswith(b"\n\n"):
            msg = msg[:-1]
        messages.append(msg)
    return messages


def to_crlf(raw: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


# --- a tiny reader for Dovecot's BODYSTRUCTURE text, to enumerate sections ---

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n|([^\s()"]+))')


def _parse_sexp(text: bytes) -> list[Any]:
    stack: list[list[Any]] = [[]]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == b"":
                break
            raise ValueError(f"cannot parse at {pos}: {text[pos : pos + 40]!r}")
        pos = m.end()
        if m.group(1):
            stack.append([])
        elif m.group(2):
            done = stack.pop()
            stack[-1].append(done)
        elif m.group(3) is not None:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", m.group(3)).decode("utf-8", "replace"))
        elif m.group(4) is not None:
            n = int(m.group(4))
            stack[-1].append(text[pos : pos + n].decode("utf-8", "replace"))
            pos += n
        else:
            atom = m.group(5).decode()
            stack[-1].append(None if atom == "NIL" else atom)
    return stack[0]


def enumerate_parts(bodystructure: str) -> list[tuple[str, str]]:
    """Section paths and their content type, from Dovecot's BODYSTRUCTURE."""
    out: list[tuple[str, str]] = []

    def walk(node: list[Any], prefix: str) -> None:
        # multipart: the children are the leading lists, then the subtype
        for i, child in enumerate(c for c in _leading_lists(node)):
            path = f"{prefix}{i + 1}"
            out.append((path, _ctype(child)))
            walk_inner(child, path)

    def walk_inner(node: list[Any], path: str) -> None:
        if node and isinstance(node[0], list):
            walk(node, path + ".")
        elif _ctype(node) == "message/rfc822" and len(node) > 8 and isinstance(node[8], list):
            inner = node[8]
            if inner and isinstance(inner[0], list):
                walk(inner, path + ".")
            else:
                out.append((path + ".1", _ctype(inner)))
                walk_inner(inner, path + ".1")

    root = _parse_sexp(bodystructure.encode("utf-8", "surrogateescape"))
    if root and isinstance(root[0], list):
        walk(root, "")
    else:
        out.append(("1", _ctype(root)))
        walk_inner(root, "1")
    return out


def _leading_lists(node: list[Any]) -> list[list[Any]]:
    kids: list[list[Any]] = []
    for c in node:
        if not isinstance(c, list):
            break
        kids.append(c)
    return kids


def _ctype(node: list[Any]) -> str:
    if node and isinstance(node[0], list):
        sub = next((x for x in node if isinstance(x, str)), "")
        return f"multipart/{sub}".lower()
    if len(node) >= 2 and isinstance(node[0], str) and isinstance(node[1], str):
        return f"{node[0]}/{node[1]}".lower()
    return "?"


def sections_for(bodystructure: str) -> list[str]:
    specs = [
        "HEADER",
        "TEXT",
        "1",
        "1.MIME",
        "HEADER.FIELDS (From To Subject Message-ID Content-Type)",
        "HEADER.FIELDS.NOT (Received Subject Date)",
        "99",
    ]
    for path, ctype in enumerate_parts(bodystructure)[:MAX_SECTION_PARTS]:
        for spec in (path, path + ".MIME"):
            if spec not in specs:
                specs.append(spec)
        if ctype == "message/rfc822":
            specs += [path + ".HEADER", path + ".TEXT", path + ".HEADER.FIELDS (Subject From)"]
    return specs


def describe(data: bytes) -> dict[str, Any]:
    rec: dict[str, Any] = {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if len(data) <= INLINE_MAX:
        rec["b64"] = base64.b64encode(data).decode()
    return rec


# --- the throwaway Dovecot ---


class Dovecot:
    def __init__(self, root: Path, port: int = 14399) -> None:
        self.root = root
        self.conf = root / "dovecot.conf"
        for d in ("run", "state", "mail", "home"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.chown(root / "mail", "nobody", "nogroup")
        shutil.chown(root / "home", "nobody", "nogroup")
        (root / "passwd").write_text(
            "corpus:{PLAIN}x::::::\ntricky:{PLAIN}x::::::\nfuzz:{PLAIN}x::::::\n"
        )
        self.conf.write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
mail_location = maildir:{root}/mail/%u
mail_save_crlf = yes
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
  default_fields = uid=nobody gid=nogroup home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        )

    def start(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True)
        for _ in range(50):
            if (self.root / "run" / "auth-userdb").exists():
                return
            time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.conf), "stop"], check=False)

    def version(self) -> str:
        return subprocess.run(
            ["dovecot", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()

    def doveadm(self, *args: str, stdin: bytes | None = None) -> bytes:
        return subprocess.run(
            ["doveadm", "-c", str(self.conf), *args], input=stdin, capture_output=True, check=True
        ).stdout

    def answers(
        self, user: str, messages: list[bytes], sections: bool = True
    ) -> list[dict[str, Any]]:
        """Save *messages* for *user* (whose mailbox must be empty) and record the answers."""
        for msg in messages:
            self.doveadm("save", "-u", user, stdin=msg)
        out: list[dict[str, Any]] = []
        with ImapPipe(self.conf, user) as imap:
            imap.command(b"SELECT INBOX")
            for i, msg in enumerate(messages):
                seq = i + 1
                rec: dict[str, Any] = {"index": i, "sha256": hashlib.sha256(msg).hexdigest()}
                rec["size"] = int(imap.fetch_item(seq, "RFC822.SIZE"))
                for key, item in (
                    ("envelope", "ENVELOPE"),
                    ("body", "BODY"),
                    ("bodystructure", "BODYSTRUCTURE"),
                ):
                    value = imap.fetch_item(seq, item)
                    assert value.startswith(b"(") and value.endswith(b")"), value[:80]
                    value = value[1:-1]
                    rec[key] = value.decode("utf-8", "surrogateescape")
                if sections:
                    secs: dict[str, Any] = {}
                    for spec in sections_for(rec["bodystructure"]):
                        secs[spec] = describe(imap.fetch_section(seq, spec))
                    rec["sections"] = secs
                out.append(rec)
        return out


class ImapPipe:
    """A preauthenticated IMAP session over ``doveadm exec imap`` that keeps raw bytes."""

    def __init__(self, conf: Path, user: str) -> None:
        self.proc = subprocess.Popen(
            ["doveadm", "-c", str(conf), "exec", "imap", "-u", user],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.rd = self.proc.stdout
        self.wr = self.proc.stdin
        greeting = self.rd.readline()
        if not greeting.startswith(b"* PREAUTH"):
            raise RuntimeError(f"unexpected greeting {greeting!r}")
        self.tag = 0

    def __enter__(self) -> ImapPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.command(b"LOGOUT")
        finally:
            self.proc.wait(timeout=10)

    def _response(self) -> bytes:
        """One full response line, literals included."""
        buf = bytearray()
        while True:
            line = self.rd.readline()
            if not line:
                raise RuntimeError("IMAP session ended")
            buf += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m is None:
                return bytes(buf)
            buf += self.rd.read(int(m.group(1)))

    def command(self, cmd: bytes) -> list[bytes]:
        self.tag += 1
        tag = b"g%d" % self.tag
        self.wr.write(tag + b" " + cmd + b"\r\n")
        self.wr.flush()
        untagged: list[bytes] = []
        while True:
            resp = self._response()
            if resp.startswith(tag + b" "):
                if not resp.startswith(tag + b" OK"):
                    raise RuntimeError(f"{cmd!r} failed: {resp!r}")
                return untagged
            untagged.append(resp)

    def fetch_item(self, seq: int, item: str) -> bytes:
        prefix = b"* %d FETCH (%s " % (seq, item.encode())
        for resp in self.command(b"FETCH %d (%s)" % (seq, item.encode())):
            if resp.startswith(prefix):
                assert resp.endswith(b")\r\n"), resp[-40:]
                return resp[len(prefix) : -3]
        raise RuntimeError(f"no {item} for message {seq}")

    def fetch_section(self, seq: int, spec: str) -> bytes:
        for resp in self.command(b"FETCH %d (BODY.PEEK[%s])" % (seq, spec.encode())):
            if not resp.startswith(b"* %d FETCH (BODY[" % seq):
                continue
            value = resp[resp.index(b"] ") + 2 :]
            if value.startswith(b"{"):
                nl = value.index(b"\r\n")
                n = int(value[1 : nl - 1])
                return value[nl + 2 : nl + 2 + n]
            if value.startswith(b"NIL"):
                return b""
            m = re.match(rb'"((?:[^"\\]|\\.)*)"', value)
            assert m is not None, value[:80]
            return re.sub(rb"\\(.)", rb"\1", m.group(1))
        raise RuntimeError(f"no BODY[{spec}] for message {seq}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mbox", type=Path, default=DEFAULT_MBOX)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--keep", action="store_true", help="leave the Dovecot instance running")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (Dovecot's master needs it)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="columba-mime-golden-"))
    os.chmod(root, 0o755)
    dv = Dovecot(root)
    dv.start()
    try:
        version = dv.version()
        corpus = [to_crlf(m) for m in split_mbox(args.mbox.read_bytes())]
        answers = dv.answers("corpus", corpus)
        _write(args.out / "corpus.json", version, "imaptest-200.mbox", answers)
        names = sorted(p.name for p in (HERE / "tricky").glob("*.eml"))
        tricky = [to_crlf((HERE / "tricky" / n).read_bytes()) for n in names]
        t_answers = dv.answers("tricky", tricky)
        for name, rec in zip(names, t_answers, strict=True):
            rec["name"] = name
        _write(args.out / "tricky.json", version, "tricky/*.eml", t_answers)
    finally:
        if not args.keep:
            dv.stop()
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"Dovecot left running: {dv.conf}")
    return 0


def _write(path: Path, version: str, source: str, messages: list[dict[str, Any]]) -> None:
    doc = {"oracle": f"Dovecot {version}", "source": source, "messages": messages}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({len(messages)} messages)")


if __name__ == "__main__":
    sys.exit(main())
