"""The speedup to a target: how many times fewer steps a configuration needs than the
matching `bn=none` one, with its interval, over every seed of both.

    speedup = the median over seeds of the per-seed ratio steps(bn=none) / steps(this)

paired by seed (a seed's two runs share the initial weights and the batch order). On log
steps a per-seed ratio is a difference, d = log T_none - log T_this; the speedup is
exp(median d), the speedup of a typical seed.

Why the median and not the ratio of geometric means (exp(mean d), the report's speedup
until now): runs without BN now and then stay on the plateau at chance about twice as
long (the `mechanism` runs show such late escapes). The mean of such a bimodal d and its
t interval are pulled by how many late seeds a sample happens to hold: with 10-20% of the
`bn=none` seeds needing twice the steps, the t interval covers 86.5-91.0% with 5 seeds
and 88.0-90.0% with 10; a normal model fitted to censored log ratios (Tobit,
bnexp/report/tobit.py), which is that t interval when nothing is censored, the same.
The median is the speedup of a typical seed and moves little.

The interval: order statistics of the per-seed log ratios, [d(k), d(n+1-k)] (the sign
test's interval for a median). Each seed's d falls above the median with probability
1/2, independently of the others, so the interval misses the median only when k-1 or
fewer of the n seeds fall on one side: it covers with probability exactly
1 - 2 P(Binomial(n, 1/2) <= k-1) whatever the distribution of d (continuous; with ties,
as steps read on an evaluation grid have, at least that). k is the largest whose
coverage is at least 95%; with 5 seeds none is, and the range [d(1), d(5)] covers
93.75%; with 4 seeds even the range covers 87.5%, so no interval below MIN_SEEDS (5).
10 seeds: d(2) to d(9), 97.9%. The price of needing no model: with 10 lognormal seeds it
is about 1.4 times as wide as the t interval (with 5 about as wide).

Censoring. A seed that did not reach the target stopped somewhere (it ran out, diverged,
was interrupted): it needed more steps than that, so its log steps lie in [log stop, inf).
A seed that never trained a step, or stopped at its own targets before this one, tells
nothing: (-inf, inf). Each per-seed log ratio is then known to lie in [low, high] --
exact when both runs reached the target, [low, inf) when the `bn=none` run stopped short,
(-inf, high] when this configuration's did, anything when both did. The interval's lower
end is the k-th smallest low, its upper end the k-th largest high: each lies at or beyond
the same order statistic of the true ratios, so the coverage above holds whatever the
censoring, with no model of why runs stop. An end is infinite once k seeds are censored
on its side: the interval is then a one-sided confidence bound ([4.4, inf)). The median
is determined when the median of the lows equals that of the highs; otherwise this
sample only bounds it (at least, at most, or between two values): a bound on this sample,
not a confidence bound -- the interval is the confidence statement.

Configurations that ran different seeds (nothing to pair): the median over every pair of
a `bn=none` seed and a seed of this one, without an interval (the sign argument needs
pairs; run both configurations with the same seeds).

Why this method wins (`python -m bnexp.report.coverage`, 10,000 simulated experiments per
cell, standard error 0.22 points): of the three measured it is the only one at or above
93% in every cell it prints -- 93.7-100% with 5 and 10 paired seeds, skewed, bimodal,
censored and failing scenarios alike -- and that by construction, not by the luck of the
scenarios chosen; it needs no model of why runs stop, and where censoring leaves no more,
it still gives a one-sided confidence bound (in the "mostly censored" scenario, shaped
like the convergence preset's 0.80 target, for all 10,000 experiments, where the t
interval printed 2 with 5 seeds and none with 10). Its costs: the median, not the geometric-mean ratio, is estimated
(the same when log ratios are symmetric); it is conservative with 10 seeds (97.9%) and
about 1.4 times as wide as the t interval on lognormal data; unpaired seeds get no
interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnexp.report.jobs import Group
from bnexp.report.stats import SeedSteps, seed_steps

CONFIDENCE = 0.95  # the order statistics cover at least this, from 6 seeds on
MIN_SEEDS = 5      # fewest paired seeds with an interval: the range of 5 covers 93.75%
INTERVAL_METHOD = ("order statistics of the per-seed log step ratios, paired by seed (the sign "
                   "test's interval for the median)")

# what this sample says of the median (Speedup.bound)
ESTIMATE, LOWER, UPPER, BETWEEN, UNDETERMINED = "", "lower", "upper", "between", "undetermined"


def log_step_bounds(steps: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each seed's log steps lie: [log s, log s] if it reached the target at s,
    [log s, inf) if it stopped at s before, (-inf, inf) if nothing is known (NaN)."""
    unknown = np.isnan(steps)
    with np.errstate(invalid="ignore"):
        log = np.log(np.where(unknown, 1.0, steps))
    return np.where(unknown, -np.inf, log), np.where(unknown | ~reached, np.inf, log)


