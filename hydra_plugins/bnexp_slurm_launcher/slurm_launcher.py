"""`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): submitit's SLURM launcher,
waiting for every job of a sweep. (Hydra loads launchers only from the hydra_plugins
package, hence this folder beside bnexp/.)

hydra-submitit-launcher 1.2.0 collects the results in job order and raises at the first
job that ended without one (killed, cancelled, out of memory, a failed node): the sweep
ends there with a traceback and without its report, while later jobs still run. A rerun
with resume=auto at that moment would train two processes into one job folder.

This launcher submits the same way, then waits for every job. A job that ended without
a result gets one log line and counts as a failed job (return value 0.0, as bnexp.run
returns for a job that failed inside): its metrics.json says so, unless the job stopped
cleanly with a checkpoint ("interrupted"). The report is written as for any sweep, and
`resume=auto` into the same sweep dir continues what did not complete.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger("bnexp")


class SlurmLauncher(submitit_launcher.SlurmLauncher):

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        """As hydra-submitit-launcher 1.2.0's `launch`, except for the waiting (see above)."""
        import submitit

        assert self.config is not None
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in base else f"{self._EXECUTOR}_{key}": value
                                      for key, value in self.params.items()
                                      if key not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info("SLURM sweep of %d jobs into %s", len(job_overrides), sweep_dir)
        params = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            params.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}",
                           Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*params))
        wait_for_all(jobs)
        return [self._outcome(job, list(overrides), num, sweep_dir)
                for num, (job, overrides) in enumerate(zip(jobs, job_overrides),
                                                       start=initial_job_idx)]

    def _outcome(self, job, overrides: list[str], num: int, sweep_dir: Path) -> JobReturn:
        """The job's result; for a job that ended without one, a failed job's 0.0."""
        import submitit

        from bnexp.sweep import naming  # here, not at the top: Hydra imports every plugin at start

        try:
            return job.results()[0]
        except submitit.core.utils.UncompletedJobError:
            pass
        reason = f"SLURM job {job.job_id} ended without a result (state {job.state})"
        job_dir = sweep_dir / naming.job_name(overrides, str(sweep_dir), num, naming.UNNAMED_KEYS)
        job_dir.mkdir(parents=True, exist_ok=True)  # if it never started: the report lists it too
        status = _mark_failed(job_dir, overrides, reason)
        log.error("%s: %s; its record says %s. Continue the sweep with the same command and "
                  "hydra.sweep.dir=%s resume=auto", job_dir.name, reason, status, sweep_dir)
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=0.0)


# File systems of one machine: a file a job wrote there is visible at once, or never will be.
LOCAL_FILE_SYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "tmpfs", "ramfs",
                      "overlay"}


def local_file_system(folder: Path, mounts: str | None = None) -> bool:
    """Whether `folder` is on a file system of this machine only, by its mount in
    /proc/self/mounts (`mounts`: that file's text); False where that cannot be told."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return False
    path = str(folder.resolve())
    entries = [(fields[1].replace("\\040", " "), fields[2])  # (a space is \040 there)
               for fields in map(str.split, mounts.splitlines()) if len(fields) >= 3]
    holding = [(point, kind) for point, kind in entries
               if path == point or path.startswith(point.rstrip("/") + "/")]
    # the deepest mount holding the folder; of two at one point, the later (it hides the other)
    return bool(holding) and sorted(holding, key=lambda entry: len(entry[0]))[-1][1] in LOCAL_FILE_SYSTEMS


def wait_for_all(jobs: list, poll_seconds: float = 1.0) -> None:
    """Until every job is done (submitit's check: its result file, else SLURM's state); then
    one wait, shared, for the result files of those that ended without one -- none on a local
    file system. submitit's `results()` waits for a late file (a slow shared file system)
    `_results_timeout_s` (15 s in 1.5.x) itself, one job after another: 15 s more per
    killed job."""
    import time

    pending = list(jobs)
    while pending:
        pending = [job for job in pending if not job.done()]
        if pending:
            time.sleep(poll_seconds)
    missing = [job for job in jobs if not job.paths.result_pickle.exists()]
    shared = not missing or not local_file_system(missing[0].paths.folder)
    deadline = time.monotonic() + shared * max(
        (getattr(job, "_results_timeout_s", 15) for job in missing), default=0)
    while missing and time.monotonic() < deadline:
        time.sleep(poll_seconds)
        for job in missing:  # as submitit does: a chmod refreshes a network file system's cache
            try:
                job.paths.folder.chmod(job.paths.folder.stat().st_mode)
            except OSError:
                pass
        missing = [job for job in missing if not job.paths.result_pickle.exists()]
    for job in missing:
        job._results_timeout_s = 0  # waited for above, with the others


def _mark_failed(job_dir: Path, overrides: list[str], reason: str) -> str:
    """Record `reason` in a job's metrics.json unless the job stopped cleanly; its status."""
    from bnexp.files import write_json_atomic
    from bnexp.record import METRICS_FILE, record_failure

    path = job_dir / METRICS_FILE
    if not path.is_file():
        record_failure(job_dir, overrides, RuntimeError(reason))
        return "failed"
    record = json.loads(path.read_text())
    if record.get("status") == "running":  # killed mid-run: it never said another word
        record.update(status="failed", error=reason)
        write_json_atomic(path, record)
    return record.get("status", "failed")
