"""The report's studies: one module per figure, each registering itself once.

A study module decorates its `section(report)` with
`@STUDIES.register("name", order=..., summary="what it shows")` (bnexp/registry.py);
`write_report` calls every registered section in `order` and `python -m bnexp.report
--help` lists them. Adding a study is one module in bnexp/report/: nothing else names it.
A section returns the Markdown lines of its part of summary.md (and draws its figure into
the sweep folder), or [] when the sweep has no data for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bnexp.registry import Registry
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

# A study module registers its `section(report)`: @STUDIES.register(name, order=..., summary=...)
STUDIES = Registry("report study", "bnexp.report", "STUDIES", config_key="study")


def sections() -> list[tuple[str, str, Section]]:
    """(name, summary, section) of every study of bnexp/report/, in report order."""
    return [(e.name, e.summary, STUDIES.get(e.name)) for e in STUDIES.entries()]
