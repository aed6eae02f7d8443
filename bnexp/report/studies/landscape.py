"""landscape.png (Santurkar et al. 2018, Fig. 4): along the gradient, the variation of the
loss, the change of the gradient and the effective beta-smoothness over training, per
configuration, from the `landscape` monitor. Lines: mean over seeds; bands: min..max;
log scale (the configurations differ by orders of magnitude).

The table: each measure averaged over a run's measurements, mean ± std over seeds, and
its ratio to the matching bn=none configuration (same other overrides, as for the
speedup) -- over the whole run and over its second half. The second half
matters where a configuration spends the first steps on a plateau: LeNet without BN sits
at chance for its first ~200 steps with a near-zero gradient, where every measure along
the gradient is tiny because the gradient is. Santurkar et al.'s finding: all three are
smaller with BN.
"""
from __future__ import annotations

from bnexp.report.plotting import colors, finish, plot_band, plt
from bnexp.report.stats import find_baseline, mean_std, run_average
from bnexp.report.studies import Report

ORDER = 80  # its place in the report
SUMMARY = "landscape.png: loss landscape along the gradient, Santurkar et al. Fig. 4 (landscape monitor)"

PNG = "landscape.png"
MEASURES = {"loss_range": "loss variation", "grad_change": "gradient change (l2)",
            "beta_smoothness": "effective beta-smoothness"}


def measurements(job) -> list[dict]:
    return job.measurements("landscape")


def run_mean(job, key: str, second_half: bool = False) -> float | None:
    return run_average(measurements(job), lambda m: m[key], second_half)


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
    baselines = {g.label: base.label for g in shown
                 if (base := find_baseline(g, groups)) is not None and base in shown}
    lines = ["## Loss landscape along the gradient (Santurkar et al. Fig. 4)", "",
             f"![landscape]({PNG})", ""]
    for second_half, title in ((False, "whole run"), (True, "second half of the run")):
        means = {g.label: {k: mean_std([v for v in (run_mean(j, k, second_half) for j in g.jobs)
                                        if v is not None]) for k in MEASURES} for g in shown}
        lines += [f"Average over the {title}, mean ± std over seeds"
                  + ("; in brackets the ratio to the matching `bn=none`" if baselines else "")
                  + ":", "",
                  "| config | " + " | ".join(MEASURES.values()) + " |",
                  "|---|" + "---|" * len(MEASURES)]
        for group in shown:
            cells = []
            for key in MEASURES:
                mean, std = means[group.label][key]
                text = "—" if mean is None else f"{mean:.3g}" + (f" ± {std:.2g}" if std is not None else "")
                base = baselines.get(group.label)
                ref = means[base][key][0] if base else None
                if mean is not None and ref:
                    text += f" ({mean / ref:.2f}×)"
                cells.append(text)
            lines.append(f"| {group.label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines[:-1]
