"""Numbers over seeds: means and spreads, the first crossing of a target accuracy, and the
speedup over `bn=none` with a t confidence interval on log step counts.

Steps to a target: the step of a seed's first evaluation at or above it, recomputed from
its evaluation curve (so any target can be asked for, not only the ones the run recorded).

Speedup to a target = the geometric mean over seeds of the steps the matching `bn=none`
configuration needed / the geometric mean of the steps this one needed, i.e.
exp(mean log steps(bn=none) - mean log steps(this)). Geometric, because step counts are
skewed (a plateau that lasts twice as long is as likely as one half as long) and a ratio
is symmetric on the log scale; with every seed paired it equals the geometric mean of the
per-seed ratios.

Every seed counts. A seed that did not reach the target is censored at the step where it
stopped: all that is known is that it needed more. That is a completed run's length, the
step where a run diverged (`diverged_at_step`), or the last step of an interrupted,
failed or still-running one. It counts with that step, which makes the speedup a bound:
`≥` (lower) when `bn=none` has such seeds, `≤` (upper) when this configuration has,
undetermined when both have. A seed that never trained a step (failed before it started,
metrics.json missing or unreadable) tells nothing: the speedup is undetermined until it is
rerun. Bounds and undetermined speedups have no interval.

The 95% interval (`log_ratio_interval`): the point estimate's log plus/minus a Student t
quantile times the standard error of the log steps, exponentiated -- paired when both
configurations ran exactly the same seeds (a seed's two runs share the initial weights
and the batch order): mean +- t(n-1) * sd / sqrt(n) of the per-seed log ratios; otherwise
Welch's: sd^2/n summed over both configurations, degrees of freedom by Welch-Satterthwaite.
The interval uses the same seeds as the point estimate (all of them). It is exact when log
steps are normal; its coverage under skewed, censored and failing step counts, and with
steps read on an evaluation grid (where seeds tie), is measured by simulation in
bnexp/report/coverage.py (`python -m bnexp.report.coverage` prints the table). It is
printed only from MIN_SEEDS (5) seeds per configuration: with 3 seeds read on the
convergence preset's evaluation grid it covers below 93%, and no other method tested
does better (the percentile bootstrap it replaces covers about 73% with 3 seeds and 85%
with 5; scipy's BCa about the same).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bnexp.record import EvalPoint
from bnexp.report.jobs import BASELINE, Group, Job

MEASURES = {"steps": "step", "images": "images", "seconds": "seconds"}  # column -> EvalPoint field
CONFIDENCE = 0.95
MIN_SEEDS = 5  # fewest seeds per configuration with an interval (see bnexp/report/coverage.py)
INTERVAL_METHOD = "t interval on log step counts (paired by seed, else Welch)"
INTERVAL_WHY = ("chosen by simulation (`python -m bnexp.report.coverage`): of the methods tested "
                "the only one whose interval contains the true speedup 93-97% of the time, from "
                f"{MIN_SEEDS} seeds on, with skewed, censored, failing step counts read on the "
                "evaluation grid; the percentile bootstrap and BCa cover about 85% with 5 seeds")

# speedup kinds: what a speedup value is
ESTIMATE, LOWER, UPPER, UNDETERMINED = 0, 1, 2, 3
KIND_NAMES = {ESTIMATE: "", LOWER: "lower", UPPER: "upper", UNDETERMINED: "undetermined"}


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


# ------------------------------------------------------------------ the speedup

def log_ratio_interval(base_log: np.ndarray, mine_log: np.ndarray, paired: bool,
                       confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Low and high end of the t interval of exp(mean base_log - mean mine_log) along the
    last axis (any leading axes are separate experiments). Paired: the per-seed
    differences, n - 1 degrees of freedom (base_log and mine_log aligned by seed);
    else Welch's standard error and Welch-Satterthwaite degrees of freedom."""
    from scipy import stats as sps  # scipy only when an interval is computed

    n_base, n_mine = base_log.shape[-1], mine_log.shape[-1]
    if paired:
        diff = base_log - mine_log
        centre = diff.mean(axis=-1)
        se = diff.std(axis=-1, ddof=1) / math.sqrt(n_base)
        df = np.full_like(centre, n_base - 1.0)
    else:
        centre = base_log.mean(axis=-1) - mine_log.mean(axis=-1)
        v_base = base_log.var(axis=-1, ddof=1) / n_base
        v_mine = mine_log.var(axis=-1, ddof=1) / n_mine
        se = np.sqrt(v_base + v_mine)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = (v_base + v_mine) ** 2 / (v_base ** 2 / (n_base - 1) + v_mine ** 2 / (n_mine - 1))
        df = np.where(np.isfinite(df), df, n_base + n_mine - 2.0)  # both spreads zero
    half = sps.t.ppf(0.5 + confidence / 2, df) * se
    return np.exp(centre - half), np.exp(centre + half)


