"""Training-throughput benchmark: bnexp's three BN variants against the source tutorial's loop.

    python -m bnexp.bench                                   # all four variants, defaults
    python -m bnexp.bench --steps 50 --warmup 5 --repeats 5 --json bench.json
    python -m bnexp.bench --variants source gluon --batch-size 256
    python -m bnexp.bench --time-to-accuracy --memory       # also time a real default run

Variants, all measured side by side in this one process:
  none, scratch, gluon  bnexp's own training step (`bnexp.train.build_net`, `DeviceSplit`,
                        `epoch_order`, the step of `bnexp.train.fit`), including its
                        periodic read of the accumulated training metrics.
  source                the source tutorial's loop re-implemented: an imperative `nd` LeNet
                        with the from-scratch BN *function*, a gluon DataLoader with a
                        per-sample ToTensor transform, a hand-written SGD update and two
                        `.asscalar()` host syncs per batch (its per-batch test-set
                        evaluation is left out: only training is measured).

Only optimizer steps are timed (`mx.nd.waitall()` before starting and before stopping
the clock), after `--warmup` untimed steps. The variants run interleaved, one block of
steps each per repeat (A B C D A B C D ...), so that machine noise hits all of them alike;
the table reports the median over repeats, with min and max.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import bnexp  # noqa: F401  (settles the MXNet thread variables before mxnet is imported)
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon.data.vision import transforms

from bnexp import context, data as bndata
from bnexp.config import Config
from bnexp.train import Accumulator, DeviceSplit, build_net, epoch_order, make_trainer, train_step

VARIANTS = ("source", "none", "scratch", "gluon")
BASELINES = ("source", "none")
DEFAULT_TARGET = 0.85


# --------------------------------------------------------------------------- bnexp's step
class BnexpRunner:
    """One bnexp BN variant trained exactly as `bnexp.train.fit` trains it (single
    device): the same `train_step`, the same `Accumulator`, read from the device
    every `trainer.log_every_steps` steps."""

    def __init__(self, variant: str, train: DeviceSplit, batch_size: int, ctx: mx.Context,
                 base: Config | None = None):
        cfg = base or Config()
        cfg = replace(cfg, bn=replace(cfg.bn, variant=variant),
                      trainer=replace(cfg.trainer, batch_size=batch_size))
        self.cfg, self.train, self.ctx = cfg, train, [ctx]
        self.batch_size = batch_size
        self.net = build_net(cfg, self.ctx)
        self.trainer = make_trainer(self.net, cfg.lr, self.ctx)
        self.acc = Accumulator(batch_size)
        self.steps_per_epoch = len(train) // batch_size
        self.epoch, self.batch, self.step_count = 0, 0, 0
        self.order = self._order(0)
        self.last_loss = float("nan")

    def _order(self, epoch: int) -> nd.NDArray:
        return nd.array(epoch_order(self.cfg.seed, epoch, len(self.train)),
                        ctx=self.ctx[0], dtype="int64")

    def read_metrics(self) -> None:
        """`fit`'s read of the accumulated metrics: one host sync."""
        losses, _ = self.acc.read()
        if len(losses):
            self.last_loss = float(losses.mean())

    def step(self) -> int:
        """One optimizer step; returns the number of images it trained on."""
        if self.batch == self.steps_per_epoch:  # fit drops the last partial batch
            self.epoch, self.batch = self.epoch + 1, 0
            self.order = self._order(self.epoch)
        bs = self.batch_size
        idx = self.order[self.batch * bs:(self.batch + 1) * bs]
        self.acc.add(*train_step(self.net, self.trainer, nd.take(self.train.images, idx),
                                 nd.take(self.train.labels, idx), self.ctx))
        self.batch += 1
        self.step_count += 1
        if self.step_count % self.cfg.trainer.log_every_steps == 0:
            self.read_metrics()
        return bs


