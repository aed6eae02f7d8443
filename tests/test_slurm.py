"""Sweeps on a real SLURM scheduler: `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml).

Needs a running cluster: `make slurm-up` (scripts/slurm.sh) starts a one-node cluster on
this machine, and CI starts one before the tests; without one these tests are skipped,
saying why. The clients find it through SLURM_CONF, else $BNEXP_SLURM_DIR/slurm.conf
(default /var/lib/bnexp-slurm/slurm.conf).

Preemption and time limits are caused as SLURM causes them, without waiting for them:
`scontrol requeue` (what a preempting scheduler does: SIGTERM, then the job runs again)
and `scancel --signal=USR2` (what SLURM sends `signal_delay_s` before the time limit;
submitit's own `SlurmJob._interrupt(timeout=True)` does the same). Every job runs on one
CPU (`cpus_per_task=1`), so every job trains with one OpenMP thread and interrupted runs
can be compared number for number with an uninterrupted one (README, "Reproducibility").

The script itself (scripts/slurm.sh, as root): a state folder someone else made, or a link,
is refused before anything runs; its policy-rc.d goes however it ends; /dev/null is checked
for 1:3 and repaired only when asked. These need root, not a running cluster: they run the
script with a PATH whose `dpkg-query` and `apt-get` stand in for a machine without the
packages, and point its policy-rc.d and /dev/null at files of the test
(BNEXP_SLURM_POLICY_RC, BNEXP_SLURM_NULL_DEVICE), never at the machine's own.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnexp.runtime.threads import BUDGET_VAR
from conftest import QUICK, REPO

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SLURM_DIR = Path(os.environ.get("BNEXP_SLURM_DIR", "/var/lib/bnexp-slurm"))
SCRIPT = REPO / "scripts" / "slurm.sh"
JOB_NAME = f"bnexp-test-{uuid.uuid4().hex[:6]}"  # `scancel --name` cleans up after a failure
THREADS_PID = re.compile(r"threads: \S+, engine: \S+, pid (\d+)")  # a job's first line (bnexp/experiment.py)
WAIT = 300  # seconds: a guard against hanging, never a measure of speed
# QUICK without its length: each test sets its own
SMALL = [a for a in QUICK if not a.startswith(("trainer.max_steps=", "trainer.eval_every_steps="))]


@pytest.fixture(autouse=True)
def no_launcher_budget(monkeypatch):
    """A SLURM job's thread budget is its SLURM_CPUS_PER_TASK: the budget conftest.py gives a
    test worker's own runs must not reach the jobs (it would come first)."""
    monkeypatch.delenv(BUDGET_VAR, raising=False)


def slurm_env() -> dict[str, str]:
    """The environment the SLURM clients need, or skip the test saying what is missing."""
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM is not installed (no sinfo); `make slurm-up` installs and starts "
                    "a local cluster (Debian, as root)")
    conf = os.environ.get("SLURM_CONF") or str(SLURM_DIR / "slurm.conf")
    if not Path(conf).is_file():  # else the clients look for a cluster in DNS, for 30 s
        pytest.skip(f"no SLURM configuration at {conf}; start a local cluster with "
                    "`make slurm-up`, or set SLURM_CONF")
    env = {"SLURM_CONF": conf}
    try:
        up = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=20)
    except subprocess.TimeoutExpired:
        up = None
    if up is None or up.returncode or "up" not in up.stdout:
        pytest.skip(f"no SLURM cluster answers (SLURM_CONF={conf}); start one with `make slurm-up`")
    return env


@pytest.fixture(scope="module")
def slurm():
    env = slurm_env()
    yield env
    # after a failed test: no job of ours keeps running on the cluster
    subprocess.run(["scancel", f"--name={JOB_NAME}"], env={**os.environ, **env},
                   capture_output=True)


def slurm_cmd(env: dict, *args: str) -> str:
    proc = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
    return proc.stdout


