"""Run results: convergence milestones and the run's `metrics.json`.

`metrics.json` is the one record a sweep report reads; it is written with
`bnexp.files.write_json_atomic`, so a reader never sees half a file.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bnexp.files import write_json_atomic

TARGETS = (0.70, 0.80, 0.85)  # default accuracies (validation, else test) whose first crossing is recorded
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.params"  # written by bnexp/training/checkpoint.py


@dataclass
class EvalPoint:
    step: int
    images: int
    seconds: float     # training seconds so far (evaluation time excluded)
    acc: float
    loss: float
    wall_seconds: float = 0.0  # since the process started (setup and evaluations included)
    split: str = "test"        # what was evaluated: test, or val (data.val_size > 0)

    @classmethod
    def from_json(cls, point: dict) -> EvalPoint:
        point = dict(point)
        if "test_acc" in point:  # metrics.json written before validation splits existed
            point["acc"], point["loss"] = point.pop("test_acc"), point.pop("test_loss")
        return cls(**_known_fields(cls, point))


@dataclass
class TrainPoint:
    step: int
    loss: float        # mean over the steps since the previous point
    acc: float

    @classmethod
    def from_json(cls, point: dict) -> TrainPoint:
        return cls(**_known_fields(cls, point))


def _known_fields(cls, data: dict) -> dict:
    """The entries of `data` that are fields of dataclass `cls`: a file written by a newer
    bnexp (with fields this one does not know) still reads."""
    return {k: v for k, v in data.items() if k in cls.__dataclass_fields__}


@dataclass
class RunRecord:
    """Everything `metrics.json` holds about one run."""
    status: str = "running"
    config: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)  # the option of each config group: {"bn": "scratch", ...}
    overrides: list[str] = field(default_factory=list)
    steps: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0       # optimizer steps only
    eval_seconds: float = 0.0        # evaluations only
    wall_seconds: float = 0.0        # from process start, evaluation and setup included
    final: dict = field(default_factory=dict)   # train_loss, train_acc, test_loss, test_acc
    eval_curve: list[EvalPoint] = field(default_factory=list)
    train_curve: list[TrainPoint] = field(default_factory=list)
    diverged_at_step: int | None = None
    error: str | None = None
    stopped_early: str | None = None  # why a completed run ended before its length (trainer.stop_at_targets)
    perf: dict = field(default_factory=dict)     # speed settings in effect (bnexp/tuning/)
    monitors: dict = field(default_factory=dict)  # monitor name -> list of measurements
    targets: list[float] = field(default_factory=lambda: list(TARGETS))  # report.targets

    def milestones(self) -> dict[str, dict[str, float | int | None]]:
        """First evaluation reaching each target accuracy: its step, images and seconds,
        and the step of the evaluation before it (the crossing lies in between)."""
        out = {}
        for target in self.targets:
            index = next((i for i, p in enumerate(self.eval_curve) if p.acc >= target), None)
            hit = self.eval_curve[index] if index is not None else None
            before = self.eval_curve[index - 1].step if index else 0
            out[f"{target:.2f}"] = {
                "step": hit.step if hit else None,
                "images": hit.images if hit else None,
                "seconds": round(hit.seconds, 3) if hit else None,
                "after_step": before if hit else None,
                "split": hit.split if hit else None,
            }
        return out

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        fields = _known_fields(cls, data)
        fields["eval_curve"] = [EvalPoint.from_json(p) for p in data.get("eval_curve") or []]
        fields["train_curve"] = [TrainPoint.from_json(p) for p in data.get("train_curve") or []]
        return cls(**fields)

    def to_json(self) -> dict:
        data = asdict(self)
        data["to_accuracy"] = self.milestones()
        return _finite(data)


def _finite(value):
    """JSON has no NaN/Infinity: write them as null (a diverged loss, say)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read(run_dir: Path) -> RunRecord:
    """The record in a run folder's metrics.json (OSError, ValueError if there is none)."""
    with open(run_dir / METRICS_FILE) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{run_dir / METRICS_FILE} does not hold a record")
    return RunRecord.from_json(data)


def saved_perf(run_dir: Path) -> dict | None:
    """The speed settings a run folder's metrics.json records (threads, pool, bn_impl), or None."""
    try:
        perf = read(run_dir).perf
    except (OSError, ValueError, TypeError):
        return None
    return perf if isinstance(perf, dict) and perf.get("pool") else None


def record_failure(run_dir: Path, overrides: list[str], err: Exception) -> None:
    """A sweep job that could not start: metrics.json says why (unless it has a record)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        with contextlib.suppress(OSError):
            write_json_atomic(path, RunRecord(status="failed", overrides=overrides,
                                              error=str(err)).to_json())


# What a run returns to a Hydra sweeper (Optuna maximises it). Never the test accuracy:
# choosing settings by it would make the test set a validation set, and the final test
# number an optimistic one. Without a validation split (data.val_size=0) the last epoch's
# mean training accuracy stands in -- it rewards fast fitting, not generalisation, which is
# why an lr search should hold out a validation split (conf/experiment/lr_search.yaml does).
OBJECTIVE_VALIDATION = "validation accuracy"
OBJECTIVE_TRAINING = "training accuracy (no validation split: data.val_size=0)"


def objective(record: RunRecord) -> tuple[float, str]:
    """(value, what it is) that a sweeper optimises for this run: the last validation
    accuracy, else the last epoch's training accuracy; 0.0 for a run that did not complete
    or whose number is not finite (the Optuna sweeper crashes the study on NaN)."""
    source = OBJECTIVE_VALIDATION if "val_acc" in record.final else OBJECTIVE_TRAINING
    value = record.final.get("val_acc" if "val_acc" in record.final else "train_acc")
    if record.status != "completed" or value is None or not math.isfinite(value):
        return 0.0, source
    return float(value), source
