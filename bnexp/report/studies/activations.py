"""activations.png (Ioffe & Szegedy 2015, Fig. 1b-c): the 15th, 50th and 85th percentiles of
the input to a hidden activation over training, per configuration and layer, from the
`activations` monitor. The drawn channel is the monitor's "typical" one (the first it
kept); lines are the mean over seeds, bands the min..max.

The first table gives each layer's drift: how far the median wanders over training
(max - min of p50) in units of the distribution's average width (p85 - p15), averaged
over every kept channel, mean ± std over seeds, and that width beside it: a drift is only
as meaningful as the width it is divided by (at N(0, 0.01) weights the inputs start a few
hundredths wide). The second compares the runs at matched training phase
(bnexp/report/claims.py: distribution_change), where the monitor measured at `at_loss`.
Ioffe & Szegedy's claim: with BN the distribution stays put (small drift); without, it moves.
"""
from __future__ import annotations

import statistics

from bnexp.report.claims import phase_table
from bnexp.report.jobs import Group
from bnexp.report.plotting import finish, plot_band, plt
from bnexp.report.stats import mean_std
from bnexp.report.studies import Report
from bnexp.report.summary import fmt

ORDER = 60  # its place in the report
SUMMARY = "activations.png: activation percentiles over training, Ioffe & Szegedy Fig. 1 (activations monitor)"

PNG = "activations.png"
SHADES = {"p15": "tab:blue", "p50": "black", "p85": "tab:red"}


def measurements(job) -> list[dict]:
    return job.measurements("activations")


def layers_of(groups: list[Group]) -> list[str]:
    return list(dict.fromkeys(layer for g in groups for j in g.jobs for m in measurements(j)
                              for layer in m["layers"]))


def drift(job, layer: str, key: str = "drift") -> float | None:
    """Mean over kept channels of (max - min of p50) / mean (p85 - p15) (key "drift"), or of
    that mean width (key "width")."""
    series = [m["layers"][layer] for m in measurements(job) if layer in m["layers"]]
    if len(series) < 2:
        return None
    values = []
    for unit in series[0]:
        p50 = [s[unit]["p50"] for s in series if unit in s]
        width = statistics.fmean(s[unit]["p85"] - s[unit]["p15"] for s in series if unit in s)
        if width > 0:
            values.append(width if key == "width" else (max(p50) - min(p50)) / width)
    return statistics.fmean(values) if values else None


def section(report: Report) -> list[str]:
    groups = report.groups
    layers = layers_of(groups)
    shown = [g for g in groups if any(measurements(j) for j in g.jobs)]
    if not layers or not shown:
        return []
    fig, axes = plt.subplots(len(layers), len(shown), figsize=(4.2 * len(shown), 3.2 * len(layers)),
                             squeeze=False, sharex=True)
    for col, group in enumerate(shown):
        for row, layer in enumerate(layers):
            ax = axes[row][col]
            for q, color in SHADES.items():
                series = []
                for job in group.jobs:
                    points = [(m["step"], next(iter(m["layers"][layer].values()))[q])
                              for m in measurements(job) if m["layers"].get(layer)]
                    series.append(points)
                plot_band(ax, series, color, q)
            ax.set_title(f"{group.label}: input to {layer}'s activation", fontsize="small")
            if row == len(layers) - 1:
                ax.set_xlabel("optimizer steps")
    finish(fig, [ax for row in axes for ax in row], report, PNG)
    lines = ["## Activation distributions (Ioffe & Szegedy Fig. 1)", "",
             f"![activation percentiles]({PNG})", "",
             "Drift of the median over training, in units of the distribution's width "
             "(p85 − p15), and that width (mean over the run); mean ± std over seeds:", "",
             "| config | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for group in shown:
        cells = []
        for layer in layers:
            drifts, widths = ([d for d in (drift(j, layer, key) for j in group.jobs) if d is not None]
                              for key in ("drift", "width"))
            cells.append(f"{fmt(*mean_std(drifts), 2)} (width {fmt(*mean_std(widths), 3)})")
        lines.append(f"| {group.label} | " + " | ".join(cells) + " |")
    return lines + ["", *phase_table(shown, "activations", {
        "width": "width p85 − p15", "shift": "|Δ median| since step 0", "drift": "drift (shift / width)"})]


def drifts_by_group(groups: list[Group]) -> dict[str, dict[str, list[float]]]:
    """{config: {layer: [drift per seed]}} (for tests and the README)."""
    return {g.label: {layer: [d for d in (drift(j, layer) for j in g.jobs) if d is not None]
                      for layer in layers_of(groups)} for g in groups}
