"""``userdb static { fields { home = ... uid = ... } }``: every user exists with these fields."""

from __future__ import annotations

from columba.auth.passdb import LookupStatus
from columba.auth.userdb import Userdb, UserdbLookup, register_userdb


@register_userdb("static")
class StaticUserdb(Userdb):
    async def lookup(self, user: str, variables: dict[str, str]) -> UserdbLookup:
        return LookupStatus.OK, {}, ""
