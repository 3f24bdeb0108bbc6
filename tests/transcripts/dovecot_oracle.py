"""Debian's Dovecot (2.3.x) as the oracle for the transcript scripts.

``DovecotOracle`` starts a throwaway ``dovecot -F`` in a temporary directory: its own
``base_dir``/``state_dir``/log, a passwd-file with one user per script, single-dbox storage
(``sdbox``, the dbox family obox descends from; unlike maildir it can rename INBOX;
separator ``/`` like Columba's), the same INBOX namespace as
Columba's ``@mailbox_defaults = english`` (Drafts, Junk, Sent, Trash auto-subscribed with
their special-use flags), STARTTLS with a self-signed certificate, COMPRESS (imap_zlib),
METADATA and URLAUTH (attributes in a file dict in each home, ``imap_urlauth_host`` as
Columba's), on a free loopback port.
Nothing outside the temporary directory is written. As root, mail is accessed as ``nobody``
and the login/internal services run as Debian's ``dovenull``/``dovecot``; as any other user,
everything runs as that user.

``python -m tests.transcripts.dovecot_oracle [-v] [SCRIPT...]`` runs the scripts and prints
pass/fail per script (scripts the table in ``test_transcripts`` marks columba-only are
skipped with their reason).
"""

from __future__ import annotations

import argparse
import datetime
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.transcripts.columba_server import URLAUTH_HOST
from tests.transcripts.runner import ScriptResult, all_scripts, run_script, script_users

__all__ = ["DovecotInstance", "dovecot_binary", "dovecot_instance", "run_against_dovecot"]

MAIL_LOCATION = "sdbox:~/sdbox"
SCRIPT_USERDB_FIELDS = {"notify": "userdb_mailbox_list_index=yes"}
"""Per-script userdb settings (passwd-file extra fields): Dovecot offers NOTIFY only with the
mailbox list index, which changes other LIST answers (``\\UnMarked``), so only there."""

DOVECOT_MAILBOXES_AND_PASSDB = """\
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Drafts {{
    auto = subscribe
    special_use = \\Drafts
  }}
  mailbox Junk {{
    auto = subscribe
    special_use = \\Junk
  }}
  mailbox Sent {{
    auto = subscribe
    special_use = \\Sent
  }}
  mailbox Trash {{
    auto = subscribe
    special_use = \\Trash
  }}
}}

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
"""
"""Dovecot 2.3 config shared by the oracle and bench/peers.py: the INBOX namespace with the
special-use mailboxes of Columba's ``@mailbox_defaults = english``, and the passwd-file passdb
(for ``str.format``: braces doubled, ``{root}`` filled in)."""

DOVECOT_CONF = (
    """\
# Throwaway Dovecot 2.3 instance for the Columba transcript oracle.
instance_name = columba-oracle-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}

ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
auth_cache_size = 0
auth_failure_delay = 0

mail_location = {mail_location}
mailbox_list_index = no
"""
    + DOVECOT_MAILBOXES_AND_PASSDB
    + """userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  # auth can't reach the penalty socket, so failed logins don't delay later ones
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap {{
  process_limit = 64
}}

# COMPRESS=DEFLATE (RFC 4978)
protocol imap {{
  mail_plugins = $mail_plugins imap_zlib
}}

# METADATA (RFC 5464) and URLAUTH (RFC 4467; its keys are mailbox attributes too)
mail_attribute_dict = file:%h/dovecot-attributes
imap_metadata = yes
imap_urlauth_host = {urlauth_host}
service imap-urlauth-login {{
  chroot =
}}
"""
)


def dovecot_binary() -> str | None:
    """The ``dovecot`` executable, if Debian's package is installed."""
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_certificate(cert: Path, key: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)


@dataclass
class DovecotInstance:
    """A running throwaway Dovecot."""

    host: str
    port: int
    root: Path
    users: dict[str, tuple[str, str]]

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "dovecot.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _accounts() -> tuple[str, str, str, int, int]:
    """(login user, internal user, internal group, mail uid, mail gid) for this process."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return "dovenull", "dovecot", "dovecot", nobody.pw_uid, nobody.pw_gid
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(os.getegid()).gr_name
    return me.pw_name, me.pw_name, group, os.geteuid(), os.getegid()


def _ready(port: int) -> bool:
    """Dovecot greets with its capabilities (not "Waiting for authentication process")."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(5)
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                line += chunk
            return line.startswith(b"* OK [CAPABILITY ")
    except OSError:
        return False


