"""convergence.png: accuracy and training loss against steps, every configuration."""
from __future__ import annotations

from pathlib import Path

from bnexp.report.jobs import Group
from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.stats import TARGETS, accuracy

PNG = "convergence.png"


def section(sweep_dir: Path, groups: list[Group], swept: list[str]) -> list[str]:
    """Always drawn. Accuracy is on what the runs evaluated during training."""
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5))
    split = "validation" if any(p.get("split") == "val" for g in groups for j in g.jobs
                                for p in (j.record or {}).get("eval_curve") or []) else "test"
    for group, color in zip(groups, colors(len(groups))):
        label = f"{group.label} (n={len(group.jobs)})"
        plot_band(acc_ax, [[(p["step"], accuracy(p)) for p in (j.record or {}).get("eval_curve") or []]
                           for j in group.jobs], color, label)
        plot_band(loss_ax, [[(p["step"], p.get("loss")) for p in (j.record or {}).get("train_curve") or []]
                            for j in group.jobs], color, label)
    for target in TARGETS:
        acc_ax.axhline(target, color="grey", linestyle=":", linewidth=0.8)
    acc_ax.set_ylim(0.0, 1.0)
    acc_ax.set(title=f"{split.capitalize()} accuracy (mean over seeds, band = min..max)",
               xlabel="optimizer steps", ylabel=f"{split} accuracy")
    loss_ax.set(title="Training loss (mean over seeds, band = min..max)",
                xlabel="optimizer steps", ylabel="training loss")
    finish(fig, (acc_ax, loss_ax), sweep_dir / PNG)
    return ["## Convergence", "", f"![convergence]({PNG})"]
