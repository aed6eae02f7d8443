"""lr_robustness.png: final test accuracy against the learning rate, diverged runs marked."""
from __future__ import annotations

import statistics
from collections import defaultdict

import matplotlib.ticker

from bnexp.report.jobs import Group, Job, swept_keys
from bnexp.report.plotting import colors, finish, plt
from bnexp.report.studies import Report

ORDER = 20  # its place in the report
SUMMARY = "lr_robustness.png: final test accuracy against the learning rate (lr swept)"

PNG = "lr_robustness.png"


def lr_series(groups: list[Group]) -> dict[str, list[tuple[float, Job]]]:
    """(lr, job) pairs per line: configurations equal except for lr and seed."""
    series: dict[str, list[tuple[float, Job]]] = defaultdict(list)
    swept = [k for k in swept_keys(groups) if k != "lr"]
    for group in groups:
        name = ",".join(f"{k}={group.overrides.get(k, '')}" for k in swept) or f"bn={group.variant}"
        for job in group.jobs:
            try:
                series[name].append((float(job.value("lr")), job))
            except (TypeError, ValueError):
                continue  # no lr known for this job
    return series


def plot_lr_line(ax, name: str, points: list[tuple[float, Job]], color) -> None:
    """Mean final accuracy of completed seeds per lr (bar = min..max); diverged seeds as crosses at 0."""
    ok: dict[float, list[float]] = defaultdict(list)
    for lr, job in points:
        if job.final_test_acc is not None:
            ok[lr].append(job.final_test_acc)
    lrs = sorted(ok)
    means = [statistics.fmean(ok[lr]) for lr in lrs]
    err = [[m - min(ok[lr]) for m, lr in zip(means, lrs)], [max(ok[lr]) - m for m, lr in zip(means, lrs)]]
    if lrs:
        ax.errorbar(lrs, means, yerr=err, color=color, marker="o", capsize=3, label=name)
    diverged = sorted({lr for lr, j in points if j.status == "diverged"})
    if diverged:
        ax.scatter(diverged, [0.0] * len(diverged), marker="x", s=60, color=color, zorder=3,
                   label=None if lrs else f"{name} (all diverged)")
    for lr in diverged:
        ax.annotate("diverged", (lr, 0.0), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize="x-small", color=color, rotation=90)


def section(report: Report) -> list[str]:
    """Drawn when lr is swept: final test accuracy vs learning rate (log2 axis), one line
    per configuration of the other swept keys."""
    if "lr" not in report.swept:
        return []
    fig, ax = plt.subplots(figsize=(7, 5))
    series = lr_series(report.groups)
    for (name, points), color in zip(sorted(series.items()), colors(len(series))):
        plot_lr_line(ax, name, points, color)
    ax.set_xscale("log", base=2)
    lrs = sorted({lr for points in series.values() for lr, _ in points})
    if lrs:
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylim(-0.05, 1.0)
    ax.set(title="Final test accuracy vs learning rate (× = diverged)",
           xlabel="learning rate (log2 scale)", ylabel="final test accuracy (completed seeds)")
    finish(fig, [ax], report, PNG)
    return ["## Learning rate", "", f"![lr robustness]({PNG})"]
