"""Data-parallel training over a device list, through the real CLI.

`ctx=gpu:0,1` splits every batch evenly across the GPUs (gluon split_and_load),
sums the gradients with kvstore="device" and takes one SGD step. Two CPU
contexts stand in for two GPUs here: `ctx='cpu:0,cpu:1'` must train exactly
like `ctx=cpu` when the network has no BN (the loss is summed over the devices
and divided by the whole batch size, so the arithmetic is the same up to
float summation order).

With BN, each device normalizes its own half batch (gluon's BatchNorm and the
from-scratch BN alike keep per-device batch statistics, not synchronized
BN), so a 2-device run is a different computation from a 1-device run: it is
checked to train, not to match.

On the command line the comma list must be quoted for Hydra (a bare comma
means a sweep): `python -m bnexp.run "ctx='gpu:0,1'"` or `ctx=gpu:0\\,1`.
"""
from __future__ import annotations

import json
import math

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow

SHORT = ["trainer.max_steps=5", "data.test_subset=256", "trainer.log_every_steps=1",
         "trainer.eval_every_steps=5", "trainer.progress=log", "logger.tensorboard=false"]


def train(tmp_path, name: str, *overrides: str) -> dict:
    run_dir = tmp_path / name
    result = run_cli(*SHORT, *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics
    return {"metrics": metrics, "log": result.stdout + result.stderr}


def losses(run: dict) -> list[float]:
    return [p["loss"] for p in run["metrics"]["train_curve"]]


def test_two_cpu_contexts_match_one_without_bn(tmp_path):
    # xavier init: the loss moves within 5 steps, so matching curves mean matching updates
    common = ["bn=none", "model.init=xavier", "seed=3"]
    single = train(tmp_path, "single", *common, "ctx=cpu")
    double = train(tmp_path, "double", *common, "ctx='cpu:0,cpu:1'")
    assert "on cpu(0),cpu(1)" in double["log"]
    one, two = losses(single), losses(double)
    assert len(one) == len(two) == 5
    assert one[0] - one[-1] > 0.05, f"the loss should move in 5 steps: {one}"
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    f1, f2 = single["metrics"]["final"], double["metrics"]["final"]
    assert f2["test_loss"] == pytest.approx(f1["test_loss"], rel=1e-5)
    assert f2["test_acc"] == pytest.approx(f1["test_acc"], abs=1 / 256 + 1e-9)
    assert f2["train_acc"] == pytest.approx(f1["train_acc"], abs=1e-9)


# bn=scratch runs op by op on several devices (bnexp/train.py: hybridized, its custom
# operator can deadlock MXNet's engine on a device list); the default config must work.
@pytest.mark.parametrize("variant,extra", [("gluon", []), ("scratch", [])])
def test_two_cpu_contexts_train_with_per_device_bn(tmp_path, variant, extra):
    single = train(tmp_path, "single", f"bn={variant}", "ctx=cpu", *extra)
    double = train(tmp_path, "double", f"bn={variant}", "ctx=cpu:0\\,cpu:1", *extra)
    one, two = losses(single), losses(double)
    assert all(math.isfinite(x) for x in two)
    # BN statistics per half batch: close to the single-device run, not identical to it
    assert two != one
    assert two == pytest.approx(one, rel=0.1)
    acc1, acc2 = (run["metrics"]["final"]["test_acc"] for run in (single, double))
    assert acc2 == pytest.approx(acc1, abs=0.1)


def test_batch_must_split_evenly(tmp_path):
    result = run_cli("ctx='cpu:0,cpu:1,cpu:2'", "trainer.max_steps=1",
                     f"hydra.run.dir={tmp_path / 'odd'}")
    assert result.returncode != 0
    assert "divisible by the number of devices" in result.stdout + result.stderr
