"""convergence.png: accuracy and training loss against steps, every configuration."""
from __future__ import annotations

from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.studies import Report
from bnexp.report.summary import split_name

ORDER = 10  # its place in the report
SUMMARY = "convergence.png: accuracy and training loss against steps (always)"

PNG = "convergence.png"


def section(report: Report) -> list[str]:
    """Always drawn. Accuracy is on what the runs evaluated during training."""
    groups = report.groups
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5))
    split = split_name([j for g in groups for j in g.jobs])
    for group, color in zip(groups, colors(len(groups))):
        label = f"{group.label} (n={len(group.jobs)})"
        plot_band(acc_ax, [[(p.step, p.acc) for p in j.eval_curve] for j in group.jobs],
                  color, label)
        plot_band(loss_ax, [[(p.step, p.loss) for p in j.record.train_curve]
                            for j in group.jobs if j.record], color, label)
    for target in report.targets:
        acc_ax.axhline(target, color="grey", linestyle=":", linewidth=0.8)
    acc_ax.set_ylim(0.0, 1.0)
    acc_ax.set(title=f"{split.capitalize()} accuracy (mean over seeds, band = min..max;\n"
                     "dashed: over the runs still going)",
               xlabel="optimizer steps", ylabel=f"{split} accuracy")
    loss_ax.set(title="Training loss (mean over seeds, band = min..max)",
                xlabel="optimizer steps", ylabel="training loss")
    finish(fig, (acc_ax, loss_ax), report, PNG)
    return ["## Convergence", "", f"![convergence]({PNG})"]