def start_sweep(env: dict, sweep: Path, *args: str) -> subprocess.Popen:
    """`python -m bnexp.run --multirun hydra/launcher=slurm ...`, one CPU per job."""
    log = open(sweep.with_suffix(".log"), "a")
    return subprocess.Popen(
        [sys.executable, "-m", "bnexp.run", "--multirun", "hydra/launcher=slurm",
         "hydra.launcher.cpus_per_task=1", f"hydra.launcher.name={JOB_NAME}", *args,
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, sweep: Path) -> tuple[int, str]:
    code = proc.wait(timeout=WAIT)
    return code, sweep.with_suffix(".log").read_text()


def wait_until(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert proc is None or proc.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"waited {WAIT}s for {what}"
        time.sleep(0.1)


def job_id(job_dir: Path) -> str:
    """The SLURM job id ("<array>_<index>") a job folder belongs to."""
    return str(OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.job.id)


def log_has(job_dir: Path, text: str) -> bool:
    log = job_dir / "run.log"
    return log.is_file() and text in log.read_text()


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def same_numbers(a: dict, b: dict) -> None:
    """As exact as the README promises for a resumed run against an uninterrupted one on
    the same machine and thread count (the check of tests/test_faults.py)."""
    assert a["status"] == b["status"] == "completed" and a["steps"] == b["steps"]
    assert [(p["step"], p["acc"], p["loss"]) for p in a["eval_curve"]] == \
           [(p["step"], p["acc"], p["loss"]) for p in b["eval_curve"]]
    assert (a["final"]["test_acc"], a["final"]["test_loss"]) == \
           (b["final"]["test_acc"], b["final"]["test_loss"])
    assert a["final"]["train_loss"] == pytest.approx(b["final"]["train_loss"], rel=1e-6)


def test_job_thread_budget_follows_cpus_per_task(slurm):
    """SLURM with TaskPlugin=task/none does not bind a job to its CPUs: bnexp must read
    SLURM_CPUS_PER_TASK, or a 1-CPU job would run one thread per core of the node."""
    code = ("from bnexp.runtime.threads import ThreadPolicy; p = ThreadPolicy.resolve(); "
            "print(p.budget, p.budget_from, p.candidates())")
    out = slurm_cmd(slurm, "srun", f"--job-name={JOB_NAME}", "--cpus-per-task=1",
                    sys.executable, "-c", code)
    assert out.strip() == "1 slurm [1]"


def test_preempted_and_timed_out_jobs_continue_to_the_same_numbers(slurm, tmp_path):
    """Three identical jobs (logger.flush_secs changes nothing computed): one runs straight
    through, one is preempted (scontrol requeue: SIGTERM, checkpoint, requeued by SLURM), one
    gets the time-limit signal (SIGUSR2: checkpoint, requeued by submitit). The requeued jobs
    continue from their checkpoints -- the sweep did not say resume=auto -- and end with the
    numbers of the uninterrupted one. Every job trained with 1 thread, as it asked."""
    sweep = tmp_path / "sweep"
    proc = start_sweep(slurm, sweep, "bn=gluon", "logger.flush_secs=10,11,12",
                       "hydra.launcher.timeout_min=5",  # so that SIGUSR2 counts as a time-out
                       *SMALL, "trainer.max_steps=60", "trainer.eval_every_steps=20")
    straight, preempted, timed_out = (sweep / f"logger.flush_secs={s}" for s in (10, 11, 12))
    for job_dir, command in ((preempted, ["scontrol", "requeue"]),
                             (timed_out, ["scancel", "--signal=USR2"])):
        wait_until(lambda: log_has(job_dir, "step 10/"), f"{job_dir.name} to train", proc)
        slurm_cmd(slurm, *command, job_id(job_dir))
    code, output = finish(proc, sweep)
    assert code == 0, output[-3000:]
    assert (sweep / "summary.md").is_file() and "sweep report:" in output

    for job_dir, signal in ((preempted, "SIGTERM"), (timed_out, "SIGUSR2")):
        log = (job_dir / "run.log").read_text()
        assert f"{signal} received: stopped after step" in log, job_dir.name
        assert "SLURM requeued this job (restart 1)" in log, job_dir.name
        assert "resumed from" in log, job_dir.name
        same_numbers(metrics(job_dir), metrics(straight))
    # submitit counted a time-out against the preset's max_num_timeout (3) and requeued
    submitit_log = "".join(p.read_text() for p in
                           (sweep / ".submitit" / job_id(timed_out)).glob("*_log.*"))
    assert "this job is timed-out" in submitit_log
    assert f"Requeued job {job_id(timed_out)} (2 remaining timeouts)" in submitit_log
    for job_dir in (straight, preempted, timed_out):
        assert metrics(job_dir)["perf"]["threads"] == 1
        assert log_has(job_dir, "threads: 1,")


def test_killed_jobs_are_reported_and_continue_on_rerun(slurm, tmp_path):
    """lr=0.2 completes; lr=-1 fails (a bad value, found on the node); lr=0.1 is cancelled
    with `scancel --signal=KILL` (SLURM makes that a cancel: SIGTERM first, SIGKILL after
    KillWait), so it stops with a checkpoint; lr=0.05's process is killed with SIGKILL, as
    by the kernel's OOM killer or on a failed node: no checkpoint, no last word. The sweep
    waits for all its jobs and reports the three that did not complete. Run again into the
    same folder with resume=auto, it skips the completed job, continues the cancelled one
    from its checkpoint and starts the killed one over."""
    sweep = tmp_path / "sweep"
    args = ["lr=0.2,-1,0.1,0.05", *SMALL, "trainer.max_steps=40", "trainer.eval_every_steps=20"]
    proc = start_sweep(slurm, sweep, *args)
    done, failed, cancelled, killed = (sweep / f"lr={lr}" for lr in ("0.2", "-1", "0.1", "0.05"))
    wait_until(lambda: log_has(cancelled, "step 10/"), "lr=0.1 to train", proc)
    slurm_cmd(slurm, "scancel", "--signal=KILL", job_id(cancelled))
    wait_until(lambda: log_has(killed, "step 10/"), "lr=0.05 to train", proc)
    os.kill(int(THREADS_PID.search((killed / "run.log").read_text()).group(1)), signal.SIGKILL)
    code, output = finish(proc, sweep)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    array = job_id(done).split("_")[0]
    assert not slurm_cmd(slurm, "squeue", "-h", "-j", array).strip()  # it waited for them all
    for job_dir, state in ((cancelled, "CANCELLED"), (killed, "FAILED")):
        assert f"{job_dir.name}: SLURM job {job_id(job_dir)} ended without a result " \
               f"(state {state}" in output, output[-3000:]
    stopped_at = metrics(cancelled)["steps"]
    assert metrics(cancelled)["status"] == "interrupted" and 10 <= stopped_at < 40
    assert metrics(killed)["status"] == "failed"
    assert metrics(done)["status"] == "completed" and metrics(failed)["status"] == "failed"
    report = (sweep / "summary.md").read_text()
    assert "- `lr=-1`: failed (lr=-1.0: the learning rate must be" in report, report
    assert "- `lr=0.1`: interrupted" in report
    assert f"- `lr=0.05`: failed (SLURM job {job_id(killed)} ended without a result" in report

    done_stamp = (done / "metrics.json").stat().st_mtime_ns
    code, output = finish(start_sweep(slurm, sweep, *args, "resume=auto"), sweep)
    assert code == 0, output[-3000:]
    assert (done / "metrics.json").stat().st_mtime_ns == done_stamp  # not run again
    assert log_has(done, "already completed; skipping")
    assert log_has(cancelled, f"checkpoint.params at step {stopped_at}")  # "resumed from ..."
    assert not log_has(killed, "resumed from")
    for job_dir in (cancelled, killed):
        assert metrics(job_dir)["status"] == "completed" and metrics(job_dir)["steps"] == 40
    report = (sweep / "summary.md").read_text()
    assert "- `lr=-1`: failed" in report  # the one job that cannot complete, and only it
    assert "- `lr=0.1`: interrupted" not in report and "- `lr=0.05`: failed" not in report


# ------------------------------------------------------------------- the script, as root

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("stat") is None,
                                reason="scripts/slurm.sh runs as root")


def fake_machine(tmp_path: Path, install: str) -> dict[str, str]:
    """The environment of a run of the script on a machine without the packages: state in
    tmp_path/state, dpkg-query finding nothing, apt-get update succeeding and apt-get
    install doing `install` (shell); policy-rc.d and /dev/null are the test's files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("dpkg-query", "exit 1"),
                       ("apt-get", f'[ "$1" = install ] || exit 0\n{install}')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    null = tmp_path / "null"
    subprocess.run(["mknod", "-m", "666", str(null), "c", "1", "3"], check=True)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "BNEXP_SLURM_DIR": str(tmp_path / "state"),
            "BNEXP_SLURM_POLICY_RC": str(tmp_path / "policy-rc.d"),
            "BNEXP_SLURM_NULL_DEVICE": str(null)}


def script(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=120)


@needs_root
@pytest.mark.parametrize("made", ["by another user", "writable by all", "as a link"])
def test_a_state_folder_someone_else_made_is_refused(tmp_path, made):
    """A user who makes the state folder first (the old default was /tmp/bnexp-slurm) could
    point root's slurm.conf and PID list anywhere: `up` and `down` refuse it, one line,
    before anything is installed or started."""
    env = fake_machine(tmp_path, install="touch $0.ran; exit 1")
    state = tmp_path / "state"
    if made == "as a link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        state.symlink_to(tmp_path / "elsewhere")
    else:
        state.mkdir(mode=0o700)
        if made == "by another user":
            os.chown(state, 65534, 65534)
        else:
            state.chmod(0o777)
    (state / "pids").write_text("slurmd 1\n")
    for command in ("up", "down"):
        done = script(env, command)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith(f"slurm.sh: error: the state folder {state} ") and \
            "refusing it" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "bin" / "apt-get.ran").exists()
    assert not (state / "slurm.conf").exists()


@needs_root
@pytest.mark.parametrize("ending", ["install fails", "Ctrl-C during install"])
def test_policy_rc_d_is_removed_however_the_install_ends(tmp_path, ending):
    """The policy-rc.d that keeps services off while installing must not outlive the script:
    left behind, later apt runs on the machine start no services, silently."""
    env = fake_machine(tmp_path, install="exit 100" if ending == "install fails" else "sleep 60")
    policy = tmp_path / "policy-rc.d"
    proc = subprocess.Popen([str(SCRIPT), "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if ending != "install fails":
        deadline = time.monotonic() + 60
        while not policy.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == (1 if ending == "install fails" else 130), output
    assert not policy.exists(), output


@needs_root
@pytest.mark.parametrize("null", ["plain file", "device 1:5"])
def test_dev_null_is_checked_for_1_3_and_repaired_only_when_asked(tmp_path, null):
    env = fake_machine(tmp_path, install="exit 100")
    device = Path(env["BNEXP_SLURM_NULL_DEVICE"])
    device.unlink()
    if null == "plain file":
        device.write_text("")
    else:
        subprocess.run(["mknod", str(device), "c", "1", "5"], check=True)  # /dev/zero's numbers
    found = subprocess.run(["stat", "-c", "%F %t:%T", str(device)], capture_output=True,
                           text=True).stdout.strip()
    done = script(env, "up")
    assert done.returncode == 1
    assert done.stderr == (f"slurm.sh: error: {device} is not the character device 1:3 (it is: "
                           f"{found}); munged cannot start. Run `{SCRIPT} up --repair-dev-null` "
                           "to recreate it\n")
    assert subprocess.run(["stat", "-c", "%F %t:%T", str(device)], capture_output=True,
                          text=True).stdout.strip() == found  # untouched
    repaired = script(env, "up", "--repair-dev-null")  # then the (fake) install fails
    assert f"{device} is not the character device 1:3 ({found}); recreating it" in repaired.stdout
    assert subprocess.run(["stat", "-c", "%F %t:%T", str(device)], capture_output=True,
                          text=True).stdout.strip() == "character special file 1:3"


@needs_root
def test_the_database_has_no_anonymous_users_and_no_password_on_a_command_line(slurm):
    """On the running cluster: `up` again (it does nothing but set the database user's
    password) under strace: no program it starts sees the password in its arguments; and
    the database has no account without a name."""
    if shutil.which("strace") is None:
        pytest.skip("strace is needed to see the command lines `up` runs")
    conf = Path(slurm["SLURM_CONF"]).parent / "slurmdbd.conf"
    if not conf.is_file():
        pytest.skip(f"no {conf}: this cluster runs without accounting")
    password = next(line.split("=", 1)[1] for line in conf.read_text().splitlines()
                    if line.startswith("StoragePass="))
    trace = Path(slurm["SLURM_CONF"]).parent / "log" / "strace-up.log"
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-s", "65536", "-o",
                           str(trace), str(SCRIPT), "up"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **slurm})
    assert done.returncode == 0, done.stderr
    execs = trace.read_text()
    trace.unlink()
    assert "mariadb" in execs and password not in execs
    socket = Path(str(SLURM_DIR) + "-db") / "mysqld.sock"
    users = subprocess.run(["mariadb", f"--socket={socket}", "-N", "-e",
                            "SELECT COUNT(*) FROM mysql.user WHERE User = ''"],
                           capture_output=True, text=True, timeout=30)
    assert users.stdout.strip() == "0", users.stderr
