"""Build the process's :class:`MailStorage` from plain settings.

The configuration layer maps dovecot.conf (``obox { fs ... }``, ``namespace { mailbox { auto,
special_use } }``, ``mail_save_max_size``, ``lda_mailbox_autocreate``/``autosubscribe``,
``mail_home``/metacache directory) to a :class:`StorageSettings`; this module knows nothing of
the config language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from columba.fs.api import FsSpec
from columba.storage.api import MailStorage, UserInfo
from columba.storage.index import FsyncMode

AutoMode = Literal["no", "create", "subscribe"]


@dataclass(frozen=True)
class AutoMailbox:
    """One ``mailbox NAME { auto = ...  special_use = ... }`` of the inbox namespace."""

    name: str
    auto: AutoMode = "no"
    special_use: frozenset[str] = frozenset()


ENGLISH_MAILBOX_DEFAULTS: tuple[AutoMailbox, ...] = (
    AutoMailbox("Drafts", "subscribe", frozenset({"\\Drafts"})),
    AutoMailbox("Junk", "subscribe", frozenset({"\\Junk"})),
    AutoMailbox("Trash", "subscribe", frozenset({"\\Trash"})),
    AutoMailbox("Sent", "subscribe", frozenset({"\\Sent"})),
    AutoMailbox("Sent Messages", "no", frozenset({"\\Sent"})),
)
"""``@mailbox_defaults = english`` (reference §1.13): Drafts/Junk/Trash/Sent subscribed."""


def home_index_dir(user: UserInfo) -> Path:
    """The default index directory: the user's home."""
    return Path(user.home)


@dataclass(frozen=True)
class StorageSettings:
    fs_specs: Callable[[UserInfo], list[FsSpec]]
    """The user's ``obox`` fs stack, outermost first, variables already expanded."""
    auto_mailboxes: list[AutoMailbox] = field(default_factory=list)
    mail_save_max_size: int = 0
    """Largest message accepted by APPEND/delivery in bytes; 0 = no limit."""
    lda_mailbox_autocreate: bool = False
    lda_mailbox_autosubscribe: bool = False
    index_dir: Callable[[UserInfo], Path] = home_index_dir
    """Where ``columba-index.db`` lives (created 0700)."""
    index_busy_timeout: float = 30.0
    """Seconds a write waits for another process's index transaction."""
    mail_fsync: FsyncMode = "optimized"
    """``mail_fsync``: how index commits are synced (see :mod:`columba.storage.index`)."""
    metacache_specs: Callable[[UserInfo], list[FsSpec]] | None = None
    """The user's ``metacache`` fs stack for index bundles; None: no bundles are uploaded."""
    metacache_upload_interval: float = 300.0
    """Seconds within which important changes (flags) are uploaded."""
    metacache_close_delay: float = 2.0
    """Seconds after a user is released before the index is packed and uploaded."""


def build_storage(settings: StorageSettings) -> MailStorage:
    """The obox storage for these settings."""
    from columba.storage.obox import ObOxStorage

    return ObOxStorage(settings)
