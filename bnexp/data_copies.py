"""Verified decompressed copies of the dataset files: decompressing Fashion-MNIST costs every
run 0.42 s, reading a copy 0.075 s (its SHA-256 included). About 55 MB in all; deleting
the folder is always safe (the next run makes the copies again).

A copy is named by what identifies the .gz file's present content -- its path, inode, size
and modification time -- so another folder's file, or this one edited, is never answered by
it; it is read only if it and its folder are this user's alone, and its content is checked
against the official file's SHA-256 on every read. Anything else is decompressed again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

from bnexp.files import private_reason, untrusted_reason, user_cache

COPIES_DIR = user_cache() / "idx"
STALE_SECONDS = 600  # a temporary file this old was left by a process killed while writing


def copy_of(path: Path) -> Path | None:
    """Where the copy of `path` as it is now is kept; None if `path` cannot be read (the
    caller's decompression says why)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    source = f"{path.resolve()}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}"
    return COPIES_DIR / f"{path.name.removesuffix('.gz')}.{hashlib.sha256(source.encode()).hexdigest()[:16]}"


def read(copy: Path, size: int, sha256: str) -> bytes | None:
    """The copy's bytes if it is this user's alone, `size` bytes long and of SHA-256
    `sha256`, else None."""
    try:
        if untrusted_reason(copy) or copy.stat().st_size != size:
            return None
        raw = copy.read_bytes()
    except OSError:
        return None
    return raw if hashlib.sha256(raw).hexdigest() == sha256 else None


def keep(copy: Path, raw: bytes) -> None:
    """Keep `raw` (verified) as `copy`, private to this user whatever the umask, in place of
    the copies of any file of the same name (one per name: another dataset folder's copy is
    replaced, not kept beside), in a folder only this user can write; where that cannot be (a
    read-only home, a full disk) runs only decompress again. Renamed into place but not
    synced: a copy a crash left short or garbled fails `read`'s checks and is made again."""
    stem = copy.name.rsplit(".", 1)[0]
    tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        COPIES_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        if private_reason(COPIES_DIR, "folder"):
            return
        for old in COPIES_DIR.glob(stem + ".*"):
            old.unlink(missing_ok=True)
        for left in COPIES_DIR.glob(f".{stem}.*.tmp"):
            if time.time() - left.stat().st_mtime > STALE_SECONDS:
                left.unlink(missing_ok=True)
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(raw)
            os.replace(tmp, copy)
        finally:
            tmp.unlink(missing_ok=True)
