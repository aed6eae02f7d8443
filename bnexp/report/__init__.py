"""Sweep report: tables and figures built from the `metrics.json` of every job.

    python -m bnexp.report outputs/multirun/2026-11-27_10-00-00_ab12cd [--targets 0.7,0.8]

Reads `<sweep dir>/*/metrics.json` from disk (jobs may have run in other processes or
on other machines) through `bnexp.record.RunRecord`, groups the jobs by their overrides
minus `seed` and writes into the sweep dir `summary.csv` and `summary.md`
(bnexp/report/summary.py), plus one section and figure per study that the sweep's jobs
have data for; `report.html`, all of it in one self-contained file (bnexp/report/html.py);
and `curves.csv`, every curve in long format (bnexp/report/curves.py). Each study is a module of this package that registers itself
(bnexp/report/studies/); `python -m bnexp.report --help` lists them. The speedup
statistics and their interval are described in bnexp/report/stats.py.

A job whose metrics.json is missing or unreadable counts as failed; it never stops the
report, and neither does a study that fails on what it reads: its section says so in one
line and the rest of the report is written. A folder without any job is an error.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bnexp.command_name import invoked_as
from bnexp.files import write_text_atomic
from bnexp.record import TARGETS
from bnexp.report.curves import CURVES_CSV, write_curves
from bnexp.report.html import HTML_FILE, write_html
from bnexp.report.jobs import find_jobs, group_jobs, swept_keys
from bnexp.report.studies import Report, sections
from bnexp.report.summary import markdown, summary_row, write_csv

SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"

log = logging.getLogger(__name__)


class ReportError(ValueError):
    """A report cannot be built from what it was given (the message says why)."""


def write_report(sweep_dir: str | Path, targets: tuple[float, ...] | None = TARGETS) -> Path:
    """(Re)build summary.csv, summary.md, the figures, report.html and curves.csv of a
    sweep; returns summary.md's path.
    `targets`: the accuracies whose steps and speedups the tables give (None: the runs' own
    `report.targets`, when they agree, else bnexp's default)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise ReportError(f"no runs in {sweep_dir}: no job folder with a metrics.json or a "
                          ".hydra folder; give the folder of a sweep (outputs/multirun/<stamp>)")
    groups = group_jobs(jobs)
    report = Report(sweep_dir, groups, swept_keys(groups), tuple(targets or runs_targets(jobs)))
    rows = [summary_row(g, groups, report.swept, report.targets) for g in groups]
    write_csv(sweep_dir / SUMMARY_CSV, rows)
    parts = [lines for name, _, section in sections() if (lines := study(name, section, report))]
    md_path = sweep_dir / SUMMARY_MD
    text = markdown(report, rows, parts)
    write_text_atomic(md_path, text)
    write_curves(sweep_dir / CURVES_CSV, groups, report.swept)
    write_html(sweep_dir, text, jobs, report.swept, frozenset(report.figures))
    return md_path


def study(name: str, section, report: Report) -> list[str]:
    """One study's section; a study that fails on what it reads is one line in the report
    (and a warning), not a report lost."""
    try:
        return section(report)
    except Exception as err:  # noqa: BLE001 -- whatever a study trips on, the rest is written
        log.warning("report: the %s study failed: %s: %s", name, type(err).__name__, err)
        return [f"## {name}", "", f"The {name} study could not be drawn from these runs "
                f"({type(err).__name__}: {err}); the rest of the report is complete."]


def runs_targets(jobs) -> tuple[float, ...]:
    """The target accuracies the runs were set up with, if they agree; else bnexp's default."""
    found = {tuple(j.record.targets) for j in jobs if j.record and j.record.targets}
    return found.pop() if len(found) == 1 else TARGETS


def parse_targets(text: str) -> tuple[float, ...]:
    """"0.7,0.8" -> (0.7, 0.8): accuracies in (0, 1], sorted, without repeats."""
    try:
        targets = sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give accuracies separated by commas, e.g. 0.7,0.8") from None
    if not targets or not all(0 < t <= 1 for t in targets):
        raise argparse.ArgumentTypeError(
            f"{text!r}: every target is an accuracy in (0, 1], e.g. 0.7,0.8")
    return tuple(targets)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, exit 2 (not argparse's usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    studies = "\n".join(f"  {name:<12} {summary}" for name, summary, _ in sections())
    parser = OneLineParser(
        prog=invoked_as("python -m bnexp.report"), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="(Re)build the report of a bnexp sweep directory.",
        epilog=f"studies (each drawn when the sweep has data for it):\n{studies}")
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/multirun/<stamp>")
    parser.add_argument("--targets", type=parse_targets, default=None,
                        help="target accuracies, comma-separated (default: the runs' own "
                             f"report.targets, else {','.join(f'{t:g}' for t in TARGETS)})")
    args = parser.parse_args(argv)
    try:
        md_path = write_report(args.sweep_dir, args.targets)
    except (FileNotFoundError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {md_path.parent / HTML_FILE} (and {SUMMARY_MD}, {SUMMARY_CSV}, {CURVES_CSV} "
          f"and the figures in {md_path.parent})")
    return 0
