"""The report's tables: summary.csv (one row per configuration) and summary.md."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

from bnexp.files import replaced_atomically
from bnexp.report.jobs import COUNTED_STATUSES, Group, Job, common_overrides
from bnexp.report.speedup import (INTERVAL_METHOD, MIN_SEEDS, Speedup, order_k, sign_coverage,
                                  speedup)
from bnexp.report.stats import (MEASURES, final_accuracies, find_baseline, mean_std,
                                target_label, target_stats)

if TYPE_CHECKING:
    from bnexp.report.studies import Report


def eval_share(job: Job) -> float | None:
    """The share of evaluation in a job's training plus evaluation time."""
    record = job.record
    if not record or not record.eval_seconds or not record.train_seconds:
        return None
    return record.eval_seconds / (record.eval_seconds + record.train_seconds)


def missed_text(missed) -> str:
    """"seed 2: diverged at step 80; seed 3: interrupted at step 100" (summary.csv)."""
    return "; ".join(f"seed {s.seed}: {s.why}" for s in missed)


def summary_row(group: Group, groups: list[Group], swept: list[str],
                targets: tuple[float, ...]) -> dict:
    """One summary.csv row (None = not applicable / undefined)."""
    row: dict = {"config": group.label}
    row.update({k: group.overrides.get(k) for k in swept})
    row["bn_variant"] = group.variant
    row["seeds"] = len(group.jobs)
    for status in COUNTED_STATUSES:
        row[status] = sum(j.status == status for j in group.jobs)
    row["stopped_at_targets"] = sum(bool(j.record and j.record.stopped_early) for j in group.jobs)
    row["steps_run_mean"], row["steps_run_std"] = mean_std([j.record.steps for j in group.jobs
                                                            if j.record and j.record.steps])
    row["final_test_acc_mean"], row["final_test_acc_std"] = mean_std(final_accuracies(group))
    row["eval_share"] = mean_std([s for s in map(eval_share, group.jobs) if s is not None])[0]
    baseline = find_baseline(group, groups)
    for target in targets:
        t = target_label(target)
        stats = target_stats(group, target)
        for measure in MEASURES:
            row[f"{measure}_to_{t}_mean"] = stats[f"{measure}_mean"]
            row[f"{measure}_to_{t}_std"] = stats[f"{measure}_std"]
        row[f"reached_{t}"], row[f"never_reached_{t}"] = stats["reached"], stats["never"]
        row[f"not_reached_{t}_seeds"] = missed_text(stats["missed"])
        row[f"resolution_{t}"] = stats["resolution"]
        s = speedup(group, baseline, target)
        row[f"speedup_steps_{t}"], row[f"speedup_{t}_bound"] = s.value, s.bound
        row[f"speedup_{t}_sample_low"], row[f"speedup_{t}_sample_high"] = s.sample or (None, None)
        row[f"speedup_{t}_ci_low"], row[f"speedup_{t}_ci_high"] = s.ci or (None, None)
        row[f"speedup_{t}_coverage"], row[f"speedup_{t}_note"] = s.coverage, s.note
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
    with replaced_atomically(path) as tmp, open(tmp, "w", newline="") as f:
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


def fmt_speedup(row: dict, t: str) -> str:
    """The speedup cell of target `t` (bnexp.report.speedup.Speedup.text)."""
    sample, ci = (row[f"speedup_{t}_sample_low"], row[f"speedup_{t}_sample_high"]), (
        row[f"speedup_{t}_ci_low"], row[f"speedup_{t}_ci_high"])
    return Speedup(row[f"speedup_steps_{t}"], row[f"speedup_{t}_bound"],
                   None if sample[0] is None else sample, None if ci[0] is None else ci,
                   row[f"speedup_{t}_coverage"], row[f"speedup_{t}_note"] or "").text()


def statuses_text(row: dict) -> str:
    text = ", ".join(f"{row[s]} {s}" for s in COUNTED_STATUSES if row[s]) or "—"
    if row.get("stopped_at_targets"):
        text += f" ({row['stopped_at_targets']} stopped at the targets)"
    return text


def markdown(report: Report, rows: list[dict], sections: list[list[str]]) -> str:
    """The whole summary.md."""
    groups = report.groups
    jobs = [j for g in groups for j in g.jobs]
    common = common_overrides(groups)
    split = split_name(jobs)
    lines = [f"# Sweep report: `{report.sweep_dir.name}`", "",
             f"{len(jobs)} jobs in {len(groups)} configurations (grouped by overrides minus `seed`).",
             ""]
    if common:
        lines += ["Common overrides: " + " ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    lines += ["Final test accuracy: mean ± sample std over completed seeds, at the step where each "
              "run ended (steps run; a run with `trainer.stop_at_targets` ends at the first "
              "evaluation that reached every target, so its final accuracy is not comparable "
              "with a run's that trained its full length). "
              f"Steps/images/seconds to a target: first evaluation ({split}) at or "
              "above it, mean ± std over the seeds that reached it (seconds = optimizer time, "
              "evaluation excluded); resolution = the largest gap to the evaluation before, as a "
              "share of the step (the crossing lies in that gap). Evaluation time: its share of "
              "training plus evaluation time.",
              "", speedup_text(sorted({len(g.jobs) for g in groups})),
              "", "## Outcome", "",
              "| config | seeds | statuses | steps run | final test acc | evaluation time |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['seeds']} | {statuses_text(r)} | "
              f"{fmt(r['steps_run_mean'], r['steps_run_std'], 0)} | "
              f"{fmt(r['final_test_acc_mean'], r['final_test_acc_std'], 4)} | "
              f"{'—' if r['eval_share'] is None else format(r['eval_share'], '.0%')} |" for r in rows]
    for target in report.targets:
        lines += target_table(rows, target_label(target), split)
    lines += problem_lines(groups)
    for section in sections:
        lines += [""] + section
    return "\n".join(lines) + "\n"


