"""``make run``: an all-in-one Columba on loopback with a demo user, ready to connect to.

Writes ``var/demo/columba.conf`` — the single-node example configuration with its paths moved
under ``var/demo`` and nothing else changed — a passwd-file with the demo user, and a
self-signed certificate, then runs ``columba serve`` in the foreground and says how to connect.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SINGLE_NODE_CONF = """\
# Columba on one machine: every role in one process, embedded storage under
# /var/lib/columba (mail objects as files, the dict in SQLite, per-user
# indexes under each home). No external server is needed.
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0

listen = 127.0.0.1
protocols = imap lmtp
base_dir = /var/lib/columba/run

service imap-login {
  inet_listener imap {
    port = 1143
  }
  inet_listener imaps {
    port = 1993
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    port = 1024
  }
}

ssl = yes
ssl_server_cert_file = /var/lib/columba/tls/cert.pem
ssl_server_key_file = /var/lib/columba/tls/key.pem
login_trusted_networks = 127.0.0.0/8

# user:{SCHEME}password:uid:gid::home:: lines, as in Dovecot's passwd-file.
passdb passwd-file {
  passwd_file_path = /var/lib/columba/users
}
userdb passwd-file {
  passwd_file_path = /var/lib/columba/users
  fields {
    home = /var/lib/columba/home/%{user}
  }
}

mail_driver = obox
fs_compress_write_method = zstd
obox {
  fs compress {
  }
  fs dictmap {
    dict sqlite {
      sqlite_path = /var/lib/columba/dict.db
    }
  }
  fs posix {
    fs_posix_prefix = /var/lib/columba/objects/
  }
}

@mailbox_defaults = english
postmaster_address = postmaster@localhost
"""
"""The text of ../shared/examples/single-node.conf (a test keeps the two identical)."""

DEMO_USER = "demo@localhost"
DEMO_PASSWORD = "demo"


def single_node_config(data_dir: Path, ports: dict[str, int] | None = None) -> str:
    """The single-node example with its data under ``data_dir`` and, optionally, other ports."""
    text = SINGLE_NODE_CONF.replace("/var/lib/columba", str(data_dir))
    defaults = {"imap": 1143, "imaps": 1993, "lmtp": 1024}
    for name, port in (ports or {}).items():
        text = text.replace(
            f"inet_listener {name} {{\n    port = {defaults[name]}\n",
            f"inet_listener {name} {{\n    port = {port}\n",
        )
    return text


def prepare(data_dir: Path, ports: dict[str, int] | None = None) -> Path:
    """Write the demo configuration, users file and certificate; return the config path."""
    from columba.auth import schemes
    from columba.net.tls import ensure_self_signed

    data_dir = data_dir.resolve()
    for sub in ("run", "tls", "home", "objects"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    ensure_self_signed(data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem")
    users = data_dir / "users"
    if not users.exists():
        hashed = schemes.generate("SHA512-CRYPT", DEMO_PASSWORD)
        users.write_text(f"{DEMO_USER}:{hashed}::::::\n")
        users.chmod(0o600)
    conf = data_dir / "columba.conf"
    conf.write_text(single_node_config(data_dir, ports))
    return conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the Columba demo server")
    parser.add_argument("--data-dir", default=os.environ.get("COLUMBA_DEMO_DIR", "var/demo"))
    args = parser.parse_args(argv)
    conf = prepare(Path(args.data_dir))
    print(
        f"""Columba demo server (all roles in one process)
  config:  {conf}
  user:    {DEMO_USER}   password: {DEMO_PASSWORD}
  IMAP:    127.0.0.1:1143 (STARTTLS)   IMAPS: 127.0.0.1:1993 (self-signed certificate)
  LMTP:    127.0.0.1:1024
Try:
  python3 -c "import imaplib; m = imaplib.IMAP4('127.0.0.1', 1143); \\
m.login('{DEMO_USER}', '{DEMO_PASSWORD}'); print(m.list())"
  swaks --protocol LMTP --server 127.0.0.1:1024 --to {DEMO_USER}
  .venv/bin/columba config -c {conf} -n
Stop with Ctrl-C.""",
        flush=True,
    )
    from columba.cli import main as columba_main

    return columba_main(["serve", "-c", str(conf)])


if __name__ == "__main__":
    sys.exit(main())
