"""Replacing a file atomically, and trusting a file enough to load code or state from it.

Every output (metrics.json, checkpoints, downloaded data, the tuning cache) is
written to a temporary file beside its destination, synced, then renamed over
it, and the folder is synced too: the rename is a change to the folder, and
until the folder's entry is on disk a power loss can bring back the old file (or
none). The temporary file is created by a plain `open()`, so it gets the mode any
other output gets (0666 minus the umask); `tempfile.mkstemp` would make it 0600
and teammates on a shared cluster could not read the result.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it replaces `path`,
    on failure it is removed and `path` keeps its old content."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename into it survives a crash. A folder this user cannot
    open for reading, or a file system that cannot sync folders (EINVAL, EBADF, ENOTSUP),
    keeps the rename as durable as it makes it; a real I/O error is raised."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write `data` as indented JSON to `path`, atomically."""
    with replaced_atomically(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path`, atomically. The rename replaces whatever `path` was,
    also a link someone planted there, instead of writing through it."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def user_cache() -> Path:
    """bnexp's folder in this user's cache: $XDG_CACHE_HOME/bnexp, else ~/.cache/bnexp (an
    empty XDG_CACHE_HOME counts as unset, as the XDG specification says)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnexp"


def untrusted_reason(path: Path) -> str | None:
    """Why `path` (a file this process would load state or code from) cannot be trusted,
    or None if it can: it and its folder must belong to this user and be writable by
    nobody else -- whoever else can write either could swap in their own content."""
    return private_reason(path, "file") or private_reason(path.parent, "folder")


def private_reason(path: Path, what: str) -> str | None:
    """Why `path` is not this user's alone (another owner, or writable by its group or by
    others), or None if it is."""
    me, info = os.geteuid(), os.stat(path)
    if info.st_uid != me:
        return f"the {what} {path} belongs to uid {info.st_uid}, not to this user (uid {me})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"the {what} {path} is writable by its group or by others "
                f"(mode {stat.filemode(info.st_mode)})")
    return None
