"""The FLAGS text of many messages at once (FETCH 1:* FLAGS, QRESYNC resync): a mailbox has
few distinct flag sets, so each (flags, \\Recent) pair is formatted once per command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from columba.imap.session import format_flags

if TYPE_CHECKING:
    from columba.imap.session import ImapSession

__all__ = ["FlagText"]


class FlagText:
    """``flag_text(uid, flags)`` gives what ``session.flags_of(record)`` gives for a record of
    that UID and flags, with ``\\Recent`` as the session sees it now."""

    __slots__ = ("_cache", "_recent")

    def __init__(self, session: ImapSession) -> None:
        sel = session.selected
        self._recent: frozenset[int] = (
            sel.view.recent_uids() if sel is not None and not session.rev2 else frozenset()
        )
        self._cache: dict[tuple[frozenset[str], bool], bytes] = {}

    def __call__(self, uid: int, flags: frozenset[str]) -> bytes:
        key = (flags, uid in self._recent)
        text = self._cache.get(key)
        if text is None:
            text = self._cache[key] = format_flags(flags, key[1])
        return text
