"""Resuming a run through the real CLI (bnexp/resume.py): killed after a checkpoint, it
continues to the uninterrupted run's numbers bit for bit with its own speed settings; its
record keeps the first command's overrides and sums its segments; a completed run can be
extended and refuses a forbidden change; a reused sweep folder refuses another
configuration."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, run_cli

ARGS = ["bn=gluon", "trainer.max_steps=30", "trainer.eval_every_steps=10", "trainer.log_every_steps=5",
        "data.test_subset=256", "trainer.progress=log"]
SPEED = ["perf.threads=1", "perf.pool=folded"]   # not the defaults (2 threads here, native)

# Runs bnexp.run and kills it with SIGKILL right after it wrote a checkpoint at step 10 (as a
# crash, an OOM kill or a preempted node would, between two checkpoints).
KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
os.environ["OMP_NUM_THREADS"] = "1"   # the patch below imports MXNet before bnexp.run can choose
from bnexp.training import checkpoint
on_step_end = checkpoint.Checkpointing.on_step_end
def killed_after_step_10(self, state):
    if state.step == 10:
        state.stop_requested = "a checkpoint now"   # the callback writes one when asked
        on_step_end(self, state)
        os.kill(os.getpid(), signal.SIGKILL)
    on_step_end(self, state)
checkpoint.Checkpointing.on_step_end = killed_after_step_10
sys.argv[0] = "bnexp.run"
runpy.run_module("bnexp.run", run_name="__main__")
"""


def record(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def curves(m: dict) -> tuple:
    return ([(p["step"], p["acc"], p["loss"]) for p in m["eval_curve"]],
            [(p["step"], p["loss"], p["acc"]) for p in m["train_curve"]], m["final"])


@pytest.mark.slow
def test_killed_run_resumes_with_its_own_speed_settings_bit_for_bit(tmp_path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    first = [*ARGS, *SPEED, f"hydra.run.dir={killed}"]   # the wrapper fixes 1 thread
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_CHECKPOINT, *first], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert record(killed)["status"] == "running"   # what a killed process leaves
    resumed = run_cli(f"resume={killed}")           # no speed settings on the command line
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert run_cli(*ARGS, *SPEED, f"hydra.run.dir={straight}").returncode == 0
    a, b = record(killed), record(straight)
    assert (a["perf"]["threads"], a["perf"]["pool"]) == (1, "folded")
    assert a["perf"]["source"]["pool"] == "resumed"
    assert a["status"] == b["status"] == "completed"
    assert curves(a) == curves(b)
    typed = [o for o in first if not o.startswith("hydra.")]   # Hydra keeps its own apart
    assert a["overrides"] == [*typed, f"resume={killed}"]   # the first command's, then the resume's
    assert a["wall_seconds"] >= a["train_seconds"]


@pytest.mark.slow
def test_completed_run_is_extended_or_refuses_a_change(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    base = [a for a in ARGS if not a.startswith("trainer.max_steps")] + ["perf.threads=1", "perf.pool=native"]
    assert run_cli(*base, "trainer.max_steps=20", f"hydra.run.dir={short}").returncode == 0
    refused = run_cli(f"resume={short}", "lr=0.1")
    assert refused.returncode == 2 and "lr=0.1 differs" in refused.stdout + refused.stderr
    skipped = run_cli(f"resume={short}")
    assert skipped.returncode == 0 and "already completed" in skipped.stdout + skipped.stderr
    extended = run_cli(f"resume={short}", "trainer.max_steps=30")
    assert extended.returncode == 0, extended.stdout[-2000:] + extended.stderr[-2000:]
    assert run_cli(*base, "trainer.max_steps=30", f"hydra.run.dir={long}").returncode == 0
    a, b = record(short), record(long)
    assert a["steps"] == 30 and curves(a) == curves(b)


@pytest.mark.slow
def test_reused_sweep_folder_refuses_another_configuration(tmp_path):
    sweep = [f"hydra.sweep.dir={tmp_path}", "bn=none,gluon", "trainer.max_steps=5",
             "trainer.eval_every_steps=5", "data.test_subset=128", "perf.threads=1", "perf.pool=native"]
    assert run_cli("--multirun", *sweep).returncode == 0
    again = run_cli("--multirun", *sweep, "resume=auto", "lr=0.1")
    out = again.stdout + again.stderr
    assert "lr=0.1 differs from the run being continued (lr=0.2)" in out, out[-3000:]
    assert "another hydra.sweep.dir" in out
    assert record(tmp_path / "bn=none")["config"]["lr"] == 0.2   # the folder's results kept
