"""Best against best: every loop timed in every process setting -- thread count x MXNet's
engine, each in its own worker process (bnexp/bench/worker.py), the blocks interleaved; then
ratios of each loop's best against the best of its reference, and whether bnexp's tuner
chose the fastest setting. Runs in the parent process, which never imports MXNet (it would
fix one thread count and engine)."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
from dataclasses import dataclass, field
from typing import Callable

from bnexp.runtime.threads import available_cores
from bnexp.tuning.machine import cpu_identity, mxnet_identity
from bnexp.runtime.worker import Worker

# What each loop is compared with: the textbook loop of the same network; every other
# normalization (scratch, group, renorm, ...) with MXNet's own BN, the one it stands in for.
# Targets: at least these ratios of best median images/s.
REFERENCE = {"none": "plain-none", "gluon": "plain-gluon", "torch-none": "none",
             "torch-gluon": "gluon"}
TARGETS = (("none", "plain-none", 0.95), ("gluon", "plain-gluon", 0.95),
           ("scratch", "gluon", 0.85), ("gluon", "none", 1 / 1.3),
           ("gluon", "torch-gluon", 0.9), ("scratch", "torch-gluon", 0.9))
TUNER_MARGIN = 0.05   # the tuner's choice must be within this of the fastest count
STARTUP_TIMEOUT = 600  # seconds for a worker to load the data and build its loops
BLOCK_TIMEOUT = 600


@dataclass
class Samples:
    images_per_sec: list[float] = field(default_factory=list)
    ms_per_step: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {"images_per_sec": [round(v, 3) for v in self.images_per_sec],
                "ms_per_step": [round(v, 4) for v in self.ms_per_step],
                "median_images_per_sec": statistics.median(self.images_per_sec),
                "min_images_per_sec": min(self.images_per_sec),
                "max_images_per_sec": max(self.images_per_sec),
                "median_ms_per_step": statistics.median(self.ms_per_step)}


def process_key(threads: int, engine: str) -> str:
    """A process setting's name in the results: "2/naive"."""
    return f"{threads}/{engine}"


def measure(variants: list[str], processes: list[tuple[int, str]], layouts: dict[str, dict[str, list[str]]],
            steps: int, warmup: int, repeats: int, spec: dict,
            echo: Callable[[str], None] = print) -> dict[str, dict[str, Samples]]:
    """Samples per loop and process setting ("2/naive"). `layouts[process][variant]`: the
    (pool, bn_impl) bnexp's tuning chose for that variant in that process; `spec`: what
    every worker needs (batch_size, ctx, data_root, source_workers)."""
    workers = {process_key(t, e): Worker("bnexp.bench.worker", [json.dumps(
        {**spec, "variants": variants, "layouts": layouts[process_key(t, e)]})], t, e)
        for t, e in processes}
    samples = {v: {key: Samples() for key in workers} for v in variants}
    try:
        for worker in workers.values():
            worker.read(STARTUP_TIMEOUT)  # its loops are built
        for rep in range(repeats):
            for key, worker in workers.items():
                for v in variants:
                    got = worker.ask(f"{v} {warmup} {steps}", BLOCK_TIMEOUT)
                    samples[v][key].images_per_sec.append(got["images_per_sec"])
                    samples[v][key].ms_per_step.append(got["ms_per_step"])
                    echo(f"  repeat {rep + 1}/{repeats} {key:<11} {v:<14} "
                         f"{got['images_per_sec']:9.1f} img/s {got['ms_per_step']:8.2f} ms/step"
                         + ("" if got["loss_finite"] else "  (training loss not finite)"))
    finally:
        for worker in workers.values():
            worker.close()
    return samples


def reference_of(name: str) -> str | None:
    """The loop `name` is compared with: its textbook loop, or gluon BN for a normalization
    (PyTorch's loops: bnexp's of the same network)."""
    if name == "source" or name.startswith("plain-"):
        return None
    return REFERENCE.get(name, "gluon")


