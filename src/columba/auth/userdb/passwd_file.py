"""``userdb passwd-file { passwd_file_path = ... }``."""

from __future__ import annotations

import asyncio

from columba.auth.passdb import LookupStatus
from columba.auth.passwd_file import PasswdFile
from columba.auth.userdb import Userdb, UserdbLookup, register_userdb
from columba.config.resolve import SettingsView
from columba.lib.var_expand import VarExpandError, expand


@register_userdb("passwd-file")
class PasswdFileUserdb(Userdb):
    def __init__(self, view: SettingsView) -> None:
        super().__init__(view)
        self.path_template = view.get_str("passwd_file_path")
        self._files: dict[str, PasswdFile] = {}

    async def lookup(self, user: str, variables: dict[str, str]) -> UserdbLookup:
        try:
            path = expand(self.path_template, variables)
            passwd = self._files.setdefault(path, PasswdFile(path))
            entry = await asyncio.to_thread(passwd.lookup, user)
        except (OSError, VarExpandError) as exc:
            return LookupStatus.INTERNAL_FAILURE, {}, f"passwd-file: {exc}"
        if entry is None:
            return LookupStatus.USER_UNKNOWN, {}, ""
        return LookupStatus.OK, entry.userdb_fields(), ""
