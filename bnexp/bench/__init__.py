"""Training-throughput benchmark: bnexp's BN variants against a textbook Gluon loop and
the source tutorial's loop.

    python -m bnexp.bench                                   # all variants, defaults
    python -m bnexp.bench --steps 50 --warmup 5 --repeats 5 --json bench.json
    python -m bnexp.bench --variants plain-gluon gluon --batch-size 256
    python -m bnexp.bench --variants gluon,group,renorm,ghost   # the family, x gluon BN
    python -m bnexp.bench --bn-floor                        # also BN layers alone
    python -m bnexp.bench --time-to-accuracy --memory       # also time a real default run

Loops, all measured side by side:
  none, scratch, gluon  bnexp's own training step: the Trainer's `step`
                        (bnexp/training/trainer.py) on the network of `bnexp.nn.build`,
                        including its periodic read of the accumulated training metrics,
                        with the pooling layout and BN formulation bnexp's tuning chose
                        here for that thread count, for a run of the length and perf.*
                        settings `--run-override` gives (default: the default run's).
                        Any registered normalization can be named
                        (`--variants gluon,group,renorm`), with its default settings
                        (bn.groups, bn.virtual_batch, ...); its x reference is gluon BN.
  plain-none,           a textbook hybridized Gluon LeNet (nn.MaxPool2D, gluon BatchNorm or
  plain-gluon           none), contiguous slices of the in-memory data, gluon.Trainer:
                        what a competent user writes by hand; nothing of bnexp's.
  source                the source tutorial's loop re-implemented: an imperative `nd` LeNet
                        with the from-scratch BN *function*, a gluon DataLoader with a
                        per-sample ToTensor transform, a hand-written SGD update and two
                        `.asscalar()` host syncs per batch (its per-batch test-set
                        evaluation is left out: only training is measured).

Best against best: MXNet fixes its thread count at import, so each thread count
(`--threads 1,2`; default: the counts bnexp's tuner considers here) gets its own worker
process holding every loop, and every loop is timed at every count. A loop's figure is
its best count's; ratios compare best with best, and the table says which count bnexp's
tuner chose for each bnexp loop and whether it was the fastest (within 5%).

Only optimizer steps are timed (`mx.nd.waitall()` before starting and before stopping
the clock), after `--warmup` untimed steps. The blocks run interleaved, one per loop and
thread count per repeat, so that machine noise hits all of them alike; each figure is
the median over repeats, with min and max in the JSON.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from bnexp import options
from bnexp.command_name import invoked_as
from bnexp.config import ENGINE_CHOICES, probe_seconds_problem
from bnexp.errors import UserError
from bnexp.runtime import mxnet_import
from bnexp.runtime.threads import ThreadPolicy

VARIANTS = ("source", "plain-none", "plain-gluon", "none", "scratch", "gluon")  # the default set
# every normalization option can be measured by name (`--variants gluon group renorm`)
BNEXP_VARIANTS = tuple(options.option_files("bn"))
# PyTorch's eager loops of the same LeNet, where torch is installed (optional: not a dependency)
TORCH_VARIANTS = ("torch-none", "torch-gluon")
CHOICES = VARIANTS + tuple(v for v in BNEXP_VARIANTS if v not in VARIANTS) + TORCH_VARIANTS
DEFAULT_TARGET = 0.85


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=invoked_as("python -m bnexp.bench"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per block (30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each block (5)")
    p.add_argument("--repeats", type=int, default=3, help="blocks per variant, interleaved (3)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (128)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME",
                   help="which to measure, by space or comma (gluon,group,renorm): " + ", ".join(CHOICES)
                        + " (default: " + " ".join(VARIANTS) + "); every normalization's x reference "
                        "is gluon BN, measured in the same run")
    p.add_argument("--threads", default="auto",
                   help="thread counts to time every loop at, each in its own process: auto (the "
                        "counts bnexp's tuner considers on this machine) or a list such as 1,2")
    p.add_argument("--engines", default="naive,threaded",
                   help="MXNet engines to time every loop with, each in its own process "
                        "(naive,threaded: both)")
    p.add_argument("--probe-seconds", type=float, default=None,
                   help="seconds per option and round when the tuner must measure first "
                        "(perf.probe_seconds; default 0.5)")
    p.add_argument("--bn-floor", action="store_true",
                   help="also time BN layers alone: MXNet's BatchNorm, the from-scratch layer, and "
                        "the per-channel affine transform it cannot avoid (where MXNet sets the floor)")
    p.add_argument("--ctx", default="cpu", help="device, as bnexp's ctx setting (default cpu)")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST .gz files")
    p.add_argument("--source-workers", type=int, default=0,
                   help="DataLoader worker processes of the source loop (0, as the tutorial on CPU)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--time-to-accuracy", action="store_true",
                   help="also run `python -m bnexp.run` (default config) and time it to --target")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET, help="test accuracy (0.85)")
    p.add_argument("--run-to-end", action="store_true",
                   help="let the timed run finish instead of stopping it at the target")
    p.add_argument("--memory", action="store_true",
                   help="peak RSS of a default `bnexp.run` subprocess (/usr/bin/time -v); "
                        "measured on the --time-to-accuracy run if given, else on a run of "
                        "--memory-steps steps")
    p.add_argument("--memory-steps", type=int, default=120,
                   help="trainer.max_steps of the memory run (120: includes the first "
                        "full test-set evaluation at step 117)")
    p.add_argument("--run-override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override of the run bnexp is benchmarked for (repeatable): the "
                        "bnexp.run subprocesses take them all; the throughput loops' tuning takes "
                        "the run's length (trainer.epochs, max_steps, max_images) and perf.* settings")
    p.add_argument("--skip-throughput", action="store_true", help="only the subprocess measurements")
    p.add_argument("--run-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="kill a bnexp.run subprocess still going after this long (default 3600)")
    return checked(p, p.parse_args(argv))


def checked(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The arguments' ranges (argparse's one-line error otherwise), the lists parsed."""
    for key in ("steps", "repeats", "batch_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    problem = None if args.probe_seconds is None else probe_seconds_problem(args.probe_seconds)
    if problem:
        p.error(f"--probe-seconds={args.probe_seconds}: {problem}")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.batch_size > 60000:
        p.error("--batch-size must be at most 60000 (the training set size)")
    if args.threads != "auto":
        counts = args.threads.split(",")
        if not all(c.strip().isdigit() and int(c) >= 1 for c in counts):
            p.error(f"--threads must be auto or thread counts >= 1 separated by commas, "
                    f"not {args.threads!r}")
        args.threads = sorted({int(c) for c in counts})
    # `--variants gluon,group renorm`: the same names as bnexp's `bn=gluon,group` sweep syntax
    names = [name for arg in args.variants for name in arg.split(",") if name]
    unknown = [name for name in names if name not in CHOICES]
    if unknown or not names:
        p.error(f"--variants: unknown variant {', '.join(unknown) or '(none given)'}; choose from "
                + ", ".join(CHOICES))
    args.variants = list(dict.fromkeys(names))
    try:  # checked now, not after minutes of throughput measurements
        from bnexp.preflight import check_command_line
        check_command_line(args.run_override)
    except UserError as err:
        p.error(f"--run-override: {err}")
    args.engines = [e for e in args.engines.split(",") if e]
    if not args.engines or any(e not in ENGINE_CHOICES for e in args.engines):
        p.error(f"--engines: choose from {', '.join(ENGINE_CHOICES)}, separated by commas")
    if any(v in TORCH_VARIANTS for v in args.variants) and importlib.util.find_spec("torch") is None:
        p.error("--variants torch-*: PyTorch is not installed here (an optional extra: "
                "pip install torch, docs/speed.md)")
    return args


def tuner_reads(key: str) -> bool:
    """Whether a --run-override key is one the throughput loops' tuning follows: the run's
    length and its speed settings. The loops themselves are the bench's (its variants, LeNet,
    --batch-size), whatever network or optimizer the run is given."""
    return key.startswith("perf.") or key in ("trainer.epochs", "trainer.max_steps", "trainer.max_images")


def tuned_settings(args: argparse.Namespace) -> tuple[list[tuple[int, str]], dict, dict]:
    """The process settings to time (thread count x engine), each bnexp loop's (pool,
    bn_impl) in each as bnexp's tuning chooses them there for the run `--run-override`
    describes (measuring now if this machine has not been measured yet), and the tuner's
    own choice for each loop (everything "auto")."""
    from bnexp import tuning
    from bnexp.bench.compare import process_key
    from bnexp.validate import compose

    run = {o.split("=", 1)[0].lstrip("+~"): o for o in args.run_override}

    def choose(variant: str, threads: str, engine: str) -> tuning.Choice:
        own = {"bn": variant, "ctx": args.ctx, "trainer.batch_size": args.batch_size,
               "perf.threads": threads, "perf.engine": engine}
        if args.probe_seconds is not None:
            own["perf.probe_seconds"] = args.probe_seconds
        given = [o for key, o in run.items() if tuner_reads(key) and key not in own]
        cfg = compose([*given, *(f"{key}={value}" for key, value in own.items())])
        return tuning.choose(cfg, ThreadPolicy.resolve(threads))

    counts = ThreadPolicy.resolve().candidates() if args.threads == "auto" else args.threads
    processes = [(t, e) for t in counts for e in args.engines]
    variants = [v for v in args.variants if v in BNEXP_VARIANTS]
    tuned = {v: choose(v, "auto", "auto") for v in variants}
    layouts = {process_key(t, e): {v: [c.pool, c.bn_impl] for v in variants
                                   for c in [choose(v, str(t), e)]} for t, e in processes}
    return processes, layouts, {v: c.to_json() for v, c in tuned.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bnexp.bench import compare

    processes, layouts, tuned = tuned_settings(args)
    report: dict = {"machine": compare.machine_info(), "speed_settings": tuned,
                    "layouts_by_process": layouts,
                    "settings": {"steps": args.steps, "warmup": args.warmup,
                                 "repeats": args.repeats, "batch_size": args.batch_size,
                                 "variants": args.variants, "processes": processes,
                                 "ctx": args.ctx, "source_workers": args.source_workers,
                                 "timing": "optimizer steps only; mx.nd.waitall() before start "
                                           "and stop; every loop in every process setting "
                                           "(threads x engine), each in its own process, "
                                           "blocks interleaved"}}
    m = report["machine"]
    print(f"cpu: {m['cpu_model']} ({m['available_cores']}/{m['cores']} cores, "
          f"{' '.join(m['simd'])}), {m['mxnet']}, load average {m['loadavg']}")
    print("speed settings (bnexp.tuning): " + "; ".join(
        f"{v}: threads={c['threads']} engine={c['engine']} pool={c['pool']}"
        + (f" bn_impl={c['bn_impl']}" if c["bn_impl"] else "")
        + f" ({', '.join(sorted(set(c['source'].values()) - {'unused'}))})" for v, c in tuned.items()))
    if not args.skip_throughput:
        throughput(args, processes, layouts, tuned, report)
    if args.bn_floor:
        bn_floor(tuned, processes, report)
    run_measurements(args, report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def throughput(args: argparse.Namespace, processes: list[tuple[int, str]], layouts: dict,
               tuned: dict, report: dict) -> None:
    """Every loop in every process setting, best against best, and the target rows."""
    from bnexp.bench import compare
    print(f"throughput on {args.ctx}: batch {args.batch_size}, {args.warmup} warm-up + "
          f"{args.steps} timed steps per block, {args.repeats} repeats, threads x engine "
          + ", ".join(f"{t}x{e}" for t, e in processes))
    spec = {"batch_size": args.batch_size, "ctx": args.ctx, "data_root": args.data_root,
            "source_workers": args.source_workers}
    samples = compare.measure(args.variants, processes, layouts, args.steps, args.warmup,
                              args.repeats, spec)
    results = compare.summarize(samples, {v: compare.process_key(c["threads"], c["engine"])
                                          for v, c in tuned.items()})
    report["variants"] = results
    report["targets"] = compare.targets(results)
    print()
    print(compare.format_table(results))
    print("(median images/s over repeats in each process setting; best: the fastest, whose "
          "figures the ratios compare; tuner: the setting bnexp's tuning chose)")
    if report["targets"]:
        print("targets:")
        print(compare.format_targets(report["targets"]))


def bn_floor(tuned: dict, processes: list[tuple[int, str]], report: dict) -> None:
    """BN layers alone, in this process, with the threads and engine the tuner chose for scratch."""
    scratch = tuned.get("scratch") or {}
    threads = scratch.get("threads") or processes[0][0]
    mxnet_import.import_mxnet_or_exit(threads, scratch.get("engine") or processes[0][1])
    from bnexp.bench import measure
    print(f"\nBN layers alone, forward + backward (median ms, {threads} thread(s)):")
    report["bn_floor"] = measure.bn_floor()
    report["bn_profile"] = measure.bn_profiles((tuned.get("scratch") or {}).get("bn_impl", "centered"))
    print(measure.format_floor(report["bn_floor"], report["bn_profile"]))


def run_measurements(args: argparse.Namespace, report: dict) -> None:
    """Time to accuracy and peak memory of real `bnexp.run` subprocesses (if asked)."""
    from bnexp.bench import observe
    overrides = list(args.run_override)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.time_to_accuracy:
        print(f"\ntime to test accuracy {args.target}: python -m bnexp.run {' '.join(overrides)}")
        tta = observe.observe_run(overrides, args.target, not args.run_to_end, args.memory,
                                  timeout=args.run_timeout)
        report["time_to_accuracy"] = tta
        if tta["wall_seconds_to_target"] is None:
            print(f"  target {args.target} not reached (exit code {tta['returncode']})")
        else:
            mj = tta.get("metrics_json") or {}
            hit = mj.get("to_accuracy") or {}
            print(f"  reached {tta['test_acc_at_target']:.4f} at step {tta['step_at_target']}: "
                  f"{tta['wall_seconds_to_target']:.1f} s wall from process launch "
                  f"(training-only seconds per metrics.json: {hit.get('seconds')}; "
                  f"evaluated every {mj.get('eval_every_steps')} steps)")
        if args.memory:
            print(f"  peak RSS of that run: {tta['peak_rss_mb']} MB ({tta['peak_rss_source']})")
    if args.memory and not args.time_to_accuracy:
        mem_overrides = [f"trainer.max_steps={args.memory_steps}", *overrides]
        print(f"\npeak memory: python -m bnexp.run {' '.join(mem_overrides)}")
        mem = observe.observe_run(mem_overrides, None, False, True, timeout=args.run_timeout)
        report["memory"] = mem
        print(f"  peak RSS {mem['peak_rss_mb']} MB ({mem['peak_rss_source']}), "
              f"exit code {mem['returncode']}")
