"""The report's studies: one module per figure, each registering itself here once.

A study module decorates its `section(report)` with `@study("name", order, "what it shows")`;
`write_report` calls every registered section in `order` and `python -m bnexp.report
--help` lists them. Adding a study is one module in bnexp/report/: nothing else names it.
A section returns the Markdown lines of its part of summary.md (and draws its figure into
the sweep folder), or [] when the sweep has no data for it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bnexp.report.jobs import Group


@dataclass(frozen=True)
class Report:
    """What every study reads: the sweep folder, its configurations, the override keys
    that differ between them and the target accuracies of the report."""
    sweep_dir: Path
    groups: list[Group]
    swept: list[str]
    targets: tuple[float, ...]


Section = Callable[[Report], list[str]]


@dataclass(frozen=True)
class Study:
    name: str
    order: int          # position in summary.md
    section: Section
    title: str          # what it shows, one line (for --help)


_REGISTRY: dict[str, Study] = {}


def study(name: str, order: int, title: str) -> Callable[[Section], Section]:
    """Register the decorated `section(report)` as study `name`, at position `order` of
    summary.md; `title` says in one line what it shows."""
    def register(section: Section) -> Section:
        if name in _REGISTRY and _REGISTRY[name].section.__module__ != section.__module__:
            raise ValueError(f"report study {name!r} registered twice "
                             f"({_REGISTRY[name].section.__module__}, {section.__module__})")
        _REGISTRY[name] = Study(name, order, section, title)
        return section
    return register


def registered() -> list[Study]:
    """Every study of bnexp/report/, in report order (imports the package's modules once)."""
    package = importlib.import_module("bnexp.report")
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"bnexp.report.{module.name}")
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))