def speedup_arrays(base: np.ndarray, base_reached: np.ndarray, mine: np.ndarray,
                   mine_reached: np.ndarray, paired: bool, min_seeds: int = MIN_SEEDS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The speedup rule of the module doc on arrays of step counts (last axis: seeds; NaN:
    nothing known; `*_reached` False: censored there); leading axes are separate
    experiments, so the coverage simulation runs exactly the report's rule.
    Returns value, kind (ESTIMATE, LOWER, UPPER, UNDETERMINED), low, high (NaN: no interval)."""
    with np.errstate(invalid="ignore"):
        base_log, mine_log = np.log(base), np.log(mine)
    unknown = np.isnan(base).any(axis=-1) | np.isnan(mine).any(axis=-1)
    base_censored = ~base_reached.all(axis=-1)
    mine_censored = ~mine_reached.all(axis=-1)
    kind = np.select([unknown | (base_censored & mine_censored), base_censored, mine_censored],
                     [UNDETERMINED, LOWER, UPPER], ESTIMATE)
    value = np.where(kind == UNDETERMINED, np.nan,
                     np.exp(base_log.mean(axis=-1) - mine_log.mean(axis=-1)))
    low = high = np.full(value.shape, np.nan)
    if min(base.shape[-1], mine.shape[-1]) >= min_seeds:
        with np.errstate(invalid="ignore"):
            low, high = log_ratio_interval(base_log, mine_log, paired)
        shown = kind == ESTIMATE
        low, high = np.where(shown, low, np.nan), np.where(shown, high, np.nan)
    return value, kind, low, high


@dataclass(frozen=True)
class Speedup:
    value: float | None = None
    bound: str = ""                      # "", "lower", "upper" or "undetermined"
    ci: tuple[float, float] | None = None
    method: str = ""                     # "paired t" or "Welch t" when there is an interval
    note: str = ""                       # why a bound, undetermined or without interval


def speedup(group: Group, baseline: Group | None, target: float) -> Speedup:
    """Baseline steps / these steps to `target` over every seed of both (module doc)."""
    if baseline is None or not group.jobs or not baseline.jobs:
        return Speedup()
    if group is baseline:
        return Speedup(1.0)
    base = sorted((seed_steps(j, target) for j in baseline.jobs), key=lambda s: s.seed)
    mine = sorted((seed_steps(j, target) for j in group.jobs), key=lambda s: s.seed)
    base_seeds, mine_seeds = [s.seed for s in base], [s.seed for s in mine]
    paired = base_seeds == mine_seeds and len(set(base_seeds)) == len(base_seeds)

    def arrays(seeds: list[SeedSteps]) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([[np.nan if s.steps is None else s.steps for s in seeds]]),
                np.array([[s.reached for s in seeds]]))

    value, kind, low, high = (a[0] for a in speedup_arrays(*arrays(base), *arrays(mine), paired))
    kind = int(kind)
    unknown = [f"`{g.label}` seed {s.seed}" for g, side in ((baseline, base), (group, mine))
               for s in side if s.steps is None]
    if kind == UNDETERMINED:
        note = (f"undetermined: {', '.join(unknown)} never trained (rerun it)" if unknown else
                f"undetermined: seeds of both `{baseline.label}` and `{group.label}` stopped "
                "before reaching it")
        return Speedup(None, KIND_NAMES[kind], None, "", note)
    if kind != ESTIMATE:
        who = baseline.label if kind == LOWER else group.label
        return Speedup(float(value), KIND_NAMES[kind], None, "",
                       f"{'lower' if kind == LOWER else 'upper'} bound: seeds of `{who}` "
                       "stopped before reaching it (counted at the step where they stopped)")
    if np.isnan(low):
        return Speedup(float(value), "", None, "",
                       f"no interval: {min(len(base), len(mine))} seed(s); from {MIN_SEEDS} on, "
                       "the interval covers 95% (bnexp/report/coverage.py)")
    return Speedup(float(value), "", (float(low), float(high)), "paired t" if paired else "Welch t")


def find_baseline(group: Group, groups: list[Group]) -> Group | None:
    """The `bn=none` configuration with the same other overrides, if the sweep has one."""
    return next((g for g in groups if g.variant == BASELINE and g.rest_key() == group.rest_key()),
                None)


# ------------------------------------------------------------------ monitors and bands

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
