"""ics.png (Santurkar et al. 2018, Fig. 3): internal covariate shift per layer over
training -- the l2 distance and the cosine between a layer's weight gradient before and
after the layers before it take their step -- per configuration, from the `ics` monitor.
Lines: mean over seeds; bands: min..max. The first layer, with nothing before it, is left
out (its shift is 0 by definition).

The table: the l2 distance and the cosine, averaged over the layers that have layers before
them, at matched training phase (see landscape.py: never over a common step window).
Santurkar et al.'s finding: BN does not reduce this shift (noisy BN even raises it) while it
still trains faster.
"""
from __future__ import annotations

from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.claims import phase_table
from bnexp.report.studies import Report

ORDER = 70  # its place in the report
SUMMARY = "ics.png: internal covariate shift, Santurkar et al. Fig. 3 (ics monitor)"

PNG = "ics.png"


def measurements(job) -> list[dict]:
    return job.measurements("ics")


def section(report: Report) -> list[str]:
    groups = report.groups
    shown = [g for g in groups if any(measurements(j) for j in g.jobs)]
    if not shown:
        return []
    layers = list(dict.fromkeys(layer for g in shown for j in g.jobs for m in measurements(j)
                                for layer, v in m["layers"].items()))
    layers = [layer for layer in layers  # drop layers with nothing before them: always 0
              if any(m["layers"].get(layer, {}).get("l2") for g in shown for j in g.jobs
                     for m in measurements(j))]
    if not layers:
        return []
    fig, axes = plt.subplots(2, len(layers), figsize=(4.2 * len(layers), 6.4), squeeze=False,
                             sharex=True)
    for group, color in zip(shown, colors(len(shown))):
        for col, layer in enumerate(layers):
            for row, key in enumerate(("l2", "cos")):
                series = [[(m["step"], m["layers"][layer][key]) for m in measurements(j)
                           if layer in m["layers"]] for j in group.jobs]
                plot_band(axes[row][col], series, color, f"{group.label} (n={len(group.jobs)})")
    for col, layer in enumerate(layers):
        axes[0][col].set_title(f"{layer}: ||G - G'||", fontsize="small")
        axes[1][col].set_title(f"{layer}: cos(G, G')", fontsize="small")
        axes[1][col].set_xlabel("optimizer steps")
    finish(fig, [ax for row in axes for ax in row], report, PNG)
    return ["## Internal covariate shift (Santurkar et al. Fig. 3)", "", f"![ics]({PNG})", "",
            *phase_table(shown, "ics", {"l2": "||G - G'|| (mean over layers)",
                                        "cos": "cos(G, G') (mean over layers)"})]
