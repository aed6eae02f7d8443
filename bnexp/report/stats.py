"""Numbers over seeds: means and spreads, and the first crossing of a target accuracy.

Steps to a target: the step of a seed's first evaluation at or above it, recomputed from
its evaluation curve (so any target can be asked for, not only the ones the run recorded).
A seed that did not reach the target is censored at the step where it stopped: all that
is known is that it needed more. That is a completed run's length, the step where a run
diverged (`diverged_at_step`), or the last step of an interrupted, failed or
still-running one. A seed that never trained a step (failed before it started,
metrics.json missing or unreadable), or stopped at its own targets before this one,
tells nothing (`SeedSteps.steps` None). The speedup over `bn=none` and its interval are
built from these in bnexp/report/speedup.py.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from bnexp.record import EvalPoint
from bnexp.report.jobs import BASELINE, Group, Job

MEASURES = {"steps": "step", "images": "images", "seconds": "seconds"}  # column -> EvalPoint field


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None when undefined: no or one value)."""
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def target_label(target: float) -> str:
    """0.7 -> "0.70" (the column names of summary.csv); 0.875 -> "0.875"."""
    return f"{target:.2f}" if round(target, 2) == target else f"{target:g}"


# ------------------------------------------------------------------ crossings and steps

@dataclass(frozen=True)
class Crossing:
    """A job's first evaluation at or above a target, and the evaluation step before it
    (0 if none): the crossing itself lies between the two."""
    point: EvalPoint
    after_step: int


def milestone(job: Job, target: float) -> Crossing | None:
    """The job's first evaluation at or above `target`, from its evaluation curve, or None."""
    previous = 0
    for point in job.eval_curve:
        if point.acc is not None and point.acc >= target:
            return Crossing(point, previous)
        previous = point.step
    return None


def accuracy_at(job: Job, step: int, curve: str = "eval") -> float | None:
    """Accuracy of the job's last point at or before `step` on the eval or train curve."""
    points = job.eval_curve if curve == "eval" else (job.record.train_curve if job.record else [])
    value = None
    for point in points:
        if point.step > step:
            break
        value = point.acc
    return value


def evaluated_steps_near(jobs: list[Job], wanted: tuple[int, ...]) -> list[int]:
    """For each wanted step, the nearest step that every job (with a record) evaluated,
    so that a table asks for a step the schedule really evaluates (a dense schedule
    evaluates 91 and 101, not 100); duplicates dropped, order kept."""
    shared = None
    for job in jobs:
        if job.record:
            steps = {p.step for p in job.eval_curve}
            shared = steps if shared is None else shared & steps
    if not shared:
        return []
    return list(dict.fromkeys(min(shared, key=lambda s: (abs(s - w), s)) for w in wanted))


def accuracy_on(job: Job, step: int) -> float | None:
    """The accuracy the job evaluated at exactly `step` (None if it did not)."""
    return next((p.acc for p in job.eval_curve if p.step == step), None)


def final_accuracies(group: Group) -> list[float]:
    """Final test accuracy of the completed seeds."""
    return [acc for j in group.jobs if (acc := j.final_test_acc) is not None]


@dataclass(frozen=True)
class SeedSteps:
    """What one seed says about the steps to a target."""
    seed: str
    steps: float | None   # reached: the crossing's step; else where it stopped (it needed
    #                       more); None: nothing known (it never trained a step)
    reached: bool
    why: str = ""         # why it did not reach the target, in words


def stopped_at(job: Job) -> int:
    """The last step a job trained (for a diverged run: where its loss went bad)."""
    if not job.record:
        return 0
    if job.status == "diverged" and job.record.diverged_at_step:
        return job.record.diverged_at_step
    return job.record.steps


def seed_steps(job: Job, target: float) -> SeedSteps:
    """Steps of `job` to `target`, censored where it stopped if it did not get there."""
    seed = job.seed or job.name
    hit = milestone(job, target)
    if hit is not None:
        return SeedSteps(seed, float(hit.point.step), True)
    stop = stopped_at(job)
    if job.record and job.record.stopped_early:  # ended once its own targets were reached:
        return SeedSteps(seed, None, False,      # where it would have reached this one is unknown
                         f"stopped at step {stop} once it reached its own targets "
                         f"(up to {max(job.record.targets):.2f}; trainer.stop_at_targets)")
    if not stop:
        detail = f": {job.error}" if job.error else ""
        return SeedSteps(seed, None, False, f"{job.status} before training a step{detail}")
    why = {"completed": f"ran its {stop} steps without reaching it",
           "diverged": f"diverged at step {stop}",
           "interrupted": f"interrupted at step {stop}",
           "running": f"no final record after step {stop} (still running, or killed)"}.get(
        job.status, f"{job.status} at step {stop}" + (f" ({job.error})" if job.error else ""))
    return SeedSteps(seed, float(stop), False, why)


def target_stats(group: Group, target: float) -> dict:
    """Steps/images/seconds to `target`: mean and std over the seeds that reached it; the
    seeds that did not, with why; and the resolution: the largest gap to the evaluation
    before, as a fraction of the step."""
    hits = [h for h in (milestone(j, target) for j in group.jobs) if h is not None]
    missed = [s for s in (seed_steps(j, target) for j in group.jobs) if not s.reached]
    out: dict = {"reached": len(hits), "never": len(missed), "missed": missed}
    for measure, name in MEASURES.items():
        out[f"{measure}_mean"], out[f"{measure}_std"] = mean_std(
            [float(getattr(h.point, name)) for h in hits if getattr(h.point, name) is not None])
    gaps = [(h.point.step - h.after_step) / h.point.step for h in hits if h.point.step]
    out["resolution"] = max(gaps) if gaps else None
    return out


# ------------------------------------------------------------------ the baseline

def find_baseline(group: Group, groups: list[Group]) -> Group | None:
    """The `bn=none` configuration with the same other overrides, if the sweep has one."""
    return next((g for g in groups if g.variant == BASELINE and g.rest_key() == group.rest_key()),
                None)


# ------------------------------------------------------------------ monitors and bands

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
