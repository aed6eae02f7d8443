"""The report's studies: one module per figure in this package.

A study module defines `section(report)`, its place in the report `ORDER` and a one-line
`SUMMARY`; `write_report` calls every module's section in `ORDER` and `python -m
bnexp.report --help` lists them. Adding a study is one module here: nothing else names it.
A section returns the Markdown lines of its part of summary.md (and draws its figure into
the sweep folder), or [] when the sweep has no data for it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bnexp.report.jobs import Group


@dataclass(frozen=True)
class Report:
    """What every study reads: the sweep folder, its configurations, the override keys
    that differ between them and the target accuracies of the report; and the figures the
    studies wrote (bnexp.report.plotting.finish: the only images report.html embeds)."""
    sweep_dir: Path
    groups: list[Group]
    swept: list[str]
    targets: tuple[float, ...]
    figures: set[str] = field(default_factory=set)


Section = Callable[[Report], list[str]]


def sections() -> list[tuple[str, str, Section]]:
    """(name, summary, section) of every study module of this package, in report order."""
    modules = [importlib.import_module(f"{__name__}.{info.name}")
               for info in pkgutil.iter_modules(__path__)]
    return [(m.__name__.rpartition(".")[2], m.SUMMARY, m.section)
            for m in sorted(modules, key=lambda m: m.ORDER)]
