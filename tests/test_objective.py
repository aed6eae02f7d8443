"""What a run returns to a sweeper: the validation accuracy, never the test accuracy; and the
lr_search preset (Optuna) whose report lists the trials."""
from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from bnexp.record import OBJECTIVE_TRAINING, OBJECTIVE_VALIDATION, RunRecord, objective
from conftest import run_cli


def record(status="completed", **final) -> RunRecord:
    return RunRecord(status=status, final=final)


def test_validation_accuracy_when_there_is_a_split():
    assert objective(record(val_acc=0.81, test_acc=0.95, train_acc=0.9)) == (0.81, OBJECTIVE_VALIDATION)


def test_training_accuracy_without_a_split_never_the_test_accuracy():
    assert objective(record(test_acc=0.95, train_acc=0.7)) == (0.7, OBJECTIVE_TRAINING)


@pytest.mark.parametrize("run", [record("diverged", val_acc=0.3), record(val_acc=math.nan),
                                 record("failed"), record("interrupted", val_acc=0.8)])
def test_zero_not_nan_for_a_run_that_did_not_complete(run):
    """The Optuna sweeper ends the whole study on a NaN; a failure must simply lose."""
    value, _ = objective(run)
    assert value == 0.0


@pytest.mark.slow
def test_lr_search_preset_optimises_validation_accuracy(tmp_path):
    """Two tiny Optuna trials through the real CLI (~20 s): the sweeper's best value is the
    best validation accuracy of the jobs (not their test accuracy), and the report ranks
    the trials."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'bnexp[optuna]'")
    sweep = tmp_path / "lr_search"
    proc = run_cli("--multirun", "experiment=lr_search", "hydra.sweeper.n_trials=2",
                   "trainer.max_steps=20", "trainer.eval_every_steps=10", "data.val_size=1000",
                   "data.test_subset=512", "trainer.progress=log", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    finals = [json.loads(p.read_text())["final"] for p in sweep.glob("*/metrics.json")]
    assert len(finals) == 2
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(max(f["val_acc"] for f in finals))
    summary = (sweep / "summary.md").read_text()
    table = summary.split("## Search")[1]
    assert "| rank | trial | lr | validation accuracy |" in table
    assert table.count("| completed |") == 2
    assert (sweep / "trials.png").stat().st_size > 0
