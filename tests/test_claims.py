"""Claims decided by rules written before the run (bnexp/report/claims.py), on sweeps whose
answers are known: measurements at matched phases, paired by seed; the verdict follows the
interval and the rule; a seed without a value is listed and widens the interval. And the
monitors' matched states: measured where the training loss first reaches each level."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnexp.files import write_json_atomic
from bnexp.monitors.base import Monitor
from bnexp.record import EvalPoint, RunRecord
from bnexp.report import write_report
from bnexp.report.claims import CONTRADICTED, INCONCLUSIVE, REPRODUCED, Claim, decide, rule_verdict
from bnexp.report.jobs import find_jobs, group_jobs
from bnexp.training.callback import TrainMetrics

CLAIM = {"id": "smoother", "says": "BN smooths the landscape", "paper": "Santurkar et al. 2018",
         "measure": "landscape.beta_smoothness", "phase": 0.8, "baseline": "none",
         "treated": "gluon", "rule": "above", "threshold": 1.0}


def job(sweep: Path, bn: str, seed: int, values: list[float] | None, phase: float = 0.8,
        claims=(CLAIM,), model: str | None = None) -> None:
    """A job whose landscape monitor measured `values` at `phase` (and a far larger value
    at another step, which no claim may read); None: the run never reached the phase."""
    overrides = [f"bn={bn}", f"seed={seed}"] + ([f"model={model}"] if model else [])
    folder = sweep / ",".join(overrides)
    folder.mkdir(parents=True)
    other = {"loss_range": 1.0, "grad_change": 1.0}
    measurements = [{"step": 25, "beta_smoothness": 1000.0, **other}]
    measurements += [{"step": 100 + i, "beta_smoothness": v, "phase": phase, **other}
                     for i, v in enumerate(values or [])]
    record = RunRecord(status="completed", overrides=overrides, choices={"bn": bn},
                       config={"seed": seed, "report.claims": list(claims)},
                       monitors={"landscape": measurements})
    record.eval_curve = [EvalPoint(100, 12800, 1.0, 0.8, 0.5)]
    write_json_atomic(folder / "metrics.json", record.to_json())


def groups(sweep: Path) -> dict:
    return {g.variant: g for g in group_jobs(find_jobs(sweep))}


def test_a_clear_ratio_is_reproduced_with_the_median_and_the_range(tmp_path):
    """Five seeds: none twice as rough as BN at the phase, each its own noise; the ratio is
    the median of the per-seed ratios of the seeds' mean measurements, the interval (5
    seeds) their range."""
    ratios = [1.8, 2.0, 2.2, 2.5, 1.9]
    for seed, r in enumerate(ratios):
        job(tmp_path, "none", seed, [10.0 * r, 10.0 * r + 1.0])      # mean 10 r + 0.5
        job(tmp_path, "gluon", seed, [10.0, 11.0])                   # mean 10.5
    g = groups(tmp_path)
    verdict = decide(Claim.from_config(CLAIM), g["none"], g["gluon"])
    per_seed = sorted((10 * r + 0.5) / 10.5 for r in ratios)
    assert verdict.ratio == pytest.approx(per_seed[2])
    assert verdict.ci == pytest.approx((per_seed[0], per_seed[-1]))
    assert verdict.verdict == REPRODUCED and verdict.seeds == 5 and not verdict.missing


def test_a_seed_without_a_value_widens_the_interval_and_is_listed(tmp_path):
    for seed in range(5):
        job(tmp_path, "none", seed, None if seed == 3 else [20.0])
        job(tmp_path, "gluon", seed, [10.0])
    g = groups(tmp_path)
    verdict = decide(Claim.from_config(CLAIM), g["none"], g["gluon"])
    assert verdict.missing == ["seed 3: bn=none has no value at the phase"]
    assert verdict.seeds == 4
    # the range of 5 with a seed that could be anything is open at both ends: no interval
    assert verdict.ci is None and verdict.verdict == INCONCLUSIVE


def test_too_few_seeds_decide_nothing(tmp_path):
    for seed in range(4):
        job(tmp_path, "none", seed, [20.0])
        job(tmp_path, "gluon", seed, [10.0])
    g = groups(tmp_path)
    verdict = decide(Claim.from_config(CLAIM), g["none"], g["gluon"])
    assert verdict.ratio == pytest.approx(2.0) and verdict.ci is None
    assert verdict.verdict == INCONCLUSIVE


@pytest.mark.parametrize("rule, ci, expected", [
    ("above", (1.2, 1.9), REPRODUCED), ("above", (0.5, 0.9), CONTRADICTED),
    ("above", (0.8, 1.3), INCONCLUSIVE), ("below", (0.5, 0.9), REPRODUCED),
    ("below", (1.2, 1.9), CONTRADICTED), ("below", (0.9, 1.1), INCONCLUSIVE)])
def test_the_rule_decides_by_the_interval_against_the_threshold(rule, ci, expected):
    assert rule_verdict(rule, 1.0, ci) == expected


def test_the_report_gives_each_claim_its_verdict_and_rule(tmp_path):
    for seed in range(5):
        job(tmp_path, "none", seed, [20.0 + seed])
        job(tmp_path, "gluon", seed, [10.0])
    text = write_report(tmp_path).read_text()
    assert "## Claims and verdicts" in text
    assert "| smoother | BN smooths the landscape (Santurkar et al. 2018) |" in text
    assert "**reproduced**" in text
    assert "reproduced if the interval of bn=none / bn=gluon lies above 1" in text


def test_a_claim_decided_on_two_models_has_two_verdicts_and_one_rule(tmp_path):
    for model, gap in (("lenet", 10.0), ("mlp", 0.0)):
        for seed in range(5):
            job(tmp_path, "none", seed, [10.0 + gap + seed], model=model)
            job(tmp_path, "gluon", seed, [10.0], model=model)
    text = write_report(tmp_path).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| smoother (")]
    assert len(rows) == 2 and "model=lenet" in rows[0] + rows[1] and "model=mlp" in rows[0] + rows[1]
    assert {row.split("**")[-2] for row in rows} == {"reproduced", "inconclusive"}
    assert text.count("- smoother: reproduced if the interval of") == 1


class State:
    def __init__(self):
        self.record = RunRecord()


def test_a_monitor_measures_where_the_training_loss_first_reaches_each_level():
    """Levels reached at one read are measured one after the other; each only once; the
    periodic measurements go on beside them."""
    monitor = Monitor(every=100, at_loss=[1.0, 2.0, 0.5], samples=3)
    state = State()

    def read(step: int, loss: float) -> None:
        n = 10
        monitor.on_train_metrics(state, TrainMetrics(step, np.full(n, loss), np.full(n, 0.5), 1.0, 1280))

    read(10, 2.3)
    assert not any(monitor.due(s) for s in range(11, 20))
    read(20, 0.9)     # 2.0 and 1.0 at once: 2.0 first, then 1.0
    assert {s: monitor.phases[s] for s in range(20, 26)} == {20: 2.0, 21: 2.0, 22: 2.0,
                                                            23: 1.0, 24: 1.0, 25: 1.0}
    read(30, 0.95)    # reached already: nothing new
    assert max(monitor.phases) == 25
    read(40, 0.4)
    assert [monitor.phases[s] for s in (40, 41, 42)] == [0.5, 0.5, 0.5]
    assert monitor.due(100) and not monitor.due(99)
    monitor.keep(state, {"step": 24, "x": 1.0})
    monitor.keep(state, {"step": 100, "x": 2.0})
    assert state.record.monitors["monitor"] == [{"step": 24, "x": 1.0, "phase": 1.0},
                                                {"step": 100, "x": 2.0}]
