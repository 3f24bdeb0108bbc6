"""Sort and thread keys (RFC 5256 SORT/THREAD, RFC 5957 DISPLAYFROM/DISPLAYTO) and a
per-process cache of them.

The keys are computed by :mod:`columba.storage.sort_keys` (re-exported here) once per message,
when it is saved, and stored in the index; SORT and THREAD read them for many messages in one
query (:meth:`MailboxView.sort_keys_many`; messages saved before the keys were stored get them
computed and stored on first use) and keep them in :class:`KeyCache`, shared by the sessions of
the worker: messages never change, so a key is read once per process.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from columba.storage.sort_keys import (
    FIELDS,
    KEY_FIELDS,
    address_key,
    base_subject,
    base_subject_of_text,
    compute_fields,
    display_key,
    extract_headers,
    first_message_id,
    message_ids,
    sent_date,
    titlecase_decomposed,
)

__all__ = [
    "BATCH",
    "FIELDS",
    "KEY_FIELDS",
    "KeyCache",
    "address_key",
    "base_subject",
    "base_subject_of_text",
    "compute_fields",
    "display_key",
    "extract_headers",
    "first_message_id",
    "key_cache",
    "message_ids",
    "sent_date",
    "titlecase_decomposed",
]

BATCH = 2048
"""Header blocks fetched from the index per query (key computation without stored keys)."""

# -- the cache ---------------------------------------------------------------------------------


class KeyCache:
    """Per-process cache of computed fields: ``(mailbox guid, uidvalidity)`` → field → uid →
    value, bounded by :attr:`limit` values (least recently used mailboxes are dropped)."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self.limit = limit
        self._boxes: collections.OrderedDict[tuple[str, int], dict[str, dict[int, object]]] = (
            collections.OrderedDict()
        )
        self._size = 0

    def mailbox(self, guid: str, uidvalidity: int) -> dict[str, dict[int, object]]:
        key = (guid, uidvalidity)
        box = self._boxes.get(key)
        if box is None:
            box = {}
            self._boxes[key] = box
        self._boxes.move_to_end(key)
        return box

    def field(self, guid: str, uidvalidity: int, name: str) -> dict[int, object]:
        box = self.mailbox(guid, uidvalidity)
        values = box.get(name)
        if values is None:
            values = box[name] = {}
        return values

    def missing(self, values: dict[int, object], uids: Iterable[int]) -> list[int]:
        return [u for u in uids if u not in values]

    def added(self, count: int) -> None:
        """Account for *count* new values; evict old mailboxes past the limit."""
        self._size += count
        while self._size > self.limit and len(self._boxes) > 1:
            _key, box = self._boxes.popitem(last=False)
            self._size -= sum(len(v) for v in box.values())

    def clear(self) -> None:
        self._boxes.clear()
        self._size = 0


key_cache = KeyCache()
"""The worker's cache (shared by its sessions)."""
