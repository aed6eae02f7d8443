"""Sweep report: tables and plots built from the `metrics.json` of every job.

    python -m bnexp.report outputs/multirun/2026-11-27_10-00-00_ab12cd

Reads `<sweep dir>/*/metrics.json` from disk (jobs may have run in other
processes or on other machines), groups the jobs by their overrides minus
`seed` and writes into the sweep dir:

- `summary.csv` / `summary.md`: per configuration the seeds, their statuses,
  the final test accuracy and the steps, images and seconds to reach each
  target accuracy, with the speedup in steps over the matching `bn=none` run;
- `convergence.png`: test accuracy and training loss vs optimizer steps;
- `lr_robustness.png` (when `lr` is swept): final test accuracy vs lr per BN variant.

A job whose `metrics.json` is missing or unreadable counts as failed; it never
stops the report.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from omegaconf import OmegaConf  # noqa: E402

from bnexp.metrics import METRICS_FILE, TARGETS  # noqa: E402

SEED_KEY = "seed"
# Not part of a configuration's identity: the seeds are its repetitions, and a
# job continued with resume=auto is still the same job.
IGNORED_KEYS = (SEED_KEY, "resume")
BN_KEYS = ("bn", "bn.variant")
BASELINE = "none"
COUNTED_STATUSES = ("completed", "diverged", "failed", "interrupted", "running")
MEASURES = {"steps": "step", "images": "images", "seconds": "seconds"}  # column -> milestone field
SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"
CONVERGENCE_PNG, LR_PNG = "convergence.png", "lr_robustness.png"


# --------------------------------------------------------------------------- jobs

@dataclass
class Job:
    """One job folder of the sweep and what its metrics.json says (if anything)."""
    name: str
    status: str
    overrides: dict[str, str]
    record: dict | None = None
    error: str | None = None

    @property
    def config(self) -> dict:
        return (self.record or {}).get("config") or {}

    def value(self, key: str) -> str | None:
        """The job's setting `key`: from its config, else from its overrides."""
        if key in self.config:
            return str(self.config[key])
        return self.overrides.get(key)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """["bn=none", "seed=1"] -> {"bn": "none", "seed": "1"} (a leading + or ~ is dropped)."""
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def overrides_from_dirname(name: str) -> dict[str, str]:
    """Best-effort overrides of a job folder named like `bn=none,seed=1`."""
    items: list[str] = []
    for part in name.split(","):
        if "=" in part or not items:
            items.append(part)
        else:
            items[-1] += "," + part  # a comma inside a value, e.g. a list
    return parse_overrides([i for i in items if "=" in i])


def fallback_overrides(job_dir: Path) -> dict[str, str]:
    """Overrides of a job without a usable metrics.json: Hydra's record, else the folder name."""
    hydra_file = job_dir / ".hydra" / "overrides.yaml"
    try:
        return parse_overrides(list(OmegaConf.load(hydra_file)))
    except Exception:
        return overrides_from_dirname(job_dir.name)


