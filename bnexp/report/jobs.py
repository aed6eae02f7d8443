"""The jobs of a sweep, read from disk, and their grouping into configurations.

A job folder holds the job's metrics.json, read through `bnexp.record.RunRecord`; a job
whose metrics.json is missing or unreadable counts as failed and never stops the report.
Jobs with the same overrides except `seed` (and `resume`) are one configuration.

A job folder is data from wherever it came from, never trusted: its files are read only
if they are regular files of a bounded size (a FIFO or a link to /dev/zero would hang the
report), and Hydra's `.hydra/overrides.yaml` with a plain safe YAML loader -- never through
OmegaConf, whose resolvers would put `${oc.env:SECRET}` into the report.
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bnexp.record import METRICS_FILE, EvalPoint, RunRecord

SEED_KEY = "seed"
# Not part of a configuration's identity: the seeds are its repetitions, a job continued
# with resume=auto is still the same job, and what a resume may set besides -- how fast it
# runs and how it shows progress (perf.*, trainer.progress, logger.*; bnexp/resume.py) --
# changes nothing the report compares (a sweep of perf.threads is the bench's to measure).
IGNORED_KEYS = (SEED_KEY, "resume", "trainer.progress")
IGNORED_PREFIXES = ("perf.", "logger.")
BN_KEY = "bn"
BASELINE = "none"
COUNTED_STATUSES = ("completed", "diverged", "failed", "interrupted", "running")
MAX_METRICS = 1 << 30  # bytes: far above any run's metrics.json, far below what hangs
MAX_YAML = 1 << 20     # bytes: Hydra's and the sweeper's small YAML files


def identity_key(key: str) -> bool:
    """Whether override `key` tells two configurations apart (IGNORED_KEYS: it does not)."""
    return key not in IGNORED_KEYS and not key.startswith(IGNORED_PREFIXES)


def read_job_file(path: Path, limit: int = MAX_METRICS) -> str:
    """The text of a file of a job (or sweep) folder if it is a regular file of at most
    `limit` bytes; OSError or ValueError (saying which) if not."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data.decode("utf-8")


def read_yaml(path: Path):
    """A small YAML file of a job or sweep folder as plain Python values: no tags, no
    interpolation. OSError or ValueError if it cannot be read or parsed."""
    try:
        return yaml.safe_load(read_job_file(path, MAX_YAML))
    except yaml.YAMLError as err:
        raise ValueError(f"{path.name} is not YAML: {err}") from None


@dataclass
class Job:
    """One job folder of the sweep and what its metrics.json says (if anything)."""
    name: str
    status: str
    overrides: dict[str, str]
    record: RunRecord | None = None
    error: str | None = None

    @property
    def config(self) -> dict:
        return self.record.config if self.record else {}

    @property
    def eval_curve(self) -> list[EvalPoint]:
        return self.record.eval_curve if self.record else []

    def value(self, key: str) -> str | None:
        """The job's setting `key`: from its config, else from its overrides."""
        if key in self.config:
            return str(self.config[key])
        return self.overrides.get(key)

    def choice(self, group: str) -> str | None:
        """The option the job chose in a config group (bn=gluon: "gluon"): its record's, else
        its override's."""
        if self.record and group in self.record.choices:
            return str(self.record.choices[group])
        return self.overrides.get(group)

    @property
    def seed(self) -> str | None:
        return self.value(SEED_KEY)

    def measurements(self, monitor: str) -> list[dict]:
        """What monitor `monitor` measured during the run (none: [])."""
        return (self.record.monitors.get(monitor) if self.record else None) or []

    @property
    def final_test_acc(self) -> float | None:
        """The final test accuracy of a completed run (else None)."""
        if self.status != "completed" or not self.record:
            return None
        return self.record.final.get("test_acc")


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
    try:
        items = read_yaml(job_dir / ".hydra" / "overrides.yaml")
    except (OSError, ValueError):
        items = None
    if not isinstance(items, list):
        return overrides_from_dirname(job_dir.name)
    return parse_overrides([str(item) for item in items])


def parse_record(data) -> RunRecord:
    """RunRecord.from_json of a parsed metrics.json; ValueError naming what does not fit
    the record's layout (a list or dict field of another type, a point without an
    integer step, a point that lacks a field)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for spec in dataclasses.fields(RunRecord):  # the layout is RunRecord's, not repeated here
        if spec.default_factory is not dataclasses.MISSING and data.get(spec.name) is not None:
            kind = type(spec.default_factory())
            if not isinstance(data[spec.name], kind):
                raise ValueError(f"{spec.name!r} is not a {kind.__name__}")
    try:
        record = RunRecord.from_json(data)
    except (TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"a field does not fit RunRecord: {err}") from None
    for name, curve in (("eval_curve", record.eval_curve), ("train_curve", record.train_curve)):
        if not all(isinstance(p.step, int) for p in curve):
            raise ValueError(f"{name!r} has a point without an integer step")
    return record


def load_job(job_dir: Path) -> Job:
    """Read one job folder; a missing or unreadable metrics.json gives a failed job."""
    path = job_dir / METRICS_FILE
    try:
        record = parse_record(json.loads(read_job_file(path)))
    except (OSError, ValueError) as err:
        reason = "metrics.json missing" if not path.exists() else f"metrics.json unreadable: {err}"
        return Job(job_dir.name, "failed", fallback_overrides(job_dir), None, reason)
    status = record.status if record.status in COUNTED_STATUSES else "failed"
    overrides = parse_overrides(record.overrides) or fallback_overrides(job_dir)
    return Job(job_dir.name, status, overrides, record, record.error)


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
        """The normalization option of the configuration (bn=gluon: "gluon")."""
        return next((job.choice(BN_KEY) for job in self.jobs if job.choice(BN_KEY)), None)

    def rest_key(self) -> tuple:
        """The configuration without its normalization: finds the matching baseline."""
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k != BN_KEY))


def group_jobs(jobs: list[Job]) -> list[Group]:
    """One group per distinct override set minus seed (and resume), labelled by the swept keys."""
    groups: dict[tuple, Group] = {}
    for job in jobs:
        overrides = {k: v for k, v in job.overrides.items() if identity_key(k)}
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
