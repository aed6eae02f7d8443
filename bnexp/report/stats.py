"""Numbers over seeds: means and spreads, the first crossing of a target accuracy, and the
speedup over `bn=none` with a bootstrap confidence interval.

Speedup to a target = mean steps of the matching `bn=none` configuration / mean steps of
this one, over the seeds that reached it. Its 95% interval is a percentile bootstrap over
seeds: resample the seeds with replacement (10,000 times, a fixed generator, so the
report is reproducible), recompute the ratio of means, take the 2.5th and 97.5th
percentiles. Where both configurations ran the same seeds, the seeds are resampled as
pairs (one seed's BN run and no-BN run share the initial weights and the batch order);
otherwise each configuration's seeds are resampled on their own. With one seed there is
no interval. A seed that ran to its end without reaching the target is censored: all we
know is that it needed more steps than it ran. It then counts with its run length, so if
`bn=none` has such seeds the speedup is a lower bound (`≥`), if this configuration has
them an upper bound (`≤`), if both, unknown; a bound has no interval.
"""
from __future__ import annotations

import statistics
from typing import Callable

import numpy as np

from bnexp.record import TARGETS  # noqa: F401  (re-exported: the report's targets)
from bnexp.report.jobs import BASELINE, Group, Job

MEASURES = {"steps": "step", "images": "images", "seconds": "seconds"}  # column -> milestone field
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20181029  # fixed: the same sweep gives the same interval


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None when undefined: no or one value)."""
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def accuracy(point: dict) -> float | None:
    """An evaluation point's accuracy (metrics.json before validation splits: test_acc)."""
    return point.get("acc", point.get("test_acc"))


def milestone(job: Job, target: float) -> dict | None:
    """{step, images, seconds, after_step} of the job's first evaluation at or above
    `target` (after_step: the evaluation before it; the crossing lies in between), or None."""
    record = job.record or {}
    hit = (record.get("to_accuracy") or {}).get(f"{target:.2f}")
    if hit and hit.get("step") is not None:
        return hit
    previous = 0
    for point in record.get("eval_curve") or []:  # files without `to_accuracy`
        acc = accuracy(point)
        if acc is not None and acc >= target:
            return {**point, "after_step": previous}
        previous = point["step"]
    return None


def accuracy_at(job: Job, step: int, curve: str = "eval_curve") -> float | None:
    """Accuracy of the job's last point at or before `step` on `curve` (eval or train)."""
    value = None
    for point in (job.record or {}).get(curve) or []:
        if point["step"] > step:
            break
        value = accuracy(point)
    return value


def final_accuracies(group: Group) -> list[float]:
    """Final test accuracy of the completed seeds."""
    return [j.record["final"]["test_acc"] for j in group.jobs
            if j.status == "completed" and (j.record.get("final") or {}).get("test_acc") is not None]


def target_stats(group: Group, target: float) -> dict:
    """Steps/images/seconds to `target`: mean and std over the seeds that reached it, and
    the resolution: the largest gap to the evaluation before, as a fraction of the step."""
    hits = [h for h in (milestone(j, target) for j in group.jobs) if h is not None]
    out: dict = {"reached": len(hits), "never": len(group.jobs) - len(hits)}
    for measure, name in MEASURES.items():
        out[f"{measure}_mean"], out[f"{measure}_std"] = mean_std(
            [float(h[name]) for h in hits if h.get(name) is not None])
    gaps = [(h["step"] - h["after_step"]) / h["step"] for h in hits
            if h.get("after_step") is not None and h["step"]]
    out["resolution"] = max(gaps) if gaps else None
    return out


def steps_to(group: Group, target: float) -> tuple[dict[str, float], bool]:
    """Steps to `target` by seed, and whether any is censored: a completed seed that never
    reached the target counts with its run length (it needed more)."""
    out, censored = {}, False
    for job in group.jobs:
        hit = milestone(job, target)
        if hit is not None:
            out[job.seed or job.name] = float(hit["step"])
        elif job.status == "completed" and job.record.get("steps"):
            out[job.seed or job.name], censored = float(job.record["steps"]), True
    return out, censored


def bootstrap_ratio(base: dict[str, float], mine: dict[str, float]) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of mean(base) / mean(mine) (see the module doc)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    paired = sorted(set(base) & set(mine))
    if len(paired) >= 2:
        b = np.array([base[s] for s in paired])
        m = np.array([mine[s] for s in paired])
        picks = rng.integers(0, len(paired), (BOOTSTRAP_RESAMPLES, len(paired)))
        ratios = b[picks].mean(axis=1) / m[picks].mean(axis=1)
    elif len(base) >= 2 and len(mine) >= 2:
        b, m = np.array(list(base.values())), np.array(list(mine.values()))
        ratios = (b[rng.integers(0, len(b), (BOOTSTRAP_RESAMPLES, len(b)))].mean(axis=1)
                  / m[rng.integers(0, len(m), (BOOTSTRAP_RESAMPLES, len(m)))].mean(axis=1))
    else:
        return None
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def speedup(group: Group, baseline: Group | None, target: float) -> dict:
    """{"value", "bound", "ci"}: baseline steps / these steps to `target`; bound is None,
    "lower" or "upper" when censored seeds make the value a bound (see the module doc)."""
    none = {"value": None, "bound": None, "ci": None}
    if baseline is None or not any(milestone(j, target) for j in group.jobs):
        return none
    if group is baseline:
        return {"value": 1.0, "bound": None, "ci": None}
    mine, mine_censored = steps_to(group, target)
    base, base_censored = steps_to(baseline, target)
    if not base or (mine_censored and base_censored):
        return none
    value = statistics.fmean(base.values()) / statistics.fmean(mine.values())
    if base_censored or mine_censored:
        return {"value": value, "bound": "lower" if base_censored else "upper", "ci": None}
    return {"value": value, "bound": None, "ci": bootstrap_ratio(base, mine)}


def find_baseline(group: Group, groups: list[Group]) -> Group | None:
    """The `bn=none` configuration with the same other overrides, if the sweep has one."""
    return next((g for g in groups if g.variant == BASELINE and g.rest_key() == group.rest_key()),
                None)


def run_average(points: list[dict], value: Callable[[dict], float | None],
                second_half: bool = False) -> float | None:
    """Mean of `value` over a run's monitor measurements (dicts with a "step"), or over
    those in the second half of the measured steps; None where there is nothing."""
    if second_half and points:
        half = max(m["step"] for m in points) / 2
        points = [m for m in points if m["step"] >= half]
    values = [v for v in map(value, points) if v is not None]
    return statistics.fmean(values) if values else None


def band(series: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, min and max over several runs' (step, value) series, at every step
    where at least one run has a finite value."""
    by_step: dict[int, list[float]] = {}
    for run in series:
        for step, value in run:
            if value is not None and np.isfinite(value):
                by_step.setdefault(int(step), []).append(float(value))
    steps = sorted(by_step)
    return (steps, [statistics.fmean(by_step[s]) for s in steps],
            [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps])
