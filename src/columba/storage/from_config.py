"""dovecot.conf → storage: the ``obox { fs … }`` stack, auto mailboxes and save limits.

The fs stack is the ordered ``fs NAME { }`` blocks of the ``obox`` filter, outermost first.
Each layer gets every ``fs_*``/``storage_*`` setting it can see (its own block, then ``obox``,
then the top level) as text with ``%{user}``-style variables expanded for the user being
opened; a ``dict NAME { }`` inside the dictmap layer (or above it) is its dict.
"""

from __future__ import annotations

from collections.abc import Callable

from columba.config.errors import ConfigError
from columba.config.resolve import SettingsView
from columba.config.types import BoolList, StrList, format_value
from columba.dict.api import Dict, create_dict
from columba.fs.api import FsSpec
from columba.lib.var_expand import VarExpandError, expand
from columba.storage.api import StorageTemporaryError, UserInfo
from columba.storage.factory import AutoMailbox, AutoMode, StorageSettings
from columba.storage.index import FsyncMode

_FS_SETTING_PREFIXES = ("fs_", "storage_", "crypt_global_public_key_file", "crypt_write_")
_DICT_SETTING_PREFIXES = ("sqlite_", "pgsql_", "cassandra_", "redis_", "dict_")
_FSYNC_MODES: dict[str, FsyncMode] = {
    "optimized": "optimized",
    "always": "always",
    "never": "never",
}


def user_variables(user: UserInfo) -> dict[str, str]:
    local, _, domain = user.username.partition("@")
    return {"user": user.username, "username": local, "domain": domain, "home": user.home}


def _visible_settings(view: SettingsView, prefixes: tuple[str, ...]) -> dict[str, str]:
    """Every setting with one of ``prefixes`` as ``view`` sees it, as text."""
    out: dict[str, str] = {}
    for name, decl in view.schema.settings.items():
        if not name.startswith(prefixes):
            continue
        value = view.get(name)
        if isinstance(value, StrList):
            for key, item in value.items:
                out[f"{name}/{key}"] = item
            continue
        if isinstance(value, BoolList):
            out[name] = " ".join(value.enabled())
            continue
        out[name] = format_value(decl, value)
    return out


def _expand_all(settings: dict[str, str], variables: dict[str, str], where: str) -> dict[str, str]:
    try:
        return {k: expand(v, variables) if "%{" in v else v for k, v in settings.items()}
    except VarExpandError as exc:
        raise StorageTemporaryError(f"{where}: {exc}") from exc


def _dict_view(fs: SettingsView) -> SettingsView | None:
    """The ``dict NAME { }`` a dictmap layer uses: its own, else the nearest parent's."""
    node: SettingsView | None = fs
    while node is not None:
        dicts = node.filters("dict")
        if dicts:
            return dicts[0]
        parent = node.block.parent
        node = SettingsView(fs.schema, parent) if parent is not None else None
    return None


def _crypt_private_keys(view: SettingsView) -> dict[str, str]:
    """``crypt_global_private_key NAME { crypt_private_key_file = … }`` blocks, flattened to
    ``crypt_private_key_file/NAME`` (and ``…password/NAME``) as the crypt layer reads them."""
    keys: dict[str, str] = {}
    for block in view.filters("crypt_global_private_key"):
        path = block.get_str("crypt_private_key_file")
        if path:
            keys[f"crypt_private_key_file/{block.name}"] = path
        password = block.get_str("crypt_private_key_password")
        if password:
            keys[f"crypt_private_key_password/{block.name}"] = password
    return keys


def fs_stack_factory(
    view: SettingsView, filter_name: str = "obox"
) -> Callable[[UserInfo], list[FsSpec]]:
    """A function giving a user's fs stack of ``filter_name`` (obox, metacache, fts_dovecot)."""
    layers = view.filter(filter_name).filters("fs")
    if not layers:
        raise ConfigError(f"{filter_name} {{ }} has no fs layers (e.g. fs posix {{ }})")
    prepared: list[tuple[str, dict[str, str], tuple[str, dict[str, str]] | None]] = []
    private_keys = _crypt_private_keys(view)
    for layer in layers:
        driver = layer.get_str("fs_driver") or layer.name
        settings = _visible_settings(layer, _FS_SETTING_PREFIXES)
        if driver == "crypt":
            settings.update(private_keys)
        dict_spec = None
        if driver == "dictmap":
            dict_view = _dict_view(layer)
            if dict_view is None:
                raise ConfigError(
                    f"{filter_name}: fs dictmap needs a dict (e.g. dict sqlite {{ }})"
                )
            dict_driver = dict_view.get_str("dict_driver") or dict_view.name
            dict_spec = (dict_driver, _visible_settings(dict_view, _DICT_SETTING_PREFIXES))
        prepared.append((driver, settings, dict_spec))

    def specs_for(user: UserInfo) -> list[FsSpec]:
        variables = user_variables(user)
        specs = []
        for driver, settings, dict_spec in prepared:
            factory: Callable[[], Dict] | None = None
            if dict_spec is not None:
                dict_driver, dict_settings = dict_spec
                expanded = _expand_all(dict_settings, variables, f"dict {dict_driver}")

                def make_dict(d: str = dict_driver, s: dict[str, str] = expanded) -> Dict:
                    return create_dict(d, s, username=user.username)

                factory = make_dict
            specs.append(FsSpec(driver, _expand_all(settings, variables, f"fs {driver}"), factory))
        return specs

    return specs_for


def auto_mailboxes(view: SettingsView) -> list[AutoMailbox]:
    """``mailbox NAME { auto = … special_use = … }`` of the INBOX namespace."""
    out: list[AutoMailbox] = []
    for namespace in view.filters("namespace"):
        if not namespace.get_bool("namespace_inbox"):
            continue
        for mailbox in namespace.filters("mailbox"):
            auto = mailbox.get_str("mailbox_auto")
            special = frozenset(mailbox.get_list("mailbox_special_use"))
            mode: AutoMode = (
                "subscribe" if auto == "subscribe" else "create" if auto == "create" else "no"
            )
            if mode == "no" and not special:
                continue
            out.append(AutoMailbox(mailbox.name, mode, special))
    return out


def storage_settings(view: SettingsView) -> StorageSettings:
    """The storage of ``mail_driver = obox`` as configured."""
    driver = view.get_str("mail_driver") or "obox"
    if driver != "obox":
        raise ConfigError(f"mail_driver = {driver}: Columba stores mail with obox only")
    fsync = _FSYNC_MODES.get(view.get_str("mail_fsync"))
    if fsync is None:
        raise ConfigError(
            f"mail_fsync = {view.get_str('mail_fsync')}: expected optimized, always or never"
        )
    return StorageSettings(
        fs_specs=fs_stack_factory(view, "obox"),
        mail_fsync=fsync,
        auto_mailboxes=auto_mailboxes(view),
        mail_save_max_size=max(view.get_int("mail_save_max_size"), 0),
        lda_mailbox_autocreate=view.get_bool("lda_mailbox_autocreate"),
        lda_mailbox_autosubscribe=view.get_bool("lda_mailbox_autosubscribe"),
        metacache_specs=(
            fs_stack_factory(view, "metacache") if view.filter("metacache").filters("fs") else None
        ),
        metacache_upload_interval=float(view.get_int("metacache_upload_interval")),
        metacache_close_delay=float(view.get_int("metacache_close_delay")),
    )
