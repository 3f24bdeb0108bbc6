"""dictmap wrapper: Dovecot-style names ↔ object ids kept in a dict.

Object stores list badly and can't rename, so the names the storage layer uses
(``<user>/mailboxes/<mailbox_guid>/<object name>``, ``<user>/mailboxes/<guid>/idx/<bundle>``,
``<user>/idx/<bundle>``, ``<user>/fts/<name>``) live in the dict, and the parent fs stores each
object under a random object id.  Key space (reference §1.6.4):

* ``shared/dictmap/<path>`` → object id (32 hex digits), or ``""`` meaning "object id = path"
  (passthrough);
* ``shared/dictrevmap/<object id>/<path>`` → ``""``: one reverse row per name referencing the
  object; the number of these rows is the object's reference count.

Durability contract: **a listed row always has an object.**  ``write`` stores the object in the
parent (``storage_objectid_prefix`` + id) and only after that succeeds commits the forward and
reverse rows in one transaction.  If the commit fails for certain the new object is deleted; if
the outcome is uncertain (``DictError.uncertain``) it is kept (a leak, never a dangling row).
``delete`` removes the rows first and the object last, and only when no reverse row is left
(a failure to delete the object after the rows are gone is logged, not raised: the name is
deleted, the object leaks).
``copy`` adds a row pointing at the same object (no data copied) under a compare-and-set on the
source row, so a concurrent delete of the last reference can't free an object being copied.
Listing (``iter_files``) reads the dict only, never the parent.  Reads also look the name up in
the dict, also in passthrough mode, so a path is readable exactly when it is listed.

Settings: ``storage_objectid_prefix`` (already expanded, e.g. ``alice/mails/``),
``storage_passthrough_paths`` = ``full`` (new objects are stored under their path, the dict
value is empty) | ``read-only`` (rows with an empty value are read from their path; new objects
get object ids) | ``none`` or empty (default: object ids).  Rows are always refcounted
(reverse rows).  The dict comes from ``FsSpec.dict_factory`` or, if absent, from
``dict_driver`` plus that driver's settings in the same block.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping

from columba.dict.api import (
    Dict,
    DictConflict,
    DictError,
    DictTemporaryError,
    create_dict,
)
from columba.fs.api import (
    DEFAULT_CHUNK_SIZE,
    Fs,
    FsData,
    FsError,
    FsNotFound,
    FsSpec,
    FsStat,
    FsTemporaryError,
    FsWrapper,
    aclose,
    check_path,
    dir_prefix,
    register_fs,
)

__all__ = ["FORWARD_PREFIX", "REVERSE_PREFIX", "DictmapFs"]

log = logging.getLogger(__name__)

FORWARD_PREFIX = "shared/dictmap/"
REVERSE_PREFIX = "shared/dictrevmap/"

_CAS_ATTEMPTS = 20
_PAGE = 1000


def _dict_error(err: DictError) -> FsError:
    if isinstance(err, DictTemporaryError | DictConflict):
        return FsTemporaryError(f"dictmap: {err}")
    return FsError(f"dictmap: {err}")


@register_fs("dictmap")
class DictmapFs(FsWrapper):
    def __init__(self, spec: FsSpec, parent: Fs) -> None:
        super().__init__(parent)
        settings = spec.settings
        self.objectid_prefix = settings.get("storage_objectid_prefix", "")
        if self.objectid_prefix and not self.objectid_prefix.endswith("/"):
            # Dovecot stores objects "in <prefix>/<objectid>".
            self.objectid_prefix += "/"
        if self.objectid_prefix:
            check_path(self.objectid_prefix.rstrip("/"))
        mode = settings.get("storage_passthrough_paths", "").strip().lower()
        if mode == "none":
            mode = ""
        if mode not in ("", "full", "read-only"):
            raise FsError(f"storage_passthrough_paths: expected full or read-only, not {mode!r}")
        self.passthrough = mode
        if spec.dict_factory is not None:
            self.dict: Dict = spec.dict_factory()
        elif settings.get("dict_driver"):
            try:
                self.dict = create_dict(settings["dict_driver"], settings)
            except DictError as err:
                raise FsError(f"dictmap: {err}") from err
        else:
            raise FsError("dictmap: no dict (set dict_driver or pass a dict_factory)")

    # ------------------------------------------------------------------ keys

    @staticmethod
    def forward_key(path: str) -> str:
        return FORWARD_PREFIX + path

    @staticmethod
    def reverse_key(oid: str, path: str) -> str:
        return f"{REVERSE_PREFIX}{oid}/{path}"

    def object_path(self, path: str, value: str) -> str:
        """Where the parent keeps the object of `path` whose dict value is `value`."""
        return path if value == "" else self.objectid_prefix + value

    # ------------------------------------------------------------------ dict helpers

    async def _get(self, path: str) -> str | None:
        try:
            return await self.dict.get(self.forward_key(path))
        except DictError as err:
            raise _dict_error(err) from err

    async def _resolve(self, path: str) -> str:
        value = await self._get(check_path(path))
        if value is None:
            raise FsNotFound(path)
        return self.object_path(path, value)

    async def _replace_row(self, path: str, value: str) -> str | None:
        """Point `path` at `value` (CAS loop); return the previous value.  Raises DictError."""
        key = self.forward_key(path)
        old: str | None = None  # first guess: a new name (every message object's is)
        for attempt in range(_CAS_ATTEMPTS):
            if attempt:
                old = await self.dict.get(key)
            t = self.dict.transaction()
            t.set_if(key, old, value)
            if old:
                t.unset(self.reverse_key(old, path))
            if value:
                t.set(self.reverse_key(value, path), "")
            try:
                await t.commit()
            except DictConflict:
                continue
            return old
        raise DictTemporaryError(f"{path}: too many concurrent changes")

    async def _release(self, path: str, old: str | None, new: str | None) -> None:
        """Free the object `path` used to reference through `old`, if nothing references it."""
        if old is None:
            return
        if old == "":
            if new == "":  # passthrough object overwritten in place
                return
            target = path
        else:
            try:
                refs = await self.dict.iterate(f"{REVERSE_PREFIX}{old}/", limit=1)
            except DictError:
                return  # keep the object: a leak is harmless, a lost object is not
            if refs:
                return
            target = self.objectid_prefix + old
        try:
            await self.parent.delete(target)
        except FsNotFound:
            pass
        except FsError as err:
            # The name is already gone; the object leaks until a cleanup finds it.
            log.warning("dictmap: leaked object %s of %s: %s", target, path, err)

    # ------------------------------------------------------------------ fs API

    async def read_stream(
        self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        target = await self._resolve(path)
        source = self.parent.read_stream(target, chunk_size)
        try:
            async for chunk in source:
                yield chunk
        finally:
            await aclose(source)

    async def read(self, path: str) -> bytes:
        return await self.parent.read(await self._resolve(path))

    async def write(
        self, path: str, data: FsData, metadata: Mapping[str, str] | None = None
    ) -> None:
        check_path(path)
        if self.passthrough == "full":
            value = ""
            target = path
        else:
            value = uuid.uuid4().hex
            target = self.objectid_prefix + value
        await self.parent.write(target, data, metadata)
        try:
            old = await self._replace_row(path, value)
        except DictError as err:
            if not err.uncertain and value:
                try:
                    await self.parent.delete(target)
                except FsError:
                    pass
            raise _dict_error(err) from err
        await self._release(path, old, value)

    async def stat(self, path: str) -> FsStat:
        return await self.parent.stat(await self._resolve(path))

    async def exists(self, path: str) -> bool:
        return await self._get(check_path(path)) is not None

    async def delete(self, path: str) -> None:
        check_path(path)
        key = self.forward_key(path)
        try:
            for _ in range(_CAS_ATTEMPTS):
                old = await self.dict.get(key)
                if old is None:
                    raise FsNotFound(path)
                t = self.dict.transaction()
                t.set_if(key, old, None)
                if old:
                    t.unset(self.reverse_key(old, path))
                try:
                    await t.commit()
                except DictConflict:
                    continue
                break
            else:
                raise DictTemporaryError(f"{path}: too many concurrent changes")
        except DictError as err:
            raise _dict_error(err) from err
        await self._release(path, old, None)

    async def copy(self, src: str, dst: str) -> None:
        check_path(src)
        check_path(dst)
        src_key, dst_key = self.forward_key(src), self.forward_key(dst)
        try:
            for _ in range(_CAS_ATTEMPTS):
                oid = await self.dict.get(src_key)
                if oid is None:
                    raise FsNotFound(src)
                if src == dst:
                    return
                if oid == "" or self.passthrough == "full":
                    await self._copy_object(src, dst, oid)
                    return
                old = await self.dict.get(dst_key)
                if old == oid:
                    return
                t = self.dict.transaction()
                t.set_if(src_key, oid, oid)  # the source still references the object
                t.set_if(dst_key, old, oid)
                t.set(self.reverse_key(oid, dst), "")
                if old:
                    t.unset(self.reverse_key(old, dst))
                try:
                    await t.commit()
                except DictConflict:
                    continue
                await self._release(dst, old, oid)
                return
            raise DictTemporaryError(f"{src}: too many concurrent changes")
        except DictError as err:
            raise _dict_error(err) from err

    async def _copy_object(self, src: str, dst: str, src_value: str) -> None:
        """Copy whose source or destination is a passthrough object: copy the data itself."""
        if self.passthrough == "full":
            value, target = "", dst
        else:
            value = uuid.uuid4().hex
            target = self.objectid_prefix + value
        await self.parent.copy(self.object_path(src, src_value), target)
        try:
            old = await self._replace_row(dst, value)
        except DictError as err:
            if not err.uncertain and value:
                try:
                    await self.parent.delete(target)
                except FsError:
                    pass
            raise
        await self._release(dst, old, value)

    async def iter_files(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[str]:
        base = FORWARD_PREFIX + dir_prefix(prefix)
        after: str | None = None
        while True:
            try:
                page = await self.dict.iterate(base, recurse=recursive, after=after, limit=_PAGE)
            except DictError as err:
                raise _dict_error(err) from err
            for key, _value in page:
                yield key[len(FORWARD_PREFIX) :]
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    async def iter_dirs(self, prefix: str = "") -> list[str]:
        # From the dict listing, not the parent's.
        return await Fs.iter_dirs(self, prefix)

    async def get_metadata(self, path: str) -> dict[str, str]:
        return await self.parent.get_metadata(await self._resolve(path))

    async def close(self) -> None:
        try:
            await self.dict.close()
        finally:
            await self.parent.close()
