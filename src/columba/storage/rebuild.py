"""Rebuild a user's index from the dictmap listing and the objects' metadata.

What survives the loss of every index is what the ``obox`` stack lists (through dictmap: the
dict, never an object-store LIST):

* ``<user>/mailboxes/<mailbox guid>/<object>`` — the messages. Each object carries Dovecot's
  metadata (reference §1.6.5: ``guid``, ``size``, ``received``, ``saved``, ``origbox``,
  ``username``) plus Columba's ``uid`` (allocated before the object is written, under the
  user's UID lock), ``internaldate`` (ISO 8601 with the original offset) and ``flags`` (those
  given at save time).
* ``<user>/idx/mailbox-info/<mailbox guid>`` — a small JSON object (name, guid, uidvalidity,
  special-use, subscribed) written whenever a mailbox is created, renamed or its subscription
  changes, and deleted with the mailbox (:func:`sync_mailbox_info`). It sits beside the user
  root bundles, not in the mailbox's directory, so a mailbox directory holds only messages.

:func:`reconcile` brings an index in line with that listing: mailboxes missing from the index
are recreated with their GUID and UIDVALIDITY; listed objects the index doesn't know are parsed
and indexed — under the UID in their metadata when it was allocated in this very mailbox
(``origbox``) at or above the index's UIDNEXT, else under new UIDs above every other, in order of
saving; indexed messages whose object is no longer listed are expunged. An object whose
metadata UID is below UIDNEXT but not indexed is a leftover (an expunge whose object delete
failed, or a save that failed after its object was written) and is skipped: ``columba obox
cleanup`` deletes it. Flags come from the newest bundle when one was pulled first (see
:mod:`columba.storage.metacache`), else from the save-time ``flags`` metadata.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from columba.fs.api import Fs, FsError, FsNotFound
from columba.storage.index import MailboxRow, MailIndex, NewMessage

__all__ = [
    "MAILBOX_INFO",
    "ReconcileReport",
    "load_message",
    "mailbox_info_path",
    "reconcile",
    "sync_mailbox_info",
]

log = logging.getLogger(__name__)

MAILBOX_INFO = "mailbox-info"
_PARALLEL = 8

Runner = Callable[..., Awaitable[Any]]
"""Runs an index method on the index's own thread: ``await run(index.method, *args)``."""


def mailbox_info_path(username: str, guid: str) -> str:
    return f"{username}/idx/{MAILBOX_INFO}/{guid}"


async def sync_mailbox_info(fs: Fs, run: Runner, index: MailIndex, username: str) -> None:
    """Write (or delete) the mailbox-info objects that differ from the index. Failures are
    logged and retried at the next change: the bundles also hold the names."""
    writes, deletes = await run(index.mailbox_info_changes)
    for guid, info in writes:
        meta = {"username": username, "mailbox-guid": guid, "fname": MAILBOX_INFO}
        try:
            await fs.write(mailbox_info_path(username, guid), info.encode(), meta)
        except (FsError, OSError) as err:
            log.warning("obox: writing mailbox-info of %s failed: %s", guid, err)
            return
        await run(index.mailbox_info_done, guid, info)
    for guid in deletes:
        try:
            await fs.delete(mailbox_info_path(username, guid))
        except FsNotFound:
            pass
        except (FsError, OSError) as err:
            log.warning("obox: deleting mailbox-info of %s failed: %s", guid, err)
            return
        await run(index.mailbox_info_done, guid, None)


@dataclass
class ReconcileReport:
    mailboxes_created: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    skipped: list[str] = field(default_factory=list)
    """Listed objects left out as leftovers (cleanup candidates)."""


@dataclass
class _Found:
    path: str
    metadata: dict[str, str]
    message: NewMessage


def _iso_from_epoch(text: str | None) -> str:
    try:
        stamp = int(text) if text else int(time.time())
    except ValueError:
        stamp = int(time.time())
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _build_message(path: str, metadata: dict[str, str], raw: bytes) -> NewMessage:
    from columba.storage.mime import parse_message, to_crlf
    from columba.storage.obox import _encode_parsed, _header_block
    from columba.storage.sort_keys import stored_keys

    data = to_crlf(raw)
    parsed = parse_message(data)
    internal = metadata.get("internaldate") or _iso_from_epoch(metadata.get("received"))
    header = parsed.header_bytes or _header_block(data)
    try:
        keys = stored_keys(header, int(datetime.fromisoformat(internal).timestamp()), len(data))
    except ValueError:  # an odd internal date: computed on first use instead
        keys = None
    return NewMessage(
        guid=metadata.get("guid") or path.rsplit("/", 1)[-1],
        object_path=path,
        flags=tuple(metadata.get("flags", "").split()),
        internaldate=internal,
        savedate=_iso_from_epoch(metadata.get("saved")),
        size=len(data),
        parsed=_encode_parsed(parsed),
        header=header,
        sort_keys=keys,
    )


