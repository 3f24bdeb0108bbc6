"""The dovecot.conf language: every syntax rule and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from columba.config import (
    ConfigError,
    ConnectionContext,
    SettingsView,
    apply_connection_filters,
    load,
    load_text,
)
from columba.config.loader import Config
from columba.config.types import UNLIMITED, BoolList

V = "dovecot_config_version = 2.4.0\n"


def cfg(text: str, **kwargs: object) -> Config:
    return load_text(V + text, "test.conf", **kwargs)  # type: ignore[arg-type]


def root(text: str, **kwargs: object) -> SettingsView:
    config = cfg(text, **kwargs)
    return SettingsView(config.schema, config.root)


def error(text: str, *, version: bool = True) -> str:
    with pytest.raises(ConfigError) as info:
        load_text((V if version else "") + text, "test.conf")
    return str(info.value)


# --- basics ---------------------------------------------------------------------------


def test_first_setting_must_be_the_version() -> None:
    assert error("# comment\n\nmail_driver = obox\n", version=False) == (
        "test.conf:3: The first setting must be dovecot_config_version"
    )
    assert "Unsupported dovecot_config_version 2.3.0" in error(
        "dovecot_config_version = 2.3.0\n", version=False
    )
    assert "Invalid dovecot_config_version" in error(
        "dovecot_config_version = banana\n", version=False
    )


def test_comments_and_quotes() -> None:
    view = root(
        'login_greeting = "# char, \\"quote\\", and trailing whitespace    "\n'
        "mail_path = /var/mail # trailing comment\n"
        "postmaster_address = 'single quoted'\n"
    )
    assert view.get_str("login_greeting") == '# char, "quote", and trailing whitespace    '
    assert view.get_str("mail_path") == "/var/mail"
    assert view.get_str("postmaster_address") == "single quoted"


def test_quote_errors() -> None:
    assert error('mail_path = "open\n') == "test.conf:2: Missing closing quote"
    assert "Garbage after the closing quote" in error('mail_path = "a" b\n')


def test_backslash_continuation_joins_with_one_space() -> None:
    view = root("login_greeting = \\\n   long \\\n\tvalue\n")
    assert view.get_str("login_greeting") == "long value"


def test_file_value_is_read_exactly(tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text("hello\n  world\n")
    main = tmp_path / "main.conf"
    main.write_text(V + "login_greeting = <greeting.txt\n")
    config = load(main, env={})
    assert SettingsView(config.schema, config.root).get_str("login_greeting") == "hello\n  world\n"
    main.write_text(V + "login_greeting = <missing.txt\n")
    with pytest.raises(ConfigError, match=r"main.conf:2: Can't read .*missing.txt"):
        load(main, env={})


def test_heredoc() -> None:
    view = root("login_greeting = <<EOT\nline one\n  # not a comment\nEOT\nmail_path = /m\n")
    assert view.get_str("login_greeting") == "line one\n  # not a comment"
    assert view.get_str("mail_path") == "/m"
    assert "Missing heredoc end marker EOT" in error("login_greeting = <<EOT\nnever ends\n")


def test_unknown_setting_suggests_nearest_names() -> None:
    message = error("mial_driver = obox\n")
    assert message.startswith(
        "test.conf:2: Unknown setting: mial_driver (did you mean: mail_driver"
    )


def test_bad_values_name_the_setting() -> None:
    assert error("auth_verbose = maybe\n") == (
        "test.conf:2: auth_verbose: Invalid boolean value 'maybe' (use yes or no)"
    )
    assert "quota_storage_size: Invalid size '12 parsecs'" in error(
        "quota_storage_size = 12 parsecs\n"
    )
    assert "ssl: Invalid value 'sometimes' (allowed: yes, no, required)" in error(
        "ssl = sometimes\n"
    )
    assert "auth_failure_delay: Invalid time interval unit 'fortnights'" in error(
        "auth_failure_delay = 2 fortnights\n"
    )


# --- typed values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 << 20),
        ("512 M", 512 << 20),
        ("1G", 1 << 30),
        ("10kB", 10240),
        ("3 MiB", 3 << 20),
        ("100", 100),
        ("unlimited", UNLIMITED),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert root(f"quota_storage_size = {text}\n").get_int("quota_storage_size") == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 5),
        ("5 secs", 5),
        ("2 mins", 120),
        ("1 hour", 3600),
        ("2 days", 172800),
        ("1 weeks", 604800),
        ("3 sec", 3),
        ("infinite", UNLIMITED),
    ],
)
def test_times(text: str, seconds: int) -> None:
    assert root(f"auth_failure_delay = {text}\n").get_int("auth_failure_delay") == seconds


def test_msecs_times_and_fractions() -> None:
    assert root("login_proxy_timeout = 250 ms\n").get_int("login_proxy_timeout") == 250
    assert root("login_proxy_timeout = 2 secs\n").get_int("login_proxy_timeout") == 2000
    assert "not a whole number of seconds" in error("auth_failure_delay = 1500 ms\n")


@pytest.mark.parametrize("true", ["yes", "y", "1"])
def test_booleans(true: str) -> None:
    assert root(f"auth_verbose = {true}\n").get_bool("auth_verbose") is True
    assert root("auth_verbose = no\n").get_bool("auth_verbose") is False


def test_boolean_list_both_forms() -> None:
    view = root(
        "mail_plugins = obox fts,fts_dovecot\nmail_plugins {\n  quota = yes\n  fts = no\n}\n"
    )
    assert view.get_list("mail_plugins") == ["obox", "fts_dovecot", "quota"]
    assert root("mail_plugins = a b\nmail_plugins = c\n").get_list("mail_plugins") == ["c"]


def test_string_list_and_clearing() -> None:
    view = root("passdb static {\n  fields {\n    a = 1\n    b = two words\n  }\n}\n")
    passdb = view.filters("passdb")[0]
    assert passdb.get_strlist("passdb_fields") == {"a": "1", "b": "two words"}
    cleared = root("fs_randomfail_ops {\n  read = 10\n}\nfs_randomfail_ops =\n")
    assert cleared.get_strlist("fs_randomfail_ops") == {}
    assert "A string list is set with a { } block" in error("fs_randomfail_ops = read\n")


# --- filters ---------------------------------------------------------------------------


def test_named_list_filters_auto_prefix_and_merge() -> None:
    config = cfg(
        "service imap-login {\n  inet_listener imaps {\n    port = 993\n    ssl = yes\n  }\n}\n"
        "namespace inbox {\n  separator = .\n}\n"
        "namespace inbox {\n  mailbox Trash {\n    special_use = \\Trash\n  }\n}\n"
    )
    view = SettingsView(config.schema, config.root)
    listener = view.filter("service", "imap-login").filter("inet_listener", "imaps")
    assert listener.get_int("inet_listener_port") == 993
    assert listener.get_bool("inet_listener_ssl") is True
    namespaces = view.filters("namespace")
    assert len(namespaces) == 1
    inbox = namespaces[0]
    assert inbox.get_str("namespace_separator") == "."
    assert inbox.filter("mailbox", "Trash").get_list("mailbox_special_use") == ["\\Trash"]


def test_filter_settings_fall_back_to_parents() -> None:
    view = root("fs_compress_write_method = gz\nobox {\n  fs compress {\n  }\n}\n")
    compress = view.filter("obox").filters("fs")[0]
    assert compress.name == "compress"
    assert compress.get_str("fs_compress_write_method") == "gz"


def test_named_filter_cannot_have_a_name_and_list_filter_needs_one() -> None:
    assert "Named filter obox can't have a name" in error("obox foo {\n}\n")
    assert "Filter namespace needs a name" in error("namespace {\n}\n")


def test_misplaced_filters() -> None:
    assert error("inet_listener imap {\n}\n") == (
        "test.conf:2: Filter inet_listener is not allowed inside the top level"
    )
    assert "Filter remote is not allowed inside protocol imap" in error(
        "protocol imap {\n  remote 1.2.3.4 {\n  }\n}\n"
    )
    assert "Unknown filter: namespce (did you mean: namespace?)" in error("namespce inbox {\n}\n")


def test_filters_need_line_feeds() -> None:
    message = error("namespace inbox { prefix = INBOX/ }\n")
    assert message.startswith("test.conf:2:")


def test_braces_must_balance() -> None:
    assert error("namespace inbox {\n") == "test.conf:2: Missing '}'"
    assert error("}\n") == "test.conf:2: Unexpected '}'"


def test_connection_filters_most_specific_wins_regardless_of_order() -> None:
    config = cfg(
        "local 127.0.0.2 {\n  login_greeting = 127.0.0.2\n}\n"
        "local 127.0.0.0/24 {\n  login_greeting = 127.0.0.0/24\n}\n"
        "local 127.0.0.1 {\n  login_greeting = 127.0.0.1\n}\n"
        "protocol imap {\n  login_greeting = imap\n}\n"
    )

    def greeting(**ctx: str) -> str:
        block = apply_connection_filters(config.root, ConnectionContext(**ctx))
        return SettingsView(config.schema, block).get_str("login_greeting")

    assert greeting(local="127.0.0.1") == "127.0.0.1"
    assert greeting(local="127.0.0.2") == "127.0.0.2"
    assert greeting(local="127.0.0.3") == "127.0.0.0/24"
    assert greeting(local="127.0.0.3", protocol="imap") == "127.0.0.0/24"
    assert greeting(protocol="imap") == "imap"
    assert greeting(protocol="pop3") == "Columba ready."


def test_nested_connection_filters_and_list_updates() -> None:
    config = cfg(
        "mail_plugins = quota\nprotocol lmtp {\n  mail_plugins {\n    sieve = yes\n  }\n}\n"
        "remote 10.0.0.0/8 {\n  protocol imap {\n    auth_verbose = yes\n  }\n}\n"
    )
    lmtp = apply_connection_filters(config.root, ConnectionContext(protocol="lmtp"))
    assert SettingsView(config.schema, lmtp).get_list("mail_plugins") == ["quota", "sieve"]
    imap_remote = apply_connection_filters(
        config.root, ConnectionContext(protocol="imap", remote="10.1.2.3")
    )
    assert SettingsView(config.schema, imap_remote).get_bool("auth_verbose") is True
    imap_other = apply_connection_filters(
        config.root, ConnectionContext(protocol="imap", remote="192.0.2.1")
    )
    assert SettingsView(config.schema, imap_other).get_bool("auth_verbose") is False


def test_connection_filter_names_are_checked() -> None:
    assert "remote: invalid IP address or network 'nowhere'" in error("remote nowhere {\n}\n")


# --- groups ----------------------------------------------------------------------------


def test_user_groups_with_label_prefix_and_explicit_wins() -> None:
    view = root(
        "namespace inbox {\n  @mailboxes = finnish\n  mailbox Roskakori {\n    auto = no\n  }\n}\n"
        "group @mailboxes finnish {\n  mailbox Roskakori {\n    auto = subscribe\n"
        "    special_use = \\Trash\n  }\n}\n"
        "group @quota small {\n  storage_size = 1M\n}\n"
        "quota_storage_size = 5M\n@quota = small\n"
    )
    trash = view.filter("namespace", "inbox").filter("mailbox", "Roskakori")
    assert trash.get_str("mailbox_auto") == "no"  # explicit beats the group even when written first
    assert trash.get_list("mailbox_special_use") == ["\\Trash"]
    assert view.get_int("quota_storage_size") == 5 << 20


def test_builtin_groups() -> None:
    view = root("@mailbox_defaults = english\n@metric_defaults = backend\n@fs_defaults = s3\n")
    inbox = view.filter("namespace", "inbox")
    assert inbox.get_bool("namespace_inbox") is True
    assert [m.name for m in inbox.filters("mailbox")] == ["Drafts", "Junk", "Sent", "Trash"]
    assert inbox.filter("mailbox", "Junk").get_str("mailbox_auto") == "subscribe"
    metrics = {m.name: m for m in view.filters("metric")}
    assert metrics["imap_commands"].get_str("metric_filter") == "event=imap_command_finished"
    assert [f.name for f in view.filter("obox").filters("fs")] == [
        "fscache",
        "compress",
        "crypt",
        "dictmap",
        "s3",
    ]
    fscache = view.filter("obox").filter("fs", "fscache")
    assert fscache.get_str("fs_fscache_path") == "/var/cache/mails/%{user | sha1 % 4}"
    assert fscache.get_int("fs_fscache_size") == 512 << 20


def test_unknown_group() -> None:
    assert error("@mailbox_defaults = klingon\n") == (
        "test.conf:2: Unknown group @mailbox_defaults = klingon (known: english)"
    )


def test_group_content_must_fit_where_it_is_included() -> None:
    message = error("group @x y {\n  inet_listener z {\n  }\n}\n@x = y\n")
    assert "filter inet_listener is not allowed inside the top level" in message


# --- includes, $ENV, $SET, overrides ----------------------------------------------------


def test_includes_relative_glob_and_try(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-a.conf").write_text("auth_verbose = yes\n")
    (tmp_path / "conf.d" / "20-b.conf").write_text("!include ../inner.conf\n")
    (tmp_path / "inner.conf").write_text("mail_path = /inner\n")
    (tmp_path / "proto.conf").write_text("login_greeting = imap only\n")
    main = tmp_path / "main.conf"
    main.write_text(
        V + "!include conf.d/*.conf\n!include nothing/*.conf\n!include_try missing.conf\n"
        "protocol imap {\n  !include proto.conf\n}\n"
    )
    config = load(main, env={})
    view = SettingsView(config.schema, config.root)
    assert view.get_bool("auth_verbose") is True
    assert view.get_str("mail_path") == "/inner"
    imap = apply_connection_filters(config.root, ConnectionContext(protocol="imap"))
    assert SettingsView(config.schema, imap).get_str("login_greeting") == "imap only"
    assert view.get_str("login_greeting") == "Columba ready."
    main.write_text(V + "!include missing.conf\n")
    with pytest.raises(ConfigError, match=r"main.conf:2: Can't include .*missing.conf"):
        load(main, env={})


def test_include_loop_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "loop.conf").write_text("!include loop.conf\n")
    main = tmp_path / "main.conf"
    main.write_text(V + "!include loop.conf\n")
    with pytest.raises(ConfigError, match="Includes nested too deeply"):
        load(main, env={})


def test_env_expansion_only_as_a_separate_unquoted_word() -> None:
    env = {"SECRET": "s3cr3t", "HOST": "db.example"}
    view = root(
        'doveadm_password = $ENV:SECRET\nmail_path = "$ENV:HOST"\nlogin_greeting = x $ENV:HOST y\n',
        env=env,
    )
    assert view.get_str("doveadm_password") == "s3cr3t"
    assert view.get_str("mail_path") == "$ENV:HOST"
    assert view.get_str("login_greeting") == "x db.example y"


def test_set_references_are_late_filter_aware_and_self_appending() -> None:
    view = root(
        "service imap {\n  service_user = $SET:default_internal_user\n"
        "  unix_listener imap {\n    user = $SET:service_user\n  }\n}\n"
        "default_internal_user = _dovecot\n"
        "login_log_format_elements = user=<%{user}>\n"
        "login_log_format_elements = $SET:login_log_format_elements method=%{mechanism}\n"
        "mail_path = $SET:service/imap/service_user\n"
    )
    imap = view.filter("service", "imap")
    assert imap.get_str("service_user") == "_dovecot"
    assert imap.filter("unix_listener", "imap").get_str("unix_listener_user") == "_dovecot"
    assert view.get_str("login_log_format_elements") == "user=<%{user}> method=%{mechanism}"
    assert view.get_str("mail_path") == "_dovecot"


def test_set_loops_are_errors() -> None:
    assert "$SET: loop" in error("mail_path = $SET:mail_home\nmail_home = $SET:mail_path\n")


def test_overrides() -> None:
    config = cfg(
        "namespace inbox {\n  separator = /\n  @mailboxes = english\n}\n"
        "group @mailboxes english {\n  mailbox Trash {\n  }\n}\n"
        "group @mailboxes finnish {\n  mailbox Roskakori {\n  }\n}\n",
        overrides=[
            "namespace/inbox/separator=.",
            "namespace+=second",
            "namespace/second/prefix=Second/",
            "mail_path=/override",
            "namespace/inbox/@mailboxes=finnish",
        ],
    )
    view = SettingsView(config.schema, config.root)
    assert [n.name for n in view.filters("namespace")] == ["inbox", "second"]
    inbox = view.filter("namespace", "inbox")
    assert inbox.get_str("namespace_separator") == "."
    assert [m.name for m in inbox.filters("mailbox")] == ["Roskakori"]
    assert view.filter("namespace", "second").get_str("namespace_prefix") == "Second/"
    assert view.get_str("mail_path") == "/override"
    replaced = cfg("namespace a {\n}\nnamespace b {\n}\n", overrides=["namespace=b,c"])
    assert [b.name for b in replaced.root.children] == ["b", "c"]
    with pytest.raises(ConfigError, match="Unknown setting: nope"):
        cfg("", overrides=["nope=1"])


def test_boollist_default_survives_updates() -> None:
    value = root("protocols {\n  pop3 = no\n}\n").get("protocols")
    assert isinstance(value, BoolList)
    assert value.enabled() == ["imap", "lmtp"]
