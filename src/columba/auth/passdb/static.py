"""``passdb static { fields { password = ... } }``: every user name exists with one password
(or with ``nopassword = yes``); used for master passwords and tests."""

from __future__ import annotations

from columba.auth.passdb import LookupStatus, Passdb, PassdbLookup, register_passdb
from columba.config.resolve import SettingsView


@register_passdb("static")
class StaticPassdb(Passdb):
    def __init__(self, view: SettingsView) -> None:
        super().__init__(view)
        # As in Dovecot, a static password without {SCHEME} is plaintext.
        self.default_scheme = view.get_str("passdb_default_password_scheme") or "PLAIN"

    async def lookup(self, user: str, variables: dict[str, str]) -> PassdbLookup:
        fields = dict(self.extra_fields)
        password = (
            fields.pop("password", None) or self.view.get_str("passdb_static_password") or None
        )
        return PassdbLookup(LookupStatus.OK, user, password, fields)
