"""small_batch.png: the normalization family against the batch size (Wu & He 2018, Fig. 1).

Drawn when the batch size and the normalization are both swept (experiment=small_batch):
final validation error after the run's fixed budget of images against the batch size
(log2 axis), one line per normalization option, one panel per model; mean over
seeds with a 95% t interval (n - 1 degrees of freedom: with 2 seeds it is wide, and
says so). The table adds the steps to the report target nearest 0.70.

What the papers claim, for the text: Wu & He (2018) -- BN's error rises quickly once the
batch per device falls below ~16, GroupNorm's stays flat; Ioffe (2017) -- Batch Renorm
recovers much of BN's loss at small batches; Hoffer et al. (2017) -- ghost batches
(normalizing small virtual batches of a large batch) cost little accuracy (they propose
them to regularize large-batch training).
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


def findings(model: str, lines: dict[str, list[Group]]) -> list[str]:
    """Sentences comparing the smallest and the largest batch of each variant."""
    out = []
    for name, members in sorted(lines.items()):
        ends = [(batch_of(g), mean_interval(final_errors(g))[0]) for g in (members[0], members[-1])]
        (small, e_small), (large, e_large) = ends
        if e_small is None or e_large is None or small == large:
            continue
        out.append(f"{name}: {e_large:.3f} at batch {large}, {e_small:.3f} at batch {small} "
                   f"({e_small - e_large:+.3f})")
    return [f"- **{model}**: " + "; ".join(out) + "." if out else f"- **{model}**: no complete pair of batch sizes."]


def end_errors(members: list[Group]) -> tuple[tuple[int, float], tuple[int, float]] | None:
    """((smallest batch, its mean error), (largest batch, its mean error)) of one line,
    or None without two batch sizes that have results."""
    points = [(batch_of(g), mean_interval(final_errors(g))[0]) for g in members]
    points = sorted((b, e) for b, e in points if b is not None and e is not None)
    return (points[0], points[-1]) if len(points) > 1 else None


def claims(model: str, lines: dict[str, list[Group]]) -> str | None:
    """One model's numbers beside each paper's claim: BN's rise in error from the largest to
    the smallest batch, GroupNorm's (Wu & He 2018: flat), the share of BN's rise that Batch
    Renorm recovers at the smallest batch (Ioffe 2017: much of it), and Ghost BN's error at
    the largest batch against BN's there and at the smallest (Hoffer et al. 2017)."""
    ends = {str(members[0].variant): end_errors(members) for members in lines.values() if members}
    bn = ends.get("gluon")
    if bn is None:
        return None
    (small, bn_small), (large, bn_large) = bn
    rise = bn_small - bn_large
    out = [f"BN's error goes from {bn_large:.3f} at batch {large} to {bn_small:.3f} at batch {small} "
           f"({rise:+.3f}; Wu & He: it rises below ~16)"]
    if ends.get("group"):
        (_, gn_small), (_, gn_large) = ends["group"]
        out.append(f"GroupNorm's from {gn_large:.3f} to {gn_small:.3f} ({gn_small - gn_large:+.3f}; "
                   "Wu & He: flat)")
    if ends.get("renorm") and ends["renorm"][0][0] == small:
        renorm_small = ends["renorm"][0][1]
        recovers = (f"it recovers {(bn_small - renorm_small) / rise:.0%} of BN's rise" if rise > 0
                    else "BN did not rise, so there is nothing to recover")
        out.append(f"Batch Renorm is at {renorm_small:.3f} at batch {small}: {recovers} (Ioffe: much of it)")
    if ends.get("ghost_2") and ends["ghost_2"][1][0] == large:
        out.append(f"Ghost BN at batch {large} is at {ends['ghost_2'][1][1]:.3f}, BN there at "
                   f"{bn_large:.3f} (the cost of its small virtual batch's statistics alone)")
    return f"- **{model}**: " + "; ".join(out) + "."


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
                 "Final validation error after the same number of training images (mean ± 95% t "
                 "half width over the seeds), and steps to "
                 f"{target_label(target)} (mean over the seeds that reached it, (reached/seeds)):", ""]
    for model, lines in sorted(by_model.items()):
        lines_out += findings(model, lines)
    lines_out += ["", "Claims to hold these against: Wu & He 2018 (GN's error stays flat as the batch "
                  "shrinks while BN's rises below ~16), Ioffe 2017 (Batch Renorm recovers much of BN's "
                  "small-batch loss), Hoffer et al. 2017 (ghost batches normalize small virtual batches "
                  "of a large one; here they give 2-image statistics with the whole batch's gradient). "
                  "Against them (means over the seeds; the intervals are in the table):", ""]
    lines_out += [line for model, lines in sorted(by_model.items()) if (line := claims(model, lines))]
    lines_out += ["", "| model | normalization | batch | lr | final val error | steps to "
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