def summarize(samples: dict[str, dict[str, Samples]], tuned: dict[str, str] | None = None) -> dict:
    """Per loop: its summary in each process setting, its best setting and figures there,
    ratios of best against the reference's best (and the source loop's), and for bnexp's
    loops how the tuner's setting (`tuned`: "2/naive") compares with the best."""
    out: dict[str, dict] = {}
    for name, by_process in samples.items():
        rows = {key: s.summary() for key, s in by_process.items()}
        best = max(rows, key=lambda key: rows[key]["median_images_per_sec"])
        out[name] = {"by_process": rows, "best": best,
                     "median_images_per_sec": rows[best]["median_images_per_sec"],
                     "median_ms_per_step": rows[best]["median_ms_per_step"]}
    for name, row in out.items():
        source, ref = out.get("source"), out.get(reference_of(name) or "")
        row["ratio_vs_source"] = (row["median_images_per_sec"] / source["median_images_per_sec"]
                                  if source else None)
        row["reference"] = reference_of(name) if ref else None
        row["ratio_vs_reference"] = (row["median_images_per_sec"] / ref["median_images_per_sec"]
                                     if ref else None)
        process = (tuned or {}).get(name)
        if process is not None:
            measured = row["by_process"].get(process)
            ratio = (measured["median_images_per_sec"] / row["median_images_per_sec"]
                     if measured else None)
            row["tuned"] = {"process": process, "ratio_to_best": ratio,
                            "within_margin": None if ratio is None else ratio >= 1 / (1 + TUNER_MARGIN)}
    return out


def targets(results: dict[str, dict]) -> list[dict]:
    """Each target the measured loops allow checking (best against best), and the tuner's
    choice for each bnexp loop."""
    rows = []
    for variant, base, least in TARGETS:
        if variant in results and base in results:
            ratio = results[variant]["median_images_per_sec"] / results[base]["median_images_per_sec"]
            rows.append({"variant": variant, "base": base, "at_least": least,
                         "ratio": ratio, "met": ratio >= least})
    for variant, row in results.items():
        tuned = row.get("tuned")
        if tuned and tuned["ratio_to_best"] is not None:
            rows.append({"variant": variant, "base": "fastest setting", "at_least":
                         1 / (1 + TUNER_MARGIN), "ratio": tuned["ratio_to_best"],
                         "met": tuned["within_margin"]})
    return rows


def format_targets(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r["variant"] == "gluon" and r["base"] == "none":  # a step-time bound, said as such
            text = f"gluon step time <= 1.3 x none: {1 / r['ratio']:.2f}"
        elif r["base"] == "fastest setting":
            text = (f"tuner's threads x engine for {r['variant']} within {TUNER_MARGIN:.0%} of "
                    f"the fastest: {r['ratio']:.2f}")
        else:
            text = f"{r['variant']} >= {r['at_least']:g} x {r['base']}: {r['ratio']:.2f}"
        lines.append(f"  {text:<58} {'met' if r['met'] else 'NOT met'}")
    return "\n".join(lines)


def format_table(results: dict[str, dict]) -> str:
    """A row per loop: median images/s in each process setting, the best setting, ratios of
    the best against the source loop's best and the reference's best, the tuner's setting."""
    counts = sorted({key for r in results.values() for key in r["by_process"]},
                    key=lambda key: (int(key.split("/")[0]), key))
    width = max(12, *map(len, results))  # instance_gluon is 14 characters
    header = (f"{'img/s at':<{width}} " + " ".join(f"{key.replace('/', ' thr '):>16}" for key in counts)
              + f" {'best':>16} {'ms/step':>8} {'x source':>9} {'x reference':>22} {'tuner':>16}")
    lines = [header, "-" * len(header)]

    def ratio(v):
        return f"{v:.2f}" if v is not None else "-"

    for name, r in results.items():
        cells = [f"{r['by_process'][key]['median_images_per_sec']:>16.1f}"
                 if key in r["by_process"] else f"{'-':>16}" for key in counts]
        reference = f"{ratio(r['ratio_vs_reference'])} ({r['reference']})" if r["reference"] else "-"
        tuner = r["tuned"]["process"].replace("/", " thr ") if r.get("tuned") else "-"
        lines.append(f"{name:<{width}} {' '.join(cells)} {r['best'].replace('/', ' thr '):>16} "
                     f"{r['median_ms_per_step']:>8.2f} {ratio(r['ratio_vs_source']):>9} "
                     f"{reference:>22} {tuner:>16}")
    return "\n".join(lines)


def machine_info() -> dict:
    """The machine the figures come from (read without importing MXNet)."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    ident = cpu_identity()
    flags = ""
    try:
        flags = next((line.split(":", 1)[1] for line in open("/proc/cpuinfo")
                      if line.startswith("flags")), "")
    except OSError:
        pass
    simd = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")
            if f in flags.split()]
    return {
        "cpu_model": ident["cpu"],
        "cpu_flags_digest": ident["cpu_flags"],
        "simd": simd,
        "cores": os.cpu_count(),
        "available_cores": available_cores(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "mxnet": mxnet_identity(),
        "numpy_version": importlib.metadata.version("numpy"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": load,
    }
