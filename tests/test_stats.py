"""The report's speedup statistics against known answers (bnexp/report/stats.py) and the
coverage of its interval, measured by simulation (bnexp/report/coverage.py).

Coverage: many simulated experiments whose true speedup is known; wherever the report
prints a 95% interval it must contain the truth 93-97% of the time (2,000 experiments:
one standard error is about 0.5 points, so a method that truly covers 95% stays inside).
"""
import math

import numpy as np
import pytest

from bnexp.report import coverage
from bnexp.report.stats import (ESTIMATE, LOWER, MIN_SEEDS, UNDETERMINED, UPPER,
                                log_ratio_interval, speedup_arrays)

T_975_2DF = 4.302652729911275  # Student t, 97.5th percentile, 2 degrees of freedom (tables)
BAND = (0.93, 0.97)


def test_paired_interval_known_answer():
    # per-seed log ratios 1, 2, 3: mean 2, sd 1, n 3
    base_log = np.array([[1.0, 2.0, 3.0]]) + 5.0
    mine_log = np.full((1, 3), 5.0)
    low, high = log_ratio_interval(base_log, mine_log, paired=True)
    half = T_975_2DF / math.sqrt(3)
    assert low[0] == pytest.approx(math.exp(2 - half)) and high[0] == pytest.approx(math.exp(2 + half))


def test_speedup_kinds_from_censoring():
    steps = np.array([[400.0, 500.0, 450.0, 420.0, 480.0]])
    fast = steps / 4
    everyone = np.ones_like(steps, dtype=bool)
    one_short = everyone.copy()
    one_short[0, 2] = False
    unknown = fast.copy()
    unknown[0, 1] = np.nan

    value, kind, low, high = speedup_arrays(steps, everyone, fast, everyone, paired=True)
    assert kind[0] == ESTIMATE and value[0] == pytest.approx(4.0)
    assert low[0] == pytest.approx(4.0) and high[0] == pytest.approx(4.0)  # every ratio is 4
    value, kind, low, _ = speedup_arrays(steps, one_short, fast, everyone, paired=True)
    assert kind[0] == LOWER and value[0] == pytest.approx(4.0) and np.isnan(low[0])
    _, kind, low, _ = speedup_arrays(steps, everyone, fast, one_short, paired=True)
    assert kind[0] == UPPER and np.isnan(low[0])
    value, kind, _, _ = speedup_arrays(steps, one_short, fast, one_short, paired=True)
    assert kind[0] == UNDETERMINED and np.isnan(value[0])
    value, kind, _, _ = speedup_arrays(steps, everyone, unknown, ~np.isnan(unknown), paired=True)
    assert kind[0] == UNDETERMINED and np.isnan(value[0])
    # fewer seeds than MIN_SEEDS: a value, no interval
    few = steps[:, :MIN_SEEDS - 1]
    value, kind, low, _ = speedup_arrays(few, everyone[:, :MIN_SEEDS - 1], few / 4,
                                         everyone[:, :MIN_SEEDS - 1], paired=True)
    assert kind[0] == ESTIMATE and value[0] == pytest.approx(4.0) and np.isnan(low[0])


def test_true_speedups_known_answers():
    rng = np.random.default_rng(0)
    gamma = coverage.Gamma(3, 600)
    assert gamma.mean_log == pytest.approx(np.log(gamma.draw(rng, (1_000_000,))).mean(), abs=2e-3)
    tight = coverage.SCENARIOS[0]
    assert coverage.geometric_truth(tight) == pytest.approx(516 / 43)
    assert coverage.mean_truth(tight) == pytest.approx(516 / 43)  # equal spreads: same ratio
    grid = next(s for s in coverage.SCENARIOS if s.eval_every)
    read = grid.grid()[np.searchsorted(grid.grid(), grid.bn.draw(rng, (1_000_000,)))]
    assert coverage.mean_log_read(grid.bn, grid) == pytest.approx(np.log(read).mean(), abs=2e-3)


@pytest.mark.parametrize("scenario", coverage.SCENARIOS, ids=lambda s: s.name)
def test_report_interval_covers_95_percent_wherever_it_is_printed(scenario):
    for seeds in coverage.SEED_COUNTS:
        share, shown = coverage.coverage("t-log", scenario, seeds, min_seeds=MIN_SEEDS)
        if seeds < MIN_SEEDS:
            assert shown == 0  # the report prints no interval there
            continue
        assert shown >= 500, f"{scenario.name}, {seeds} seeds: too few intervals to judge"
        assert BAND[0] <= share <= BAND[1], f"{scenario.name}, {seeds} seeds: {share:.1%}"


def test_fewer_seeds_would_not_cover():
    """MIN_SEEDS is not too cautious: with fewer seeds the t interval leaves the band in
    some scenario (ties on the evaluation grid)."""
    for seeds in (n for n in coverage.SEED_COUNTS if n < MIN_SEEDS):
        shares = [coverage.coverage("t-log", s, seeds)[0] for s in coverage.SCENARIOS]
        assert min(shares) < BAND[0], f"{seeds} seeds: {shares}"


def test_the_coverage_test_catches_a_too_narrow_interval():
    """The previous report's percentile bootstrap, measured the same way, under-covers."""
    share, shown = coverage.coverage("percentile", coverage.SCENARIOS[0], 5, experiments=1000)
    assert shown == 1000 and share < BAND[0]


def test_coverage_table_prints_every_cell():
    rows = coverage.coverage_table(("t-log",), (3, 5), coverage.SCENARIOS[:2], experiments=200)
    assert len(rows) == 2 * 2
    text = coverage.format_table(rows, 200)
    assert text.count("| t interval, log steps (report) |") == 2
    assert "| 5 | yes |" in text and "| 3 | no |" in text
