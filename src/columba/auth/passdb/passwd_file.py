"""``passdb passwd-file { passwd_file_path = ... }``."""

from __future__ import annotations

from columba.auth.passdb import LookupStatus, Passdb, PassdbLookup, register_passdb
from columba.auth.passwd_file import PasswdFile, lookup_entry, shared_passwd_file
from columba.config.resolve import SettingsView
from columba.lib.var_expand import VarExpandError, expand


@register_passdb("passwd-file")
class PasswdFilePassdb(Passdb):
    def __init__(self, view: SettingsView) -> None:
        super().__init__(view)
        self.path_template = view.get_str("passwd_file_path")
        self._fixed_path = None if "%" in self.path_template else self.path_template

    def _file(self, path: str) -> PasswdFile:
        return shared_passwd_file(path)

    async def lookup(self, user: str, variables: dict[str, str]) -> PassdbLookup:
        if not self.path_template:
            return PassdbLookup(
                LookupStatus.INTERNAL_FAILURE, user, error="passwd_file_path is not set"
            )
        try:
            path = self._fixed_path or expand(self.path_template, variables)
            entry = await lookup_entry(path, user)
        except (OSError, VarExpandError) as exc:
            return PassdbLookup(LookupStatus.INTERNAL_FAILURE, user, error=f"passwd-file: {exc}")
        if entry is None:
            return PassdbLookup(LookupStatus.USER_UNKNOWN, user)
        return PassdbLookup(LookupStatus.OK, entry.user, entry.password, entry.passdb_fields())
