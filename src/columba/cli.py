"""The ``columba`` command: ``config`` (like doveconf), ``serve``, ``reload``, ``stop``.

Errors in the configuration are reported as ``columba: Fatal: FILE:LINE: ...`` with exit
status 2; usage errors exit 64 (EX_USAGE) like doveadm.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from columba import __version__
from columba.config import ConfigError, ConnectionContext, apply_connection_filters, load
from columba.config.dump import dump, dump_group, quote_if_needed
from columba.config.loader import Config
from columba.config.parser import resolve_known
from columba.config.types import BoolList, StrList, format_value

EX_USAGE = 64
EX_CONFIG = 2
DEFAULT_CONFIG = os.environ.get("COLUMBA_CONFIG", "/etc/columba/columba.conf")


def _fatal(message: str, status: int = EX_CONFIG) -> int:
    print(f"columba: Fatal: {message}", file=sys.stderr)
    return status


def _config_command(args: argparse.Namespace) -> int:
    try:
        config = load(args.config, args.override)
    except ConfigError as exc:
        return _fatal(str(exc))
    if args.group:
        label, _, name = args.group.lstrip("@").partition("/")
        try:
            sys.stdout.write(dump_group(config, label, name, show_secrets=args.show_secrets))
        except KeyError:
            return _fatal(f"Unknown group @{label}/{name}", EX_USAGE)
        return 0
    root = config.root
    if args.filter:
        ctx = ConnectionContext()
        try:
            for text in args.filter:
                ctx = ctx.merged(ConnectionContext.parse(text))
        except ValueError as exc:
            return _fatal(str(exc), EX_USAGE)
        root = apply_connection_filters(config.root, ctx)
    if args.hide_key:
        return _print_values(config, root, args.hide_key, args.show_secrets)
    sys.stdout.write(dump(config, all_settings=args.all, show_secrets=args.show_secrets, root=root))
    return 0


def _print_values(config: Config, root: object, names: Sequence[str], show_secrets: bool) -> int:
    from columba.config.resolve import SettingsView
    from columba.config.tree import Block

    assert isinstance(root, Block)
    for path in names:
        parts = [p for p in path.split("/") if p]
        view = SettingsView(config.schema, root)
        while len(parts) > 1:
            kind = parts.pop(0)
            spec = config.schema.filter(kind)
            if spec is None or (spec.listed and len(parts) < 2):
                return _fatal(f"Unknown filter path: {path}", EX_USAGE)
            view = view.filter(kind, parts.pop(0) if spec.listed else "")
        name = resolve_known(config.schema, view.block, parts[0]) if parts else None
        if name is None:
            return _fatal(f"Unknown setting: {path}", EX_USAGE)
        decl = config.schema.settings[name]
        value = view.get(name)
        if decl.secret and not show_secrets and value:
            print("# hidden, use -P to show it")
        elif isinstance(value, StrList):
            for key, item in value.items:
                print(f"{key} = {quote_if_needed(item)}")
        elif isinstance(value, BoolList):
            print(" ".join(value.enabled()))
        else:
            print(format_value(decl, value))
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    from columba.server import serve

    return serve(args.config, args.override, roles=args.role)


def _signal_command(args: argparse.Namespace) -> int:
    from columba.server import signal_master

    return signal_master(args.config, args.override, args.command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="columba", description="Columba mail platform")
    parser.add_argument("--version", action="version", version=f"columba {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", dest="config", default=DEFAULT_CONFIG, help="configuration file")
    common.add_argument(
        "-o",
        dest="override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting (may repeat; paths like namespace/inbox/separator=.)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser(
        "config", parents=[common], add_help=False, help="print the configuration (doveconf)"
    )
    mode = config.add_mutually_exclusive_group()
    mode.add_argument("-n", action="store_true", help="only settings changed from defaults")
    mode.add_argument("-a", dest="all", action="store_true", help="all settings")
    config.add_argument(
        "-f",
        dest="filter",
        action="append",
        default=[],
        metavar="FILTER",
        help="apply connection filters, e.g. protocol=imap,remote=1.2.3.4",
    )
    config.add_argument("-d", dest="group", metavar="@GROUP/NAME", help="show a group's content")
    config.add_argument(
        "-h",
        dest="hide_key",
        action="append",
        default=[],
        metavar="SETTING",
        help="print only the value of SETTING (may repeat)",
    )
    config.add_argument("-P", dest="show_secrets", action="store_true", help="show secrets")
    config.add_argument("--help", action="help", help="show this help")
    config.set_defaults(func=_config_command)

    serve = sub.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument(
        "--role",
        action="append",
        default=[],
        choices=["proxy", "backend", "controller"],
        help="run only these roles (default: columba_roles)",
    )
    serve.set_defaults(func=_serve_command)
    from columba.admin import cmd_auth, cmd_metacache, cmd_pw

    cmd_pw.add_parser(sub)
    cmd_auth.add_parsers(sub, common)
    cmd_metacache.add_parsers(sub, common)
    for name, text in (
        ("reload", "reload the running server's configuration"),
        ("stop", "stop the running server"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.set_defaults(func=_signal_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return EX_USAGE if exc.code not in (0, None) else 0
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