def log_ratio_bounds(base: np.ndarray, base_reached: np.ndarray, mine: np.ndarray,
                     mine_reached: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """[low, high] of each log T_none - log T_this along the last axis (seeds; leading axes
    are separate experiments): seed by seed if paired, else every pair of seeds."""
    base_low, base_high = log_step_bounds(base, base_reached)
    mine_low, mine_high = log_step_bounds(mine, mine_reached)
    if paired:
        return base_low - mine_high, base_high - mine_low

    def pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x[..., :, None] - y[..., None, :]).reshape(*x.shape[:-1], -1)
    return pairs(base_low, mine_high), pairs(base_high, mine_low)


def sign_coverage(n: int, k: int) -> float:
    """Exact coverage of [d(k), d(n+1-k)] for the median of n independent continuous values."""
    from scipy.stats import binom  # scipy only when an interval is computed
    return 1.0 - 2.0 * float(binom.cdf(k - 1, n, 0.5))


def order_k(n: int) -> int:
    """The order statistic of the interval's ends: the largest k whose coverage is at
    least CONFIDENCE, else 1 (the range)."""
    return max((k for k in range(1, n // 2 + 1) if sign_coverage(n, k) >= CONFIDENCE), default=1)


def median_and_interval(low: np.ndarray, high: np.ndarray, paired: bool,
                        min_seeds: int = MIN_SEEDS) -> tuple[np.ndarray, ...]:
    """On log ratio bounds (last axis: seeds): the median's bounds on this sample (median
    of the lows, of the highs) and the interval (k-th smallest low, k-th largest high; NaN
    where there is none: seeds not paired, or fewer than `min_seeds`, or both ends open)."""
    median_low, median_high = np.median(low, axis=-1), np.median(high, axis=-1)
    n = low.shape[-1]
    ci_low = ci_high = np.full(median_low.shape, np.nan)
    if paired and n >= min_seeds:
        k = order_k(n)
        ci_low, ci_high = np.sort(low, axis=-1)[..., k - 1], np.sort(high, axis=-1)[..., n - k]
        open_both = np.isinf(ci_low) & np.isinf(ci_high)
        ci_low, ci_high = np.where(open_both, np.nan, ci_low), np.where(open_both, np.nan, ci_high)
    return median_low, median_high, ci_low, ci_high


def bound_kind(low: float, high: float) -> str:
    """What the sample bounds [low, high] (as speedups: 0 and inf are unbounded) say."""
    if low == high:
        return ESTIMATE
    if low > 0 and high < math.inf:
        return BETWEEN
    return LOWER if low > 0 else UPPER if high < math.inf else UNDETERMINED


@dataclass(frozen=True)
class Speedup:
    value: float | None = None                  # the median, where this sample determines it
    bound: str = ESTIMATE                       # else what the sample says of it (above)
    sample: tuple[float, float] | None = None   # the median's bounds on this sample (0, inf: none)
    ci: tuple[float, float] | None = None       # the interval; an end may be 0 or inf
    coverage: float | None = None               # its exact coverage (with censoring at least that)
    note: str = ""                              # why a bound, undetermined or without interval

    def text(self) -> str:
        """The median and its interval, `3.0× [2.7, 3.5]`; an end the censoring leaves open,
        `3.0× [2.7, ∞)`; what this sample says when it does not determine the median,
        `≥ 3.1× (bound on this sample, not a confidence bound)`; `3.0× (no interval)`,
        `1.0×` (the baseline itself), `undetermined` or `—`."""
        if self.bound == UNDETERMINED:
            point = "undetermined"
        elif self.value is not None:
            point = times(self.value)
        elif self.sample is None:
            return "—"
        elif self.bound in (LOWER, UPPER):
            low, high = self.sample
            point = (f"{'≥ ' + times(low) if self.bound == LOWER else '≤ ' + times(high)} "
                     "(bound on this sample, not a confidence bound)")
        else:
            point = (f"{times(self.sample[0])} to {times(self.sample[1])} "
                     "(bounds on this sample, not confidence bounds)")
        if self.ci is not None:
            low, high = self.ci
            opening = "(0" if low == 0 else f"[{number(low)}"
            closing = "∞)" if high == math.inf else f"{number(high)}]"
            return f"{point} {opening}, {closing}"
        return point + (" (no interval)" if self.value is not None and self.note else "")


def number(value: float) -> str:
    """An interval's end: one decimal from 1 on, two significant digits below."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def times(value: float) -> str:
    """3.04 -> "3.0×"; below 1 two significant digits (a baseline that diverged at once
    bounds the speedup by 0.015×, not 0.0×)."""
    return f"{value:.1f}×" if value >= 1 else f"{value:.2g}×"


def speedup(group: Group, baseline: Group | None, target: float) -> Speedup:
    """Median per-seed speedup of `group` over `baseline` to `target`, with its interval."""
    if baseline is None or not group.jobs or not baseline.jobs:
        return Speedup()
    if group is baseline:
        return Speedup(1.0, sample=(1.0, 1.0))
    base = sorted((seed_steps(j, target) for j in baseline.jobs), key=lambda s: s.seed)
    mine = sorted((seed_steps(j, target) for j in group.jobs), key=lambda s: s.seed)
    seeds = [s.seed for s in base]
    paired = seeds == [s.seed for s in mine] and len(set(seeds)) == len(seeds)
    low, high = log_ratio_bounds(*as_arrays(base), *as_arrays(mine), paired)
    median_low, median_high, ci_low, ci_high = (float(np.exp(a[0])) for a in
                                                median_and_interval(low, high, paired))
    kind = bound_kind(median_low, median_high)
    has_ci = not math.isnan(ci_low)
    note = "; ".join(filter(None, [
        bound_note(kind, baseline, base, group, mine),
        "" if has_ci else missing_interval_note(paired, len(base), kind)]))
    return Speedup(median_low if kind == ESTIMATE else None, kind, (median_low, median_high),
                   (ci_low, ci_high) if has_ci else None,
                   sign_coverage(len(base), order_k(len(base))) if has_ci else None, note)


def as_arrays(seeds: list[SeedSteps]) -> tuple[np.ndarray, np.ndarray]:
    """Steps (NaN: nothing known) and reached flags, as one experiment (a leading axis of 1)."""
    return (np.array([[np.nan if s.steps is None else s.steps for s in seeds]]),
            np.array([[s.reached for s in seeds]]))


def bound_note(kind: str, baseline: Group, base: list[SeedSteps], group: Group,
               mine: list[SeedSteps]) -> str:
    """Why this sample does not determine the median: which seeds, of which configuration."""
    if kind == ESTIMATE:
        return ""
    reasons = []
    for label, seeds, side in ((baseline.label, base, "below"), (group.label, mine, "above")):
        stopped = [s.seed for s in seeds if not s.reached and s.steps is not None]
        unknown = [s.seed for s in seeds if s.steps is None]
        for which, did, known in (
                (stopped, "stopped before reaching it", f"known only from {side}"),
                (unknown, "never trained or stopped at the run's own targets first",
                 "unknown")):
            if which:
                many = len(which) > 1
                reasons.append(f"`{label}` seed{'s' if many else ''} {', '.join(which)} {did}: "
                               f"{'their ratios are' if many else 'its ratio is'} {known}")
    what = {LOWER: "`≥`", UPPER: "`≤`", BETWEEN: "the range"}.get(kind)
    head = (f"{what} is a bound on this sample, not a confidence bound (the interval, where "
            "printed, is the confidence statement)" if what else "undetermined")
    return f"{head}; {'; '.join(reasons)}"


def missing_interval_note(paired: bool, seeds: int, kind: str) -> str:
    """Why there is no interval."""
    if kind == UNDETERMINED:
        return ""
    if not paired:
        return ("no interval: the two configurations ran different seeds (run both with the "
                "same seeds for one)")
    if seeds < MIN_SEEDS:
        return (f"no interval: {seeds} seed(s); from {MIN_SEEDS} paired seeds on (the range "
                f"of {MIN_SEEDS} covers {sign_coverage(MIN_SEEDS, 1):.2%})")
    return "no interval: too many seeds censored or unknown on both sides"
