#!/usr/bin/env python3
"""`make figures`: rerun the study presets and copy their figures and summaries into docs/.

Every figure and number that the README and docs/ show from a study comes from here, not
from a hand-copied file: each preset runs as a sweep into outputs/figures/<preset>
(`resume=auto`: an interrupted call continues where it stopped, completed jobs are kept),
then its figures are copied to docs/ and its summary.md to docs/results/<preset>.md,
which say which machine and commit produced them.

    python scripts/figures.py                      # every preset (about 110 min on 2 idle cores)
    python scripts/figures.py convergence mechanism
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# preset -> (figure the report draws, its name in docs/)
PRESETS: dict[str, list[tuple[str, str]]] = {
    "convergence": [("convergence.png", "convergence.png")],
    "lr_robustness": [("lr_robustness.png", "lr_robustness.png")],
    "mechanism": [("activations.png", "activations.png"), ("ics.png", "ics.png"),
                  ("landscape.png", "landscape.png")],
    "ioffe_fig1": [("activations.png", "ioffe_fig1.png")],
    "momentum_eps": [("momentum_eps.png", "momentum_eps.png")],
    "batch_size": [("batch_size.png", "batch_size.png")],
    "source_defects": [("init.png", "source_init.png")],
    "small_batch": [("small_batch.png", "small_batch.png")],
}


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True)
    return done.stdout.strip() or "unknown"


def run(preset: str) -> int:
    sweep = REPO / "outputs" / "figures" / preset
    start = time.time()
    code = subprocess.run([sys.executable, "-m", "bnexp.run", "--multirun", f"experiment={preset}",
                           "resume=auto", f"hydra.sweep.dir={sweep}"], cwd=REPO).returncode
    minutes = (time.time() - start) / 60
    if code != 0:
        print(f"figures: {preset} failed (exit {code}); docs/ left as it was", file=sys.stderr)
        return code
    for drawn, name in PRESETS[preset]:
        shutil.copyfile(sweep / drawn, DOCS / name)
    results = DOCS / "results"
    results.mkdir(exist_ok=True)
    header = (f"<!-- `make figures PRESETS={preset}`: commit {commit()}, {platform.processor() or platform.machine()}"
              f", {minutes:.1f} min -->\n")
    (results / f"{preset}.md").write_text(header + (sweep / "summary.md").read_text())
    print(f"figures: {preset} done in {minutes:.1f} min -> docs/")
    return 0


def main(argv: list[str]) -> int:
    unknown = [p for p in argv if p not in PRESETS]
    if unknown:
        print(f"figures: unknown preset(s) {', '.join(unknown)}; choose from "
              f"{', '.join(PRESETS)}", file=sys.stderr)
        return 2
    failed = [p for p in (argv or list(PRESETS)) if run(p) != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
