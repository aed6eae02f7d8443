"""The report's tables: summary.csv (one row per configuration) and summary.md."""
from __future__ import annotations

import csv
from pathlib import Path

from bnexp.report.jobs import COUNTED_STATUSES, Group, Job, common_overrides
from bnexp.report.stats import (MEASURES, TARGETS, final_accuracies, find_baseline, mean_std,
                                speedup, target_stats)


def summary_row(group: Group, groups: list[Group], swept: list[str]) -> dict:
    """One summary.csv row (None = not applicable / undefined)."""
    row: dict = {"config": group.label}
    row.update({k: group.overrides.get(k) for k in swept})
    row["bn_variant"] = group.variant
    row["seeds"] = len(group.jobs)
    for status in COUNTED_STATUSES:
        row[status] = sum(j.status == status for j in group.jobs)
    row["final_test_acc_mean"], row["final_test_acc_std"] = mean_std(final_accuracies(group))
    row["eval_share"] = mean_std([j.record["eval_seconds"] / (j.record["eval_seconds"] + j.record["train_seconds"])
                                  for j in group.jobs if (j.record or {}).get("eval_seconds")
                                  and j.record.get("train_seconds")])[0]
    baseline = find_baseline(group, groups)
    for target in TARGETS:
        t = f"{target:.2f}"
        stats = target_stats(group, target)
        for measure in MEASURES:
            row[f"{measure}_to_{t}_mean"] = stats[f"{measure}_mean"]
            row[f"{measure}_to_{t}_std"] = stats[f"{measure}_std"]
        row[f"reached_{t}"], row[f"never_reached_{t}"] = stats["reached"], stats["never"]
        row[f"resolution_{t}"] = stats["resolution"]
        s = speedup(group, baseline, target)
        row[f"speedup_steps_{t}"], row[f"speedup_{t}_bound"] = s["value"], s["bound"] or ""
        row[f"speedup_{t}_ci_low"], row[f"speedup_{t}_ci_high"] = s["ci"] or (None, None)
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


def fmt_speedup(value: float | None, bound: str, low: float | None = None,
                high: float | None = None) -> str:
    if value is None:
        return "—"
    if bound:
        return f"{'≥' if bound == 'lower' else '≤'} {value:.1f}×"
    return f"{value:.1f}×" + (f" [{low:.1f}, {high:.1f}]" if low is not None else "")


def statuses_text(row: dict) -> str:
    return ", ".join(f"{row[s]} {s}" for s in COUNTED_STATUSES if row[s]) or "—"


def markdown(sweep_dir: Path, rows: list[dict], groups: list[Group],
             sections: list[list[str]]) -> str:
    """The whole summary.md."""
    jobs = [j for g in groups for j in g.jobs]
    common = common_overrides(groups)
    lines = [f"# Sweep report: `{sweep_dir.name}`", "",
             f"{len(jobs)} jobs in {len(groups)} configurations (grouped by overrides minus `seed`).",
             ""]
    if common:
        lines += ["Common overrides: " + " ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    lines += ["Final test accuracy: mean ± sample std over completed seeds. "
              f"Steps/images/seconds to a target: first evaluation ({split_name(jobs)}) at or "
              "above it, mean ± std over the seeds that reached it (seconds = optimizer time, "
              "evaluation excluded); resolution = the largest gap to the evaluation before, as a "
              "share of the step (the crossing lies in that gap). Speedup = mean steps of the "
              "matching `bn=none` configuration / mean steps of this one, with a 95% bootstrap "
              "interval over seeds (paired by seed where both ran the same seeds; none with one "
              "seed). A seed that ran to its end without reaching the target counts with its run "
              "length (it needed more): the speedup is then a bound, `≥` when `bn=none` has "
              "such seeds, `≤` when this configuration has, and has no interval. "
              "Evaluation time: its share of training plus evaluation time.",
              "", "## Outcome", "",
              "| config | seeds | statuses | final test acc | evaluation time |", "|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['seeds']} | {statuses_text(r)} | "
              f"{fmt(r['final_test_acc_mean'], r['final_test_acc_std'], 4)} | "
              f"{'—' if r['eval_share'] is None else format(r['eval_share'], '.0%')} |" for r in rows]
    split = split_name(jobs)
    for target in TARGETS:
        lines += target_table(rows, f"{target:.2f}", split)
    lines += problem_lines(groups)
    for section in sections:
        lines += [""] + section
    return "\n".join(lines) + "\n"


def target_table(rows: list[dict], t: str, split: str) -> list[str]:
    """The Markdown table for one target accuracy."""
    lines = ["", f"## Time to {split} accuracy {t}", "",
             "| config | reached | steps | images | seconds | resolution | speedup (steps) vs bn=none [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        resolution = r[f"resolution_{t}"]
        lines.append(
            f"| {r['config']} | {r[f'reached_{t}']}/{r['seeds']} | "
            f"{fmt(r[f'steps_to_{t}_mean'], r[f'steps_to_{t}_std'], 0)} | "
            f"{fmt(r[f'images_to_{t}_mean'], r[f'images_to_{t}_std'], 0)} | "
            f"{fmt(r[f'seconds_to_{t}_mean'], r[f'seconds_to_{t}_std'], 1)} | "
            f"{f'{resolution:.0%}' if resolution is not None else '—'} | "
            f"{fmt_speedup(r[f'speedup_steps_{t}'], r[f'speedup_{t}_bound'], r[f'speedup_{t}_ci_low'], r[f'speedup_{t}_ci_high'])} |")
    return lines


def split_name(jobs: list[Job]) -> str:
    """What the runs evaluated during training: "validation" if any used a validation split."""
    splits = {p.get("split", "test") for j in jobs for p in (j.record or {}).get("eval_curve") or []}
    return "validation" if "val" in splits else "test"


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
