"""Continuing a run from its checkpoint: `resume=<run dir>`, and `resume=auto` in sweeps
(a rerun sweep, a SLURM requeue: each job continues its own folder, or starts it).

The run's saved configuration is the one it continues with. What a resumed run may change:
how long it trains (a completed run can be extended), how it shows progress, and where and
how fast it runs (RESUMABLE). Anything else that differs is refused in one line, whatever
the run's status: with `resume=<dir>` the settings the command line gives, with
`resume=auto` the whole configuration of the job -- a reused sweep folder must not hand
another configuration's results to the report. The record goes on: its overrides are the
first command's plus what the resume adds, its seconds are summed over every segment.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from bnexp.config import Config, flat
from bnexp.errors import ConfigError
from bnexp.record import CHECKPOINT_FILE, METRICS_FILE, RunRecord, read
from bnexp.validate import check

log = logging.getLogger(__name__)

# What a resumed run may change (a key, or a section ending in "."): its length, its
# display, its devices and its speed settings.
RESUMABLE = ("trainer.epochs", "trainer.max_steps", "trainer.max_images", "trainer.progress",
             "ctx", "perf.", "logger.", "resume", "data.root")


@dataclass
class Resumed:
    cfg: Config                     # the configuration to train with
    state: dict | None = None       # the checkpoint's loop state; None: start afresh
    previous: RunRecord | None = None  # the record on disk (metrics.json), if any
    finished: bool = False          # completed, and not to be extended: nothing to run


def resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def folder_problem(resume: str | None) -> str | None:
    """Why `resume=<folder>` cannot continue there, or None (also for no resume and "auto",
    where a job without a checkpoint starts afresh). Checked before MXNet is imported or a
    speed probe runs (bnexp/preflight.py), and again when the run starts."""
    if resume in (None, "auto"):
        return None
    if not Path(resume).is_dir():  # Hydra would create the path (parents included)
        return (f"resume={resume}: no such run folder; give the folder of an interrupted or "
                "checkpointed run (outputs/runs/<stamp>), or resume=auto in a sweep.")
    if not (Path(resume) / CHECKPOINT_FILE).is_file():
        return (f"resume={resume}: no {CHECKPOINT_FILE} there; give the folder of a run that "
                "was interrupted or checkpointed.")
    return None


def prepare(cfg: Config, run_dir: Path, overrides: list[str], steps_of) -> Resumed:
    """What `cfg.resume` continues in `run_dir`. `steps_of(cfg)`: the run's length in steps
    (a completed run with more steps asked for is extended)."""
    from bnexp.training import checkpoint   # MXNet: not for preflight's folder_problem

    if cfg.resume is None:
        return Resumed(cfg)
    problem = folder_problem(None if cfg.resume == "auto" else str(run_dir))
    if problem:
        raise ConfigError(problem)
    previous = read(run_dir) if (run_dir / METRICS_FILE).is_file() else None
    state = checkpoint.read_state(run_dir)
    if state is None:
        return Resumed(cfg, previous=previous)
    resumed = continued_config(cfg, state["config"], overrides, whole=cfg.resume == "auto")
    first: Config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), state["config"]))
    finished = bool(previous and previous.status == "completed"
                    and steps_of(resumed) <= steps_of(first))
    if finished:
        log.info("%s already completed; skipping (raise trainer.max_steps or trainer.epochs to "
                 "train it further, or delete the folder to train it again)", run_dir)
    return Resumed(resumed, state, previous, finished)


def continued_config(cfg: Config, saved: dict, overrides: list[str], whole: bool) -> Config:
    """The saved configuration with the changes a resumed run may make. `whole`: every
    setting of `cfg` must equal the saved one (resume=auto); else only those the command
    line `overrides` set."""
    saved_cfg = OmegaConf.merge(OmegaConf.structured(Config), saved)
    now, before = flat(cfg), flat(OmegaConf.to_object(saved_cfg))
    typed = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    for key in sorted(set(now) | set(before)):
        if (whole or _typed(key, typed)) and not resumable(key) and now.get(key) != before.get(key):
            raise ConfigError(
                f"resume: {key}={now.get(key)} differs from the run being continued "
                f"({key}={before.get(key)}); a resumed run keeps its configuration, only its "
                f"length, display, devices and speed settings may change"
                + ("; give this sweep another hydra.sweep.dir" if whole else "") + ".")
    current = OmegaConf.structured(cfg)
    for key in now:
        if resumable(key) and (whole or _typed(key, typed)):
            OmegaConf.update(saved_cfg, key, OmegaConf.select(current, key), force_add=True)
    resumed: Config = OmegaConf.to_object(saved_cfg)
    check(resumed)
    return resumed


def _typed(key: str, typed: set[str]) -> bool:
    """Whether the command line set `key` (itself, or a node above it: bn=group sets bn.*)."""
    return any(key == t or key.startswith(t + ".") for t in typed)


def continued_record(resumed: Resumed, settings: dict, overrides: list[str]) -> RunRecord:
    """The record a run writes: a new one, or the checkpoint's (as of its step) carrying on
    the first command's overrides with the resume's added."""
    if resumed.state is None:
        return RunRecord(config=settings, overrides=list(overrides))
    record = RunRecord.from_json(resumed.state["record"])
    record.status, record.error, record.config = "running", None, settings
    record.overrides = record.overrides + [o for o in overrides if o not in record.overrides]
    return record


def earlier_wall_seconds(resumed: Resumed) -> float:
    """Wall seconds the run's earlier segments took (the last segment's record sums them)."""
    return resumed.previous.wall_seconds if resumed.previous and resumed.state else 0.0
