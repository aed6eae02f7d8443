"""Each arm's own best learning rate (experiment=lr_grid, lr_grid_momentum): for every
configuration apart from its lr (an arm: bn, init, optimizer), the grid's lr that reaches
the last report target (on the validation split) in the fewest steps -- the median over the
selection seeds, a seed that never reached it counting as never (the arm at that lr is then
out unless every lr is); ties go to the smaller lr. The convergence factorial
(conf/arm/) trains each arm at the lr chosen here, on other seeds, so that no arm is
handicapped by a learning rate that suits the other (Bjorck et al. 2018)."""
from __future__ import annotations

import math
import statistics

from bnexp.report.stats import seed_steps, target_label
from bnexp.report.studies import Report

ORDER = 18
SUMMARY = "lr_grid: each arm's best learning rate, by steps to the last target (lr swept with bn and more)"


def arms(report: Report) -> dict[tuple, dict[float, list]]:
    """arm (overrides but lr) -> lr -> its groups' jobs."""
    out: dict[tuple, dict[float, list]] = {}
    for group in report.groups:
        arm = tuple(sorted((k, v) for k, v in group.overrides.items() if k != "lr"))
        lr = float(group.overrides["lr"])
        out.setdefault(arm, {})[lr] = group.jobs
    return out


def steps_to(jobs: list, target: float) -> float:
    """The median over seeds of the steps to `target` (a seed that never reached it: inf)."""
    steps = [s.steps if s.reached else math.inf for s in (seed_steps(j, target) for j in jobs)]
    return statistics.median(steps) if steps else math.inf


def best_lr(by_lr: dict[float, list], target: float) -> float | None:
    ranked = sorted(by_lr, key=lambda lr: (steps_to(by_lr[lr], target), lr))
    return ranked[0] if ranked and math.isfinite(steps_to(by_lr[ranked[0]], target)) else None


def section(report: Report) -> list[str]:
    if "lr" not in report.swept or len(report.swept) < 2:
        return []
    target = report.targets[-1]
    table = arms(report)
    lrs = sorted({lr for by_lr in table.values() for lr in by_lr})
    lines = [f"## Each arm's best learning rate (steps to validation accuracy {target_label(target)})",
             "", "Median steps over the selection seeds at each lr (— : not every seed reached "
             "it); the chosen lr is the fewest, ties to the smaller.", "",
             "| arm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | chosen |",
             "|---|" + "---|" * (len(lrs) + 1)]
    for arm, by_lr in table.items():
        cells = []
        for lr in lrs:
            steps = steps_to(by_lr[lr], target) if lr in by_lr else math.nan
            cells.append(f"{steps:.0f}" if math.isfinite(steps) else "—")
        chosen = best_lr(by_lr, target)
        name = ",".join(f"{k}={v}" for k, v in arm) or "default"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {chosen if chosen else 'none reached'} |")
    return lines