def speedup_text(seed_counts: list[int]) -> str:
    """How the speedup and its interval are computed, with the interval's exact coverage
    at the seed counts of this sweep."""
    levels = "; ".join(f"{n} seeds: order statistics {order_k(n)} and {n + 1 - order_k(n)}, "
                       f"{sign_coverage(n, order_k(n)):.1%}" for n in seed_counts if n >= MIN_SEEDS)
    return ("Speedup = the median over seeds of the per-seed ratio of steps, the matching "
            "`bn=none` configuration's / this one's, paired by seed (configurations that ran "
            "different seeds: the median over every pair of seeds, without interval). A seed "
            "that did not reach the target needed more than the step where it stopped (the "
            "seeds and why are listed below), so its ratio is known only from below (a "
            "`bn=none` seed) or from above (this configuration's); a seed that never trained "
            "tells nothing. Where such seeds leave the median open, the table gives what this "
            "sample says of it: `≥`, `≤` or a range, a bound on this sample, not a confidence "
            f"bound. Interval: {INTERVAL_METHOD}, from the k-th smallest to the k-th largest "
            "per-seed ratio, a censored seed counting with its known end, so that the interval "
            "can only be wider than the true ratios' (an end is open, `∞`, once k seeds are "
            "censored on its side). Whatever the distribution of the ratios and whatever the "
            "censoring, it covers the median with at least the sign test's probability: "
            f"{levels or 'no configuration here has enough seeds'}. "
            f"No interval below {MIN_SEEDS} paired seeds (the range of {MIN_SEEDS - 1} covers "
            f"{sign_coverage(MIN_SEEDS - 1, 1):.1%}). The t "
            "interval this report printed before covers under 93% when some `bn=none` seeds "
            "escape the plateau late (bnexp/report/speedup.py; `python -m bnexp.report.coverage` "
            "measures both).")


def target_table(rows: list[dict], t: str, split: str) -> list[str]:
    """The Markdown table for one target accuracy."""
    lines = ["", f"## Time to {split} accuracy {t}", "",
             "| config | reached | steps | images | seconds | resolution | speedup (steps) vs bn=none [interval] |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        resolution = r[f"resolution_{t}"]
        lines.append(
            f"| {r['config']} | {r[f'reached_{t}']}/{r['seeds']} | "
            f"{fmt(r[f'steps_to_{t}_mean'], r[f'steps_to_{t}_std'], 0)} | "
            f"{fmt(r[f'images_to_{t}_mean'], r[f'images_to_{t}_std'], 0)} | "
            f"{fmt(r[f'seconds_to_{t}_mean'], r[f'seconds_to_{t}_std'], 1)} | "
            f"{f'{resolution:.0%}' if resolution is not None else '—'} | "
            f"{fmt_speedup(r, t)} |")
    notes = target_notes(rows, t)
    if notes:
        lines += ["", "Seeds that did not reach it, and what that makes of the speedup:", ""] + notes
    return lines


def target_notes(rows: list[dict], t: str) -> list[str]:
    """One line per configuration with something to say about target `t`: the seeds that
    did not reach it and why, and why its speedup is a bound, undetermined or without interval."""
    notes = []
    for r in rows:
        parts = []
        if r[f"not_reached_{t}_seeds"]:
            parts.append(f"not reached by {r[f'not_reached_{t}_seeds']}")
        if r[f"speedup_{t}_note"]:
            parts.append(r[f"speedup_{t}_note"])
        if parts:
            notes.append(f"- `{r['config']}`: " + "; ".join(parts))
    return notes


def split_name(jobs: list[Job]) -> str:
    """What the runs evaluated during training: "validation" if any used a validation split."""
    splits = {p.split for j in jobs for p in j.eval_curve}
    return "validation" if "val" in splits else "test"


def problem_lines(groups: list[Group]) -> list[str]:
    """A list of the jobs that did not complete, with the reason."""
    bad = [j for g in groups for j in g.jobs if j.status != "completed"]
    if not bad:
        return []
    lines = ["", "## Jobs that did not complete", ""]
    for job in bad:
        detail = job.error or (f"diverged at step {job.record.diverged_at_step}"
                               if job.status == "diverged" and job.record else "")
        lines.append(f"- `{job.name}`: {job.status}" + (f" ({detail})" if detail else ""))
    return lines
