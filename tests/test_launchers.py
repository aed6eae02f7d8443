"""Sweeps under the parallel and cluster launchers.

`hydra/launcher=joblib` runs jobs side by side in loky worker processes: the
ThreadBudgetCallback must give each job cores // n_jobs OpenMP threads, and a
job's numbers must not depend on which (reused) worker ran it.
`hydra/launcher=submitit_local` stands in for SLURM: one process per job, and
the report is still built from the job folders at the end of the sweep.
Each job logs "threads: <OpenMP threads>, engine: <engine>, pid <pid>" (bnexp/experiment.py).
"""
import csv
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnexp.runtime.threads import BUDGET_VAR, available_cores, threads_per_job
from bnexp.sweep import naming
from bnexp.sweep.callbacks import JOBLIB_LAUNCHER, ThreadBudgetCallback
from conftest import REPO, run_cli

THREAD_VARS = (BUDGET_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS")

SHORT = ["trainer.max_steps=4", "trainer.eval_every_steps=2", "data.test_subset=256"]
JOB_LINE = re.compile(r"threads: (\S+), engine: \S+, pid (\d+)")


def job_dirs(sweep: Path) -> dict[str, Path]:
    """Job folders by their bn/seed overrides, e.g. "bn=gluon,seed=0"."""
    out = {}
    for metrics in sweep.glob("*/metrics.json"):
        keys = [kv for kv in metrics.parent.name.split(",") if kv.split("=")[0] in ("bn", "seed")]
        out[",".join(keys)] = metrics.parent
    return out


def job_threads_and_pid(job_dir: Path) -> tuple[str, int]:
    match = JOB_LINE.search((job_dir / "run.log").read_text())
    assert match, f"no 'threads: ..., pid ...' line in {job_dir / 'run.log'}"
    return match.group(1), int(match.group(2))


def read_rows(sweep: Path) -> dict[str, dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as f:
        return {row["config"]: row for row in csv.DictReader(f)}


def check_sweep(proc, sweep: Path, jobs: int, seeds: str) -> dict[str, Path]:
    """The sweep ended well, every job completed, and the report has one row per bn."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep report:" in proc.stdout + proc.stderr
    dirs = job_dirs(sweep)
    assert len(dirs) == jobs, sorted(p.name for p in sweep.iterdir())
    for job_dir in dirs.values():
        assert json.loads((job_dir / "metrics.json").read_text())["status"] == "completed"
    rows = read_rows(sweep)
    assert list(rows) == ["bn=none", "bn=gluon"]
    for row in rows.values():
        assert (row["seeds"], row["completed"]) == (seeds, seeds)
        assert 0.0 <= float(row["final_test_acc_mean"]) <= 1.0
    return dirs


@pytest.mark.parametrize("n_jobs, cores, expected", [
    (2, 2, 1), (2, 8, 4), (3, 8, 2), (16, 8, 1), (1, 8, 8),
    (-1, 8, 1), (None, 8, 1), (-2, 8, 8 // 7), (-4, 8, 8 // 5), (-20, 8, 8),
])
def test_threads_per_job(n_jobs, cores, expected):
    assert threads_per_job(n_jobs, cores) == expected


def launcher_config(target: str, n_jobs=2):
    return OmegaConf.create({"hydra": {"launcher": {"_target_": target, "n_jobs": n_jobs}}})


def test_thread_budget_callback_sets_the_workers_budget(monkeypatch):
    """Only the budget, which the workers' thread policy reads; a thread count the user
    exported stays theirs."""
    for var in THREAD_VARS:
        monkeypatch.setenv(var, "99")  # restored after the test
    ThreadBudgetCallback().on_multirun_start(launcher_config(JOBLIB_LAUNCHER, n_jobs=2))
    expected = str(max(1, available_cores() // 2))
    assert {var: os.environ[var] for var in THREAD_VARS} == \
        {BUDGET_VAR: expected, "OMP_NUM_THREADS": "99", "MKL_NUM_THREADS": "99"}


def test_thread_budget_callback_ignores_other_launchers(monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.setenv(var, "99")
    for target in ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",
                   "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"):
        ThreadBudgetCallback().on_multirun_start(launcher_config(target))
        assert all(os.environ[var] == "99" for var in THREAD_VARS)


@pytest.mark.slow
def test_joblib_sweep_budgets_threads_and_reseeds(tmp_path: Path):
    """Four jobs on two workers: the seed=0 jobs run in reused workers, yet give
    exactly the numbers of a fresh basic-launcher run with the same thread count."""
    sweep = tmp_path / "joblib"
    started = time.monotonic()
    proc = run_cli("--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "bn=none,gluon", "seed=1,0", *SHORT, f"hydra.sweep.dir={sweep}", timeout=240)
    elapsed = time.monotonic() - started
    dirs = check_sweep(proc, sweep, jobs=4, seeds="2")
    # Each job's wall time is its own: two workers cannot have spent more than twice the
    # sweep's time. (A clock handed down from the sweep's process counted each reused
    # worker's earlier jobs again: about 2x the sweep plus the first jobs.)
    walls = [json.loads((d / "metrics.json").read_text())["wall_seconds"] for d in dirs.values()]
    assert 0 < sum(walls) <= 2 * elapsed, (walls, elapsed)
    expected = max(1, available_cores() // 2)
    assert f"at most {expected} OpenMP thread(s) per job" in proc.stdout + proc.stderr
    threads_pids = {key: job_threads_and_pid(d) for key, d in dirs.items()}
    assert {t for t, _ in threads_pids.values()} == {str(expected)}, threads_pids
    pids = {pid for _, pid in threads_pids.values()}
    assert 1 <= len(pids) <= 2, threads_pids  # at most n_jobs worker processes, reused

    # Same job, basic launcher, same thread count (threads change float rounding).
    single = tmp_path / "basic"
    env = {var: str(expected) for var in THREAD_VARS}  # this process set OMP_NUM_THREADS
    basic = run_cli("--multirun", "bn=gluon", "seed=0", *SHORT, f"hydra.sweep.dir={single}",
                    env=env, timeout=120)
    assert basic.returncode == 0, basic.stdout[-3000:] + basic.stderr[-3000:]
    [basic_dir] = job_dirs(single).values()
    assert job_threads_and_pid(basic_dir)[0] == str(expected)
    ours = json.loads((dirs["bn=gluon,seed=0"] / "metrics.json").read_text())
    reference = json.loads((basic_dir / "metrics.json").read_text())
    curve = lambda m: [(p["step"], p["acc"], p["loss"]) for p in m["eval_curve"]]
    assert curve(ours) == curve(reference)
    assert ours["final"] == reference["final"]
    # and different seeds do differ
    other = json.loads((dirs["bn=gluon,seed=1"] / "metrics.json").read_text())
    assert other["final"]["train_loss"] != ours["final"]["train_loss"]


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path: Path):
    """submitit_local, the stand-in for SLURM: one process per job; report as usual."""
    proc = run_cli("--multirun", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=3",
                   "bn=none,gluon", *SHORT, f"hydra.sweep.dir={tmp_path}", timeout=240)
    dirs = check_sweep(proc, tmp_path, jobs=2, seeds="1")
    pids = {job_threads_and_pid(d)[1] for d in dirs.values()}
    assert len(pids) == 2, pids
    submitted = [p for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
    assert len(submitted) == 2  # one submitit job folder (logs, pickles) per job
    assert all(list(p.glob("*_result.pkl")) for p in submitted)


def python(code: str, env: dict) -> str:
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_bnexp_changes_nothing():
    """No import-time side effects: neither MXNet nor a thread variable."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    code = ("import os, sys, bnexp, bnexp.run, bnexp.config, bnexp.tuning; "
            "print(os.environ.get('OMP_NUM_THREADS'), 'mxnet' in sys.modules)")
    assert python(code, env) == "None False"


@pytest.mark.slow
def test_the_count_bnexp_chose_does_not_leak_into_children():
    """MXNet gets bnexp's count while it is imported; afterwards the environment is the
    user's again, so a child process (a SLURM job from a login node, a joblib worker)
    counts its own cores or keeps what the user chose."""
    code = ("import os; from bnexp.runtime import mxnet_import; mxnet_import.import_mxnet(1); "
            "print(os.environ.get('OMP_NUM_THREADS'), mxnet_import.threads_in_effect())")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    assert python(code, env) == "None 1"
    assert python(code, {**env, "OMP_NUM_THREADS": "3"}) == "3 1"


@pytest.mark.slow
def test_job_folders_are_named_by_the_swept_keys(tmp_path: Path):
    """bn=none,seed=1 -- not every fixed override; those go to sweep.yaml once. A repeated
    value still gets a folder of its own, and a resumed sweep finds its folders again, also
    when its jobs come in another order."""
    args = ["--multirun", "bn=none,gluon", "seed=1,1", *SHORT]
    proc = run_cli(*args, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = sorted(p.name for p in tmp_path.iterdir() if (p / "metrics.json").exists())
    assert jobs == ["bn=gluon,seed=1", "bn=gluon,seed=1~2", "bn=none,seed=1", "bn=none,seed=1~2"]
    sweep = OmegaConf.load(tmp_path / "sweep.yaml")
    assert list(sweep.swept) == ["bn", "seed"] and list(sweep.fixed) == SHORT
    # Relaunched in another order, every job has another number; each still finds its folder.
    reordered = ["--multirun", "bn=gluon,none", "seed=1,1", *SHORT]
    again = run_cli(*reordered, f"hydra.sweep.dir={tmp_path}", "resume=auto")
    assert again.returncode == 0 and (again.stdout + again.stderr).count("already completed") == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == jobs


@pytest.mark.parametrize("launch_var", [True, False], ids=["sweep callback", "no launch id"])
def test_job_folder_claims(tmp_path: Path, monkeypatch, launch_var: bool):
    """naming.job_name on its own: a job asking again gets its folder again; a repeated value
    of the same launch gets ~2; a later launch finds each folder again whatever the job
    numbers are now (with a launch id; without one only the numbers tell jobs apart)."""
    monkeypatch.setenv(naming.SWEPT_KEYS_VAR, "seed")

    def launch(id_: str) -> None:
        if launch_var:
            monkeypatch.setenv(naming.LAUNCH_VAR, id_)
        else:
            monkeypatch.delenv(naming.LAUNCH_VAR, raising=False)

    def name(seed: int, num: int) -> str:
        return naming.job_name([f"seed={seed}", "lr=0.1"], str(tmp_path), num, naming.UNNAMED_KEYS)

    launch("first")
    assert [name(1, 0), name(1, 1), name(2, 2)] == ["seed=1", "seed=1~2", "seed=2"]
    assert name(1, 1) == "seed=1~2"  # Hydra resolves a job's folder more than once
    launch("second")  # resume=auto with the seeds in another order: other job numbers
    renamed = [name(2, 0), name(1, 1), name(1, 2)]
    if launch_var:
        assert renamed == ["seed=2", "seed=1", "seed=1~2"]
    else:  # seed=2 was job 2, seed=1's job 1 held seed=1~2: each number keeps its claim
        assert renamed == ["seed=2~2", "seed=1~2", "seed=1~3"]
    naming.release_held()


def test_a_held_job_folder_is_refused_to_another_process_until_released(tmp_path, monkeypatch):
    """The folder's lock is an flock on its claim file: another open file (as another
    process has) cannot take it while the job holds it, and can once the job ended."""
    monkeypatch.setenv(naming.LAUNCH_VAR, "first")
    assert naming.job_name(["seed=1"], str(tmp_path), 0, naming.UNNAMED_KEYS) == "seed=1"
    with open(tmp_path / "seed=1" / naming.CLAIM_FILE) as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        naming.release_held()  # the job ended (SweepNamingCallback.on_job_end)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.slow
def test_a_second_launch_never_trains_into_a_running_jobs_folder(tmp_path):
    """The same sweep started twice on one folder (~10 s): while the first launch trains,
    the second stops in one line, exit 2, and never touches the job's folder."""
    args = ["--multirun", "bn=gluon", "seed=1", "trainer.max_steps=200", "trainer.eval_every_steps=100",
            "data.test_subset=256", "trainer.progress=log", "perf.threads=1", "perf.pool=native",
            f"hydra.sweep.dir={tmp_path}"]
    first = subprocess.Popen([sys.executable, "-m", "bnexp.run", *args], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in first.stdout:
        if "step 10/" in line:
            break
    second = run_cli(*args, timeout=120)
    first.send_signal(signal.SIGINT)  # enough: the first launch need not finish
    rest = first.communicate(timeout=120)[0]
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    job, = (p for p in tmp_path.iterdir() if p.is_dir())
    error = second.stderr.strip()
    assert error == f"error: {job}: job 0 of another launch of this sweep (launch " \
                    f"{job.joinpath(naming.CLAIM_FILE).read_text().split()[0]}) is running in " \
                    "this folder now; wait until it ends, or give this launch its own " \
                    "hydra.sweep.dir=...", second.stderr[-2000:]
    assert first.returncode == 130, rest[-2000:]
    log = (job / "run.log").read_text()
    assert log.count("threads: 1, engine:") == 1  # one process trained here: the first
    assert json.loads((job / "metrics.json").read_text())["status"] == "interrupted"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [job.name]


@pytest.mark.slow
def test_jobs_that_ended_without_a_result_are_waited_for_together(tmp_path, monkeypatch):
    """hydra/launcher=slurm waits for every job, then once for the late result files of all
    those that ended without one (killed, cancelled): submitit's own wait is per job, one
    after another. Real submitit jobs (its local executor): two abort, one returns."""
    import submitit
    from hydra_plugins.bnexp_slurm_launcher.slurm_launcher import wait_for_all

    executor = submitit.LocalExecutor(folder=tmp_path)
    jobs = [executor.submit(os.abort), executor.submit(int, "7"), executor.submit(os.abort)]
    for job in jobs:
        job._results_timeout_s = 2   # submitit's 15 s, shortened
    wait_for_all(jobs, poll_seconds=0.2)
    assert all(job.done() for job in jobs)

    def waits(seconds):
        raise AssertionError("submitit waited for a result file on its own")
    monkeypatch.setattr(submitit.core.core._time, "sleep", waits)
    assert jobs[1].results() == [7]
    for job in (jobs[0], jobs[2]):
        with pytest.raises(submitit.core.utils.UncompletedJobError):
            job.results()


MOUNTS = """/dev/vda / ext4 rw 0 0
server:/export /mnt/shared nfs4 rw 0 0
tmpfs /mnt/shared/scratch tmpfs rw 0 0
server:/a\\040b /mnt/a\\040b nfs rw 0 0
server:/c /mnt/hidden nfs rw 0 0
/dev/vdb /mnt/hidden ext4 rw 0 0
"""


@pytest.mark.parametrize("folder,local", [("/home/u/sweep", True), ("/mnt/shared/sweep", False),
                                          ("/mnt/shared/scratch/sweep", True), ("/mnt/a b/sweep", False),
                                          ("/mnt/hidden/sweep", True), ("/mnt/sharedx", True)])
def test_the_result_files_are_waited_for_only_on_a_shared_file_system(folder, local):
    """A job's result file on a file system of this machine is there at once or never: the
    launcher waits for late ones only on another kind (NFS, Lustre, ...), by the deepest mount
    holding the folder in /proc/self/mounts."""
    from hydra_plugins.bnexp_slurm_launcher.slurm_launcher import local_file_system
    assert local_file_system(Path(folder), MOUNTS) is local
    assert local_file_system(Path(folder), "") is False  # nothing known: wait
