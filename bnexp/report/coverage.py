"""How often a speedup interval contains the true speedup: a simulation with known answers.

    python -m bnexp.report.coverage [--experiments 10000] [--methods median,t,tobit]

For each scenario of bnexp/report/scenarios.py (skewed, bimodal, censored, failing,
unpaired, read on the evaluation grid) and each number of seeds, the same simulated
experiments go through each method's rule -- when it prints an interval and which -- and
the table counts how often a printed interval contains the true value of what the method
estimates, computed from the distributions. A cell gives that coverage and, in
brackets, how many of the experiments printed an interval and, of those with a seed
censored or unknown, how many it printed one for (fitted, for the Tobit model). An
interval open at one end counts as printed (a one-sided confidence bound): it covers
when the truth lies on its closed side. Monte Carlo standard error of a coverage near
95% from 10,000 experiments: 0.22 points, so a cell at 93.75% (the range of 5 seeds)
stands 3 standard errors above the 93% bar. The whole table (3 methods, 9 scenarios,
3 seed counts) took 4 s on this project's 2-core machine, and 8 s while other work
shared its cores.

Methods (all from MIN_SEEDS seeds in the report; measured here from 3 seeds on too,
to show what fewer seeds would cover):
  median  the report's: order statistics of the per-seed log ratios, censored seeds
          counting with their known end (bnexp/report/speedup.py); true value: the
          median of log T_none - log T_bn
  t       the report's until now: a t interval on log steps, paired (Welch's where the
          seeds differ), printed only where no seed is censored or unknown; true value:
          the mean of log T_none - log T_bn (the ratio of geometric means)
  tobit   a normal model fitted to censored per-seed log ratios (bnexp/report/tobit.py);
          the t interval where nothing is censored; true value: as for t
"""
from __future__ import annotations

import argparse
import functools
import math
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bnexp.report import tobit
from bnexp.report.scenarios import (SCENARIOS, Scenario, mean_log_ratio, median_log_ratio,
                                    simulate)
from bnexp.report.speedup import MIN_SEEDS, log_ratio_bounds, median_and_interval

EXPERIMENTS = 10_000
SEED_COUNTS = (3, 5, 10)
SIMULATION_SEED = 20251201  # fixed: the table is reproducible


def median_interval(base, base_reached, mine, mine_reached, paired, min_seeds):
    """The report's interval, on log ratios."""
    low, high = log_ratio_bounds(base, base_reached, mine, mine_reached, paired)
    return median_and_interval(low, high, paired, min_seeds)[2:]


def t_interval(base, base_reached, mine, mine_reached, paired, min_seeds):
    """The report's interval until now: mean log ratio +- t * standard error, paired by
    seed (n - 1 degrees of freedom) or Welch's; only where every seed reached the target."""
    from scipy.stats import t as student_t
    n_base, n_mine = base.shape[-1], mine.shape[-1]
    with np.errstate(invalid="ignore"):
        base_log, mine_log = np.log(base), np.log(mine)
    if paired:
        diff = base_log - mine_log
        centre, se = diff.mean(-1), diff.std(-1, ddof=1) / math.sqrt(n_base)
        df = np.full_like(centre, n_base - 1.0)
    else:
        centre = base_log.mean(-1) - mine_log.mean(-1)
        v_base = base_log.var(-1, ddof=1) / n_base
        v_mine = mine_log.var(-1, ddof=1) / n_mine
        se = np.sqrt(v_base + v_mine)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = (v_base + v_mine) ** 2 / (v_base ** 2 / (n_base - 1) + v_mine ** 2 / (n_mine - 1))
        df = np.where(np.isfinite(df), df, n_base + n_mine - 2.0)  # both spreads zero
    half = student_t.ppf(0.975, df) * se
    shown = base_reached.all(-1) & mine_reached.all(-1) & (min(n_base, n_mine) >= min_seeds)
    return np.where(shown, centre - half, np.nan), np.where(shown, centre + half, np.nan)


def tobit_interval(base, base_reached, mine, mine_reached, paired, min_seeds):
    """The Tobit interval of the mean log ratio (paired seeds only)."""
    if not paired:
        return np.full(len(base), np.nan), np.full(len(base), np.nan)
    low, high = log_ratio_bounds(base, base_reached, mine, mine_reached, paired)
    return tobit.interval(low, high, min_seeds)


@dataclass(frozen=True)
class Method:
    name: str
    interval: Callable   # (base, base_reached, mine, mine_reached, paired, min_seeds)
    #                      -> (low, high) on log ratios, NaN where none is printed
    truth: Callable[[Scenario], float]   # the log of what it estimates


