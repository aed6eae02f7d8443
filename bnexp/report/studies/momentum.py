"""momentum_eps.png: what BN's momentum and epsilon do (drawn when either is swept).

Momentum only changes the moving averages that evaluation uses, not training: with
momentum 0.99 the averages lag behind the network for the first hundreds of steps, so
the evaluated accuracy trails the training accuracy. Epsilon enters training itself:
x_hat = (x - mean) / sqrt(var + eps), and an eps near the activations' variance damps
the normalization.

(a) evaluated accuracy and (b) training minus evaluated accuracy against steps, one line
per momentum (at the smallest eps); (c) training loss, one line per eps (at the momentum
nearest 0.9). The table: evaluated accuracy early on (at the evaluated steps nearest
10 and 50) and at the end, the training accuracy at the end, and the steps to each report
target; mean over seeds.
"""
from __future__ import annotations

from bnexp.report.jobs import Group
from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.stats import (accuracy_at, accuracy_on, evaluated_steps_near, mean_std,
                                milestone, target_label)
from bnexp.report.studies import Report

ORDER = 30  # its place in the report
SUMMARY = "momentum_eps.png: BN momentum and epsilon (momentum or eps swept)"

PNG = "momentum_eps.png"
EARLY_STEPS = (10, 50)


def setting(group: Group, key: str) -> float | None:
    try:
        return float(group.jobs[0].value(key))
    except (TypeError, ValueError, IndexError):
        return None


def gap_series(job) -> list[tuple[int, float]]:
    """Training accuracy minus evaluated accuracy at every evaluation that has a
    training point at the same step."""
    train = {p.step: p.acc for p in job.record.train_curve} if job.record else {}
    return [(p.step, train[p.step] - p.acc) for p in job.eval_curve if p.step in train]


def section(report: Report) -> list[str]:
    groups = report.groups
    if "momentum" not in report.swept and "eps" not in report.swept:
        return []
    eps_values = sorted({e for g in groups if (e := setting(g, "eps")) is not None})
    momenta = sorted({m for g in groups if (m := setting(g, "momentum")) is not None})
    if not eps_values or not momenta:
        return []
    small_eps = eps_values[0]
    usual = min(momenta, key=lambda m: abs(m - 0.9))
    fig, (acc_ax, gap_ax, loss_ax) = plt.subplots(1, 3, figsize=(16, 4.6))
    by_momentum = [g for g in groups if setting(g, "eps") == small_eps]
    for group, color in zip(sorted(by_momentum, key=lambda g: setting(g, "momentum")),
                            colors(len(by_momentum))):
        label = f"momentum {setting(group, 'momentum'):g}"
        plot_band(acc_ax, [[(p.step, p.acc) for p in j.eval_curve] for j in group.jobs],
                  color, label)
        plot_band(gap_ax, [gap_series(j) for j in group.jobs if j.record], color, label)
    by_eps = [g for g in groups if setting(g, "momentum") == usual]
    for group, color in zip(sorted(by_eps, key=lambda g: setting(g, "eps")), colors(len(by_eps))):
        plot_band(loss_ax, [[(p.step, p.loss) for p in j.record.train_curve]
                            for j in group.jobs if j.record], color, f"eps {setting(group, 'eps'):g}")
    acc_ax.set(title=f"(a) evaluated accuracy (eps {small_eps:g})", xlabel="optimizer steps",
               xscale="log", ylim=(0, 1))
    gap_ax.set(title="(b) training minus evaluated accuracy", xlabel="optimizer steps", xscale="log")
    loss_ax.set(title=f"(c) training loss (momentum {usual:g})", xlabel="optimizer steps")
    finish(fig, (acc_ax, gap_ax, loss_ax), report, PNG)

    early = evaluated_steps_near([j for g in groups for j in g.jobs], EARLY_STEPS)
    head = ["momentum", "eps"] + [f"eval acc, step {s}" for s in early] + [
        "final eval acc", "final train acc"] + [f"steps to {target_label(t)}" for t in report.targets]
    lines = ["## BN momentum and epsilon", "", f"![momentum and eps]({PNG})", "",
             "Mean over seeds (evaluated: validation if the runs held one out, else test):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in sorted(groups, key=lambda g: (setting(g, "momentum") or 0, setting(g, "eps") or 0)):
        jobs = [j for j in group.jobs if j.record]
        last = max((p.step for j in jobs for p in j.eval_curve), default=0)

        def cell(values: list) -> str:
            mean, _ = mean_std([v for v in values if v is not None])
            return "—" if mean is None else f"{mean:.3f}"

        def steps(target: float) -> str:
            hits = [h.point.step for h in (milestone(j, target) for j in jobs) if h]
            mean, _ = mean_std([float(h) for h in hits])
            return f"{mean:.0f} ({len(hits)}/{len(jobs)})" if mean is not None else f"never (0/{len(jobs)})"

        row = [f"{setting(group, 'momentum'):g}", f"{setting(group, 'eps'):g}"]
        row += [cell([accuracy_on(j, s) for j in jobs]) for s in early]
        row += [cell([accuracy_at(j, last) for j in jobs]),
                cell([accuracy_at(j, last, "train") for j in jobs])]
        row += [steps(t) for t in report.targets]
        lines.append("| " + " | ".join(row) + " |")
    return lines