async def load_message(fs: Fs, path: str) -> _Found:
    metadata = await fs.get_metadata(path)
    raw = await fs.read(path)
    message = await asyncio.to_thread(_build_message, path, metadata, raw)
    return _Found(path, metadata, message)


async def _read_info(fs: Fs, username: str, guid: str) -> dict[str, Any] | None:
    try:
        raw = await fs.read(mailbox_info_path(username, guid))
    except FsNotFound:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("obox: damaged mailbox-info of %s", guid)
        return None
    return value if isinstance(value, dict) else None


def _uid_hint(found: _Found, box: MailboxRow) -> int | None:
    if found.metadata.get("origbox") != box.guid:
        return None  # a copy: the UID in the metadata belongs to another mailbox
    try:
        uid = int(found.metadata.get("uid", ""))
    except ValueError:
        return None
    return uid if uid > 0 else None


def assign_uids(
    found: list[_Found], box: MailboxRow, expunged: set[int]
) -> tuple[list[tuple[int, NewMessage]], list[str]]:
    """(uid, message) to import and the paths skipped as leftovers (see the module doc)."""
    ordered = sorted(found, key=lambda f: (f.metadata.get("saved", ""), f.message.guid, f.path))
    taken: set[int] = set()
    hinted: list[tuple[int, NewMessage]] = []
    rest: list[_Found] = []
    skipped: list[str] = []
    for f in ordered:
        hint = _uid_hint(f, box)
        if hint is not None and (hint < box.uidnext or hint in expunged):
            skipped.append(f.path)
        elif hint is not None and hint not in taken:
            taken.add(hint)
            hinted.append((hint, f.message))
        else:
            rest.append(f)
    top = max([box.uidnext - 1, *taken])
    out = hinted + [(top + i + 1, f.message) for i, f in enumerate(rest)]
    out.sort(key=lambda item: item[0])
    return out, skipped


async def _bounded(jobs: list[Callable[[], Awaitable[_Found]]]) -> list[_Found]:
    sem = asyncio.Semaphore(_PARALLEL)

    async def one(job: Callable[[], Awaitable[_Found]]) -> _Found:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def reconcile(fs: Fs, run: Runner, index: MailIndex, username: str) -> ReconcileReport:
    """Make the index match the listing (see the module doc). Listing or read errors abort
    before anything is changed for the mailbox concerned."""
    report = ReconcileReport()
    prefix = f"{username}/mailboxes/"
    listing: dict[str, set[str]] = {}
    for guid in await fs.iter_dirs(prefix):
        listing[guid] = {p async for p in fs.iter_files(f"{prefix}{guid}/", recursive=False)}
    info_prefix = f"{username}/idx/{MAILBOX_INFO}/"
    async for path in fs.iter_files(info_prefix, recursive=False):
        listing.setdefault(path[len(info_prefix) :], set())
    known = {box.guid: (box, paths, gone) for box, paths, gone in await run(
        index.mailboxes_with_paths
    )}  # fmt: skip
    for guid, files in sorted(listing.items()):
        entry = known.get(guid)
        if entry is None:
            info = await _read_info(fs, username, guid)
            if info is None and not files:
                continue
            info = info or {}
            box = await run(
                index.import_mailbox,
                str(info.get("name") or f"Recovered-{guid[:8]}"),
                guid,
                int(info.get("uidvalidity") or int(time.time())),
                frozenset(str(s) for s in info.get("special_use", ())),
                bool(info.get("subscribed", False)),
            )
            report.mailboxes_created.append(box.name)
            paths: set[str] = set()
            gone: set[int] = set()
        else:
            box, paths, gone = entry
        missing = paths - files
        if missing:
            report.removed += len(await run(index.drop_paths, box.id, box.guid, missing))
        new = sorted(files - paths)
        if new:

            def job(path: str) -> Callable[[], Awaitable[_Found]]:
                return lambda: load_message(fs, path)

            found = await _bounded([job(p) for p in new])
            items, skipped = assign_uids(found, box, gone)
            report.skipped.extend(skipped)
            await run(index.import_messages, box.id, box.guid, items)
            report.added += len(items)
    for guid, (box, paths, _gone) in known.items():
        if guid not in listing and paths:
            report.removed += len(await run(index.drop_paths, box.id, box.guid, paths))
    return report
