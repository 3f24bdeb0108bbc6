"""The authentication service: passdb chain, password verification, userdb chain.

Used in-process by the login code of every protocol and by ``columba auth test``. Passwords
are verified with :mod:`columba.auth.schemes`: in a thread for the deliberately slow schemes
(crypt family, Argon2, PBKDF2, SCRAM), inline for plain digests and cleartext, where the
thread hop would cost more than the hash. A failed login is delayed by
:class:`~columba.auth.penalty.AuthPenalty` and logged with its reason, never with the password.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from columba.auth import schemes
from columba.auth.passdb import LookupStatus, Passdb, passdb_driver
from columba.auth.penalty import AuthPenalty
from columba.auth.userdb import Userdb, userdb_driver
from columba.config.errors import ConfigError
from columba.config.resolve import SettingsView
from columba.lib.var_expand import Provider, VarExpandError, default_providers, expand
from columba.storage.api import UserInfo


@dataclass(frozen=True)
class AuthRequest:
    """One authentication attempt. ``password`` is never logged."""

    username: str
    password: str = field(repr=False)
    mechanism: str = "PLAIN"
    protocol: str = "imap"
    remote_ip: str = ""
    local_ip: str = ""
    secured: bool = False
    session: str = ""


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    user: str
    reason: str = ""
    """Why it failed, for the log (never the password)."""
    temporary: bool = False
    """An internal failure: answer ``NO [UNAVAILABLE]`` rather than ``[AUTHENTICATIONFAILED]``."""
    fields: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class AuthError(Exception):
    """A userdb lookup failed for an internal reason (retry later)."""


def _driver_name(view: SettingsView, setting: str) -> str:
    return view.get_str(setting) or view.name


class Authenticator:
    """Authenticates users and looks them up, as configured by ``passdb``/``userdb`` blocks."""

    def __init__(self, view: SettingsView) -> None:
        self.view = view
        self.passdbs: list[Passdb] = []
        self.userdbs: list[Userdb] = []
        for block in view.filters("passdb"):
            name = _driver_name(block, "passdb_driver")
            passdb_cls = passdb_driver(name)
            if passdb_cls is None:
                raise ConfigError(f"passdb {block.name}: unknown driver {name}")
            self.passdbs.append(passdb_cls(block))
        for block in view.filters("userdb"):
            name = _driver_name(block, "userdb_driver")
            userdb_cls = userdb_driver(name)
            if userdb_cls is None:
                raise ConfigError(f"userdb {block.name}: unknown driver {name}")
            self.userdbs.append(userdb_cls(block))
        self.allow_weak = view.get_bool("auth_allow_weak_schemes")
        self.penalty = AuthPenalty(
            float(view.get_int("auth_failure_delay")), float(view.get_int("auth_penalty_max"))
        )
        self.allowed_chars = frozenset(view.get_str("auth_username_chars"))
        self.username_format = view.get_str("auth_username_format")
        self.default_domain = view.get_str("auth_default_domain")
        self.mail_home = view.get_str("mail_home")

    # ------------------------------------------------------------------ names

    def normalize(self, username: str) -> str | None:
        """The user name after ``auth_default_domain`` and ``auth_username_format``; None if
        it has characters outside ``auth_username_chars``."""
        if not username or len(username) > 255:
            return None
        if self.allowed_chars and any(c not in self.allowed_chars for c in username):
            return None
        if self.default_domain and "@" not in username:
            username = f"{username}@{self.default_domain}"
        if self.username_format:
            try:
                username = expand(self.username_format, _user_variables(username))
            except VarExpandError:
                return None
        return username or None

    # ------------------------------------------------------------------ passdb

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        user = self.normalize(request.username)
        if user is None:
            return self._failed(request, request.username, "invalid user name")
        variables = _request_variables(request, user)
        failure = "unknown user"
        for passdb in self.passdbs:
            found = await passdb.lookup(user, variables)
            if found.status is LookupStatus.INTERNAL_FAILURE:
                return AuthResult(
                    False, user, f"passdb {passdb.name}: {found.error}", temporary=True
                )
            if found.status is LookupStatus.USER_UNKNOWN:
                continue
            fields = dict(found.fields)
            try:
                fields.update(
                    {
                        k: expand(v, {**variables, "user": found.user})
                        for k, v in passdb.extra_fields.items()
                    }
                )
            except VarExpandError as exc:
                return AuthResult(False, user, f"passdb {passdb.name}: {exc}", temporary=True)
            password = fields.pop("password", None) or found.password
            if fields.get("nopassword", "").lower() in ("yes", "y", "1"):
                verified = True
            elif not password:
                failure = "no password"
                continue
            else:
                try:
                    if schemes.is_cheap(password, passdb.default_scheme):
                        # a digest or cleartext compare: microseconds, no thread hop
                        verified = schemes.verify(
                            password,
                            request.password,
                            user=found.user,
                            allow_weak=self.allow_weak,
                            default_scheme=passdb.default_scheme,
                        )
                    else:
                        verified = await asyncio.to_thread(
                            schemes.verify,
                            password,
                            request.password,
                            user=found.user,
                            allow_weak=self.allow_weak,
                            default_scheme=passdb.default_scheme,
                        )
                except schemes.PasswordSchemeError as exc:
                    return AuthResult(False, user, f"passdb {passdb.name}: {exc}", temporary=True)
            if not verified:
                failure = "password mismatch"
                continue
            if fields.get("nologin", "").lower() in ("yes", "y", "1") and "proxy" not in fields:
                return self._failed(request, found.user, fields.get("reason") or "login disabled")
            self.penalty.succeeded(request.remote_ip)
            return AuthResult(True, fields.pop("user", found.user), fields=fields)
        return self._failed(request, user, failure)

    def _failed(self, request: AuthRequest, user: str, reason: str) -> AuthResult:
        delay = self.penalty.failed(request.remote_ip or "local")
        return AuthResult(False, user, reason, delay=delay)

    # ------------------------------------------------------------------ userdb

    async def lookup_user(self, user: str, extra: dict[str, str] | None = None) -> UserInfo | None:
        """The user's UserInfo, None if no userdb knows them; AuthError on internal failures."""
        variables = {**_user_variables(user), **(extra or {})}
        for userdb in self.userdbs:
            status, fields, error = await userdb.lookup(user, variables)
            if status is LookupStatus.INTERNAL_FAILURE:
                raise AuthError(f"userdb {userdb.name}: {error}")
            if status is LookupStatus.USER_UNKNOWN:
                continue
            userdb_vars = {**variables, **{f"userdb:{k}": v for k, v in fields.items()}}
            try:
                providers: dict[str, Provider] = {**default_providers(), "userdb": fields.get}
                for key, template in userdb.override_fields.items():
                    fields[key] = expand(template, userdb_vars, providers)
                home = fields.get("home") or (
                    expand(self.mail_home, variables) if self.mail_home else ""
                )
            except VarExpandError as exc:
                raise AuthError(f"userdb {userdb.name}: {exc}") from exc
            if not home:
                raise AuthError(f"userdb {userdb.name}: user {user} has no home directory")
            return UserInfo(user, home, fields)
        return None


def _user_variables(user: str) -> dict[str, str]:
    local, _, domain = user.partition("@")
    return {"user": user, "username": local, "domain": domain, "original_user": user}


def _request_variables(request: AuthRequest, user: str) -> dict[str, str]:
    return {
        **_user_variables(user),
        "password": request.password,
        "mechanism": request.mechanism,
        "protocol": request.protocol,
        "service": request.protocol,
        "remote_ip": request.remote_ip,
        "local_ip": request.local_ip,
        "secured": "secured" if request.secured else "",
        "session": request.session,
    }
