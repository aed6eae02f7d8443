"""trials.png and the trials table: a search by a Hydra sweeper that optimises what the
jobs return (experiment=lr_search, Optuna), drawn when the sweep folder holds the
sweeper's `optimization_results.yaml`.

Every trial's objective is recomputed from its metrics.json by the function run.py
returned it with (bnexp.record.objective: the validation accuracy, else the training
accuracy; never the test accuracy), so the table says what the search actually chose
by. The final test accuracy is shown beside it for the record, not for choosing.
"""
from __future__ import annotations

import math

from bnexp.record import objective
from bnexp.report.jobs import Job, read_yaml
from bnexp.report.plotting import finish, plt
from bnexp.report.studies import Report
from bnexp.report.summary import fmt

ORDER = 15  # its place in the report
SUMMARY = "trials.png: a sweeper's search (experiment=lr_search), the objective of every trial, best first"

PNG = "trials.png"
RESULTS_FILE = "optimization_results.yaml"  # written by hydra-optuna-sweeper at the end


def trial_number(job: Job, sweep_dir) -> int | None:
    """Hydra's job number of the trial (the order the sweeper ran them in)."""
    try:
        return int(read_yaml(sweep_dir / job.name / ".hydra" / "hydra.yaml")["hydra"]["job"]["num"])
    except (OSError, ValueError, KeyError, TypeError):  # no Hydra record: order unknown
        return None


def as_number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def section(report: Report) -> list[str]:
    try:
        results = read_yaml(report.sweep_dir / RESULTS_FILE)
    except (OSError, ValueError):
        return []
    if not isinstance(results, dict):
        return []
    jobs = [j for g in report.groups for j in g.jobs]
    params = [k for k in report.swept if k != "seed"] or sorted(results.get("best_params", {}))
    rows = []
    for job in jobs:
        value, source = objective(job.record) if job.record else (0.0, "failed")
        rows.append((value, source, trial_number(job, report.sweep_dir), job))
    rows.sort(key=lambda r: (-r[0], r[2] if r[2] is not None else 1 << 30))
    sources = sorted({r[1] for r in rows if r[1] != "failed"})
    objective_name = " / ".join(sources) or "objective"

    numeric = [p for p in params if any(as_number(j.value(p)) is not None for j in jobs)]
    if numeric:
        fig, axes = plt.subplots(1, len(numeric), figsize=(6.5 * len(numeric), 4.5), squeeze=False)
        for ax, key in zip(axes[0], numeric):
            points = [(as_number(r[3].value(key)), r[0], r[2]) for r in rows]
            points = [p for p in points if p[0] is not None]
            dots = ax.scatter([p[0] for p in points], [p[1] for p in points],
                              c=[p[2] or 0 for p in points], cmap="viridis", zorder=3, label="trial")
            fig.colorbar(dots, ax=ax, label="trial (order run)")
            best = points[0] if points else None
            if best:
                ax.scatter([best[0]], [best[1]], s=200, facecolors="none", edgecolors="red",
                           zorder=4, label=f"best: {key}={best[0]:.4g}")
            if all(p[0] > 0 for p in points) and len(points) > 1 and \
                    max(p[0] for p in points) / min(p[0] for p in points) > 10:
                ax.set_xscale("log")
            ax.set(title=f"{len(points)} trials (color = trial order)", xlabel=key,
                   ylabel=objective_name, ylim=(0, 1))
        finish(fig, axes[0], report, PNG)

    lines = ["## Search (the sweeper's trials)", ""]
    if numeric:
        lines += [f"![trials]({PNG})", ""]
    lines += [f"The sweeper maximised the {objective_name} each trial returned "
              "(`bnexp.record.objective`; a trial that failed or diverged returned 0). "
              "The final test accuracy is shown for the record: it was not used to choose.", "",
              f"Best by the sweeper ({RESULTS_FILE}): "
              + ", ".join(f"`{k}={v}`" for k, v in (results.get("best_params") or {}).items())
              + f", value {results.get('best_value')}", "",
              "| rank | trial | " + " | ".join(params) + f" | {objective_name} | status | final test acc |",
              "|---|---|" + "---|" * len(params) + "---|---|---|"]
    for rank, (value, _, number, job) in enumerate(rows, 1):
        settings = " | ".join(str(job.value(p)) for p in params)
        lines.append(f"| {rank} | {'—' if number is None else number} | {settings} | "
                     f"{value:.4f} | {job.status} | {fmt(job.final_test_acc, digits=4)} |")
    return lines
