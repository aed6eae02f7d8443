"""The timings cache: ~/.cache/bnexp/tuning.json (or $BNEXP_CACHE_DIR), one entry per
setting (bnexp/tuning/machine.py), shared by concurrent runs under a file lock.
A missing, corrupt or outdated file is ignored and rebuilt; it never stops a run.

The lock is waited for only where a run is about to probe (one probe at a time, the others
then find its timings); from inside training (`feedback`) it is tried once and never
waited for. A file system without locks (ENOLCK on some NFS mounts) means "no lock": the
cache is used without one (its writes are atomic), not waited for as if busy. A probe that
failed is remembered for FAILED_PROBE_SECONDS: the runs meanwhile take the defaults at
once instead of failing the same probe again."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from bnexp.files import user_cache, write_json_atomic
from bnexp.runtime.threads import available_cores
from bnexp.tuning.machine import PROBE_VERSION, this_machine

log = logging.getLogger(__name__)

CACHE_FILE = "tuning.json"
LOCK_TIMEOUT = 600         # seconds to wait for another process probing the same machine
FAILED_PROBE_SECONDS = 3600  # a failed probe is not tried again for this long


def cache_dir() -> Path:
    if os.environ.get("BNEXP_CACHE_DIR"):
        return Path(os.environ["BNEXP_CACHE_DIR"])
    return user_cache()


def read_file() -> dict:
    """The cache file's content: {"entries": {...}, "failed": {...}, "observed": {...}}, all
    empty if the file is missing, unreadable or malformed."""
    path = cache_dir() / CACHE_FILE
    try:
        data = json.loads(path.read_text())
        if not isinstance(data["entries"], dict) or not isinstance(data.get("failed", {}), dict):
            raise ValueError("entries or failed is not an object")
    except FileNotFoundError:
        return {"entries": {}, "failed": {}, "observed": {}}
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("tuning cache %s is unreadable (%s); ignoring it and measuring again", path, err)
        return {"entries": {}, "failed": {}, "observed": {}}
    observed = data.get("observed", {})
    return {"entries": data["entries"], "failed": data.get("failed", {}),
            "observed": observed if isinstance(observed, dict) else {}}


def write_file(data: dict) -> bool:
    """Replace the cache file (call it holding `cache_lock`); False if it cannot be written."""
    try:
        write_json_atomic(cache_dir() / CACHE_FILE, data)
    except OSError as err:
        log.warning("could not write the tuning cache in %s (%s)", cache_dir(), err)
        return False
    return True


def read_cache() -> dict[str, dict]:
    """Entries by setting key; {} if the file is missing, unreadable or malformed."""
    entries = read_file()["entries"]
    return {key: entry for key, entry in entries.items() if valid_entry(entry)}


def valid_entry(entry) -> bool:
    try:
        return (entry["setting"]["probe_version"] == PROBE_VERSION
                and all(isinstance(ms, (int, float)) for ms in entry["timings"].values()))
    except (KeyError, TypeError, AttributeError):
        return False


def timings(key: str) -> dict[str, float]:
    """A setting's cached timings (option key -> ms per step); {} if there are none, or if
    they were measured on a busy machine and it is quiet now (then they are measured again)."""
    entry = read_cache().get(key)
    if not entry:
        return {}
    busy = available_cores() / 2
    if entry.get("load", 0) > busy and os.getloadavg()[0] <= busy:
        return {}
    return entry["timings"]


# What a run's expected length is judged by before this setting was measured: the model and
# batch on this machine, whatever the normalization (bnexp/tuning/choice.py: too_short).
STEP_KEYS = ("cpu", "cpu_flags", "cores", "mxnet", "device", "devices", "model", "batch_per_device")


def step_key(setting: dict) -> str:
    return json.dumps({k: setting.get(k) for k in STEP_KEYS}, sort_keys=True)


def fastest_step(setting: dict) -> float | None:
    """The fastest ms per step this machine measured or trained for the setting's model and
    batch, whatever the normalization: what a run of it may be expected to take at least."""
    data = read_file()
    same = [e for e in data["entries"].values() if step_key(e["setting"]) == step_key(setting)]
    seen = [min(e["timings"].values()) for e in same if e["timings"]]
    observed = data.get("observed", {}).get(step_key(setting))
    return min(seen + ([observed] if isinstance(observed, (int, float)) else []), default=None)


@contextlib.contextmanager
def cache_lock(wait: float = LOCK_TIMEOUT) -> Iterator[bool]:
    """Only one process probes at a time (others wait up to `wait` seconds, then find the
    timings cached). Yields True holding the lock -- or where the file system has none --
    and False if it stayed busy or the folder is not writable; the caller then goes on
    without it."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a")
    except OSError as err:
        log.warning("tuning cache folder %s is not writable (%s): timings are not kept", folder, err)
        yield False
        return
    with handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:  # another process holds it
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
            except OSError as err:  # ENOLCK, EINVAL...: no locks here, not a busy lock
                log.info("tuning cache %s: no file locks on this file system (%s); going on "
                         "without", folder, err.strerror)
                locked = False
                break
        try:
            yield True
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def store(key: str, entry: dict) -> None:
    """Write one setting's entry (call it holding `cache_lock`); it replaces a failure."""
    data = read_file()
    data["entries"][key] = entry
    data["failed"].pop(key, None)
    write_file(data)


def remember_failure(key: str) -> None:
    """Note that probing setting `key` failed now (call it holding `cache_lock`)."""
    data = read_file()
    data["failed"][key] = time.time()
    write_file(data)


def recent_failure(key: str) -> float | None:
    """How many seconds ago probing `key` failed, if within FAILED_PROBE_SECONDS; else None."""
    when = read_file()["failed"].get(key)
    if not isinstance(when, (int, float)):
        return None
    ago = time.time() - when
    return ago if 0 <= ago < FAILED_PROBE_SECONDS else None


def entries_for_this_machine() -> list[dict]:
    here = this_machine()
    return [e for e in read_cache().values()
            if all(e["setting"].get(k) == v for k, v in here.items())]


def feedback(setting: dict, key: str | None, ms: float, too_slow: bool) -> bool:
    """What a run found (called from inside training: the lock is tried once, never waited
    for): the step time it sustained, for the expected length of later runs of its model
    and batch; and, if far slower than its timings promised, that the setting `key` be
    measured again by the next run. True if it will be."""
    with cache_lock(wait=0) as locked:
        if not locked:
            return False
        data = read_file()
        observed = data.setdefault("observed", {})
        observed[step_key(setting)] = min(ms, observed.get(step_key(setting), ms))
        again = bool(too_slow and key and data["entries"].pop(key, None))
        write_file(data)
    return again
