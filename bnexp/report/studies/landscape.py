"""landscape.png (Santurkar et al. 2018, Fig. 4): along the gradient, the variation of the
loss, the change of the gradient and the effective beta-smoothness over training, per
configuration, from the `landscape` monitor. Lines: mean over seeds; bands: min..max;
log scale (the configurations differ by orders of magnitude).

The table compares the configurations at matched training phase, not over a common step
window: each run is measured where its own training loss first reaches each level of the
monitor's `at_loss` (bnexp/monitors/base.py). LeNet without BN sits at chance for its first
~200 steps (now and then twice as long) with a near-zero gradient, where every measure along
the gradient is tiny because the gradient is; a window average compares that plateau with a
network that learns. Santurkar et al.'s finding: all three are smaller with BN. The verdict
is the preset's pre-registered claim's (bnexp/report/claims.py).
"""
from __future__ import annotations

from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.claims import phase_table
from bnexp.report.studies import Report

ORDER = 80  # its place in the report
SUMMARY = "landscape.png: loss landscape along the gradient, Santurkar et al. Fig. 4 (landscape monitor)"

PNG = "landscape.png"
MEASURES = {"loss_range": "loss variation", "grad_change": "gradient change (l2)",
            "beta_smoothness": "effective beta-smoothness"}


def measurements(job) -> list[dict]:
    return job.measurements("landscape")


def section(report: Report) -> list[str]:
    groups = report.groups
    shown = [g for g in groups if any(measurements(j) for j in g.jobs)]
    if not shown:
        return []
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(14, 4.4), squeeze=False)
    for group, color in zip(shown, colors(len(shown))):
        for ax, key in zip(axes[0], MEASURES):
            plot_band(ax, [[(m["step"], m[key]) for m in measurements(j)] for j in group.jobs],
                      color, f"{group.label} (n={len(group.jobs)})")
    for ax, title in zip(axes[0], MEASURES.values()):
        ax.set(title=title, xlabel="optimizer steps", yscale="log")
    finish(fig, list(axes[0]), report, PNG)
    return ["## Loss landscape along the gradient (Santurkar et al. Fig. 4)", "",
            f"![landscape]({PNG})", "", *phase_table(shown, "landscape", MEASURES)]
