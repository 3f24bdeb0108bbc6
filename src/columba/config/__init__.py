"""The dovecot.conf language: parsing, declared settings, filters, groups and dumping."""

from columba.config.errors import ConfigError, Origin
from columba.config.loader import Config, load, load_text
from columba.config.resolve import ConnectionContext, SettingsView, apply_connection_filters

__all__ = [
    "Config",
    "ConfigError",
    "ConnectionContext",
    "Origin",
    "SettingsView",
    "apply_connection_filters",
    "load",
    "load_text",
]
