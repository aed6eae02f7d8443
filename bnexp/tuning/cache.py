"""The timings cache: ~/.cache/bnexp/tuning.json (or $BNEXP_CACHE_DIR), one entry per
setting (bnexp/tuning/machine.py), shared by concurrent runs under a file lock.
A missing, corrupt or outdated file is ignored and rebuilt; it never stops a run."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from bnexp.files import write_json_atomic
from bnexp.tuning.machine import PROBE_VERSION, this_machine

log = logging.getLogger(__name__)

CACHE_FILE = "tuning.json"
LOCK_TIMEOUT = 600         # seconds to wait for another process probing the same machine


def cache_dir() -> Path:
    if os.environ.get("BNEXP_CACHE_DIR"):
        return Path(os.environ["BNEXP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnexp"


def read_cache() -> dict[str, dict]:
    """Entries by setting key; {} if the file is missing, unreadable or malformed."""
    path = cache_dir() / CACHE_FILE
    try:
        data = json.loads(path.read_text())
        entries = data["entries"]
        if not isinstance(entries, dict):
            raise ValueError("entries is not an object")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("tuning cache %s is unreadable (%s); ignoring it and measuring again", path, err)
        return {}
    return {key: entry for key, entry in entries.items() if valid_entry(entry)}


def valid_entry(entry) -> bool:
    try:
        return (entry["setting"]["probe_version"] == PROBE_VERSION
                and all(isinstance(ms, (int, float)) for table in entry["timings"].values()
                        for ms in table.values()))
    except (KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def cache_lock() -> Iterator[bool]:
    """Only one process probes at a time (others wait, then find the timings cached).
    Yields False if the lock could not be had; the caller then goes on without it."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a")
    except OSError as err:
        log.warning("tuning cache folder %s is not writable (%s): timings are not kept", folder, err)
        yield False
        return
    with handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store(key: str, entry: dict) -> None:
    """Write one setting's entry (call it holding `cache_lock`)."""
    entries = read_cache()
    entries[key] = entry
    try:
        write_json_atomic(cache_dir() / CACHE_FILE, {"entries": entries})
    except OSError as err:
        log.warning("could not write the tuning cache in %s (%s)", cache_dir(), err)


def entries_for_this_machine() -> list[dict]:
    here = this_machine()
    return [e for e in read_cache().values()
            if all(e["setting"].get(k) == v for k, v in here.items())]


def mark_stale(key: str) -> bool:
    """Have the setting measured again by the next run that needs it (a run found itself
    much slower than its timings promised). False if there was no such entry."""
    with cache_lock() as locked:
        entries = read_cache()
        if not locked or key not in entries:
            return False
        del entries[key]
        try:
            write_json_atomic(cache_dir() / CACHE_FILE, {"entries": entries})
        except OSError as err:
            log.warning("could not write the tuning cache in %s (%s)", cache_dir(), err)
            return False
    return True