def check_record(record) -> None:
    """Raise ValueError unless `record` has the shape RunRecord.to_json() writes."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for key, kind in (("eval_curve", list), ("train_curve", list), ("final", dict),
                      ("config", dict), ("overrides", list), ("to_accuracy", dict)):
        if not isinstance(record.get(key, kind()), kind):
            raise ValueError(f"{key!r} is not a {kind.__name__}")
    for key in ("eval_curve", "train_curve"):
        if not all(isinstance(p, dict) and isinstance(p.get("step"), int) for p in record.get(key, [])):
            raise ValueError(f"{key!r} has a point without an integer step")


def load_job(job_dir: Path) -> Job:
    """Read one job folder; a missing or unreadable metrics.json gives a failed job."""
    path = job_dir / METRICS_FILE
    try:
        record = json.loads(path.read_text())
        check_record(record)
    except (OSError, ValueError) as err:
        reason = "metrics.json missing" if not path.exists() else f"metrics.json unreadable: {err}"
        return Job(job_dir.name, "failed", fallback_overrides(job_dir), None, reason)
    status = record.get("status")
    status = status if status in COUNTED_STATUSES else "failed"
    overrides = parse_overrides(record.get("overrides") or []) or fallback_overrides(job_dir)
    return Job(job_dir.name, status, overrides, record, record.get("error"))


def is_job_dir(path: Path) -> bool:
    """A visible folder where a job ran (Hydra's .hydra folder or a metrics.json)."""
    return (path.is_dir() and not path.name.startswith(".")
            and ((path / METRICS_FILE).exists() or (path / ".hydra").is_dir()))


def find_jobs(sweep_dir: Path) -> list[Job]:
    """All jobs of a sweep, in folder-name order."""
    return [load_job(p) for p in sorted(sweep_dir.iterdir()) if is_job_dir(p)]


# ------------------------------------------------------------------------- groups

@dataclass
class Group:
    """The jobs (seeds) of one configuration: identical overrides except `seed`."""
    overrides: dict[str, str]
    jobs: list[Job] = field(default_factory=list)
    label: str = ""

    @property
    def variant(self) -> str | None:
        """The BN variant of the configuration (config value, else override)."""
        for job in self.jobs:
            for key in ("bn.variant", "bn"):
                if job.value(key) is not None:
                    return job.value(key)
        return None

    def rest_key(self) -> tuple:
        """The configuration without its BN variant: finds the matching baseline."""
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k not in BN_KEYS))


def group_jobs(jobs: list[Job]) -> list[Group]:
    """One group per distinct override set minus seed (and resume), labelled by the swept keys."""
    groups: dict[tuple, Group] = {}
    for job in jobs:
        overrides = {k: v for k, v in job.overrides.items() if k not in IGNORED_KEYS}
        key = tuple(sorted(overrides.items()))
        groups.setdefault(key, Group(overrides)).jobs.append(job)
    swept = swept_keys(list(groups.values()))
    for group in groups.values():
        group.label = ",".join(f"{k}={group.overrides.get(k, '')}" for k in swept) or "default"
    return sorted(groups.values(), key=sort_key)


def swept_keys(groups: list[Group]) -> list[str]:
    """Override keys whose value differs between configurations, in first-seen order."""
    keys = list(dict.fromkeys(k for g in groups for k in g.overrides))
    return [k for k in keys if len({g.overrides.get(k) for g in groups}) > 1]


def common_overrides(groups: list[Group]) -> dict[str, str]:
    """Overrides shared by every configuration (shown once, not per row)."""
    if not groups:
        return {}
    swept = set(swept_keys(groups))
    return {k: v for k, v in groups[0].overrides.items() if k not in swept}


def sort_key(group: Group) -> tuple:
    """Baseline (bn=none) rows first, then by overrides, numbers numerically (lr=0.05 before 0.4)."""
    def num(v: str) -> tuple:
        try:
            return (0, float(v), "")
        except ValueError:
            return (1, 0.0, v)
    return (group.variant != BASELINE,
            tuple((k, num(v)) for k, v in sorted(group.overrides.items())))


# -------------------------------------------------------------------- statistics

def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None when undefined: no or one value)."""
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def milestone(job: Job, target: float) -> dict | None:
    """{step, images, seconds} of the job's first evaluation at or above `target`, or None."""
    record = job.record or {}
    hit = (record.get("to_accuracy") or {}).get(f"{target:.2f}")
    if hit and hit.get("step") is not None:
        return hit
    for point in record.get("eval_curve") or []:  # files without `to_accuracy`
        acc = point.get("acc", point.get("test_acc"))
        if acc is not None and acc >= target:
            return point
    return None


