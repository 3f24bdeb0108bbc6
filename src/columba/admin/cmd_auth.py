"""``columba auth test USER [PASSWORD]`` and ``columba user USER`` (doveadm auth test / user)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TYPE_CHECKING

from columba.config import ConfigError, SettingsView, load

if TYPE_CHECKING:
    from columba.auth.service import Authenticator

EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_CONFIG = 2
AUTH_FAILED = 77


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    auth = sub.add_parser("auth", parents=[common], help="authentication tests (doveadm auth)")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    test = auth_sub.add_parser("test", parents=[common], help="authenticate a user")
    test.add_argument(
        "-x",
        dest="fields",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="request fields: protocol=, rip=, lip=",
    )
    test.add_argument("user")
    test.add_argument("password", nargs="?")
    test.set_defaults(func=run_test)
    user = sub.add_parser("user", parents=[common], help="look a user up in the userdb")
    user.add_argument("user")
    user.set_defaults(func=run_user)


def _authenticator(args: argparse.Namespace) -> Authenticator | int:
    from columba.auth.service import Authenticator

    try:
        config = load(args.config, args.override)
        return Authenticator(SettingsView(config.schema, config.root))
    except ConfigError as exc:
        print(f"columba: Fatal: {exc}", file=sys.stderr)
        return EX_CONFIG


def run_test(args: argparse.Namespace) -> int:
    from columba.auth.service import AuthRequest

    auth = _authenticator(args)
    if isinstance(auth, int):
        return auth
    password = args.password if args.password is not None else getpass.getpass("Password: ")
    fields = dict(f.partition("=")[::2] for f in args.fields)
    request = AuthRequest(
        args.user,
        password,
        protocol=fields.get("protocol", "imap"),
        remote_ip=fields.get("rip", "127.0.0.1"),
        local_ip=fields.get("lip", "127.0.0.1"),
        secured=True,
    )
    auth.penalty.base_delay = 0.0  # an admin's test is not an attack
    result = asyncio.run(auth.authenticate(request))
    if not result.ok:
        kind = "internal failure" if result.temporary else "auth failed"
        print(f"passdb: {result.user} {kind}: {result.reason}")
        return EX_TEMPFAIL if result.temporary else AUTH_FAILED
    print(f"passdb: {result.user} auth succeeded")
    if result.fields:
        print("extra fields:")
        for key, value in sorted(result.fields.items()):
            print(f"  {key}={'<hidden>' if key in ('pass', 'password') else value}")
    return 0


def run_user(args: argparse.Namespace) -> int:
    from columba.auth.service import AuthError

    auth = _authenticator(args)
    if isinstance(auth, int):
        return auth
    user = auth.normalize(args.user) or args.user
    try:
        info = asyncio.run(auth.lookup_user(user))
    except AuthError as exc:
        print(f"columba: Error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    if info is None:
        print(f"userdb lookup: user {user} doesn't exist", file=sys.stderr)
        return EX_NOUSER
    print(f"field\tvalue\nuser\t{info.username}\nhome\t{info.home}")
    for key, value in sorted(info.fields.items()):
        if key != "home":
            print(f"{key}\t{value}")
    return 0
