"""curves.csv: every curve of a sweep in tidy long format, for pandas users.

One row per job, step and metric:

    job, config, <swept keys...>, seed, status, metric, step, images, train_seconds, value

`metric` is train_loss / train_acc (the training curve: means since the previous
point) or <split>_acc / <split>_loss for the evaluations (split val or test, as the run
evaluated); `images` = step x batch size; `train_seconds` (optimizer time so far) is
known for evaluations only. Read it with

    df = pd.read_csv("curves.csv")
    df[df.metric == "val_acc"].pivot_table(index="step", columns="config", values="value")
"""
from __future__ import annotations

import csv
from pathlib import Path

from bnexp.files import replaced_atomically
from bnexp.report.jobs import Group

CURVES_CSV = "curves.csv"


def curve_rows(groups: list[Group], swept: list[str]):
    """The rows of curves.csv, job by job, training curve first."""
    for group in groups:
        for job in group.jobs:
            if not job.record:
                continue
            head = {"job": job.name, "config": group.label,
                    **{key: group.overrides.get(key, "") for key in swept},
                    "seed": job.seed or "", "status": job.status}
            try:
                batch = int(job.config.get("trainer.batch_size"))
            except (TypeError, ValueError):
                batch = None
            for point in job.record.train_curve:
                images = point.step * batch if batch else ""
                for metric, value in (("train_loss", point.loss), ("train_acc", point.acc)):
                    yield {**head, "metric": metric, "step": point.step, "images": images,
                           "train_seconds": "", "value": value}
            for point in job.record.eval_curve:
                for name, value in (("acc", point.acc), ("loss", point.loss)):
                    yield {**head, "metric": f"{point.split}_{name}", "step": point.step,
                           "images": point.images, "train_seconds": round(point.seconds, 4),
                           "value": value}


def write_curves(path: Path, groups: list[Group], swept: list[str]) -> int:
    """Write curves.csv; returns the number of rows (a non-finite value is left blank)."""
    columns = ["job", "config", *[k for k in swept if k != "seed"], "seed", "status", "metric",
               "step", "images", "train_seconds", "value"]
    count = 0
    with replaced_atomically(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in curve_rows(groups, swept):
            value = row["value"]
            row["value"] = "" if value is None or value != value or abs(value) == float("inf") \
                else f"{value:.6g}"
            writer.writerow(row)
            count += 1
    return count
