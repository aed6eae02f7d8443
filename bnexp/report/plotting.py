"""What every figure of the report shares: the non-interactive backend, one color per
configuration, a mean line with a min..max band over seeds, saving."""
from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from bnexp.files import replaced_atomically  # noqa: E402
from bnexp.report.stats import band  # noqa: E402

if TYPE_CHECKING:
    from bnexp.report.studies import Report


def colors(count: int):
    cmap = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(count)]


def plot_band(ax, series: list[list[tuple[int, float]]], color, label: str,
              linestyle: str = "-") -> bool:
    """Mean over runs as a line, min..max as a shaded band; False if there was nothing.
    Once some runs have ended (stopped at their targets, diverged) the mean is over those
    still going, which are not a sample of all: from there the line is dashed and thin."""
    steps, mean, low, high = band(series)
    if not steps:
        return False
    last_shared = min(run[-1][0] for run in series if run)  # every run has got this far
    common = sum(step <= last_shared for step in steps)
    marker = "." if len(steps) < 30 else None
    ax.plot(steps[:common], mean[:common], color=color, label=label, linestyle=linestyle,
            marker=marker)
    if common < len(steps):
        ax.plot(steps[common - 1:], mean[common - 1:], color=color, linestyle="--",
                linewidth=0.8, marker=marker)
    ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
    return True


def finish(fig, axes, report: Report, name: str) -> None:
    """Grid and legend on every axis ("no data" where nothing was drawn), then save as
    `name` in the sweep folder -- by rename, so a link planted under that name is replaced,
    not written through -- and note it among the figures report.html may embed."""
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        elif not ax.lines:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    with replaced_atomically(report.sweep_dir / name) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    report.figures.add(name)