# --------------------------------------------------------------------- the source's loop
def source_batch_norm(X: nd.NDArray, gamma: nd.NDArray, beta: nd.NDArray,
                      moving: dict[str, nd.NDArray], scope: str, is_training: bool,
                      momentum: float = 0.9, eps: float = 1e-5) -> nd.NDArray:
    """The tutorial's from-scratch BN function: imperative nd ops, moving averages
    updated in Python, the training flag passed by hand."""
    if X.ndim == 2:
        mean = nd.mean(X, axis=0)
        var = nd.mean((X - mean) ** 2, axis=0)
    else:
        mean = nd.mean(X, axis=(0, 2, 3), keepdims=True)
        var = nd.mean((X - mean) ** 2, axis=(0, 2, 3), keepdims=True)
    if is_training:
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # detach(): keep the moving averages out of the autograd graph (same cost,
        # no graph chained across steps)
        moving[scope + "_mean"] = momentum * moving[scope + "_mean"] + (1 - momentum) * mean.detach()
        moving[scope + "_var"] = momentum * moving[scope + "_var"] + (1 - momentum) * var.detach()
    else:
        X_hat = (X - moving[scope + "_mean"]) / nd.sqrt(moving[scope + "_var"] + eps)
    if X.ndim == 4:
        gamma = gamma.reshape((1, -1, 1, 1))
        beta = beta.reshape((1, -1, 1, 1))
    return gamma * X_hat + beta


def relu(X: nd.NDArray) -> nd.NDArray:
    return nd.maximum(X, 0)


