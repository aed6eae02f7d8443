"""init.png: what the source tutorial's initialization costs (drawn when bn.init is swept).

The tutorial drew gamma, beta and every bias from normal(0, 0.01) and started the
moving variance at 0 (bn.init=source) instead of gamma 1, beta 0, biases 0, moving
variance 1 (standard). gamma near 0 scales every normalized activation down to almost
nothing; a moving variance of 0 makes evaluation divide by sqrt(eps) until the moving
average has caught up. The figure: evaluated accuracy against steps (log axis), mean over
seeds with a min..max band; the table: accuracy early on (at the steps the runs evaluated
nearest 5, 20, 50 and 100, named in the header), steps to each report target and the
final test accuracy, mean ± std over seeds, for a teacher to show.
"""
from __future__ import annotations

from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.stats import (accuracy_on, evaluated_steps_near, final_accuracies, mean_std,
                                target_label, target_stats)
from bnexp.report.studies import Report
from bnexp.report.summary import fmt

ORDER = 50  # its place in the report
SUMMARY = "init.png: the source tutorial's initialization (bn.init swept)"

PNG = "init.png"
KEY = "bn.init"
EARLY_STEPS = (5, 20, 50, 100)


def section(report: Report) -> list[str]:
    groups = report.groups
    if KEY not in report.swept:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for group, color in zip(groups, colors(len(groups))):
        plot_band(ax, [[(p.step, p.acc) for p in j.eval_curve] for j in group.jobs],
                  color, f"{group.label} (n={len(group.jobs)})")
    ax.set(title="Evaluated accuracy: standard against the source's initialization",
           xlabel="optimizer steps", xscale="log", ylim=(0, 1))
    finish(fig, [ax], report, PNG)
    early = evaluated_steps_near([j for g in groups for j in g.jobs], EARLY_STEPS)
    head = ["config"] + [f"acc, step {s}" for s in early] + [
        f"steps to {target_label(t)}" for t in report.targets] + ["final test acc"]
    lines = ["## The source tutorial's initialization", "", f"![initialization]({PNG})", "",
             "Mean ± std over seeds (accuracy evaluated during training: validation if held "
             "out, else test):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def over_seeds(values, digits=3):
        return fmt(*mean_std([v for v in values if v is not None]), digits)

    for group in groups:
        jobs = [j for j in group.jobs if j.record]
        row = [group.label] + [over_seeds([accuracy_on(j, s) for j in jobs]) for s in early]
        for target in report.targets:
            stats = target_stats(group, target)
            row.append("never" if stats["steps_mean"] is None else
                       fmt(stats["steps_mean"], stats["steps_std"], 0)
                       + (f" ({stats['never']} never)" if stats["never"] else ""))
        row.append(over_seeds(final_accuracies(group), 4))
        lines.append("| " + " | ".join(row) + " |")
    return lines
