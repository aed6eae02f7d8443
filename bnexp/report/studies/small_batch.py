"""small_batch.png: the normalization family against the batch size (Wu & He 2018, Fig. 1).

Drawn when the batch size and the normalization are both swept (experiment=small_batch):
final validation error after the run's fixed budget of images against the batch size
(log2 axis), one line per normalization option, one panel per model; mean over
seeds with a 95% t interval (n - 1 degrees of freedom: with 2 seeds it is wide, and
says so). The table adds the steps to the report target nearest 0.70.

What the papers claim: Wu & He (2018) -- BN's error rises quickly once the batch per device
falls below ~16, GroupNorm's stays flat; Ioffe (2017) -- Batch Renorm recovers much of BN's
loss at small batches. The preset writes them as claims (report.claims) that the claims
study decides, with intervals, from these runs.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from bnexp.report.studies.batch import KEY, batch_of, lr_of
from bnexp.report.jobs import Group
from bnexp.report.plotting import colors, finish, plt
from bnexp.report.stats import target_label, target_stats
from bnexp.report.studies import Report

ORDER = 42  # its place in the report
SUMMARY = "small_batch.png: validation error against the batch size, one line per normalization (experiment=small_batch)"

PNG = "small_batch.png"
STEPS_TARGET = 0.70  # the table's steps are to the report target nearest this one


def final_errors(group: Group) -> list[float]:
    """1 - the last evaluated accuracy (validation if the run held a split out) per
    completed seed."""
    return [1 - job.eval_curve[-1].acc for job in group.jobs
            if job.status == "completed" and job.eval_curve]


def mean_interval(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and the half width of its 95% t interval (None with fewer than two values)."""
    if not values:
        return None, None
    if len(values) < 2:
        return float(np.mean(values)), None
    from scipy.stats import t
    half = t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return float(np.mean(values)), float(half)


def label(group: Group) -> str:
    return str(group.variant)


def model_of(group: Group) -> str:
    return str(group.jobs[0].choice("model") if group.jobs else None)


def section(report: Report) -> list[str]:
    if KEY not in report.swept or "bn" not in report.swept:
        return []
    by_model: dict[str, dict[str, list[Group]]] = defaultdict(lambda: defaultdict(list))
    for group in report.groups:
        if batch_of(group) is not None:
            by_model[model_of(group)][label(group)].append(group)
    if not by_model:
        return []
    target = min(report.targets, key=lambda t: abs(t - STEPS_TARGET))
    fig, axes = plt.subplots(1, len(by_model), figsize=(6.5 * len(by_model), 4.6), squeeze=False)
    names = sorted({name for lines in by_model.values() for name in lines})
    color_of = dict(zip(names, colors(len(names))))
    for ax, (model, lines) in zip(axes[0], sorted(by_model.items())):
        for name, members in sorted(lines.items()):
            members.sort(key=batch_of)
            points = [(batch_of(g), *mean_interval(final_errors(g))) for g in members]
            points = [(b, m, h or 0.0) for b, m, h in points if m is not None]
            if points:
                xs, ys, hs = zip(*points)
                ax.errorbar(xs, ys, yerr=hs, color=color_of[name], marker="o", capsize=3, label=name)
        ax.set(title=f"model={model}", xlabel="batch size (per device)", ylabel="final validation error",
               ylim=(0, 1))  # an error; a t interval over 2 seeds reaches far past both ends
        ax.set_xscale("log", base=2)
    finish(fig, list(axes[0]), report, PNG)
    lines_out = ["## Small batches: the normalization family", "", f"![small batch]({PNG})", "",
                 "Each paper's claim (Wu & He 2018: GroupNorm's error stays flat as the batch "
                 "shrinks while BN's rises below ~16; Ioffe 2017: Batch Renorm recovers much of BN's "
                 "small-batch loss) is decided by the preset's pre-registered rule in the claims "
                 "section, from the per-seed ratios of these errors.", "",
                 "Final validation error after the same number of training images (mean ± 95% t "
                 "half width over the seeds), and steps to "
                 f"{target_label(target)} (mean over the seeds that reached it, (reached/seeds)):", "",
                 "| model | normalization | batch | lr | final val error | steps to "
                 f"{target_label(target)} |", "|---|---|---|---|---|---|"]
    for model, lines in sorted(by_model.items()):
        for name, members in sorted(lines.items()):
            for group in members:
                mean, half = mean_interval(final_errors(group))
                error = "—" if mean is None else f"{mean:.3f}" + (f" ± {half:.3f}" if half else "")
                stats = target_stats(group, target)
                steps = stats["steps_mean"]
                share = f" ({stats['reached']}/{len(group.jobs)})" if stats["never"] else ""
                lr = lr_of(group)
                lines_out.append(f"| {model} | {name} | {batch_of(group)} | "
                                 f"{'—' if lr is None else f'{lr:g}'} | {error} | "
                                 f"{'never' if steps is None else f'{steps:.0f}'}{share} |")
    return lines_out
