"""User databases: where a user's home and mail settings come from; the driver registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from columba.auth.passdb import LookupStatus
from columba.config.resolve import SettingsView

UserdbLookup = tuple[LookupStatus, dict[str, str], str]
"""(status, fields, error)."""


class Userdb(ABC):
    """One ``userdb NAME { }`` block."""

    def __init__(self, view: SettingsView) -> None:
        self.view = view
        self.name = view.name
        self.override_fields = view.get_strlist("userdb_fields")

    @abstractmethod
    async def lookup(self, user: str, variables: dict[str, str]) -> UserdbLookup:
        """The user's fields before ``fields { }`` overrides are applied."""


_U = TypeVar("_U", bound=type[Userdb])
_DRIVERS: dict[str, type[Userdb]] = {}


def register_userdb(name: str) -> Callable[[_U], _U]:
    def decorate(cls: _U) -> _U:
        _DRIVERS[name] = cls
        return cls

    return decorate


def userdb_driver(name: str) -> type[Userdb] | None:
    from columba.auth.userdb import passwd_file, static  # noqa: F401 - registers drivers

    return _DRIVERS.get(name)
