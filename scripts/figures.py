#!/usr/bin/env python3
"""`make figures`: rerun the study presets and copy their figures and summaries into docs/.

Every figure and number that the README and docs/ show from a study comes from here, not
from a hand-copied file: each preset runs as a sweep into outputs/figures/<preset>
(`resume=auto`: an interrupted call continues where it stopped, completed jobs are kept),
then its figures are copied to docs/ and its summary.md to docs/results/<preset>.md,
headed by what produced them: the commit, the CPU (model, instruction sets that matter for
speed, usable cores), the wall and CPU minutes of the sweep, the load average before and
after it (a time measured on a busy machine says so), and how many jobs an earlier,
interrupted call had already completed (their time is not in this call's).

    python scripts/figures.py                      # every preset
    python scripts/figures.py convergence mechanism
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# preset -> (figure the report draws, its name in docs/)
PRESETS: dict[str, list[tuple[str, str]]] = {
    "lr_grid": [],            # the convergence arms' own learning rates (conf/arm/), plain SGD
    "lr_grid_momentum": [],   # ... and with momentum
    "convergence": [("convergence.png", "convergence.png")],
    "lr_robustness": [("lr_robustness.png", "lr_robustness.png")],
    "mechanism": [("ics.png", "ics.png"), ("landscape.png", "landscape.png")],
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


def machine() -> str:
    """"AMD EPYC 7B13, AVX2 (no AVX-512), 2 cores" (bnexp/cpu.py reads /proc/cpuinfo)."""
    sys.path.insert(0, str(REPO))
    from bnexp.cpu import cpuinfo
    from bnexp.runtime.threads import available_cores
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2 (no AVX-512)" if "avx2" in flags
           else "no AVX2")
    return f"{info.get('model name', 'unknown CPU')}, {isa}, {available_cores()} cores"


def completed_jobs(sweep: Path) -> int:
    return sum(1 for record in sweep.glob("*/metrics.json")
               if '"status": "completed"' in record.read_text(errors="replace"))


def run(preset: str) -> int:
    sweep = REPO / "outputs" / "figures" / preset
    done_before = completed_jobs(sweep) if sweep.exists() else 0
    load_before = os.getloadavg()[0]
    start, cpu_start = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    code = subprocess.run([sys.executable, "-m", "bnexp.run", "--multirun", f"experiment={preset}",
                           "resume=auto", f"hydra.sweep.dir={sweep}"], cwd=REPO).returncode
    minutes = (time.time() - start) / 60
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_minutes = (cpu.ru_utime + cpu.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime) / 60
    if code != 0:
        print(f"figures: {preset} failed (exit {code}); docs/ left as it was", file=sys.stderr)
        return code
    for drawn, name in PRESETS[preset]:
        shutil.copyfile(sweep / drawn, DOCS / name)
    results = DOCS / "results"
    results.mkdir(exist_ok=True)
    resumed = (f"; {done_before} jobs were completed by an earlier call and are not in these "
               "minutes" if done_before else "")
    header = (f"<!-- `make figures PRESETS={preset}`: commit {commit()}; {machine()}; "
              f"{minutes:.1f} min wall, {cpu_minutes:.1f} CPU-min; load average "
              f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after{resumed} -->\n")
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
