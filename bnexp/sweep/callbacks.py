"""Hydra callbacks: check the output folder before a run, share the cores among
parallel joblib jobs, build the sweep report when a multirun ends. (Naming the job
folders: bnexp/sweep/naming.py.)

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

from bnexp.record import METRICS_FILE
from bnexp.runtime.threads import BUDGET_VAR, available_cores, threads_per_job

log = logging.getLogger("bnexp")


class ReportCallback(Callback):
    """Writes summary.csv, summary.md, report.html, curves.csv and the plots into the sweep
    directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bnexp.report import write_report  # matplotlib only when a report is due

        sweep_dir = str(config.hydra.sweep.dir)
        try:
            md_path = write_report(sweep_dir, tuple(config.report.targets))
        except Exception:  # the sweep's results are on disk: don't end it with a traceback
            log.exception("could not build the sweep report; retry with "
                          "`python -m bnexp.report %s`", sweep_dir)
            return
        log.info("sweep report: %s (summary.md, summary.csv, curves.csv and plots alongside)",
                 md_path.parent / "report.html")


def discard_if_never_started(run_dir: Path) -> None:
    """Remove the folder of a single run that was rejected before any work (a bad value,
    missing data): Hydra has already written `.hydra/` and `run.log` there, and ten typos
    would otherwise leave ten junk folders beside the real runs. A folder this process did
    not create, or one holding a metrics.json, is left alone."""
    run_dir = run_dir.resolve()
    if run_dir in OutputDirCallback.created and not (run_dir / METRICS_FILE).exists():
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
    check it first and say which setting to change. Remembers the run folders this
    process is about to create: only those may be removed again
    (`discard_if_never_started`)."""
    created: set[Path] = set()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).resolve()
        if not run_dir.exists():
            OutputDirCallback.created.add(run_dir)
        _check_writable(str(run_dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")


JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


class ThreadBudgetCallback(Callback):
    """Under `hydra/launcher=joblib`, jobs run side by side in loky worker processes.

    Every job would otherwise take the whole machine's cores (or what bnexp's tuning
    measured fastest on it alone), and n_jobs parallel jobs would oversubscribe it.
    Before the launcher spawns its workers, give each job a budget of `cores // n_jobs`
    threads (at least one): the workers inherit this process's environment when they
    start, and their thread policy (bnexp/runtime/threads.py) reads the budget.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") != JOBLIB_LAUNCHER:
            return
        cores = available_cores()
        n_jobs = launcher.get("n_jobs")
        threads = threads_per_job(n_jobs, cores)
        os.environ[BUDGET_VAR] = str(threads)  # a subprocess boundary: the workers' budget
        log.info("joblib launcher, n_jobs=%s on %d cores: at most %d OpenMP thread(s) per job",
                 n_jobs, cores, threads)
