"""Columba fs package: object storage drivers (posix, memory) and wrappers (compress, dictmap,
randomfail), stacked outermost first with `create_fs_stack`; see `columba.fs.api`."""

from columba.fs.api import (
    Fs,
    FsError,
    FsNoSpace,
    FsNotFound,
    FsSpec,
    FsStat,
    FsTemporaryError,
    FsWrapper,
    create_fs_stack,
    fs_drivers,
    register_fs,
)

__all__ = [
    "Fs",
    "FsError",
    "FsNoSpace",
    "FsNotFound",
    "FsSpec",
    "FsStat",
    "FsTemporaryError",
    "FsWrapper",
    "create_fs_stack",
    "fs_drivers",
    "register_fs",
]
