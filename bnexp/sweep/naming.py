"""Sweep job folders (and so TensorBoard run names) named by the swept keys only, e.g.
`bn=none,seed=1`; the overrides a sweep keeps fixed are written once, to
`<sweep dir>/sweep.yaml`. The keys travel to the jobs in an environment variable (the
joblib and submitit workers are child processes that inherit it); run.py's
`bnexp_job_name` resolver reads it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SWEPT_KEYS_VAR = "BNEXP_SWEPT_KEYS"  # the keys a sweep varies, for naming its job folders
SWEEP_FILE = "sweep.yaml"
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
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create({"swept": swept, "fixed": fixed}), sweep_dir / SWEEP_FILE)


def job_name(overrides: list[str], sweep_dir: str, job_num: int, ignored: tuple[str, ...]) -> str:
    """A job's folder name: its swept overrides (all of them if the sweep's keys are not
    known). A folder that another job of the sweep (another job number: a repeated value)
    already holds is not shared: the name gets `~2`, `~3`, ...; the same job run again
    (resume=auto) finds its own folder."""
    from omegaconf import OmegaConf

    swept = set(filter(None, os.environ.get(SWEPT_KEYS_VAR, "").split(",")))

    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    named = sorted(o for o in overrides if key(o) not in ignored and (not swept or key(o) in swept))
    name = ",".join(named) or "default"
    for attempt in range(1, 1000):
        candidate = name if attempt == 1 else f"{name}~{attempt}"
        record = Path(sweep_dir) / candidate / ".hydra" / "hydra.yaml"
        try:
            if not record.exists() or int(OmegaConf.load(record).hydra.job.num) == int(job_num):
                return candidate
        except Exception:  # an unreadable record: not ours to judge, take another name
            continue
    return name
