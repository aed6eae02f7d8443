"""BN's speedup in every cell of a factorial (experiment=convergence): normalization x
initialization x optimizer, each arm (conf/arm/) at its own best learning rate.

A cell is the runs' initialization (model.init) and optimizer; within it the `bn=none` arm
is the baseline of every other normalization, paired by seed. The arms of a cell differ in
their learning rate too -- each at the lr its own grid chose (experiment=lr_grid) -- so
the speedup is BN's at its best against no BN at its best (Bjorck et al. 2018: much of
BN's advantage is the larger learning rate it allows; a shared lr would hand it to BN or
take it away). The speedups and their intervals are the summary's
(bnexp/report/speedup.py); the summary's own table has none for these runs, its arms
differing in more than `bn`.
"""
from __future__ import annotations

import statistics

from bnexp.report.jobs import BASELINE, Group
from bnexp.report.speedup import order_k, sign_coverage, speedup
from bnexp.report.stats import seed_steps, target_label
from bnexp.report.studies import Report

ORDER = 12
SUMMARY = ("factorial: BN's speedup per initialization x optimizer cell, each arm at its own "
           "learning rate (arm swept)")

ARM_KEY = "arm"


def cell_of(group: Group) -> tuple[str, str]:
    """(initialization, optimizer) of a configuration, from its first run's record."""
    job = group.jobs[0]
    return job.value("model.init") or "?", job.choice("optimizer") or "?"


def cells(groups: list[Group]) -> dict[tuple[str, str], list[Group]]:
    """cell -> its configurations, the `bn=none` one first."""
    out: dict[tuple[str, str], list[Group]] = {}
    for group in groups:
        out.setdefault(cell_of(group), []).append(group)
    for members in out.values():
        members.sort(key=lambda g: g.variant != BASELINE)
    return out


def median_steps(group: Group, target: float) -> str:
    """The median steps to `target` of the seeds that reached it, and how many did."""
    reached = [s.steps for s in (seed_steps(j, target) for j in group.jobs) if s.reached]
    if not reached:
        return f"— (0/{len(group.jobs)})"
    note = "" if len(reached) == len(group.jobs) else f" ({len(reached)}/{len(group.jobs)})"
    return f"{statistics.median(reached):.0f}{note}"


def section(report: Report) -> list[str]:
    if ARM_KEY not in report.swept:
        return []
    targets = report.targets
    head = " | ".join(f"steps to {target_label(t)} | speedup to {target_label(t)} [interval]"
                      for t in targets)
    lines = ["## BN's speedup per cell, each arm at its own learning rate", "",
             "Per cell (initialization x optimizer): median steps to each validation accuracy "
             "(seeds that reached it; none / BN) and the speedup, the median per-seed ratio "
             "steps(none) / steps(BN) with its order-statistics interval (coverage "
             f"{sign_coverage(5, order_k(5)):.2%} with 5 paired seeds, "
             f"{sign_coverage(10, order_k(10)):.1%} with 10). Each arm trains at its own lr.",
             "", f"| init | optimizer | bn | lr | seeds | {head} |",
             "|---|---|---|---|---|" + "---|---|" * len(targets)]
    for (init, optimizer), members in sorted(cells(report.groups).items()):
        base = members[0] if members[0].variant == BASELINE else None
        for group in members:
            row = [init, optimizer, group.variant or "?", group.jobs[0].value("lr") or "?",
                   str(len(group.jobs))]
            for target in targets:
                row.append(median_steps(group, target))
                row.append("baseline" if group is base else speedup(group, base, target).text())
            lines.append("| " + " | ".join(row) + " |")
    return lines
