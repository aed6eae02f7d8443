"""How often a speedup interval contains the true speedup: a simulation with known answers.

    python -m bnexp.report.coverage [--experiments 2000] [--bca]

Each simulated experiment draws, for n seeds of `bn=none` and n seeds of a BN
configuration, the steps to a target from known distributions shaped like ours (skewed:
lognormal or gamma; a run length that right-censors slow seeds; runs that stop early --
diverged, interrupted, failed mid-run -- censored where they stopped; jobs that fail before
their first step; and, in one scenario, steps read on the evaluation grid of the
convergence preset (`trainer.eval_schedule=dense_early`), so that seeds tie). It then applies a method's rule -- when it prints an interval and
which -- and counts how often a printed 95% interval contains the true value. The true
value is the method's own estimand: the ratio of the geometric means
exp(E log T_none - E log T_bn) for the intervals on log steps, the ratio of the means for
the previous report's bootstrap; on an evaluation grid, of the step counts as read there
(computed exactly from the distribution's CDF). Experiments are vectorised (one array axis), so 2,000 of
them take milliseconds for the t interval.

Methods:
  t-log       the report's: bnexp.report.stats.speedup_arrays (paired t on the per-seed
              log ratios, Welch's t where the seeds differ)
  percentile  the previous report's: percentile bootstrap of the ratio of mean steps,
              seeds resampled as pairs (10,000 resamples there, 2,000 here)
  bca         scipy.stats.bootstrap, BCa, of the mean log ratio (2,000 resamples; slow:
              only with --bca)
Every method is measured from 2 seeds on, where the report has an interval to print (no
seed censored or unknown); the report itself prints one from MIN_SEEDS seeds, the
smallest count at which the t interval covers 93-97% in every scenario.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from bnexp.report.stats import CONFIDENCE, MIN_SEEDS, speedup_arrays
from bnexp.training.schedule import dense_early

EXPERIMENTS = 2000
SEED_COUNTS = (2, 3, 5, 10)
SIMULATION_SEED = 20251201  # fixed: the table is reproducible
RESAMPLES = 2000


class Distribution(Protocol):
    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray: ...
    def cdf(self, steps: np.ndarray) -> np.ndarray: ...
    @property
    def mean_log(self) -> float: ...
    @property
    def mean(self) -> float: ...


@dataclass(frozen=True)
class LogNormal:
    median: float
    sigma: float   # of log steps

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return self.median * np.exp(self.sigma * rng.standard_normal(shape))

    def cdf(self, steps: np.ndarray) -> np.ndarray:
        from scipy.stats import norm
        return norm.cdf(np.log(steps / self.median) / self.sigma)

    @property
    def mean_log(self) -> float:
        return math.log(self.median)

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma ** 2 / 2)


@dataclass(frozen=True)
class Gamma:
    shape: float   # coefficient of variation 1 / sqrt(shape); log steps skewed to the left
    mean: float

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.gamma(self.shape, self.mean / self.shape, shape)

    def cdf(self, steps: np.ndarray) -> np.ndarray:
        from scipy.stats import gamma
        return gamma.cdf(steps, self.shape, scale=self.mean / self.shape)

    @property
    def mean_log(self) -> float:
        from scipy.special import digamma
        return float(digamma(self.shape)) + math.log(self.mean / self.shape)


@dataclass(frozen=True)
class Scenario:
    name: str
    baseline: Distribution      # steps bn=none needs
    bn: Distribution            # steps the BN configuration needs
    run_length: float           # a seed not there by then is censored at it
    stop_rate: float = 0.0      # share of runs stopping early, at a uniform step (censored there)
    fail_rate: float = 0.0      # share of jobs failing before their first step (nothing known)
    paired: bool = True         # both configurations ran the same seeds
    eval_every: int | None = None  # steps read on the dense_early grid with this gap (else exact)

    def grid(self) -> np.ndarray | None:
        """The evaluation steps: dense_early, the run's last step (every schedule evaluates
        there), and on past the run length (where seeds are censored)."""
        if self.eval_every is None:
            return None
        steps = set(dense_early(self.eval_every, int(self.run_length) * 50)) | {int(self.run_length)}
        return np.array(sorted(steps), dtype=float)


SCENARIOS = (
    # the convergence preset: bn=none 516 ± 46 steps to 0.70, gluon 43 ± 4 (DESIGN.md)
    Scenario("lognormal, tight", LogNormal(516, 0.09), LogNormal(43, 0.09), 2345),
    # a long, variable plateau: gamma steps (CV 0.58 and 0.45), 2% of bn=none censored
    Scenario("gamma, skewed", Gamma(3, 600), Gamma(5, 60), 1600),
    # wide spread, 6% of bn=none censored at the run length, 5% of runs stop early,
    # 2% of jobs fail before starting
    Scenario("censored + failing", LogNormal(900, 0.45), LogNormal(80, 0.35), 1800,
             stop_rate=0.05, fail_rate=0.02),
    # different seeds in the two configurations (Welch), very unequal spreads
    Scenario("unpaired, unequal", LogNormal(600, 0.5), LogNormal(50, 0.1), 2345, paired=False),
    # the convergence preset as read: dense_early evaluations (gap <= 10%, at most 78)
    Scenario("on the eval grid", LogNormal(516, 0.09), LogNormal(43, 0.09), 702, eval_every=78),
)


def simulate(dist: Distribution, scenario: Scenario, rng: np.random.Generator,
             shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Steps (NaN: nothing known) and reached flags of `shape` = (experiments, seeds)
    seeds, censored as the report censors them."""
    needed = dist.draw(rng, shape)
    grid = scenario.grid()
    if grid is not None:  # the first evaluation at or after the crossing
        needed = grid[np.searchsorted(grid, needed)]
    stop = np.full(shape, float(scenario.run_length))
    early = rng.random(shape) < scenario.stop_rate
    stop[early] = rng.uniform(1.0, scenario.run_length, int(early.sum()))
    reached = needed <= stop
    steps = np.where(reached, needed, stop)
    never_started = rng.random(shape) < scenario.fail_rate
    steps[never_started], reached[never_started] = np.nan, False
    return steps, reached


