"""``userdb passwd-file { passwd_file_path = ... }``."""

from __future__ import annotations

from columba.auth.passdb import LookupStatus
from columba.auth.passwd_file import lookup_entry
from columba.auth.userdb import Userdb, UserdbLookup, register_userdb
from columba.config.resolve import SettingsView
from columba.lib.var_expand import VarExpandError, expand


@register_userdb("passwd-file")
class PasswdFileUserdb(Userdb):
    def __init__(self, view: SettingsView) -> None:
        super().__init__(view)
        self.path_template = view.get_str("passwd_file_path")
        self._fixed_path = None if "%" in self.path_template else self.path_template

    async def lookup(self, user: str, variables: dict[str, str]) -> UserdbLookup:
        try:
            path = self._fixed_path or expand(self.path_template, variables)
            entry = await lookup_entry(path, user)
        except (OSError, VarExpandError) as exc:
            return LookupStatus.INTERNAL_FAILURE, {}, f"passwd-file: {exc}"
        if entry is None:
            return LookupStatus.USER_UNKNOWN, {}, ""
        return LookupStatus.OK, entry.userdb_fields(), ""
