"""Password databases: the driver registry and the result every driver returns.

A passdb looks a user up and returns its stored password (verified by the auth service with
the password schemes) and extra fields (``proxy``, ``host``, ``nopassword``, ``nologin``, ...).
Drivers register by name with :func:`register_passdb`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from columba.config.resolve import SettingsView


class LookupStatus(Enum):
    OK = "ok"
    USER_UNKNOWN = "user unknown"
    INTERNAL_FAILURE = "internal failure"


@dataclass(frozen=True)
class PassdbLookup:
    """What a passdb knows of a user: the stored password (may be empty) and extra fields."""

    status: LookupStatus
    user: str = ""
    password: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    error: str = ""


class Passdb(ABC):
    """One ``passdb NAME { }`` block."""

    def __init__(self, view: SettingsView) -> None:
        self.view = view
        self.name = view.name
        self.extra_fields = view.get_strlist("passdb_fields")
        self.default_scheme = view.get_str("passdb_default_password_scheme") or view.get_str(
            "default_password_scheme"
        )

    @abstractmethod
    async def lookup(self, user: str, variables: dict[str, str]) -> PassdbLookup:
        """Look ``user`` up; ``variables`` are the request's (%{user}, %{remote_ip}, ...)."""


_P = TypeVar("_P", bound=type[Passdb])
_DRIVERS: dict[str, type[Passdb]] = {}


def register_passdb(name: str) -> Callable[[_P], _P]:
    def decorate(cls: _P) -> _P:
        _DRIVERS[name] = cls
        return cls

    return decorate


def passdb_driver(name: str) -> type[Passdb] | None:
    from columba.auth.passdb import passwd_file, static  # noqa: F401 - registers drivers

    return _DRIVERS.get(name)
