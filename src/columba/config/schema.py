"""The schema: which settings and which filters exist, looked up by name.

Settings are declared once (in ``declarations``) as :class:`SettingDecl`; filters as
:class:`FilterKind`. The parser, the defaults, the validation, ``columba config`` and
``docs/settings.md`` are all derived from these declarations.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from columba.config.types import SettingDecl, SettingType

CONNECTION_FILTERS = ("local", "local_name", "remote", "protocol")
"""Connection filters, outermost first: they must nest in exactly this order."""

ROOT = "root"


@dataclass(frozen=True)
class FilterKind:
    """A filter block kind: ``kind { }`` (named filter) or ``kind NAME { }`` (named list filter)."""

    name: str
    listed: bool
    parents: frozenset[str]
    doc: str
    name_setting: str | None = None
    """For list filters whose name is also a setting (``unix_listener PATH``)."""

    @property
    def is_connection(self) -> bool:
        return self.name in CONNECTION_FILTERS


class Schema:
    """All declared settings and filter kinds."""

    def __init__(self, settings: Iterable[SettingDecl], filters: Iterable[FilterKind]) -> None:
        self.settings: dict[str, SettingDecl] = {}
        for decl in settings:
            if decl.name in self.settings:
                raise RuntimeError(f"setting {decl.name} declared twice")
            self.settings[decl.name] = decl
        self.filters: dict[str, FilterKind] = {kind.name: kind for kind in filters}

    def setting(self, name: str) -> SettingDecl | None:
        return self.settings.get(name)

    def filter(self, name: str) -> FilterKind | None:
        return self.filters.get(name)

    def is_list_setting(self, name: str) -> bool:
        decl = self.settings.get(name)
        return decl is not None and decl.type in (SettingType.BOOLLIST, SettingType.STRLIST)

    def suggestions(self, name: str, limit: int = 3) -> list[str]:
        """Known setting names nearest to a misspelt ``name``."""
        return difflib.get_close_matches(name, self.settings.keys(), n=limit, cutoff=0.75)

    def filter_allowed(self, kind: FilterKind, parent_kind: str, parent_chain: list[str]) -> bool:
        """Whether a ``kind`` filter may stand inside ``parent_kind``.

        Connection filters may stand at the top or inside connection filters that come
        before them in :data:`CONNECTION_FILTERS`. Other filters name their parents; a filter
        allowed at the top is also allowed inside connection filters.
        """
        if kind.is_connection:
            if parent_kind == ROOT:
                return True
            if parent_kind not in CONNECTION_FILTERS:
                return False
            return CONNECTION_FILTERS.index(parent_kind) < CONNECTION_FILTERS.index(kind.name)
        if parent_kind in CONNECTION_FILTERS:
            parent_kind = ROOT
        return parent_kind in kind.parents or "*" in kind.parents


@cache
def default_schema() -> Schema:
    """The schema of every setting Columba knows."""
    from columba.config import declarations

    return Schema(declarations.SETTINGS, declarations.FILTERS)
