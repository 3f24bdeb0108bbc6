"""``columba serve`` / ``reload`` / ``stop``: from a loaded configuration to a running master.

The master (``columba.master``) knows nothing of dovecot.conf; this module turns the
configuration into its :class:`~columba.master.MasterSettings` (listeners from the
``service { inet_listener { } }`` blocks, worker count, base_dir) and keeps the loaded
configuration as the process's :class:`Runtime`, which the workers forked after a (re)load
inherit. A bad configuration at start is fatal (exit 2); at reload it is reported and the
running configuration stays.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from columba.config import Config, ConfigError, SettingsView, load
from columba.master import MasterError, MasterSettings, run_master, send_reload, send_stop
from columba.net.listeners import ListenerSpec

EX_CONFIG = 2
EX_UNAVAILABLE = 69

SERVICE_PROTOCOL = {
    "imap-login": "imap",
    "imap": "imap",
    "pop3-login": "pop3",
    "pop3": "pop3",
    "submission-login": "submission",
    "submission": "submission",
    "lmtp": "lmtp",
    "managesieve-login": "managesieve",
    "managesieve": "managesieve",
}
"""Services that only run when their protocol is in ``protocols``."""

DEFAULT_LISTENERS: dict[str, tuple[tuple[str, str, int, bool], ...]] = {
    "imap": (("imap-login", "imap", 143, False), ("imap-login", "imaps", 993, True)),
    "pop3": (("pop3-login", "pop3", 110, False), ("pop3-login", "pop3s", 995, True)),
    "lmtp": (("lmtp", "lmtp", 24, False),),
    "submission": (
        ("submission-login", "submission", 587, False),
        ("submission-login", "submissions", 465, True),
    ),
    "managesieve": (("managesieve-login", "sieve", 4190, False),),
}
"""Dovecot's built-in listeners, used for a protocol whose services the config never names."""


@dataclass(frozen=True)
class Runtime:
    """The configuration a process serves with (inherited by forked workers)."""

    config: Config
    roles: frozenset[str]

    @property
    def view(self) -> SettingsView:
        return SettingsView(self.config.schema, self.config.root)


_runtime: Runtime | None = None


def current_runtime() -> Runtime:
    """The runtime of this process; protocol handlers read their settings from it."""
    if _runtime is None:
        raise RuntimeError("columba runtime not loaded")
    return _runtime


def set_runtime(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def listener_specs(view: SettingsView) -> tuple[ListenerSpec, ...]:
    """The listeners of the configuration, Dovecot's defaults for protocols it leaves out."""
    protocols = set(view.get_list("protocols"))
    listen = view.get_str("listen")
    specs: list[ListenerSpec] = []
    named = {service.name for service in view.filters("service")}
    for service in view.filters("service"):
        protocol = SERVICE_PROTOCOL.get(service.name)
        if protocol is not None and protocol not in protocols:
            continue
        for inet in service.filters("inet_listener"):
            port = inet.get_int("inet_listener_port")
            if port == 0:
                continue
            specs.append(
                ListenerSpec(
                    service=service.name,
                    name=inet.name,
                    address=inet.get_str("inet_listener_address") or listen,
                    port=port,
                    ssl=inet.get_bool("inet_listener_ssl"),
                    haproxy=inet.get_bool("inet_listener_haproxy"),
                )
            )
    for protocol, defaults in DEFAULT_LISTENERS.items():
        if protocol not in protocols:
            continue
        if any(service in named for service, *_ in defaults):
            continue
        for service_name, name, port, ssl in defaults:
            specs.append(ListenerSpec(service_name, name, listen, port, ssl))
    return tuple(specs)


def master_settings(runtime: Runtime) -> MasterSettings:
    view = runtime.view
    return MasterSettings(
        listeners=listener_specs(view),
        workers=view.get_int("columba_workers"),
        base_dir=Path(view.get_str("base_dir")),
        shutdown_timeout=float(view.get_int("columba_shutdown_timeout")),
    )


def load_runtime(path: str, overrides: Sequence[str], roles: Sequence[str] = ()) -> Runtime:
    """Load and check a configuration; ConfigError (one line) if it can't be served."""
    from columba.net.tls import TlsConfigError, TlsSettings, server_context, tls_enabled

    config = load(path, overrides)
    view = SettingsView(config.schema, config.root)
    chosen = frozenset(roles) if roles else frozenset(view.get_list("columba_roles"))
    specs = listener_specs(view)
    needs_tls = any(spec.ssl for spec in specs) or view.get_str("ssl") == "required"
    if needs_tls and not tls_enabled(view):
        raise ConfigError("ssl: TLS listeners need ssl = yes and ssl_server_cert_file")
    if tls_enabled(view):
        try:
            server_context(TlsSettings.from_view(view))
        except TlsConfigError as exc:
            raise ConfigError(str(exc)) from exc
    return Runtime(config, chosen)


def _apply_logging(runtime: Runtime) -> None:
    from columba.events.runtime_log import LoggingConfigError, configure_logging

    try:
        configure_logging(runtime.view)
    except LoggingConfigError as exc:
        raise ConfigError(str(exc)) from exc


def serve(path: str, overrides: Sequence[str], roles: Sequence[str] = ()) -> int:
    """Run the master in the foreground until it is stopped."""
    from columba.events.runtime_log import log_line

    try:
        runtime = load_runtime(path, overrides, roles)
        Path(runtime.view.get_str("base_dir")).mkdir(parents=True, exist_ok=True)
        _apply_logging(runtime)
    except ConfigError as exc:
        print(f"columba: Fatal: {exc}", file=sys.stderr)
        return EX_CONFIG
    set_runtime(runtime)
    _register_services()

    def reload_settings() -> MasterSettings:
        new = load_runtime(path, overrides, roles)
        _apply_logging(new)
        set_runtime(new)
        return master_settings(new)

    log_line(
        "master_starting",
        config=path,
        roles=" ".join(sorted(runtime.roles)),
        pid=os.getpid(),
    )
    first = [True]

    def loader() -> MasterSettings:
        # The master calls this once at start (what serve() loaded) and again per SIGHUP.
        if first[0]:
            first[0] = False
            return master_settings(runtime)
        return reload_settings()

    return run_master(loader, log=lambda text: log_line("master", message=text))


def _register_services() -> None:
    """Import the protocol packages so that their handlers register (as they arrive)."""
    import importlib

    for module in ("columba.imap.service", "columba.lmtp.service"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module and not module.startswith(str(exc.name)):
                raise


def signal_master(path: str, overrides: Sequence[str], command: str) -> int:
    """``columba reload`` / ``columba stop``."""
    try:
        config = load(path, overrides)
    except ConfigError as exc:
        print(f"columba: Fatal: {exc}", file=sys.stderr)
        return EX_CONFIG
    base_dir = Path(SettingsView(config.schema, config.root).get_str("base_dir"))
    try:
        if command == "reload":
            send_reload(base_dir)
        else:
            send_stop(base_dir)
    except MasterError as exc:
        print(f"columba: Fatal: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0