@contextmanager
def dovecot_instance(users: dict[str, tuple[str, str]]) -> Iterator[DovecotInstance]:
    """Start Dovecot with these accounts (script name → (user, password)); stop it after."""
    binary = dovecot_binary()
    if binary is None:
        raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
    login_user, internal_user, internal_group, mail_uid, mail_gid = _accounts()
    root = Path(tempfile.mkdtemp(prefix="columba-dovecot-"))
    root.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for sub in ("run", "state", "tls", "home"):
            (root / sub).mkdir(mode=0o755)
        _write_certificate(root / "tls" / "cert.pem", root / "tls" / "key.pem")
        passwd = root / "users"
        passwd.write_text(
            "".join(
                f"{u}:{p}::::::{SCRIPT_USERDB_FIELDS.get(script, '')}\n"
                for script, (u, p) in users.items()
            )
        )
        passwd.chmod(0o600)
        if os.geteuid() == 0:
            internal = pwd.getpwnam(internal_user)
            os.chown(passwd, internal.pw_uid, internal.pw_gid)
            os.chown(root / "home", mail_uid, mail_gid)
        port = free_port()
        conf = root / "dovecot.conf"
        conf.write_text(
            DOVECOT_CONF.format(
                root=root,
                port=port,
                login_user=login_user,
                internal_user=internal_user,
                internal_group=internal_group,
                mail_uid=mail_uid,
                mail_gid=mail_gid,
                mail_location=os.environ.get("COLUMBA_ORACLE_MAIL_LOCATION", MAIL_LOCATION),
                urlauth_host=URLAUTH_HOST,
            )
        )
        proc = subprocess.Popen(
            [binary, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not _ready(port):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                raise RuntimeError(f"dovecot exited ({proc.returncode}): {err}{log}")
            if time.monotonic() > deadline:
                raise RuntimeError("dovecot did not start listening within 20s")
            time.sleep(0.05)
        yield DovecotInstance("127.0.0.1", port, root, users)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(root, ignore_errors=True)


def run_against_dovecot(
    scripts: list[Path], verbose: bool = False
) -> tuple[list[ScriptResult], dict[str, str]]:
    """Run scripts on a fresh Dovecot; return the results and the skipped scripts' reasons."""
    from tests.transcripts.test_transcripts import COLUMBA_ONLY

    skipped = {p.stem: COLUMBA_ONLY[p.stem] for p in scripts if p.stem in COLUMBA_ONLY}
    runnable = [p for p in scripts if p.stem not in skipped]
    users = script_users([p.stem for p in runnable])
    results: list[ScriptResult] = []
    with dovecot_instance(users) as dovecot:
        for path in runnable:
            user, password = users[path.stem]
            results.append(
                run_script(path, dovecot.host, dovecot.port, {"user": user, "pass": password})
            )
        if verbose and not all(r.passed for r in results):
            print("--- dovecot.log (tail) ---\n" + dovecot.log_tail())
    return results, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the IMAP transcripts against Dovecot")
    parser.add_argument("scripts", nargs="*", help="script names or paths (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show transcripts")
    args = parser.parse_args(argv)
    every = {p.stem: p for p in all_scripts()}
    chosen = [every[Path(s).stem] for s in args.scripts] if args.scripts else list(every.values())
    if dovecot_binary() is None:
        print("dovecot is not installed (apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    results, skipped = run_against_dovecot(chosen, args.verbose)
    for result in results:
        if result.passed and not args.verbose:
            print(f"PASS  {result.name} ({result.seconds:.2f}s)")
        else:
            print(("PASS  " if result.passed else "FAIL  ") + result.report())
    for name, reason in sorted(skipped.items()):
        print(f"SKIP  {name}: columba-only ({reason})")
    failed = [r.name for r in results if not r.passed]
    print(
        f"\n{len(results) - len(failed)} passed, {len(failed)} failed, {len(skipped)} skipped "
        "against Dovecot" + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