class SourceRunner:
    """The source tutorial's training loop (see the module docstring)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 ctx: mx.Context, lr: float = 0.2, seed: int = 0, num_workers: int = 0):
        self.ctx, self.lr, self.batch_size = ctx, lr, batch_size
        mx.random.seed(seed)
        scale = 0.01

        def normal(*shape):
            return nd.random.normal(0, scale, shape=shape, ctx=ctx)

        # conv(20, 5x5) -> BN -> relu -> maxpool -> conv(50, 3x3) -> BN -> relu -> maxpool
        # -> flatten (1250) -> dense 128 relu -> dense 10; weights from normal(0, 0.01).
        # gamma/beta start at 1/0 and the moving variance at 1 (the tutorial's init
        # defects do not change the cost of a step).
        self.W1, self.b1 = normal(20, 1, 5, 5), nd.zeros(20, ctx=ctx)
        self.gamma1, self.beta1 = nd.ones(20, ctx=ctx), nd.zeros(20, ctx=ctx)
        self.W2, self.b2 = normal(50, 20, 3, 3), nd.zeros(50, ctx=ctx)
        self.gamma2, self.beta2 = nd.ones(50, ctx=ctx), nd.zeros(50, ctx=ctx)
        self.W3, self.b3 = normal(1250, 128), nd.zeros(128, ctx=ctx)
        self.W4, self.b4 = normal(128, 10), nd.zeros(10, ctx=ctx)
        self.params = [self.W1, self.b1, self.gamma1, self.beta1, self.W2, self.b2,
                       self.gamma2, self.beta2, self.W3, self.b3, self.W4, self.b4]
        for param in self.params:
            param.attach_grad()
        self.moving = {f"bn{i}_{s}": (nd.zeros if s == "mean" else nd.ones)((1, c, 1, 1), ctx=ctx)
                       for i, c in ((1, 20), (2, 50)) for s in ("mean", "var")}
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

        # What gluon.data.vision.FashionMNIST holds: uint8 HWC images as an NDArray.
        dataset = gluon.data.ArrayDataset(nd.array(images[..., None], dtype="uint8"),
                                          labels.astype(np.float32))
        self.loader = gluon.data.DataLoader(dataset.transform_first(transforms.ToTensor()),
                                            batch_size=batch_size, shuffle=True,
                                            num_workers=num_workers)
        self.batches = self._batches()
        self.last_loss = float("nan")
        self.last_acc = float("nan")

    def _batches(self) -> Iterator[tuple[nd.NDArray, nd.NDArray]]:
        while True:  # one epoch after another, reshuffled each time
            yield from self.loader

    def net(self, X: nd.NDArray, is_training: bool = True) -> nd.NDArray:
        h1 = nd.Convolution(data=X, weight=self.W1, bias=self.b1, kernel=(5, 5), num_filter=20)
        h1 = relu(source_batch_norm(h1, self.gamma1, self.beta1, self.moving, "bn1", is_training))
        h1 = nd.Pooling(data=h1, pool_type="max", kernel=(2, 2), stride=(2, 2))
        h2 = nd.Convolution(data=h1, weight=self.W2, bias=self.b2, kernel=(3, 3), num_filter=50)
        h2 = relu(source_batch_norm(h2, self.gamma2, self.beta2, self.moving, "bn2", is_training))
        h2 = nd.Pooling(data=h2, pool_type="max", kernel=(2, 2), stride=(2, 2))
        h2 = nd.flatten(h2)
        h3 = relu(nd.dot(h2, self.W3) + self.b3)
        return nd.dot(h3, self.W4) + self.b4

    def step(self) -> int:
        data, label = next(self.batches)
        data = data.as_in_context(self.ctx)
        label = label.as_in_context(self.ctx)
        with autograd.record():
            output = self.net(data, is_training=True)
            loss = self.loss_fn(output, label)
        loss.backward()
        for param in self.params:
            param[:] = param - self.lr * param.grad / self.batch_size
        self.last_loss = nd.mean(loss).asscalar()
        self.last_acc = nd.mean(output.argmax(axis=1) == label).asscalar()
        return data.shape[0]

    def read_metrics(self) -> None:
        pass  # already read every batch


# ---------------------------------------------------------------------------- measuring
@dataclass
class Samples:
    images_per_sec: list[float] = field(default_factory=list)
    ms_per_step: list[float] = field(default_factory=list)


def timed_block(runner, steps: int, warmup: int) -> tuple[float, float]:
    """`warmup` untimed steps, then `steps` timed ones: (images/s, ms/step)."""
    for _ in range(warmup):
        runner.step()
    runner.read_metrics()
    mx.nd.waitall()
    images = 0
    start = time.perf_counter()
    for _ in range(steps):
        images += runner.step()
    mx.nd.waitall()
    elapsed = time.perf_counter() - start
    runner.read_metrics()  # outside the clock: what is left to read after the block
    return images / elapsed, 1000.0 * elapsed / steps


def summarize(samples: dict[str, Samples]) -> dict[str, dict]:
    """Per variant: samples, median/min/max, and median ratios against the baselines."""
    out: dict[str, dict] = {}
    for name, s in samples.items():
        out[name] = {
            "images_per_sec": [round(v, 3) for v in s.images_per_sec],
            "ms_per_step": [round(v, 4) for v in s.ms_per_step],
            "median_images_per_sec": statistics.median(s.images_per_sec),
            "min_images_per_sec": min(s.images_per_sec),
            "max_images_per_sec": max(s.images_per_sec),
            "median_ms_per_step": statistics.median(s.ms_per_step),
        }
    for name, row in out.items():
        for base in BASELINES:
            ref = out.get(base)
            row[f"ratio_vs_{base}"] = (row["median_images_per_sec"] / ref["median_images_per_sec"]
                                       if ref else None)
    return out


def format_table(results: dict[str, dict]) -> str:
    header = (f"{'variant':<8} {'median img/s':>12} {'min':>9} {'max':>9} {'ms/step':>9} "
              f"{'x source':>9} {'x none':>7}")
    lines = [header, "-" * len(header)]

    def ratio(v):
        return f"{v:.2f}" if v is not None else "-"

    for name, r in results.items():
        lines.append(f"{name:<8} {r['median_images_per_sec']:>12.1f} {r['min_images_per_sec']:>9.1f} "
                     f"{r['max_images_per_sec']:>9.1f} {r['median_ms_per_step']:>9.2f} "
                     f"{ratio(r['ratio_vs_source']):>9} {ratio(r['ratio_vs_none']):>7}")
    return "\n".join(lines)


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "available_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "mxnet_version": mx.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": load,
    }


def make_runner(name: str, dataset: bndata.FashionMNIST, train: DeviceSplit, batch_size: int,
                ctx: mx.Context, source_workers: int):
    if name == "source":
        return SourceRunner(dataset.train.images, dataset.train.labels, batch_size, ctx,
                            num_workers=source_workers)
    return BnexpRunner(name, train, batch_size, ctx)


def benchmark(variants: list[str], steps: int, warmup: int, repeats: int, batch_size: int,
              ctx: mx.Context, data_root: str | None = None, source_workers: int = 0,
              echo: Callable[[str], None] = print) -> dict[str, dict]:
    dataset = bndata.load(data_root)
    train = DeviceSplit.from_numpy(dataset.train.images, dataset.train.labels, ctx)
    runners = {name: make_runner(name, dataset, train, batch_size, ctx, source_workers)
               for name in variants}
    samples = {name: Samples() for name in variants}
    for rep in range(repeats):
        for name in variants:  # interleaved: A B C D, A B C D, ...
            ips, ms = timed_block(runners[name], steps, warmup)
            samples[name].images_per_sec.append(ips)
            samples[name].ms_per_step.append(ms)
            echo(f"  repeat {rep + 1}/{repeats} {name:<8} {ips:9.1f} img/s {ms:8.2f} ms/step")
    for name, runner in runners.items():
        if not math.isfinite(runner.last_loss):
            echo(f"  warning: {name} training loss is not finite ({runner.last_loss})")
    return summarize(samples)


# ----------------------------------------------------------------- real-run measurements
_EVAL_LINE = re.compile(r"step (\d+)/\d+ test_loss=\S+ test_acc=([0-9.eE+-]+|nan)")


def parse_eval_line(line: str) -> tuple[int, float] | None:
    """`step 351/2340 test_loss=0.41 test_acc=0.8512` (bnexp.train's log line) -> (351, 0.8512)."""
    m = _EVAL_LINE.search(line)
    return (int(m.group(1)), float(m.group(2))) if m else None


def time_tool() -> str | None:
    path = "/usr/bin/time"
    if not os.access(path, os.X_OK):
        return None
    try:  # BusyBox's time has no -v
        ok = subprocess.run([path, "-v", "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return path if ok else None


def parse_time_v(text: str) -> int | None:
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    return int(m.group(1)) if m else None


def observe_run(overrides: list[str], target: float | None, stop_at_target: bool,
                measure_memory: bool, echo: Callable[[str], None] = print,
                command: list[str] | None = None) -> dict:
    """Run `python -m bnexp.run` in a temporary run dir, timestamping its log lines.

    Returns wall seconds from launching the subprocess to the log line of the first
    evaluation at or above `target` (exact up to pipe latency), the run's own
    milestones from metrics.json, and peak RSS if asked. With `stop_at_target` the run
    is sent SIGINT (bnexp's graceful stop) once the target is reached.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bnexp-bench-"))
    run_dir = tmp / "run"
    cmd = command or [sys.executable, "-m", "bnexp.run", f"hydra.run.dir={run_dir}",
                      "trainer.progress=log", *overrides]
    timer = time_tool() if measure_memory else None
    time_out = tmp / "time.txt"
    if timer:
        cmd = [timer, "-v", "-o", str(time_out), *cmd]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result: dict = {"command": cmd, "overrides": overrides, "target": target}
    hit_wall = hit_step = hit_acc = None
    evals: list[dict] = []
    tail: list[str] = []  # the last lines of output, to show why a run failed
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - start
            tail = (tail + [line.rstrip()])[-20:]
            parsed = parse_eval_line(line)
            if parsed is None:
                continue
            step, acc = parsed
            evals.append({"step": step, "test_acc": acc, "wall_seconds": round(now, 3)})
            echo(f"  [{now:7.1f} s] step {step}: test acc {acc:.4f}")
            if target is not None and hit_wall is None and acc >= target:
                hit_wall, hit_step, hit_acc = now, step, acc
                if stop_at_target:
                    os.killpg(proc.pid, signal.SIGINT)  # our own child's group only
        returncode = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    result["process_seconds"] = round(time.perf_counter() - start, 3)
    result["returncode"] = returncode
    result["stopped_at_target"] = bool(stop_at_target and hit_wall is not None)
    result["eval_log"] = evals
    if returncode != 0 and not result["stopped_at_target"]:
        result["output_tail"] = tail
        echo(f"  bnexp.run exited with code {returncode}:\n    " + "\n    ".join(tail[-8:]))
    result["wall_seconds_to_target"] = round(hit_wall, 3) if hit_wall is not None else None
    result["step_at_target"] = hit_step
    result["test_acc_at_target"] = hit_acc
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        key = f"{target:.2f}" if target is not None else None
        result["metrics_json"] = {
            "status": m.get("status"), "steps": m.get("steps"),
            "train_seconds": m.get("train_seconds"), "wall_seconds": m.get("wall_seconds"),
            "to_accuracy": (m.get("to_accuracy") or {}).get(key) if key else None,
            "eval_every_steps": m.get("config", {}).get("trainer.eval_every_steps"),
        }
    if measure_memory:
        if timer and time_out.is_file():
            result["peak_rss_mb"] = round(parse_time_v(time_out.read_text()) / 1024, 1)
            result["peak_rss_source"] = "/usr/bin/time -v (Maximum resident set size)"
        else:  # max over all children this process has waited for
            result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
            result["peak_rss_source"] = "resource.getrusage(RUSAGE_CHILDREN).ru_maxrss"
    shutil.rmtree(tmp, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------- the CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bnexp.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per block (30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each block (5)")
    p.add_argument("--repeats", type=int, default=3, help="blocks per variant, interleaved (3)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (128)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="which to measure (default: all, in the order source none scratch gluon)")
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
                   help="extra Hydra override for the bnexp.run subprocesses (repeatable)")
    p.add_argument("--skip-throughput", action="store_true", help="only the subprocess measurements")
    args = p.parse_args(argv)
    for key in ("steps", "repeats", "batch_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.batch_size > 60000:
        p.error("--batch-size must be at most 60000 (the training set size)")
    args.variants = list(dict.fromkeys(args.variants))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict = {"machine": machine_info(),
                    "settings": {"steps": args.steps, "warmup": args.warmup,
                                 "repeats": args.repeats, "batch_size": args.batch_size,
                                 "variants": args.variants, "ctx": args.ctx,
                                 "source_workers": args.source_workers,
                                 "timing": "optimizer steps only; mx.nd.waitall() before start "
                                           "and stop; variants interleaved across repeats"}}
    m = report["machine"]
    print(f"cpu: {m['cpu_model']} ({m['available_cores']}/{m['cores']} cores), "
          f"OMP_NUM_THREADS={m['OMP_NUM_THREADS']}, mxnet {m['mxnet_version']}, "
          f"load average {m['loadavg']}")
    if not args.skip_throughput:
        ctx = context.resolve(args.ctx)[0]
        print(f"throughput on {ctx}: batch {args.batch_size}, {args.warmup} warm-up + "
              f"{args.steps} timed steps per block, {args.repeats} repeats")
        results = benchmark(args.variants, args.steps, args.warmup, args.repeats,
                            args.batch_size, ctx, args.data_root, args.source_workers)
        report["variants"] = results
        report["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print()
        print(format_table(results))
        print("(median over repeats; x source / x none = ratio of median images/s)")

    overrides = list(args.run_override)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.time_to_accuracy:
        print(f"\ntime to test accuracy {args.target}: python -m bnexp.run {' '.join(overrides)}")
        tta = observe_run(overrides, args.target, not args.run_to_end, args.memory)
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
        mem = observe_run(mem_overrides, None, False, True)
        report["memory"] = mem
        print(f"  peak RSS {mem['peak_rss_mb']} MB ({mem['peak_rss_source']}), "
              f"exit code {mem['returncode']}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
