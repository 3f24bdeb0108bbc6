"""dovecot.conf → storage: the obox fs stack (fscache, compress, crypt, dictmap, posix) works as
configured, and crypt really encrypts what reaches the object store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from columba.config import SettingsView, load_text
from columba.storage.api import AppendRequest, UserInfo
from columba.storage.factory import build_storage
from columba.storage.from_config import storage_settings
from tests.crypt_keys import make_keypair

MESSAGE = b"From: a@example.com\r\nSubject: secret plans\r\n\r\nThe eagle lands at noon.\r\n"


def config_text(tmp_path: Path, public: Path, private: Path) -> str:
    return (
        "dovecot_config_version = 2.4.0\n"
        f"crypt_global_public_key_file = {public}\n"
        f"crypt_global_private_key main {{\n  crypt_private_key_file = {private}\n}}\n"
        "fs_compress_write_method = zstd\n"
        "obox {\n"
        f"  fs fscache {{\n    path = {tmp_path}/fscache/%{{user | sha1 % 4}}\n    size = 1M\n  }}\n"
        "  fs compress {\n  }\n  fs crypt {\n  }\n"
        "  fs dictmap {\n    storage_objectid_prefix = %{user}/mails/\n"
        f"    dict sqlite {{\n      sqlite_path = {tmp_path}/dict.db\n    }}\n  }}\n"
        f"  fs posix {{\n    prefix = {tmp_path}/objects/\n  }}\n"
        "}\n"
        "@mailbox_defaults = english\n"
    )


def test_configured_stack_stores_encrypted_and_reads_back(tmp_path: Path) -> None:
    private, public = make_keypair(tmp_path / "keys", "main")
    config = load_text(config_text(tmp_path, public, private))
    settings = storage_settings(SettingsView(config.schema, config.root))
    user = UserInfo("alice@example.com", str(tmp_path / "home" / "alice"))
    specs = settings.fs_specs(user)
    assert [s.driver for s in specs] == ["fscache", "compress", "crypt", "dictmap", "posix"]
    assert specs[0].settings["fs_fscache_path"].startswith(f"{tmp_path}/fscache/")
    assert specs[2].settings["crypt_private_key_file/main"] == str(private)
    assert specs[3].settings["storage_objectid_prefix"] == "alice@example.com/mails/"
    assert {a.name for a in settings.auto_mailboxes} == {"Drafts", "Junk", "Sent", "Trash"}

    async def scenario() -> bytes:
        storage = build_storage(settings)
        try:
            mail_user = await storage.open_user(user)
            await mail_user.append("INBOX", [AppendRequest(MESSAGE)])
            view = await mail_user.open_mailbox("INBOX", readonly=True)
            data = await view.read_message(view.uids()[0])
            await view.close()
            await mail_user.close()
            return data
        finally:
            await storage.close()

    assert asyncio.run(scenario()) == MESSAGE
    objects = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    assert objects, "the message object reached the posix store"
    for path in objects:
        raw = path.read_bytes()
        assert b"eagle" not in raw and b"secret plans" not in raw
