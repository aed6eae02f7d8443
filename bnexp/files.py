"""Replacing a file atomically: readers see the old content or the new, never half.

Every output (metrics.json, checkpoints, downloaded data, the tuning cache) is
written to a temporary file beside its destination, synced, then renamed over
it. The temporary file is created by a plain `open()`, so it gets the mode any
other output gets (0666 minus the umask); `tempfile.mkstemp` would make it 0600
and teammates on a shared cluster could not read the result.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
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
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write `data` as indented JSON to `path`, atomically."""
    with replaced_atomically(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
