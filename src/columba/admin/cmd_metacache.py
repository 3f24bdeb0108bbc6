"""Admin commands of the obox storage: ``columba metacache flush|flushall|list|pull|clean``,
``columba force-resync``, ``columba obox user delete``, ``columba obox cleanup`` and
``columba fscache rescan`` (after doveadm's commands of the same names).

They run in their own process against the configured storage, like doveadm without a server
connection: ``flush`` uploads what the local index holds; ``pull -f`` and ``clean`` replace or
remove a local index and must not be used for a user the server is serving at that moment.
``obox cleanup`` deletes leaked objects: dictmap rows of a user's mailboxes that no index row
references and objects under the object-id prefix that no dictmap row references, both only
when older than ``--grace`` seconds (in-flight saves are not leaks).
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from columba.config import ConfigError, load
from columba.fs.api import Fs, FsError, FsNotFound
from columba.storage.api import StorageError, UserInfo

EX_CONFIG = 2
EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_SOFTWARE = 70

_F = TypeVar("_F", bound=Fs)

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    def user_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("-u", dest="user", required=True, help="user name")

    mc = sub.add_parser("metacache", parents=[common], help="index bundles (doveadm metacache)")
    mc_sub = mc.add_subparsers(dest="metacache_command", required=True)
    p = mc_sub.add_parser("flush", parents=[common], help="upload a user's index now")
    user_arg(p)
    p.add_argument("--base", action="store_true", help="upload a base bundle, not a diff")
    p.set_defaults(func=_sync(_flush))
    p = mc_sub.add_parser("flushall", parents=[common], help="upload every local index")
    p.add_argument("mask", nargs="?", default="*", help="user name mask (passwd-file users)")
    p.set_defaults(func=_sync(_flushall))
    p = mc_sub.add_parser("list", parents=[common], help="a user's local state and bundles")
    user_arg(p)
    p.set_defaults(func=_sync(_list))
    p = mc_sub.add_parser("pull", parents=[common], help="restore a user's index from bundles")
    user_arg(p)
    p.add_argument("-f", dest="force", action="store_true", help="replace a local index")
    p.set_defaults(func=_sync(_pull))
    p = mc_sub.add_parser("clean", parents=[common], help="upload, then drop the local index")
    user_arg(p)
    p.set_defaults(func=_sync(_clean))

    p = sub.add_parser(
        "force-resync", parents=[common], help="reconcile a user's index with the storage"
    )
    user_arg(p)
    p.set_defaults(func=_sync(_resync))

    obox = sub.add_parser("obox", parents=[common], help="obox storage maintenance")
    obox_sub = obox.add_subparsers(dest="obox_command", required=True)
    user = obox_sub.add_parser("user", parents=[common], help="per-user storage commands")
    user_sub = user.add_subparsers(dest="obox_user_command", required=True)
    p = user_sub.add_parser("delete", parents=[common], help="delete every object of a user")
    user_arg(p)
    p.set_defaults(func=_sync(_user_delete))
    p = obox_sub.add_parser("cleanup", parents=[common], help="delete a user's leaked objects")
    user_arg(p)
    p.add_argument("--grace", type=float, default=60.0, help="seconds an object must be old")
    p.set_defaults(func=_sync(_cleanup))

    fscache = sub.add_parser("fscache", parents=[common], help="fscache maintenance")
    fc_sub = fscache.add_subparsers(dest="fscache_command", required=True)
    p = fc_sub.add_parser("rescan", parents=[common], help="recount a user's fscache")
    user_arg(p)
    p.set_defaults(func=_sync(_fscache_rescan))


def _sync(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(handler(args))
        except ConfigError as exc:
            print(f"columba: Fatal: {exc}", file=sys.stderr)
            return EX_CONFIG
        except (StorageError, FsError) as exc:
            print(f"columba: Error: {exc}", file=sys.stderr)
            return EX_TEMPFAIL

    return run


# ---------------------------------------------------------------------- helpers


class _Env:
    def __init__(self, args: argparse.Namespace) -> None:
        from columba.context import ServiceContext
        from columba.storage.obox import ObOxStorage

        self.context = ServiceContext(load(args.config, args.override))
        storage = self.context.storage
        assert isinstance(storage, ObOxStorage)
        self.storage = storage

    async def user(self, name: str) -> UserInfo | None:
        info = await self.context.authenticator.lookup_user(name)
        if info is None:
            print(f"columba: Error: unknown user {name}", file=sys.stderr)
        return info

    def directory(self, info: UserInfo) -> Path:
        return Path(self.storage.settings.index_dir(info))

    def users(self) -> list[str]:
        from columba.auth.passwd_file import PasswdFile
        from columba.auth.userdb.passwd_file import PasswdFileUserdb

        names: set[str] = set()
        for db in self.context.authenticator.userdbs:
            if isinstance(db, PasswdFileUserdb) and "%{" not in db.path_template:
                names.update(PasswdFile(db.path_template).users())
        return sorted(names)


def _layer(fs: Fs, cls: type[_F]) -> _F | None:
    node: Fs | None = fs
    while node is not None:
        if isinstance(node, cls):
            return node
        node = getattr(node, "parent", None)
    return None


# ---------------------------------------------------------------------- metacache


async def _flush(args: argparse.Namespace) -> int:
    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    name = await env.storage.metacache.flush(info, env.directory(info), force_base=args.base)
    print(f"{info.username}: {name or 'no changes'}")
    return 0


async def _flushall(args: argparse.Namespace) -> int:
    env = _Env(args)
    status = 0
    for username in env.users():
        if not fnmatch.fnmatchcase(username, args.mask):
            continue
        info = await env.user(username)
        if info is None:
            continue
        try:
            name = await env.storage.metacache.flush(info, env.directory(info))
        except (StorageError, FsError) as exc:
            print(f"{username}: failed: {exc}", file=sys.stderr)
            status = EX_TEMPFAIL
            continue
        if name:
            print(f"{username}: {name}")
    return status


async def _list(args: argparse.Namespace) -> int:
    from columba.storage.metacache import LocalState, choose_bundles, list_bundles

    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    state = LocalState.load(env.directory(info))
    print(f"username={info.username} base={state.base} last={state.last} changes={state.counter}")
    fs = env.storage.metacache.open_fs(info)
    try:
        names = await list_bundles(fs, info.username)
    finally:
        await fs.close()
    chosen = choose_bundles(names) or ("", None)
    for name in names:
        mark = " *" if name in chosen else ""
        print(f"{info.username}/idx/{name}{mark}")
    return 0


async def _pull(args: argparse.Namespace) -> int:
    from columba.storage.metacache import LOCK_FILE, file_lock, local_index_exists, pull

    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    directory = env.directory(info)
    if local_index_exists(directory) and not args.force:
        print(f"{info.username}: a local index exists (use -f to replace it)", file=sys.stderr)
        return EX_SOFTWARE
    async with file_lock(directory / LOCK_FILE):
        fs = env.storage.metacache.open_fs(info)
        try:
            name = await pull(fs, directory, info.username)
        finally:
            await fs.close()
    report = await env.storage.resync(info)
    print(f"{info.username}: restored {name or 'nothing (rebuilt)'}; {report}")
    await env.storage.close()
    return 0


async def _clean(args: argparse.Namespace) -> int:
    from columba.storage.index import INDEX_FILENAME
    from columba.storage.metacache import BASE_COPY, LOCK_FILE, STATE_FILE, file_lock

    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    directory = env.directory(info)
    await env.storage.metacache.flush(info, directory)
    async with file_lock(directory / LOCK_FILE):
        for name in (INDEX_FILENAME, f"{INDEX_FILENAME}-wal", f"{INDEX_FILENAME}-shm"):
            (directory / name).unlink(missing_ok=True)
        for name in (STATE_FILE, BASE_COPY):
            (directory / name).unlink(missing_ok=True)
    print(f"{info.username}: local index removed")
    return 0


async def _resync(args: argparse.Namespace) -> int:
    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    try:
        report = await env.storage.resync(info)
    finally:
        await env.storage.close()
    print(
        f"{info.username}: {len(report.mailboxes_created)} mailbox(es) recreated, "
        f"{report.added} message(s) added, {report.removed} removed, "
        f"{len(report.skipped)} leftover object(s)"
    )
    return 0


# ---------------------------------------------------------------------- obox


async def _delete_all(fs: Fs, prefix: str) -> int:
    paths = [p async for p in fs.iter_files(prefix)]
    for path in paths:
        try:
            await fs.delete(path)
        except FsNotFound:
            pass
    return len(paths)


async def _user_delete(args: argparse.Namespace) -> int:
    from columba.fs.api import create_fs_stack

    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    count = 0
    fs = create_fs_stack(env.storage.settings.fs_specs(info))
    try:
        count += await _delete_all(fs, f"{info.username}/")
    finally:
        await fs.close()
    if env.storage.metacache.enabled:
        mfs = env.storage.metacache.open_fs(info)
        try:
            count += await _delete_all(mfs, f"{info.username}/")
        finally:
            await mfs.close()
    directory = env.directory(info)
    for path in directory.glob("columba-*"):
        path.unlink(missing_ok=True)
    print(f"{info.username}: {count} object(s) deleted, local index removed")
    return 0


async def _cleanup(args: argparse.Namespace) -> int:
    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    try:
        rows, objects = await env.storage.cleanup(info, args.grace)
    finally:
        await env.storage.close()
    print(f"{info.username}: {rows} unreferenced row(s), {objects} leaked object(s) deleted")
    return 0


async def _fscache_rescan(args: argparse.Namespace) -> int:
    from columba.fs.api import create_fs_stack
    from columba.fs.fscache import FscacheFs

    env = _Env(args)
    info = await env.user(args.user)
    if info is None:
        return EX_NOUSER
    fs = create_fs_stack(env.storage.settings.fs_specs(info))
    try:
        cache = _layer(fs, FscacheFs)
        if cache is None:
            print("no fscache layer in the obox stack", file=sys.stderr)
            return EX_SOFTWARE
        stats = await cache.rescan()
    finally:
        await fs.close()
    print(f"{info.username}: {stats}")
    return 0