def final_accuracies(group: Group) -> list[float]:
    """Final test accuracy of the completed seeds."""
    return [j.record["final"]["test_acc"] for j in group.jobs
            if j.status == "completed" and (j.record.get("final") or {}).get("test_acc") is not None]


def target_stats(group: Group, target: float) -> dict:
    """Steps/images/seconds to `target`: mean and std over the seeds that reached it."""
    hits = [h for h in (milestone(j, target) for j in group.jobs) if h is not None]
    out: dict = {"reached": len(hits), "never": len(group.jobs) - len(hits)}
    for measure, name in MEASURES.items():
        out[f"{measure}_mean"], out[f"{measure}_std"] = mean_std(
            [float(h[name]) for h in hits if h.get(name) is not None])
    return out


def steps_run(group: Group) -> list[int]:
    """Optimizer steps of the completed seeds (how long a run that never reached a target tried)."""
    return [int(j.record.get("steps") or 0) for j in group.jobs if j.status == "completed"]


def speedup(stats: dict, baseline: Group | None, target: float) -> tuple[float | None, bool]:
    """Baseline steps / these steps to `target`, and whether that is only a lower bound
    (the baseline never reached the target within its steps)."""
    mine = stats["steps_mean"]
    if baseline is None or not mine:
        return None, False
    base = target_stats(baseline, target)
    if base["steps_mean"] is not None:
        return base["steps_mean"] / mine, False
    tried = steps_run(baseline)
    return (min(tried) / mine, True) if tried and min(tried) > 0 else (None, False)


def find_baseline(group: Group, groups: list[Group]) -> Group | None:
    """The `bn=none` configuration with the same other overrides, if the sweep has one."""
    return next((g for g in groups if g.variant == BASELINE and g.rest_key() == group.rest_key()),
                None)


# ------------------------------------------------------------------------ summary

def summary_row(group: Group, groups: list[Group], swept: list[str]) -> dict:
    """One summary.csv row (None = not applicable / undefined)."""
    row: dict = {"config": group.label}
    row.update({k: group.overrides.get(k) for k in swept})
    row["bn_variant"] = group.variant
    row["seeds"] = len(group.jobs)
    for status in COUNTED_STATUSES:
        row[status] = sum(j.status == status for j in group.jobs)
    row["final_test_acc_mean"], row["final_test_acc_std"] = mean_std(final_accuracies(group))
    baseline = find_baseline(group, groups)
    for target in TARGETS:
        t = f"{target:.2f}"
        stats = target_stats(group, target)
        for measure in MEASURES:
            row[f"{measure}_to_{t}_mean"] = stats[f"{measure}_mean"]
            row[f"{measure}_to_{t}_std"] = stats[f"{measure}_std"]
        row[f"reached_{t}"], row[f"never_reached_{t}"] = stats["reached"], stats["never"]
        row[f"speedup_steps_{t}"], row[f"speedup_{t}_is_lower_bound"] = speedup(stats, baseline, target)
    return row


