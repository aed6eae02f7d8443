"""batch_size.png: BN against the batch size (drawn when trainer.batch_size is swept).

Wu & He (2018, "Group Normalization", Fig. 1) report BN's error rising quickly once the
batch per device falls below about 16: the batch statistics get noisy. Here each batch
size is measured on three axes -- optimizer steps, training images and seconds of
training to a target accuracy (the report target nearest 0.80) -- one line per BN
variant, log2 batch axis; a run that never reached the target is drawn as an open circle
at the top. The table: the learning rate used, steps / images / seconds to each report
target, final accuracy; mean over seeds.
"""
from __future__ import annotations

from collections import defaultdict

from bnexp.config import scaled_lr
from bnexp.report.jobs import Group
from bnexp.report.plotting import colors, finish, plt
from bnexp.report.stats import final_accuracies, mean_std, target_label, target_stats
from bnexp.report.studies import Report

ORDER = 40  # its place in the report
SUMMARY = "batch_size.png: BN against the batch size (trainer.batch_size swept)"

PNG = "batch_size.png"
KEY = "trainer.batch_size"
FIGURE_TARGET = 0.80  # the figure shows the report target nearest this one
AXES = {"steps": "optimizer steps", "images": "training images", "seconds": "training seconds"}


def batch_of(group: Group) -> int | None:
    try:
        return int(group.jobs[0].value(KEY))
    except (TypeError, ValueError, IndexError):
        return None


def lr_of(group: Group) -> float | None:
    """The learning rate SGD used (bnexp.config.scaled_lr of the job's recorded config)."""
    config = group.jobs[0].config if group.jobs else {}
    try:
        scaling = config.get("trainer.lr_scaling", "none")
        reference = int(config["trainer.lr_reference_batch"]) if scaling == "linear" else 1
        return scaled_lr(float(config["lr"]), scaling, int(config[KEY]), reference)
    except (KeyError, TypeError, ValueError):
        return None


def section(report: Report) -> list[str]:
    if KEY not in report.swept:
        return []
    target = min(report.targets, key=lambda t: abs(t - FIGURE_TARGET))
    lines_by_variant: dict[str, list[Group]] = defaultdict(list)
    for group in report.groups:
        if batch_of(group) is not None:
            lines_by_variant[str(group.variant)].append(group)
    fig, axes = plt.subplots(1, len(AXES), figsize=(15, 4.4))
    for (variant, members), color in zip(sorted(lines_by_variant.items()), colors(len(lines_by_variant))):
        members.sort(key=batch_of)
        for ax, measure in zip(axes, AXES):
            reached = [(batch_of(g), target_stats(g, target)[f"{measure}_mean"]) for g in members]
            xs = [b for b, v in reached if v is not None]
            ax.plot(xs, [v for _, v in reached if v is not None], color=color, marker="o",
                    label=f"bn={variant}")
            never = [b for b, v in reached if v is None]
            if never:
                top = max([v for _, v in reached if v is not None] or [1.0])
                ax.scatter(never, [top * 1.5] * len(never), facecolors="none", edgecolors=color,
                           s=60, label=f"bn={variant}: never")
    for ax, (measure, title) in zip(axes, AXES.items()):
        ax.set(title=f"{title} to {target_label(target)}", xlabel="batch size", xscale="log",
               yscale="log")
        ax.set_xscale("log", base=2)
    finish(fig, list(axes), report, PNG)
    head = ["bn", "batch", "lr"] + [f"{measure} to {target_label(t)}" for t in report.targets
                                    for measure in ("steps", "images", "seconds")] + ["final test acc"]
    lines = ["## Batch size", "", f"![batch size]({PNG})", "",
             "Mean over the seeds that reached the target, with (reached/seeds) where some "
             "did not (summary.md's target tables say which and why); `never` = no seed "
             "reached it within the run's images:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, members in sorted(lines_by_variant.items()):
        for group in members:
            lr = lr_of(group)
            cells = [variant, str(batch_of(group)), "—" if lr is None else f"{lr:g}"]
            for each in report.targets:
                stats = target_stats(group, each)
                for measure, digits in (("steps", 0), ("images", 0), ("seconds", 1)):
                    value = stats[f"{measure}_mean"]
                    share = f" ({stats['reached']}/{len(group.jobs)})" if stats["never"] else ""
                    cells.append("never" if value is None else f"{value:.{digits}f}{share}")
            final, _ = mean_std(final_accuracies(group))
            cells.append("—" if final is None else f"{final:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines
