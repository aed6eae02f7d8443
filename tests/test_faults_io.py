"""Faults of the process and the file system, through the real CLI, and what each loses
(docs/reproducibility.md tabulates them): SIGKILL in the middle of a checkpoint write, a
file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets) during a checkpoint and during the
final metrics.json, two processes building the compiled kernel at once.

The speed settings are fixed (perf.threads=1 perf.pool=native, on the resume command too):
no probe, and a resumed run computes exactly what the uninterrupted one does. Where a fault
must land at one moment, a small wrapper runs `bnexp.run` as `python -m` would and
injects it there; the rest, the failure itself included, is real."""
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bnexp.training import checkpoint
from conftest import REPO, run_cli

SPEED = ["perf.threads=1", "perf.pool=native"]
ARGS = ["trainer.max_steps=30", "trainer.eval_every_steps=15", "trainer.log_every_steps=5",
        "data.test_subset=256", "trainer.progress=log", "bn=gluon", *SPEED]

# Runs bnexp.run; the first checkpoint.params it writes is cut to half and the process is
# killed with SIGKILL before the rename: what a crash in the middle of the write leaves.
KILL_MID_CHECKPOINT = """
import contextlib, os, runpy, signal, sys
from bnexp import files
whole = files.replaced_atomically
@contextlib.contextmanager
def killed_mid_checkpoint(path):
    with whole(path) as tmp:
        yield tmp
        if path.name == "checkpoint.params":
            os.truncate(tmp, os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
files.replaced_atomically = killed_mid_checkpoint
sys.argv[0] = "bnexp.run"
runpy.run_module("bnexp.run", run_name="__main__")
"""

# Runs bnexp.run with a file-size limit from the moment training ends: the disk "fills"
# between the last checkpoint and the final metrics.json.
LIMIT_AT_FIT_END = """
import resource, runpy, sys
limit = int(sys.argv.pop(1))
from bnexp.training import trainer
fit = trainer.Trainer.fit
def fit_then_limit(self):
    try:
        return fit(self)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
trainer.Trainer.fit = fit_then_limit
sys.argv[0] = "bnexp.run"
runpy.run_module("bnexp.run", run_name="__main__")
"""


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def interrupted_run(run_dir: Path) -> int:
    """A run stopped with SIGINT after step 10: its checkpoint's step."""
    proc = subprocess.Popen([sys.executable, "-m", "bnexp.run", *ARGS, f"hydra.run.dir={run_dir}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "step 10/" in line:
            proc.send_signal(signal.SIGINT)
            break
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-2000:]
    return checkpoint.read_state(run_dir)["step"]


def wrapped(code: str, *args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, **popen)


def leftover_temps(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob(".*.tmp"))


def limit_file_size(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_checkpoint_write_that_fails_or_is_killed_loses_nothing(tmp_path):
    """One run, interrupted after step 10 (a checkpoint), then resumed three times (~30 s):
    1. with `ulimit -f` below a checkpoint's size (256 KB; one is ~690 KB): its checkpoint
       write fails, one line says so, exit 2, the record says failed and why;
    2. killed with SIGKILL while its new checkpoint is half written (before the rename);
    3. plainly: it continues from the step-10 checkpoint, whole after both faults, to the
       end, its TensorBoard curve without gaps or repeats."""
    run = tmp_path / "run"
    step = interrupted_run(run)
    before = (run / "checkpoint.params").read_bytes()

    limited = run_cli(f"resume={run}", *SPEED, preexec_fn=limit_file_size(256 << 10))
    output = limited.stdout + limited.stderr
    assert limited.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    said, = [line for line in output.splitlines() if "cannot write the checkpoint" in line]
    assert f"cannot write the checkpoint {run / 'checkpoint.params'} (the write stopped short: " \
           f"this process may write at most {256 << 10} bytes a file (ulimit -f))" in said
    assert (run / "checkpoint.params").read_bytes() == before and leftover_temps(run) == []
    record = metrics(run)
    assert record["status"] == "failed" and "cannot write the checkpoint" in record["error"]

    killed = wrapped(KILL_MID_CHECKPOINT, f"resume={run}", *SPEED)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    half, = leftover_temps(run)  # it died in the middle of the write: the temp file stays
    assert half.startswith(".checkpoint.params.")
    assert (run / "checkpoint.params").read_bytes() == before

    resumed = run_cli(f"resume={run}", *SPEED)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resumed from {run / 'checkpoint.params'} at step {step}" in resumed.stdout
    assert metrics(run)["status"] == "completed" and metrics(run)["steps"] == 30
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 30 and steps[0] == 5
    assert [e.step for e in events.Scalars("test/acc")] == [15, 30]


@pytest.mark.slow
def test_a_file_size_limit_during_the_final_metrics_json(tmp_path):
    """The limit falls between the last checkpoint and the final metrics.json (5000 bytes:
    run.log stays below it, the full record is above it): nothing written before is lost and
    the exit is non-zero, one line says which file and why, and the record says failed."""
    run = tmp_path / "run"
    done = wrapped(LIMIT_AT_FIT_END, "5000", *ARGS, "logger.tensorboard=false",
                   "trainer.log_every_steps=1", f"hydra.run.dir={run}")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert checkpoint.read_state(run)["step"] == 30  # the last checkpoint, whole
    assert leftover_temps(run) == []
    assert "Traceback" not in output and "metrics.json" in output and "File too large" in output, \
        output[-3000:]
    assert metrics(run)["status"] == "failed"


@pytest.mark.slow
def test_two_processes_building_the_kernel_at_once(tmp_path):
    """Two processes find no library and build it at the same time into one folder (~15 s
    on 2 cores): both get the same complete library, which loads, and no partial file stays."""
    from bnexp.nn.norm import kernels

    if kernels.unavailable_reason():
        pytest.skip(kernels.unavailable_reason())
    code = ("import logging; logging.basicConfig(level=logging.INFO); "
            "from bnexp.nn.norm import kernels; kernels.load(); import mxnet as mx; "
            "print(kernels.library(), hasattr(mx.nd, kernels.OPERATOR))")
    env = {**os.environ, "BNEXP_KERNEL_DIR": str(tmp_path)}
    builders = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [b.communicate(timeout=600) for b in builders]
    for builder, (out, err) in zip(builders, results):
        assert builder.returncode == 0, err[-2000:]
    library = tmp_path / kernels.library().name
    assert {out.strip() for out, _ in results} == {f"{library} True"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [library.name]
    assert sum("compiled batch_norm.cc" in err for _, err in results) >= 1
