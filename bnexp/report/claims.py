"""Claims decided by rules written before the run (a preset's `report.claims`).

A claim names what a paper says, the measure that tests it, the phase at which the two
arms are compared, and the rule that turns the measured interval into a verdict:

    - id: landscape_smoother
      paper: Santurkar et al. 2018, Fig. 4c
      says: the loss landscape is smoother with BN (smaller effective beta-smoothness)
      measure: landscape.beta_smoothness   # a monitor's measurement, or steps_to
      phase: 0.8          # the matched state: the run's first read of training loss <= 0.8
      baseline: none      # the bn option of each arm (paired by seed)
      treated: gluon
      rule: above         # reproduced if the 95% interval of baseline / treated lies above
      threshold: 1.0      # the threshold, contradicted if it lies below, else inconclusive

Per seed, the measure's value in each arm at the phase (`phase_value`); the ratio
baseline / treated is the median of the per-seed ratios, its interval the order statistics
of their logs, paired by seed -- the speedups' method and coverage (bnexp/report/speedup.py:
at least 93.75% with 5 seeds, 97.9% with 10, whatever the distribution). A seed whose run
never reached the phase in one arm counts as unknown (its ratio could be anything), which
only widens the interval; it is listed, not left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bnexp.report.jobs import BASELINE, Group, Job
from bnexp.report.speedup import MIN_SEEDS, median_and_interval
from bnexp.report.stats import find_baseline

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Claim:
    id: str
    says: str
    measure: str            # "<monitor>.<key>" (ics: mean over layers; activations: width, shift,
    #                         drift), "steps_to" (phase = accuracy) or "final_error"
    phase: float            # training loss level (monitors) or validation accuracy (steps_to)
    baseline: str           # the baseline arm: a bn option ("none"), or overrides ("bn=gluon,trainer.batch_size=64")
    treated: str            # the treated arm, alike
    rule: str               # above | below
    threshold: float
    paper: str = ""

    @classmethod
    def from_config(cls, data: dict) -> Claim:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Verdict:
    claim: Claim
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    seeds: int = 0
    verdict: str = INCONCLUSIVE
    missing: list[str] = field(default_factory=list)   # seeds without a value, and why

    def interval_text(self) -> str:
        if self.ratio is None:
            return "—"
        if self.ci is None:
            return f"{self.ratio:.3g}"
        return f"{self.ratio:.3g} [{self.ci[0]:.3g}, {self.ci[1]:.3g}]"


def phase_value(job: Job, measure: str, phase: float) -> float | None:
    """The measure in one run at the phase: for a monitor's measure, the mean of its
    measurements taken for that training-loss level (`phase` in the measurement); for
    `steps_to`, the step of the first evaluation at or above the accuracy `phase`."""
    if measure == "steps_to":
        hit = next((p for p in job.eval_curve if p.acc is not None and p.acc >= phase), None)
        return float(hit.step) if hit else None
    if measure == "final_error":  # the last evaluation of the watched split (validation, else test)
        last = job.eval_curve[-1] if job.eval_curve and job.status == "completed" else None
        return 1.0 - last.acc if last is not None and last.acc is not None else None
    monitor, _, key = measure.partition(".")
    at = [m for m in job.measurements(monitor)
          if m.get("phase") is not None and math.isclose(m["phase"], phase)]
    if monitor == "activations":
        return distribution_change(job.measurements(monitor), at, key)
    values = [measurement_value(m, key) for m in at]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def distribution_change(measurements: list[dict], at: list[dict], key: str) -> float | None:
    """From the activations monitor (Ioffe & Szegedy Fig. 1), averaged over every kept unit
    of every layer: `width`, the spread p85 - p15 of a unit's input at the phase; `drift`,
    how far its median moved from before training (step 0) to the phase, in units of that
    spread; `shift`, the same distance in the input's own units."""
    start = next((m for m in measurements if m["step"] == 0), None)
    if start is None or not at:
        return None
    values = []
    for layer, units in start["layers"].items():
        for unit, before in units.items():
            now = [m["layers"][layer][unit] for m in at if unit in m["layers"].get(layer, {})]
            if not now:
                continue
            p50 = float(np.mean([q["p50"] for q in now]))
            width = float(np.mean([q["p85"] - q["p15"] for q in now]))
            shift = abs(p50 - before["p50"])
            values.append({"width": width, "shift": shift,
                           "drift": shift / width if width > 0 else math.nan}[key])
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else None


def measurement_value(measurement: dict, key: str) -> float | None:
    """A key of a measurement; for a per-layer monitor (ics) the mean over the layers that
    have trainable layers before them (the first layer's ICS is 0 by definition)."""
    if key in measurement:
        return measurement[key]
    layers = measurement.get("layers") or {}
    values = [v[key] for v in list(layers.values())[1:] if isinstance(v, dict) and key in v]
    return float(np.mean(values)) if values else None


