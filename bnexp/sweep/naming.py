"""Sweep job folders (and so TensorBoard run names) named by the swept keys only, e.g.
`bn=none,seed=1`; the overrides a sweep keeps fixed are written once, to
`<sweep dir>/sweep.yaml`. The keys, and an id of this launch of the sweep, travel to the
jobs in environment variables (the joblib and submitit workers are child processes that
inherit them); run.py's `bnexp_job_name` resolver reads them."""
from __future__ import annotations

import fcntl
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SWEPT_KEYS_VAR = "BNEXP_SWEPT_KEYS"  # the keys a sweep varies, for naming its job folders
LAUNCH_VAR = "BNEXP_SWEEP_LAUNCH"    # this launch of the sweep (a random id), for claiming them
SWEEP_FILE = "sweep.yaml"
CLAIM_FILE = ".bnexp_job"        # in a job folder: "<launch id> <job number>" of the job that holds it
LOCK_FILE = ".bnexp_naming.lock"  # in the sweep folder: one job names its folder at a time
UNNAMED_KEYS = ("data.root", "experiment", "resume")  # overrides that never name a job folder


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


def job_name(overrides: list[str], sweep_dir: str, job_num: int, ignored: tuple[str, ...]) -> str:
    """A job's folder name: its swept overrides (all of them if the sweep's keys are not
    known). The job claims the folder (`CLAIM_FILE`: this launch of the sweep and the job's
    number). A folder another job of this launch holds (a repeated value, seed=1,1) is not
    shared: the name gets `~2`, `~3`, ... A folder an earlier launch ran is this job's own
    to continue (resume=auto), whatever its number was then: the job order changes when a
    list of values grows or is reordered."""
    swept = set(filter(None, os.environ.get(SWEPT_KEYS_VAR, "").split(",")))

    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    named = sorted(o for o in overrides if key(o) not in ignored and (not swept or key(o) in swept))
    name = ",".join(named) or "default"
    launch = current_launch()
    with _naming_lock(Path(sweep_dir)):
        for attempt in range(1, 1000):
            candidate = name if attempt == 1 else f"{name}~{attempt}"
            claim = Path(sweep_dir) / candidate / CLAIM_FILE
            holder = _read_claim(claim)
            if holder == (launch, int(job_num)):  # Hydra resolves a job's folder more than once
                return candidate
            if holder is None or holder[0] != launch:
                claim.parent.mkdir(parents=True, exist_ok=True)
                claim.write_text(f"{launch} {int(job_num)}\n")
                return candidate
    return name


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
