"""The verdicts of the claims a sweep was set up to test (`report.claims` of its preset,
written before it ran): each claim's ratio baseline / treated at its matched phase, the
interval, and reproduced / contradicted / inconclusive by the claim's own rule
(bnexp/report/claims.py)."""
from __future__ import annotations

from bnexp.report.claims import Claim, Verdict, arm_spec, decide, pairs
from bnexp.report.speedup import MIN_SEEDS, order_k, sign_coverage
from bnexp.report.studies import Report

ORDER = 5  # first: what the sweep was for
SUMMARY = "claims: verdicts of the claims the preset registered before the run (report.claims)"


def claims_of(report: Report) -> list[Claim]:
    for group in report.groups:
        for job in group.jobs:
            found = job.config.get("report.claims")
            if found:
                return [Claim.from_config(c) for c in found]
    return []


def phase_text(claim: Claim) -> str:
    if claim.measure == "steps_to":
        return f"steps to validation accuracy {claim.phase:g}"
    if claim.measure == "final_error":
        return "final validation error"
    return f"{claim.measure}, where the training loss first reaches {claim.phase:g}"


def arm_text(arm: str) -> str:
    return ",".join(f"{k}={v}" for k, v in arm_spec(arm).items())


def rule_text(claim: Claim) -> str:
    side, other = ("above", "below") if claim.rule == "above" else ("below", "above")
    return (f"reproduced if the interval of {arm_text(claim.baseline)} / {arm_text(claim.treated)} "
            f"lies {side} {claim.threshold:g}, contradicted if it lies {other}, else inconclusive")


def row(claim: Claim, verdict: Verdict, label: str) -> str:
    where = f" ({label})" if label else ""
    return (f"| {claim.id}{where} | {claim.says} ({claim.paper}) | {phase_text(claim)} | "
            f"{verdict.interval_text()} | {verdict.seeds} | **{verdict.verdict}** |")


def section(report: Report) -> list[str]:
    claims = claims_of(report)
    if not claims:
        return []
    lines = ["## Claims and verdicts", "",
             "Each claim, its measure, the phase at which the two arms are compared and the rule "
             "that decides it were written in the preset before the sweep ran. The ratio is the "
             "median over seeds of the per-seed ratio, paired by seed; its interval the order "
             f"statistics of the per-seed ratios (coverage {sign_coverage(5, order_k(5)):.2%} "
             f"with 5 seeds, {sign_coverage(10, order_k(10)):.1%} with 10; none below "
             f"{MIN_SEEDS}: no verdict).", "",
             "| claim | the paper says | compared | ratio [interval] | seeds | verdict |",
             "|---|---|---|---|---|---|"]
    notes = []
    for claim in claims:
        found = pairs(claim, report.groups)
        if not found:
            notes.append(f"- {claim.id}: no {arm_text(claim.baseline)} and {arm_text(claim.treated)} "
                         "configurations alike in everything else: not decided")
            continue
        notes.append(f"- {claim.id}: {rule_text(claim)}")  # once, however many models decide it
        for baseline, treated, rest in found:
            verdict = decide(claim, baseline, treated)
            lines.append(row(claim, verdict, rest))
            if verdict.missing:
                where = f" ({rest})" if rest else ""
                notes.append(f"- {claim.id}{where}: without a value: {'; '.join(verdict.missing)}")
    return lines + ["", "Rules, and seeds without a value:", "", *notes]
