"""``columba pw`` (doveadm pw): hash a password with a scheme, or test one against a hash."""

from __future__ import annotations

import argparse
import getpass
import sys

EX_USAGE = 64
EX_DATAERR = 65


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("pw", help="hash a password (doveadm pw)")
    cmd.add_argument("-s", dest="scheme", default="CRYPT", help="password scheme (default CRYPT)")
    cmd.add_argument("-r", dest="rounds", type=int, help="rounds for the scheme")
    cmd.add_argument("-p", dest="password", help="the password (asked for if not given)")
    cmd.add_argument("-u", dest="user", default="", help="user name (for schemes that use it)")
    cmd.add_argument("-t", dest="test", metavar="HASH", help="test the password against HASH")
    cmd.add_argument("-l", dest="list", action="store_true", help="list the schemes")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from columba.auth import schemes

    if args.list:
        print(" ".join(sorted(schemes.SCHEMES)))
        return 0
    password = args.password
    if password is None:
        password = getpass.getpass("Enter new password: ")
        if args.test is None and getpass.getpass("Retype new password: ") != password:
            print("columba: Fatal: Passwords don't match!", file=sys.stderr)
            return EX_USAGE
    try:
        if args.test is not None:
            stored = args.test
            if schemes.verify(stored, password, user=args.user, allow_weak=True):
                print(f"{stored} (verified)")
                return 0
            print(
                "columba: Fatal: reverse password verification check failed: Password mismatch",
                file=sys.stderr,
            )
            return EX_DATAERR
        print(schemes.generate(args.scheme.upper(), password, rounds=args.rounds, user=args.user))
    except schemes.PasswordSchemeError as exc:
        print(f"columba: Fatal: {exc}", file=sys.stderr)
        return EX_USAGE
    return 0
