"""The auth service: passwd-file and static passdb/userdb, normalisation, penalty, cleartext."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from columba.auth import schemes
from columba.auth.cleartext import plaintext_allowed
from columba.auth.penalty import AuthPenalty
from columba.auth.service import Authenticator, AuthRequest
from columba.cli import main
from columba.config import SettingsView, load_text


def make_auth(tmp_path: Path, extra: str = "") -> Authenticator:
    users = tmp_path / "users"
    users.write_text(
        f"alice@example.com:{schemes.generate('SHA512-CRYPT', 'wonderland')}:1000:1000::/home/alice::\n"
        "bob@example.com:{PLAIN}builder::::::userdb_quota_storage_size=1G nologin reason=moved\n"
        "# a comment\n"
        "broken line without colons\n"
    )
    config = load_text(
        "dovecot_config_version = 2.4.0\n"
        "auth_failure_delay = 1 secs\n"
        f"passdb passwd-file {{\n  passwd_file_path = {users}\n}}\n"
        f"userdb passwd-file {{\n  passwd_file_path = {users}\n"
        f"  fields {{\n    home = {tmp_path}/home/%{{user | domain}}/%{{user | username}}\n  }}\n}}\n"
        + extra
    )
    return Authenticator(SettingsView(config.schema, config.root))


def test_passwd_file_login_and_failures(tmp_path: Path) -> None:
    auth = make_auth(tmp_path)
    ok = asyncio.run(
        auth.authenticate(AuthRequest("Alice@Example.com", "wonderland", remote_ip="192.0.2.1"))
    )
    assert ok.ok and ok.user == "alice@example.com" and ok.delay == 0
    bad = asyncio.run(
        auth.authenticate(AuthRequest("alice@example.com", "nope", remote_ip="192.0.2.1"))
    )
    assert not bad.ok and bad.reason == "password mismatch" and bad.delay == 1.0
    again = asyncio.run(
        auth.authenticate(AuthRequest("alice@example.com", "nope", remote_ip="192.0.2.1"))
    )
    assert again.delay == 2.0  # doubles per failure from the same IP
    unknown = asyncio.run(
        auth.authenticate(AuthRequest("carol@example.com", "x", remote_ip="192.0.2.2"))
    )
    assert not unknown.ok and unknown.reason == "unknown user" and unknown.delay == 1.0
    disabled = asyncio.run(auth.authenticate(AuthRequest("bob@example.com", "builder")))
    assert not disabled.ok and disabled.reason == "moved"
    assert not asyncio.run(auth.authenticate(AuthRequest("bad user", "x"))).ok


def test_userdb_fields_and_home_templates(tmp_path: Path) -> None:
    auth = make_auth(tmp_path)
    info = asyncio.run(auth.lookup_user("alice@example.com"))
    assert info is not None
    assert info.home == f"{tmp_path}/home/example.com/alice"
    assert info.fields["uid"] == "1000"
    bob = asyncio.run(auth.lookup_user("bob@example.com"))
    assert bob is not None and bob.fields["quota_storage_size"] == "1G"
    assert asyncio.run(auth.lookup_user("nobody@example.com")) is None


def test_static_passdb_and_proxy_fields(tmp_path: Path) -> None:
    auth = make_auth(
        tmp_path,
        "passdb static {\n  fields {\n    password = master\n    proxy = yes\n"
        "    host = 127.0.0.2\n    pass = %{password}\n  }\n}\n",
    )
    result = asyncio.run(auth.authenticate(AuthRequest("anyone@example.com", "master")))
    assert result.ok
    assert result.fields["proxy"] == "yes" and result.fields["host"] == "127.0.0.2"
    assert result.fields["pass"] == "master"
    assert "password" not in result.fields


def test_penalty_caps_and_forgets() -> None:
    penalty = AuthPenalty(2.0, 15.0)
    delays = [penalty.failed("10.0.0.1", now=float(i)) for i in range(6)]
    assert delays == [2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert penalty.failed("10.0.0.1", now=10_000.0) == 2.0  # 15 quiet minutes forget
    penalty.succeeded("10.0.0.1")
    assert penalty.failures("10.0.0.1") == 0


def test_plaintext_rules() -> None:
    def view(text: str) -> SettingsView:
        config = load_text("dovecot_config_version = 2.4.0\n" + text)
        return SettingsView(config.schema, config.root)

    default = view("login_trusted_networks = 10.0.0.0/8\n")
    assert not plaintext_allowed(default, tls=False, remote_ip="192.0.2.1", local_ip="192.0.2.9")
    assert plaintext_allowed(default, tls=True, remote_ip="192.0.2.1", local_ip="192.0.2.9")
    assert plaintext_allowed(default, tls=False, remote_ip="10.1.2.3", local_ip="192.0.2.9")
    assert plaintext_allowed(default, tls=False, remote_ip="127.0.0.1", local_ip="127.0.0.1")
    required = view("ssl = required\n")
    assert not plaintext_allowed(required, tls=False, remote_ip="127.0.0.1", local_ip="127.0.0.1")
    allowed = view("auth_allow_cleartext = yes\n")
    assert plaintext_allowed(allowed, tls=False, remote_ip="192.0.2.1", local_ip="192.0.2.9")


def test_cli_pw_and_auth_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pw", "-s", "SHA256-CRYPT", "-p", "s3cret"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("{SHA256-CRYPT}$5$")
    assert main(["pw", "-t", hashed, "-p", "s3cret"]) == 0
    assert main(["pw", "-t", hashed, "-p", "wrong"]) == 65
    make_auth(tmp_path)
    conf = tmp_path / "c.conf"
    conf.write_text(
        "dovecot_config_version = 2.4.0\nauth_failure_delay = 0\n"
        f"passdb passwd-file {{\n  passwd_file_path = {tmp_path}/users\n}}\n"
        f"userdb passwd-file {{\n  passwd_file_path = {tmp_path}/users\n}}\n"
    )
    capsys.readouterr()
    assert main(["auth", "test", "-c", str(conf), "alice@example.com", "wonderland"]) == 0
    assert "passdb: alice@example.com auth succeeded" in capsys.readouterr().out
    assert main(["auth", "test", "-c", str(conf), "alice@example.com", "bad"]) == 77
    out = capsys.readouterr().out
    assert "auth failed: password mismatch" in out and "bad" not in out.replace("auth failed", "")
    assert main(["user", "-c", str(conf), "alice@example.com"]) == 0
    assert "home\t/home/alice" in capsys.readouterr().out


def test_cheap_schemes_verify_inline_slow_ones_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A {PLAIN}/digest password is checked on the event loop (no thread hop); the key
    stretching schemes (SHA512-CRYPT here) still go to a thread."""
    assert schemes.is_cheap("{PLAIN}x") and schemes.is_cheap("{SSHA512}" + "A" * 92)
    assert schemes.is_cheap("{CRAM-MD5}" + "0" * 64)
    assert not schemes.is_cheap(schemes.generate("SHA512-CRYPT", "x"))
    assert not schemes.is_cheap("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA")
    assert not schemes.is_cheap("{NO-SUCH-SCHEME}x")
    assert not schemes.is_cheap("$2y$05$abcdefghijklmnopqrstuv")  # default CRYPT
    users = tmp_path / "users"
    users.write_text(
        "plain@example.com:{PLAIN}secret::::::\n"
        f"slow@example.com:{schemes.generate('SHA512-CRYPT', 'secret')}::::::\n"
    )
    config = load_text(
        f"dovecot_config_version = 2.4.0\npassdb passwd-file {{\n  passwd_file_path = {users}\n}}\n"
    )
    auth = Authenticator(SettingsView(config.schema, config.root))
    hops: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(fn: object, /, *args: object, **kwargs: object) -> object:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real_to_thread(fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)

    async def run() -> None:
        first = await auth.authenticate(AuthRequest("plain@example.com", "secret"))
        assert first.ok
        assert hops == ["lookup"]  # the first lookup reads the file in a thread
        hops.clear()
        assert (await auth.authenticate(AuthRequest("plain@example.com", "secret"))).ok
        assert not (await auth.authenticate(AuthRequest("plain@example.com", "nope"))).ok
        assert hops == []  # file unchanged, cheap scheme: no thread at all
        assert (await auth.authenticate(AuthRequest("slow@example.com", "secret"))).ok
        assert hops == ["verify"]

    asyncio.run(run())


def test_passwd_file_cached_lookup_notices_changes(tmp_path: Path) -> None:
    from columba.auth.passwd_file import PasswdFile, shared_passwd_file

    path = tmp_path / "users"
    path.write_text("a@example.com:{PLAIN}one::::::\n")
    passwd = PasswdFile(str(path))
    assert passwd.cached_lookup("a@example.com") == (False, None)  # never read yet
    entry = passwd.lookup("a@example.com")
    assert entry is not None and entry.password == "{PLAIN}one"
    assert passwd.cached_lookup("a@example.com") == (True, entry)
    assert passwd.cached_lookup("b@example.com") == (True, None)
    path.write_text("a@example.com:{PLAIN}three::::::\nb@example.com:{PLAIN}two::::::\n")
    assert passwd.cached_lookup("a@example.com") == (False, None)  # size changed: re-read
    changed = passwd.lookup("b@example.com")
    assert changed is not None and changed.password == "{PLAIN}two"
    path.unlink()
    with pytest.raises(OSError):
        passwd.cached_lookup("a@example.com")
    assert shared_passwd_file(str(path)) is shared_passwd_file(str(path))
