"""Hydra callbacks: check the output folder before a run, share the cores among
parallel joblib jobs, build the sweep report when a multirun ends.

Registered in conf/config.yaml under `hydra.callbacks`. Hydra calls
`on_multirun_end` in the launching process after every job has returned (also
under the joblib and submitit launchers), with the config only: the report is
therefore built from the job folders on disk (`bnexp.report`).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bnexp.metrics import METRICS_FILE

log = logging.getLogger("bnexp")


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
    """Job folders (and so TensorBoard run names) named by the swept keys only, e.g.
    `bn=none,seed=1`; the fixed overrides are written once, to `<sweep dir>/sweep.yaml`.
    The keys travel to the jobs in an environment variable (joblib and submitit workers
    inherit it); `run.py`'s `bnexp_job_name` resolver reads it."""

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


class ReportCallback(Callback):
    """Writes summary.csv, summary.md and the plots into the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bnexp.report import write_report  # matplotlib only when a report is due

        sweep_dir = str(config.hydra.sweep.dir)
        try:
            md_path = write_report(sweep_dir)
        except Exception:  # the sweep's results are on disk: don't end it with a traceback
            log.exception("could not build the sweep report; retry with "
                          "`python -m bnexp.report %s`", sweep_dir)
            return
        log.info("sweep report: %s (summary.csv and plots alongside)", md_path)


# Run folders this process created for a single run (OutputDirCallback): only those may be
# removed again when the run is rejected before it starts.
_created_run_dirs: set[Path] = set()


def discard_if_never_started(run_dir: Path) -> None:
    """Remove the folder of a single run that was rejected before any work (a bad value,
    missing data): Hydra has already written `.hydra/` and `run.log` there, and ten typos
    would otherwise leave ten junk folders beside the real runs. A folder this process did
    not create, or one holding a metrics.json, is left alone."""
    run_dir = run_dir.resolve()
    if run_dir in _created_run_dirs and not (run_dir / METRICS_FILE).exists():
        shutil.rmtree(run_dir, ignore_errors=True)


def _check_writable(folder: str, key: str) -> None:
    """Exit with one clear line if `folder` cannot be created or written."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        print(f"error: cannot write the output folder {path} ({reason}). "
              f"Choose another with {key}=...", file=sys.stderr)
        sys.exit(2)


class OutputDirCallback(Callback):
    """Hydra would fail with a traceback when it cannot create the run folder;
    check it first and say which setting to change."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).resolve()
        if not run_dir.exists():
            _created_run_dirs.add(run_dir)
        _check_writable(str(run_dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")


JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def threads_per_job(n_jobs: Any, cores: int) -> int:
    """OpenMP threads for each of `n_jobs` parallel jobs sharing `cores` cores.
    joblib's conventions: None or -1 means one job per core, -2 all cores but one, ..."""
    if n_jobs is None:
        n_jobs = -1
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        n_jobs = max(1, cores + 1 + n_jobs)
    return max(1, cores // max(1, n_jobs))


class ThreadBudgetCallback(Callback):
    """Under `hydra/launcher=joblib`, jobs run side by side in loky worker processes.

    Every job would otherwise take the whole machine's cores (or what bnexp.tuning
    measured fastest on it alone), and n_jobs parallel jobs would oversubscribe it.
    Before the launcher spawns its workers, give each job a budget of `cores // n_jobs`
    threads (at least one): the workers inherit this process's environment when they
    start, and bnexp.tuning chooses at most that many.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") != JOBLIB_LAUNCHER:
            return
        from bnexp import mxenv

        cores = mxenv.available_cores()
        n_jobs = launcher.get("n_jobs")
        threads = threads_per_job(n_jobs, cores)
        os.environ[mxenv.BUDGET_VAR] = str(threads)
        mxenv.set_threads(threads)  # a derived count: each worker counts within the budget
        log.info("joblib launcher, n_jobs=%s on %d cores: at most %d OpenMP thread(s) per job",
                 n_jobs, cores, threads)