def arm_spec(arm: str) -> dict[str, str]:
    """"none" -> {"bn": "none"}; "bn=gluon,trainer.batch_size=64" -> both overrides."""
    if "=" not in arm:
        return {"bn": arm}
    return dict(item.split("=", 1) for item in arm.split(","))


def matches(group: Group, spec: dict[str, str]) -> bool:
    return all((group.variant if key == "bn" else group.overrides.get(key)) == value
               for key, value in spec.items())


def pairs(claim: Claim, groups: list[Group]) -> list[tuple[Group, Group, str]]:
    """(baseline, treated, what else they share) for every pair of configurations the claim
    names, alike in every override but those its arms set."""
    base, mine = arm_spec(claim.baseline), arm_spec(claim.treated)
    keys = set(base) | set(mine)

    def rest(group: Group) -> tuple:
        return tuple(sorted((k, v) for k, v in group.overrides.items() if k not in keys))

    out = []
    for treated in (g for g in groups if matches(g, mine)):
        for baseline in (g for g in groups if matches(g, base) and rest(g) == rest(treated)):
            out.append((baseline, treated, ",".join(f"{k}={v}" for k, v in rest(treated))))
    return out


def decide(claim: Claim, baseline: Group, treated: Group) -> Verdict:
    """The claim's verdict from the paired per-seed ratios baseline / treated."""
    base = {j.seed: phase_value(j, claim.measure, claim.phase) for j in baseline.jobs}
    mine = {j.seed: phase_value(j, claim.measure, claim.phase) for j in treated.jobs}
    verdict = Verdict(claim)
    bounds = []  # per seed: [low, high] of log(baseline / treated)
    for seed in sorted(set(base) | set(mine), key=str):
        b, t = base.get(seed), mine.get(seed)
        if b is None or t is None or b <= 0 or t <= 0:
            arm = claim.baseline if b is None or b <= 0 else claim.treated
            arm = f"bn={arm}" if "=" not in arm else arm
            verdict.missing.append(f"seed {seed}: {arm} has no value at the phase")
            bounds.append((-math.inf, math.inf))
        else:
            bounds.append((math.log(b / t),) * 2)
    verdict.seeds = len(bounds) - len(verdict.missing)
    if not bounds:
        return verdict
    low, high = np.array(bounds).T
    median_low, median_high, ci_low, ci_high = median_and_interval(low, high, paired=True)
    if median_low == median_high:
        verdict.ratio = float(np.exp(median_low))
    if math.isfinite(ci_low) or math.isfinite(ci_high):
        verdict.ci = (float(np.exp(ci_low)), float(np.exp(ci_high)))
        verdict.verdict = rule_verdict(claim.rule, claim.threshold, verdict.ci)
    return verdict


def rule_verdict(rule: str, threshold: float, ci: tuple[float, float]) -> str:
    """`above`: reproduced if the interval lies above the threshold, contradicted if it lies
    below; `below`: the other way round; inconclusive if it holds the threshold."""
    low, high = ci
    above, below = low > threshold, high < threshold
    if rule == "below":
        above, below = below, above
    return REPRODUCED if above else CONTRADICTED if below else INCONCLUSIVE


def phases(groups: list[Group], monitor: str) -> list[float]:
    """The training-loss levels at which `monitor` measured (its `at_loss`), first reached first."""
    return sorted({m["phase"] for g in groups for j in g.jobs for m in j.measurements(monitor)
                   if m.get("phase") is not None}, reverse=True)


def phase_table(groups: list[Group], monitor: str, keys: dict[str, str]) -> list[str]:
    """Each configuration's `keys` of `monitor` at every matched phase: the median over seeds,
    and beside each BN configuration the ratio none / it with its interval (decide())."""
    levels = phases(groups, monitor)
    if not levels:
        return []
    lines = ["At matched training phase -- each run measured where its own training loss first "
             "reaches the level, the mean of its measurements there; the median over seeds, and "
             "in brackets `bn=none` / this configuration: the median per-seed ratio [its "
             "interval], paired by seed:", "",
             "| config | training loss | " + " | ".join(keys.values()) + " |",
             "|---|---|" + "---|" * len(keys)]
    for level in levels:
        for group in groups:
            base = find_baseline(group, groups) if group.variant != BASELINE else None
            cells = []
            for key in keys:
                measure = f"{monitor}.{key}"
                values = [v for v in (phase_value(j, measure, level) for j in group.jobs)
                          if v is not None]
                text = f"{np.median(values):.3g}" if values else "—"
                if base is not None and values:
                    claim = Claim("", "", measure, level, BASELINE, group.variant, "above", 1.0)
                    text += f" ({decide(claim, base, group).interval_text()})"
                cells.append(text)
            lines.append(f"| {group.label} | {level:g} | " + " | ".join(cells) + " |")
    return lines
