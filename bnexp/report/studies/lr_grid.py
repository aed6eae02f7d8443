"""Each arm's own best learning rate (experiment=lr_grid, lr_grid_momentum): for every
configuration apart from its lr (an arm: bn, init, optimizer), the grid's lr that brings
the median selection seed to the deepest report target (on the validation split) in the
fewest steps. A seed that never reached a target counts as never, so with two selection
seeds an lr counts at a target only if both reached it; an arm none of whose lrs did so at
the last target is judged at the one before (LeNet without BN at the source's N(0, 0.01)
init reaches 0.80 in the grid's 702 steps with one seed of two at best). Ties go to the
smaller lr. The convergence factorial (conf/arm/) trains each arm at the lr chosen here,
on other seeds, so that no arm is handicapped by a learning rate that suits the other
(Bjorck et al. 2018).
"""
from __future__ import annotations

import math
import statistics

from bnexp.report.stats import seed_steps, target_label
from bnexp.report.studies import Report
from bnexp.report.summary import split_name

ORDER = 18
SUMMARY = "lr_grid: each arm's best learning rate, by steps to the last target (lr swept with bn and more)"


def arms(report: Report) -> dict[tuple, dict[float, list]]:
    """arm (the swept overrides but lr) -> lr -> its groups' jobs."""
    out: dict[tuple, dict[float, list]] = {}
    for group in report.groups:
        arm = tuple((k, group.overrides.get(k, "")) for k in report.swept if k != "lr")
        out.setdefault(arm, {})[float(group.overrides["lr"])] = group.jobs
    return out


def steps_to(jobs: list, target: float) -> float:
    """The median over seeds of the steps to `target` (a seed that never reached it: inf)."""
    steps = [s.steps if s.reached else math.inf for s in (seed_steps(j, target) for j in jobs)]
    return statistics.median(steps) if steps else math.inf


def best_lr(by_lr: dict[float, list], targets: tuple[float, ...]) -> tuple[float, float] | None:
    """(lr, the target that decided it): the fewest median steps at the deepest target some
    lr brought the median seed to; None if no lr reached even the first."""
    for target in sorted(targets, reverse=True):
        ranked = sorted((steps_to(jobs, target), lr) for lr, jobs in by_lr.items())
        if ranked and math.isfinite(ranked[0][0]):
            return ranked[0][1], target
    return None


def cell(jobs: list | None, targets: tuple[float, ...]) -> str:
    if jobs is None:
        return ""
    return " / ".join(f"{steps:.0f}" if math.isfinite(steps := steps_to(jobs, t)) else "—"
                      for t in targets)


def section(report: Report) -> list[str]:
    if "lr" not in report.swept or len(report.swept) < 2:
        return []
    targets = report.targets
    table = arms(report)
    lrs = sorted({lr for by_lr in table.values() for lr in by_lr})
    names = " / ".join(target_label(t) for t in targets)
    split = split_name([job for group in report.groups for job in group.jobs])
    # A learning rate chosen on the test set makes that set's accuracy a biased estimate.
    caution = ("" if split == "validation" else " These runs evaluated the test set: to choose "
               "a learning rate, hold out a validation split (data.val_size=5000) instead.")
    lines = [f"## Each arm's best learning rate (steps to {split} accuracy {names})", "",
             f"Median steps over the selection seeds to {names} at each lr (—: not reached by "
             "the median seed). Chosen: the fewest at the deepest target the median seed "
             f"reached with some lr, ties to the smaller lr.{caution}", "",
             "| arm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | chosen |",
             "|---|" + "---|" * (len(lrs) + 1)]
    for arm, by_lr in table.items():
        chosen = best_lr(by_lr, targets)
        name = ",".join(f"{k}={v}" for k, v in arm) or "default"
        pick = (f"lr {chosen[0]:g} (by {target_label(chosen[1])})" if chosen else "none reached "
                f"{target_label(targets[0])}")
        lines.append(f"| {name} | " + " | ".join(cell(by_lr.get(lr), targets) for lr in lrs)
                     + f" | {pick} |")
    return lines