def csv_value(value) -> str:
    """Plain CSV cell: blank for None, floats with 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(c for row in rows for c in row)) or ["config"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_value(row.get(c)) for c in columns])


def fmt(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    """`mean ± std` for Markdown; `—` when there is no value."""
    if mean is None:
        return "—"
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else "")


def fmt_speedup(value: float | None, lower_bound: bool) -> str:
    if value is None:
        return "—"
    return f"≥ {value:.1f}×" if lower_bound else f"{value:.1f}×"


def statuses_text(row: dict) -> str:
    return ", ".join(f"{row[s]} {s}" for s in COUNTED_STATUSES if row[s]) or "—"


def markdown(sweep_dir: Path, rows: list[dict], groups: list[Group], has_lr_plot: bool) -> str:
    """The whole summary.md."""
    jobs = [j for g in groups for j in g.jobs]
    common = common_overrides(groups)
    lines = [f"# Sweep report: `{sweep_dir.name}`", "",
             f"{len(jobs)} jobs in {len(groups)} configurations (grouped by overrides minus `seed`).",
             ""]
    if common:
        lines += ["Common overrides: " + " ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    lines += ["Final test accuracy: mean ± sample std over completed seeds. "
              "Steps/images/seconds to a target: first evaluation at or above it, mean ± std over "
              "the seeds that reached it (seconds = optimizer time, evaluation excluded). "
              "Speedup = steps of the matching `bn=none` configuration / these steps; "
              "`≥` when `bn=none` never reached the target (bound from its run length).", "",
              "## Outcome", "",
              "| config | seeds | statuses | final test acc |", "|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['seeds']} | {statuses_text(r)} | "
              f"{fmt(r['final_test_acc_mean'], r['final_test_acc_std'], 4)} |" for r in rows]
    for target in TARGETS:
        lines += target_table(rows, f"{target:.2f}")
    lines += problem_lines(groups)
    lines += ["", "## Plots", "", f"![convergence]({CONVERGENCE_PNG})"]
    if has_lr_plot:
        lines += ["", f"![lr robustness]({LR_PNG})"]
    return "\n".join(lines) + "\n"


def target_table(rows: list[dict], t: str) -> list[str]:
    """The Markdown table for one target accuracy."""
    lines = ["", f"## Time to test accuracy {t}", "",
             "| config | reached | steps | images | seconds | speedup (steps) vs bn=none |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r[f'reached_{t}']}/{r['seeds']} | "
            f"{fmt(r[f'steps_to_{t}_mean'], r[f'steps_to_{t}_std'], 0)} | "
            f"{fmt(r[f'images_to_{t}_mean'], r[f'images_to_{t}_std'], 0)} | "
            f"{fmt(r[f'seconds_to_{t}_mean'], r[f'seconds_to_{t}_std'], 1)} | "
            f"{fmt_speedup(r[f'speedup_steps_{t}'], r[f'speedup_{t}_is_lower_bound'])} |")
    return lines


def problem_lines(groups: list[Group]) -> list[str]:
    """A list of the jobs that did not complete, with the reason."""
    bad = [j for g in groups for j in g.jobs if j.status != "completed"]
    if not bad:
        return []
    lines = ["", "## Jobs that did not complete", ""]
    for job in bad:
        detail = job.error or (f"diverged at step {job.record.get('diverged_at_step')}"
                               if job.status == "diverged" and job.record else "")
        lines.append(f"- `{job.name}`: {job.status}" + (f" ({detail})" if detail else ""))
    return lines


# -------------------------------------------------------------------------- plots

def curve_band(group: Group, curve: str, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps and the mean, min and max of `key` over the seeds that have a point at that step."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for job in group.jobs:
        for point in (job.record or {}).get(curve) or []:
            value = point.get(key)
            if value is not None and math.isfinite(value):
                by_step[int(point["step"])].append(float(value))
    steps = sorted(by_step)
    return (steps, [statistics.fmean(by_step[s]) for s in steps],
            [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps])


def plot_band(ax, group: Group, curve: str, key: str, color) -> None:
    steps, mean, low, high = curve_band(group, curve, key)
    if not steps:
        return
    n = len(group.jobs)
    ax.plot(steps, mean, color=color, label=f"{group.label} (n={n})",
            marker="." if len(steps) < 30 else None)
    ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)


def write_convergence_plot(path: Path, groups: list[Group]) -> None:
    """Test accuracy and training loss vs steps: mean over seeds, band = min..max."""
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for i, group in enumerate(groups):
        plot_band(acc_ax, group, "eval_curve", "acc", colors(i % colors.N))
        plot_band(loss_ax, group, "train_curve", "loss", colors(i % colors.N))
    for target in TARGETS:
        acc_ax.axhline(target, color="grey", linestyle=":", linewidth=0.8)
    acc_ax.set_ylim(0.0, 1.0)
    acc_ax.set(title="Test accuracy (mean over seeds, band = min..max)",
               xlabel="optimizer steps", ylabel="test accuracy")
    loss_ax.set(title="Training loss (mean over seeds, band = min..max)",
                xlabel="optimizer steps", ylabel="training loss")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lr_series(groups: list[Group]) -> dict[str, list[tuple[float, Job]]]:
    """(lr, job) pairs per line: configurations equal except for lr and seed."""
    series: dict[str, list[tuple[float, Job]]] = defaultdict(list)
    swept = [k for k in swept_keys(groups) if k != "lr"]
    for group in groups:
        name = ",".join(f"{k}={group.overrides.get(k, '')}" for k in swept) or f"bn={group.variant}"
        for job in group.jobs:
            try:
                series[name].append((float(job.value("lr")), job))
            except (TypeError, ValueError):
                continue  # no lr known for this job
    return series


def plot_lr_line(ax, name: str, points: list[tuple[float, Job]], color) -> None:
    """Mean final accuracy of completed seeds per lr (bar = min..max); diverged seeds as crosses at 0."""
    ok: dict[float, list[float]] = defaultdict(list)
    for lr, job in points:
        if job.status == "completed" and (job.record.get("final") or {}).get("test_acc") is not None:
            ok[lr].append(job.record["final"]["test_acc"])
    lrs = sorted(ok)
    means = [statistics.fmean(ok[lr]) for lr in lrs]
    err = [[m - min(ok[lr]) for m, lr in zip(means, lrs)], [max(ok[lr]) - m for m, lr in zip(means, lrs)]]
    if lrs:
        ax.errorbar(lrs, means, yerr=err, color=color, marker="o", capsize=3, label=name)
    diverged = sorted({lr for lr, j in points if j.status == "diverged"})
    if diverged:
        ax.scatter(diverged, [0.0] * len(diverged), marker="x", s=60, color=color, zorder=3,
                   label=None if lrs else f"{name} (all diverged)")
    for lr in diverged:
        ax.annotate("diverged", (lr, 0.0), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize="x-small", color=color, rotation=90)


def write_lr_plot(path: Path, groups: list[Group]) -> None:
    """Final test accuracy vs learning rate (log2 axis), one line per BN variant."""
    fig, ax = plt.subplots(figsize=(7, 5))
    colors = plt.get_cmap("tab10")
    series = lr_series(groups)
    for i, (name, points) in enumerate(sorted(series.items())):
        plot_lr_line(ax, name, points, colors(i % colors.N))
    ax.set_xscale("log", base=2)
    lrs = sorted({lr for points in series.values() for lr, _ in points})
    if lrs:
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylim(-0.05, 1.0)
    ax.set(title="Final test accuracy vs learning rate (× = diverged)",
           xlabel="learning rate (log2 scale)", ylabel="final test accuracy (completed seeds)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------- driver

def write_report(sweep_dir: str | Path) -> Path:
    """(Re)build summary.csv, summary.md and the plots of a sweep; returns summary.md's path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    groups = group_jobs(find_jobs(sweep_dir))
    swept = swept_keys(groups)
    rows = [summary_row(g, groups, swept) for g in groups]
    write_csv(sweep_dir / SUMMARY_CSV, rows)
    write_convergence_plot(sweep_dir / CONVERGENCE_PNG, groups)
    has_lr_plot = "lr" in swept
    if has_lr_plot:
        write_lr_plot(sweep_dir / LR_PNG, groups)
    md_path = sweep_dir / SUMMARY_MD
    md_path.write_text(markdown(sweep_dir, rows, groups, has_lr_plot))
    return md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnexp.report",
                                     description="(Re)build the report of a bnexp sweep directory.")
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/multirun/<stamp>")
    args = parser.parse_args(argv)
    try:
        md_path = write_report(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {md_path} (and {SUMMARY_CSV}, {CONVERGENCE_PNG} in {md_path.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
