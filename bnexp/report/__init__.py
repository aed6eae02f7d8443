"""Sweep report: tables and figures built from the `metrics.json` of every job.

    python -m bnexp.report outputs/multirun/2026-11-27_10-00-00_ab12cd

Reads `<sweep dir>/*/metrics.json` from disk (jobs may have run in other processes or
on other machines), groups the jobs by their overrides minus `seed` and writes into
the sweep dir `summary.csv` and `summary.md` (bnexp/report/summary.py) and one figure
per study that the sweep's jobs have data for, each drawn by its own module:

  convergence.png      accuracy and training loss against steps   convergence.py
  lr_robustness.png    final accuracy against the learning rate   lr.py
  activations.png      Ioffe & Szegedy Fig. 1b-c                  activations.py
  ics.png              Santurkar et al. Fig. 3                    ics.py
  landscape.png        Santurkar et al. Fig. 4                    landscape.py
  momentum_eps.png     BN momentum and epsilon                    momentum.py
  batch_size.png       BN against the batch size                  batch.py
  init.png             the source tutorial's initialization       init.py

A job whose metrics.json is missing or unreadable counts as failed; it never stops
the report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnexp.report import activations, batch, convergence, ics, init, landscape, lr, momentum
from bnexp.report.jobs import find_jobs, group_jobs, swept_keys
from bnexp.report.summary import markdown, summary_row, write_csv

SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"
STUDIES = (convergence, lr, momentum, batch, init, activations, ics, landscape)


def write_report(sweep_dir: str | Path) -> Path:
    """(Re)build summary.csv, summary.md and the figures of a sweep; returns summary.md's path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    groups = group_jobs(find_jobs(sweep_dir))
    swept = swept_keys(groups)
    rows = [summary_row(g, groups, swept) for g in groups]
    write_csv(sweep_dir / SUMMARY_CSV, rows)
    sections = [lines for study in STUDIES if (lines := study.section(sweep_dir, groups, swept))]
    md_path = sweep_dir / SUMMARY_MD
    md_path.write_text(markdown(sweep_dir, rows, groups, sections))
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
    print(f"report: {md_path} (and {SUMMARY_CSV} and the figures in {md_path.parent})")
    return 0