def shown_like_report(base_reached: np.ndarray, mine_reached: np.ndarray) -> np.ndarray:
    """Where the report prints an interval: every seed of both reached the target."""
    return base_reached.all(axis=-1) & mine_reached.all(axis=-1)


# ------------------------------------------------------------------ methods
# Each: (base, base_reached, mine, mine_reached, paired) -> (low, high), NaN where no
# interval is printed; `truth(scenario)` is its estimand.

def t_log(base, base_reached, mine, mine_reached, paired, min_seeds):
    _, _, low, high = speedup_arrays(base, base_reached, mine, mine_reached, paired, min_seeds)
    return low, high


def percentile_bootstrap(base, base_reached, mine, mine_reached, paired, min_seeds):
    """The previous report: 2.5th and 97.5th percentiles of the resampled ratio of means."""
    rng = np.random.default_rng(SIMULATION_SEED)
    n_base, n_mine = base.shape[-1], mine.shape[-1]
    low = np.full(base.shape[0], np.nan)
    high = low.copy()
    shown = shown_like_report(base_reached, mine_reached) & (min(n_base, n_mine) >= min_seeds)
    rows = np.flatnonzero(shown)
    for chunk in np.array_split(rows, max(1, len(rows) // 200)):  # bounded memory
        b, m = base[chunk][:, None, :], mine[chunk][:, None, :]
        pick_b = rng.integers(0, n_base, (len(chunk), RESAMPLES, n_base))
        pick_m = pick_b if paired else rng.integers(0, n_mine, (len(chunk), RESAMPLES, n_mine))
        ratios = (np.take_along_axis(b, pick_b, -1).mean(-1)
                  / np.take_along_axis(m, pick_m, -1).mean(-1))
        low[chunk], high[chunk] = np.percentile(ratios, [2.5, 97.5], axis=-1)
    return low, high


def bca_bootstrap(base, base_reached, mine, mine_reached, paired, min_seeds):
    """scipy's BCa interval of the mean log ratio, exponentiated."""
    from scipy import stats as sps

    shown = (shown_like_report(base_reached, mine_reached)
             & (min(base.shape[-1], mine.shape[-1]) >= max(min_seeds, 3)))  # BCa's jackknife
    low = np.full(base.shape[0], np.nan)
    high = low.copy()
    if not shown.any():
        return low, high
    b, m = np.log(base[shown]), np.log(mine[shown])
    if paired:
        data, statistic = (b - m,), lambda d, axis: d.mean(axis=axis)
    else:
        data, statistic = (b, m), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis)
    with np.errstate(all="ignore"):
        result = sps.bootstrap(data, statistic, n_resamples=RESAMPLES, batch=100, vectorized=True,
                               axis=-1, confidence_level=CONFIDENCE, method="BCa",
                               rng=np.random.default_rng(SIMULATION_SEED))
    low[shown] = np.exp(result.confidence_interval.low)
    high[shown] = np.exp(result.confidence_interval.high)
    return low, high


def mean_log_read(dist: Distribution, scenario: Scenario) -> float:
    """E log(steps), as read on the scenario's evaluation grid if it has one."""
    grid = scenario.grid()
    if grid is None:
        return dist.mean_log
    mass = np.diff(dist.cdf(np.concatenate([[1e-12], grid])))  # P(previous < T <= this step)
    return float((mass * np.log(grid)).sum() / mass.sum())


def geometric_truth(scenario: Scenario) -> float:
    return math.exp(mean_log_read(scenario.baseline, scenario) - mean_log_read(scenario.bn, scenario))


def mean_truth(scenario: Scenario) -> float:
    return scenario.baseline.mean / scenario.bn.mean


@dataclass(frozen=True)
class Method:
    name: str
    interval: Callable
    truth: Callable[[Scenario], float]


METHODS = {
    "t-log": Method("t interval, log steps (report)", t_log, geometric_truth),
    "percentile": Method("percentile bootstrap, ratio of means (previous report)",
                         percentile_bootstrap, mean_truth),
    "bca": Method("BCa bootstrap, log steps (scipy)", bca_bootstrap, geometric_truth),
}


def coverage(method: str, scenario: Scenario, seeds: int, experiments: int = EXPERIMENTS,
             seed: int = SIMULATION_SEED, min_seeds: int = 2) -> tuple[float | None, int]:
    """Share of printed intervals that contain the true value, and how many were printed
    (of `experiments`); None when none was printed. `min_seeds`: print from this many
    seeds (the report: MIN_SEEDS)."""
    rng = np.random.default_rng([seed, seeds, SCENARIOS.index(scenario) if scenario in SCENARIOS else 99])
    base, base_reached = simulate(scenario.baseline, scenario, rng, (experiments, seeds))
    mine, mine_reached = simulate(scenario.bn, scenario, rng, (experiments, seeds))
    spec = METHODS[method]
    low, high = spec.interval(base, base_reached, mine, mine_reached, scenario.paired, min_seeds)
    shown = ~np.isnan(low)
    truth = spec.truth(scenario)
    hits = (low[shown] <= truth) & (truth <= high[shown])
    return (float(hits.mean()) if shown.any() else None), int(shown.sum())


def coverage_table(methods: tuple[str, ...] = ("t-log", "percentile"),
                   seed_counts: tuple[int, ...] = SEED_COUNTS,
                   scenarios: tuple[Scenario, ...] = SCENARIOS,
                   experiments: int = EXPERIMENTS) -> list[dict]:
    """One row per method, seed count and scenario: coverage (None: never printed), the
    number of experiments that printed an interval, and whether the report prints one."""
    return [{"method": m, "seeds": n, "scenario": s.name, "report": m == "t-log" and n >= MIN_SEEDS,
             **dict(zip(("coverage", "shown"), coverage(m, s, n, experiments)))}
            for m in methods for n in seed_counts for s in scenarios]


def format_table(rows: list[dict], experiments: int = EXPERIMENTS) -> str:
    """Markdown: a row per method and seed count, a column per scenario; each cell the
    coverage and, in brackets, how many of the experiments printed an interval."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    lines = [f"Coverage of the nominal 95% speedup interval ({experiments:,} simulated "
             "experiments per cell; in brackets: how many had an interval to print, i.e. no "
             f"seed censored or unknown). The report prints the t interval from {MIN_SEEDS} seeds.",
             "", "| method | seeds | report prints | " + " | ".join(scenarios) + " |",
             "|---|---|---|" + "---|" * len(scenarios)]
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        text = "—" if r["coverage"] is None else f"{r['coverage']:.1%} ({r['shown']:,})"
        cells.setdefault((r["method"], r["seeds"], r["report"]), {})[r["scenario"]] = text
    for (method, seeds, printed), by_scenario in cells.items():
        lines.append(f"| {METHODS[method].name} | {seeds} | {'yes' if printed else 'no'} | "
                     + " | ".join(by_scenario.get(s, "") for s in scenarios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnexp.report.coverage",
                                     description="Measure the coverage of the speedup intervals.")
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS)
    parser.add_argument("--bca", action="store_true", help="also scipy's BCa bootstrap (slow)")
    args = parser.parse_args(argv)
    methods = ("t-log", "percentile") + (("bca",) if args.bca else ())
    print(format_table(coverage_table(methods, experiments=args.experiments), args.experiments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
