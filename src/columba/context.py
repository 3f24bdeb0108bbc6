"""What a protocol handler needs in a worker process: settings, authentication and storage.

A :class:`ServiceContext` is built lazily, once per process and configuration, from the
runtime the master loaded (``columba.server.current_runtime``). Handlers call
:func:`current_context`; tests build one directly from a :class:`~columba.config.Config`.
"""

from __future__ import annotations

from functools import cached_property

from columba.auth.service import Authenticator
from columba.config import Config, ConnectionContext, SettingsView, apply_connection_filters
from columba.storage.api import MailStorage


class ServiceContext:
    """Settings views per connection, the authenticator and the mail storage of a process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._views: dict[ConnectionContext, SettingsView] = {}
        self._authenticators: dict[str, Authenticator] = {}

    @property
    def root(self) -> SettingsView:
        return SettingsView(self.config.schema, self.config.root)

    def view(
        self,
        protocol: str,
        *,
        local_ip: str | None = None,
        remote_ip: str | None = None,
        local_name: str | None = None,
    ) -> SettingsView:
        """Settings as a connection sees them (connection filters applied; cached)."""
        key = ConnectionContext(protocol, local_ip, local_name, remote_ip)
        found = self._views.get(key)
        if found is None:
            if len(self._views) > 4096:
                self._views.clear()
            block = apply_connection_filters(self.config.root, key)
            found = self._views[key] = SettingsView(self.config.schema, block)
        return found

    @cached_property
    def authenticator(self) -> Authenticator:
        return Authenticator(self.root)

    def authenticator_for(self, protocol: str) -> Authenticator:
        """Authentication settings may differ per ``protocol { }`` (only that filter applies)."""
        if not any(b.kind == "protocol" for b in self.config.root.children):
            return self.authenticator
        found = self._authenticators.get(protocol)
        if found is None:
            found = self._authenticators[protocol] = Authenticator(self.view(protocol))
        return found

    @cached_property
    def storage(self) -> MailStorage:
        from columba.storage.factory import build_storage
        from columba.storage.from_config import storage_settings

        return build_storage(storage_settings(self.root))


_context: ServiceContext | None = None


def current_context() -> ServiceContext:
    """This process's context for the configuration the master loaded."""
    global _context
    from columba.server import current_runtime

    runtime = current_runtime()
    if _context is None or _context.config is not runtime.config:
        _context = ServiceContext(runtime.config)
    return _context


def set_context(context: ServiceContext | None) -> None:
    """Install a context (tests, in-process servers)."""
    global _context
    _context = context


async def close_context() -> None:
    """Close this process's storage if it was used: uploads pending index bundles (shutdown)."""
    context = _context
    if context is not None and "storage" in context.__dict__:
        await context.storage.close()
