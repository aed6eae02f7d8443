"""When runs evaluate, and on what: evaluation schedules and the validation split."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bnexp import data
from bnexp.training import schedule
from conftest import run_cli


def test_uniform_is_every_n_steps_epoch_ends_and_the_last():
    assert schedule.evaluation_steps("uniform", 100, 250, 600) == {100, 200, 250, 300, 400, 500, 600}


@pytest.mark.parametrize("every,total", [(78, 702), (117, 2340), (10, 100), (5, 1000)])
def test_dense_early_resolves_every_crossing_within_ten_percent(every, total):
    steps = sorted(schedule.evaluation_steps("dense_early", every, 468, total))
    assert steps[:10] == list(range(1, 11)) and steps[-1] == total
    gaps = np.diff([0] + steps)
    assert gaps.max() <= every
    # every evaluation follows the one before by at most 10% of its step (1 step early on)
    for step, gap in zip(steps, gaps):
        assert gap <= max(1, 0.1 * step), (step, gap)


def test_explicit_list_and_errors():
    assert schedule.evaluation_steps([5, 50, 5000], 100, 468, 100) == {5, 50, 100}
    assert schedule.check([1, 2, 3]) is None and schedule.check("dense_early") is None
    for bad in ("weekly", [0, 5], [], [2.5], ["x"]):
        assert schedule.check(bad), bad


def test_validation_split_is_stratified_disjoint_and_fixed(fashion_root):
    labels = data.load(fashion_root).train.labels
    train, val = data.validation_split(labels, 5000, seed=0)
    assert len(val) == 5000 and len(train) == 55000
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.bincount(labels[val]), [500] * 10)
    again, val_again = data.validation_split(labels, 5000, seed=0)
    np.testing.assert_array_equal(val, val_again)
    _, other = data.validation_split(labels, 5000, seed=1)
    assert set(other) != set(val)
    _, odd = data.validation_split(labels, 1005, seed=0)  # 100 or 101 per class
    assert sorted(np.bincount(labels[odd])) == [100] * 5 + [101] * 5
    all_train, none = data.validation_split(labels, 0, seed=0)
    assert len(all_train) == 60000 and len(none) == 0


@pytest.mark.slow
def test_run_with_validation_split_and_dense_early_evaluations(tmp_path):
    proc = run_cli("bn=gluon", "data.val_size=1000", "trainer.eval_schedule=dense_early",
                   "trainer.eval_every_steps=10", "trainer.max_steps=24", "data.test_subset=512",
                   "trainer.progress=log", "seed=4", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert [p["step"] for p in m["eval_curve"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                   14, 15, 16, 17, 18, 20, 22, 24]
    assert {p["split"] for p in m["eval_curve"]} == {"val"}
    assert {"val_acc", "val_loss", "test_acc", "test_loss"} <= set(m["final"])
    assert m["final"]["val_acc"] == m["eval_curve"][-1]["acc"]
    assert m["final"]["test_acc"] != m["final"]["val_acc"]  # the final number is on the test set
    assert "(460 per epoch)" in proc.stdout + proc.stderr  # 59,000 training images left


@pytest.mark.slow
def test_a_run_with_stop_at_targets_ends_once_every_target_is_settled(tmp_path):
    """trainer.stop_at_targets through the real CLI: the run ends at the first validation
    evaluation at or above the highest target, completed, and is then tested."""
    proc = run_cli("bn=gluon", "data.val_size=1000", "trainer.eval_schedule=dense_early",
                   "trainer.eval_every_steps=10", "trainer.max_steps=100", "data.test_subset=512",
                   "trainer.progress=log", "seed=4", "report.targets=[0.3,0.5]",
                   "trainer.stop_at_targets=true", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    first = next(p for p in m["eval_curve"] if p["acc"] >= 0.5)
    assert m["status"] == "completed" and m["steps"] == first["step"] < 100
    assert m["eval_curve"][-1] == first  # no evaluation after the one that settled it
    assert m["to_accuracy"]["0.50"]["step"] == first["step"]
    assert m["stopped_early"].startswith(f"val accuracy {first['acc']:.4f} reached every target")
    assert "test_acc" in m["final"]  # the completed run is tested on the test set