METHODS = {
    "median": Method("order statistics, median per-seed ratio (the report)", median_interval,
                     functools.cache(median_log_ratio)),
    "t": Method("t interval, ratio of geometric means (the report until now)", t_interval,
                functools.cache(mean_log_ratio)),
    "tobit": Method("Tobit fit of censored log ratios, ratio of geometric means", tobit_interval,
                    functools.cache(mean_log_ratio)),
}


def coverage(method: str, scenario: Scenario, seeds: int, experiments: int = EXPERIMENTS,
             seed: int = SIMULATION_SEED, min_seeds: int = MIN_SEEDS) -> dict:
    """One cell: the share of printed intervals that contain the true value (None: none
    printed), how many were printed, how many experiments had a seed censored or unknown
    and for how many of those an interval was printed, and how many printed intervals are
    open at one end. Every method sees the same draws."""
    rng = np.random.default_rng([seed, seeds, zlib.crc32(scenario.name.encode())])
    base, base_reached = simulate(scenario.baseline, scenario, rng, (experiments, seeds))
    mine, mine_reached = simulate(scenario.bn, scenario, rng, (experiments, seeds))
    spec = METHODS[method]
    low, high = spec.interval(base, base_reached, mine, mine_reached, scenario.paired, min_seeds)
    shown = ~np.isnan(low)
    truth = spec.truth(scenario)
    hits = (low[shown] <= truth) & (truth <= high[shown])
    censored = ~(base_reached.all(-1) & mine_reached.all(-1))
    return {"coverage": float(hits.mean()) if shown.any() else None, "shown": int(shown.sum()),
            "censored": int(censored.sum()), "censored_shown": int((censored & shown).sum()),
            "one_sided": int((np.isinf(low[shown]) | np.isinf(high[shown])).sum())}


def coverage_table(methods: tuple[str, ...] = tuple(METHODS),
                   seed_counts: tuple[int, ...] = SEED_COUNTS,
                   scenarios: tuple[Scenario, ...] = SCENARIOS,
                   experiments: int = EXPERIMENTS) -> list[dict]:
    """One row per method, seed count and scenario (intervals from the fewest seed count)."""
    return [{"method": m, "seeds": n, "scenario": s.name,
             **coverage(m, s, n, experiments, min_seeds=min(seed_counts))}
            for m in methods for n in seed_counts for s in scenarios]


def cell(row: dict) -> str:
    """`95.1% (9,980; 1,204 of 1,224 censored, 310 one-sided)`, `—` where none was printed."""
    if row["coverage"] is None:
        return "—"
    censored = (f"; {row['censored_shown']:,} of {row['censored']:,} censored"
                if row["censored"] else "")
    one_sided = f", {row['one_sided']:,} one-sided" if row["one_sided"] else ""
    return f"{row['coverage']:.1%} ({row['shown']:,}{censored}{one_sided})"


def format_table(rows: list[dict], experiments: int = EXPERIMENTS) -> str:
    """Markdown: a table per method, a row per scenario, a column per seed count."""
    se = math.sqrt(0.95 * 0.05 / experiments)
    lines = [f"Coverage of the speedup intervals, {experiments:,} simulated experiments per "
             f"cell (Monte Carlo standard error near 95%: {100 * se:.2f} points). In brackets: how many printed an interval; of those with a seed "
             "censored or unknown, how many printed one; how many printed intervals are open "
             "at one end (a one-sided bound). The report prints intervals from "
             f"{MIN_SEEDS} paired seeds; columns with fewer show what they would cover."]
    counts = sorted({r["seeds"] for r in rows})
    for method in dict.fromkeys(r["method"] for r in rows):
        columns = [f"{n} seeds" + ("" if n >= MIN_SEEDS else " (not printed)") for n in counts]
        lines += ["", f"{METHODS[method].name}:", "", "| scenario | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(counts)]
        by_scenario: dict[str, dict[int, str]] = {}
        for r in rows:
            if r["method"] == method:
                by_scenario.setdefault(r["scenario"], {})[r["seeds"]] = cell(r)
        lines += [f"| {name} | " + " | ".join(cells.get(n, "") for n in counts) + " |"
                  for name, cells in by_scenario.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnexp.report.coverage",
                                     description="Measure the coverage of the speedup intervals.")
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(","))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    start = time.perf_counter()
    table = format_table(coverage_table(methods, experiments=args.experiments), args.experiments)
    print(table + f"\n\n(computed in {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
