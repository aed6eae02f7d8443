"""The docs say what the code does: the option tables of docs/configuration.md are the
config groups' (scripts/config_docs.py), and every study number they quote is one that
`make figures` wrote into docs/results/."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_option_tables_are_the_config_groups():
    check = subprocess.run([sys.executable, "scripts/config_docs.py", "--check"], cwd=REPO)
    assert check.returncode == 0, "run `python scripts/config_docs.py` to regenerate them"


def test_every_option_is_in_the_tables():
    from bnexp import options
    text = (REPO / "docs" / "configuration.md").read_text()
    for group in options.GROUPS:
        for name in options.option_files(group):
            assert f"`{group}={name}`" in text


# A speedup as the report prints it, "11.7× [10.7, 12.9]" (bnexp.report.speedup.Speedup.text),
# a claim's ratio with its interval, "1.9 [1.4, 2.6]", and a claim's verdict in a table row.
SPEEDUP = re.compile(r"\d+(?:\.\d+)?[×x] [\[(][\d.]+, (?:[\d.]+\]|∞\))")
RATIO = re.compile(r"(?<![\w.])\d+(?:\.\d+)? \[[\d.]+, [\d.]+\]")
VERDICT = re.compile(r"\| *`?(\w+)`?[^|\n]*\|.*\*\*(reproduced|contradicted|inconclusive)\*\*")


def quoted_texts() -> dict[str, str]:
    """README.md and docs/*.md: what a reader is told (docs/results/ is where it comes from)."""
    return {p.name: p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}


def results_text() -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / "docs" / "results").glob("*.md")))


def test_every_quoted_speedup_interval_and_verdict_is_in_the_results():
    """A number the README or docs quote from a study is one `make figures` wrote into
    docs/results/ on the final code: a hand-copied or stale one fails here."""
    results = results_text()
    verdicts = {(claim, verdict) for claim, verdict in VERDICT.findall(results)}
    stale = []
    for name, text in quoted_texts().items():
        stale += [f"{name}: {q}" for q in SPEEDUP.findall(text) + RATIO.findall(text) if q not in results]
        stale += [f"{name}: {claim} {verdict}" for claim, verdict in VERDICT.findall(text)
                  if (claim, verdict) not in verdicts]
    assert not stale, "not in docs/results/ (run `make figures`):\n" + "\n".join(stale)


def test_the_quote_check_finds_what_it_looks_for():
    """The patterns above match the report's own formats (else the check above passes empty)."""
    from bnexp.report.speedup import Speedup
    printed = Speedup(11.74, sample=(11.74, 11.74), ci=(10.71, 12.93), coverage=0.979).text()
    assert SPEEDUP.findall(f"BN: {printed} fewer steps") == ["11.7× [10.7, 12.9]"]
    assert SPEEDUP.findall(Speedup(3.0, sample=(3.0, 3.0), ci=(2.7, float("inf"))).text())
    assert RATIO.findall("| beta | 1.94 [1.41, 2.6] |") == ["1.94 [1.41, 2.6]"]
    assert VERDICT.findall("| beta_smoothness_learning | BN smoother | 1.9 [1.4, 2.6] | 5 | **reproduced** |") \
        == [("beta_smoothness_learning", "reproduced")]
