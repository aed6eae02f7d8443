"""Sweep job folders (and so TensorBoard run names) named by the swept keys only, e.g.
`bn=none,seed=1`; the overrides a sweep keeps fixed are written once, to
`<sweep dir>/sweep.yaml`. The keys, and an id of this launch of the sweep, travel to the
jobs in environment variables (the joblib and submitit workers are child processes that
inherit them); run.py's `bnexp_job_name` resolver reads them.

A job holds its folder for its whole life: an flock on the folder's claim file, taken when
the folder is named and released when the job ends (`on_job_end`, or by the kernel when
the process dies). A second launch on the same sweep folder -- the same command started
twice, resume=auto while the first still runs -- finds the folder held and stops with one
line, instead of training into it beside the first."""
from __future__ import annotations

import fcntl
import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bnexp.errors import UserError

SWEPT_KEYS_VAR = "BNEXP_SWEPT_KEYS"  # the keys a sweep varies, for naming its job folders
LAUNCH_VAR = "BNEXP_SWEEP_LAUNCH"    # this launch of the sweep (a random id), for claiming them
SWEEP_FILE = "sweep.yaml"
CLAIM_FILE = ".bnexp_job"        # in a job folder: "<launch id> <job number>" of the job that holds it
LOCK_FILE = ".bnexp_naming.lock"  # in the sweep folder: one job names its folder at a time
UNNAMED_KEYS = ("data.root", "experiment", "resume")  # overrides that never name a job folder
# The job folders this process holds (their claim files, open and flocked) until its job ends:
# Hydra runs one job at a time in a process.
_held: dict[Path, object] = {}


class FolderBusy(UserError):
    """Another process runs a job in this folder now."""


def swept_and_fixed(task_overrides: list[str], sweeper_params: dict | None) -> tuple[list[str], list[str]]:
    """The keys a multirun sweeps (a comma list, range, choice... on the command line or
    in hydra.sweeper.params) and the overrides it keeps fixed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    params = [f"{key}={value}" for key, value in (sweeper_params or {}).items()]
    swept, fixed = [], []
    for override in parser.parse_overrides(params + list(task_overrides)):
        key = override.get_key_element()
        if override.is_sweep_override():
            swept.append(key)
        elif key not in swept:
            fixed.append(override.input_line)
    return sorted(set(swept)), fixed


class SweepNamingCallback(Callback):
    """Writes the swept keys for the jobs' folder names, and sweep.yaml (module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        swept, fixed = swept_and_fixed(list(config.hydra.overrides.task),
                                       OmegaConf.to_container(config.hydra.sweeper.get("params"))
                                       if config.hydra.sweeper.get("params") else None)
        os.environ[SWEPT_KEYS_VAR] = ",".join(swept)
        os.environ[LAUNCH_VAR] = secrets.token_hex(4)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create({"swept": swept, "fixed": fixed}), sweep_dir / SWEEP_FILE)

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_held()


def job_name(overrides: list[str], sweep_dir: str, job_num: int, ignored: tuple[str, ...]) -> str:
    """A job's folder name: its swept overrides (all of them if the sweep's keys are not
    known). The job claims the folder (`CLAIM_FILE`: this launch of the sweep and the job's
    number). A folder another job of this launch holds (a repeated value, seed=1,1) is not
    shared: the name gets `~2`, `~3`, ... A folder an earlier launch ran is this job's own
    to continue (resume=auto), whatever its number was then: the job order changes when a
    list of values grows or is reordered -- unless that launch's job still runs in it: then
    this launch stops here, one line, exit 2 (module docstring)."""
    swept = set(filter(None, os.environ.get(SWEPT_KEYS_VAR, "").split(",")))

    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    named = sorted(o for o in overrides if key(o) not in ignored and (not swept or key(o) in swept))
    try:
        return _claim(",".join(named) or "default", Path(sweep_dir), current_launch(), int(job_num))
    except FolderBusy as err:  # raised inside Hydra's resolver, it would become a traceback
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _claim(name: str, sweep_dir: Path, launch: str, job_num: int) -> str:
    """The folder `name` (or `name~2`, ...) this job of `launch` holds (job_name)."""
    with _naming_lock(sweep_dir):
        for attempt in range(1, 1000):
            candidate = name if attempt == 1 else f"{name}~{attempt}"
            claim = sweep_dir / candidate / CLAIM_FILE
            holder = _read_claim(claim)
            if holder == (launch, job_num):  # Hydra resolves a job's folder more than once
                _hold(claim, holder)
                return candidate
            if holder is None or holder[0] != launch:
                _hold(claim, holder)
                claim.write_text(f"{launch} {job_num}\n")
                return candidate
    return name


def _hold(claim: Path, holder: tuple[str, int] | None) -> None:
    """Take the folder's lock for this job's life (`release_held`), or raise FolderBusy if
    another process holds it. Where the file system has no flock, go on without."""
    if claim in _held:
        return
    claim.parent.mkdir(parents=True, exist_ok=True)
    handle = open(claim, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        launch, num = holder or ("?", -1)
        raise FolderBusy(f"{claim.parent}: job {num} of another launch of this sweep (launch "
                         f"{launch}) is running in this folder now; wait until it ends, or give "
                         f"this launch its own hydra.sweep.dir=...") from None
    except OSError:  # no locks on this file system (some NFS, Lustre)
        pass
    _held[claim] = handle


def release_held() -> None:
    """Let go of the job folders this process holds (its job ended)."""
    while _held:
        _held.popitem()[1].close()  # closing the file releases its flock


def current_launch() -> str:
    """This launch's id (`LAUNCH_VAR`); "-" without bnexp's sweep callback: then every
    job counts as this launch's, and only the job number tells two apart."""
    return os.environ.get(LAUNCH_VAR) or "-"


def _read_claim(path: Path) -> tuple[str, int] | None:
    """(launch, job number) of the job that holds a folder; None if none does."""
    try:
        launch, num = path.read_text().split()
        return launch, int(num)
    except FileNotFoundError:
        return None
    except ValueError:  # an unreadable claim (a crash mid-write): an earlier launch's
        return "?", -1


@contextmanager
def _naming_lock(sweep_dir: Path) -> Iterator[None]:
    """One job at a time chooses its folder (joblib's workers name theirs in parallel).
    Where the file system has no flock (some Lustre, NFS mounts) naming goes on unlocked:
    only jobs with identical values started at the same instant could then collide."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            locked = True
        except OSError:
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def run_name(bn: str, overrides: list[str]) -> str:
    """What a single run's folder (and so its TensorBoard run) is named by, after its date and
    time: its normalization and its overrides, e.g. `bn=gluon,lr=0.1` (at most 80 characters;
    a `/` becomes `-`)."""
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    named = [o.replace("/", "-") for o in overrides if key(o) not in UNNAMED_KEYS
             and key(o) != "trainer.progress" and not key(o).startswith(("hydra", "perf.", "logger."))]
    if not any(key(o) == "bn" for o in named):
        named.insert(0, f"bn={bn}")
    name = named[0][:80]
    for item in named[1:]:  # whole overrides only
        if len(name) + 1 + len(item) > 80:
            break
        name += "," + item
    return name
