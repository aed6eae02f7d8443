"""Timing inside one process (MXNet imported): blocks of optimizer steps of a loop
(bnexp/bench/worker.py asks for them), and a per-layer profile of BN for where MXNet's own
kernels set the floor."""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Callable

import mxnet as mx
from mxnet import autograd, gluon, nd

from bnexp import data as bndata
from bnexp.bench.runners import BnexpRunner, PlainRunner, SourceRunner
from bnexp.nn.norm.formulations import channel_affine
from bnexp.nn.norm.scratch import ScratchBatchNorm, formulations
from bnexp.training.step import DeviceSplit


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


def make_runners(variants: list[str], batch_size: int, ctx: mx.Context,
                 layouts: dict[str, tuple[str, str]], data_root: str | None = None,
                 source_workers: int = 0, threads: int = 1) -> dict:
    """The loops to time, on the real training set. `layouts`: the (pool, bn_impl)
    bnexp's tuning chose for each bnexp variant in this process's setting; `threads`: its
    thread count (PyTorch's loops set theirs)."""
    dataset = bndata.load(data_root)
    train = DeviceSplit.from_numpy(dataset.train.images, dataset.train.labels, ctx)
    runners = {}
    for name in variants:
        if name == "source":
            runners[name] = SourceRunner(dataset.train.images, dataset.train.labels, batch_size,
                                         ctx, num_workers=source_workers)
        elif name.startswith("plain-"):
            runners[name] = PlainRunner(name.split("-", 1)[1], train, batch_size, ctx)
        elif name.startswith("torch-"):
            from bnexp.bench.torch_runner import TorchRunner
            runners[name] = TorchRunner(name.split("-", 1)[1], dataset.train.images,
                                        dataset.train.labels, batch_size, threads)
        else:
            runners[name] = BnexpRunner(name, train, batch_size, ctx, *layouts[name])
    return runners


# ------------------------------------------------------------------------ BN's floor
# LeNet's two BN inputs at batch 128: after conv(20, 5x5) and after conv(50, 3x3).
BN_SHAPES = ((128, 20, 24, 24), (128, 50, 10, 10))


class ChannelAffine(gluon.HybridBlock):
    """x * s[c] + t[c] alone, as ScratchBatchNorm forms its output (a 1x1 depthwise
    convolution), or as broadcast ops (whose backward are MXNet's slow reductions)."""

    def __init__(self, channels: int, how: str, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.how = channels, how
        with self.name_scope():
            self.s = self.params.get("s", shape=(channels,), init="ones")
            self.t = self.params.get("t", shape=(channels,), init="zeros")

    def hybrid_forward(self, F, x, s, t):
        if self.how == "depthwise":
            return channel_affine(F, x, s, t, self.channels)
        return F.broadcast_add(F.broadcast_mul(x, F.reshape(s, (1, -1, 1, 1))),
                               F.reshape(t, (1, -1, 1, 1)))


def training_pass(block: gluon.HybridBlock, shape: tuple[int, ...]) -> Callable[[], None]:
    """`block`, initialized and hybridized, as one forward + backward pass on random input
    of `shape`, warmed up."""
    block.initialize(ctx=mx.cpu())
    block.hybridize(static_alloc=True, static_shape=True)
    x = nd.random.normal(shape=shape)
    x.attach_grad()

    def once():
        with autograd.record():
            y = block(x)
        y.backward()

    for _ in range(3):
        once()
    return once


def layer_ms(block: gluon.HybridBlock, shape: tuple[int, ...], steps: int, repeats: int) -> float:
    """Median ms of one forward + backward pass of `block` in training mode."""
    once = training_pass(block, shape)
    times = []
    for _ in range(repeats):
        mx.nd.waitall()
        start = time.perf_counter()
        for _ in range(steps):
            once()
        mx.nd.waitall()
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times)


def bn_floor(steps: int = 20, repeats: int = 5) -> list[dict]:
    """Forward + backward ms of MXNet's fused BatchNorm, of the from-scratch layer (each
    formulation; the compiled one where it builds), and of the per-channel affine transform
    alone, at LeNet's BN shapes."""
    impls = ["reference", *formulations("cpu")]
    rows = []
    for shape in BN_SHAPES:
        c = shape[1]
        blocks = {"gluon BatchNorm": gluon.nn.BatchNorm(in_channels=c),
                  **{f"scratch ({impl})": ScratchBatchNorm(in_channels=c, formulation=impl)
                     for impl in impls},
                  "affine only, depthwise conv": ChannelAffine(c, "depthwise"),
                  "affine only, broadcast ops": ChannelAffine(c, "broadcast")}
        for name, block in blocks.items():
            rows.append({"shape": "x".join(map(str, shape)), "what": name,
                         "ms": round(layer_ms(block, shape, steps, repeats), 3)})
    return rows


def profile_ops(block: gluon.HybridBlock, shape: tuple[int, ...], steps: int = 5) -> list[dict]:
    """MXNet's profiler on forward + backward of `block`, op by op (bulk execution off so
    that each operator is timed on its own): ms per pass for each operator, costliest first."""
    import json
    import tempfile

    from mxnet import profiler
    os.environ["MXNET_EXEC_BULK_EXEC_TRAIN"] = "0"  # read when the graph is built, below
    try:
        once = training_pass(block, shape)
        mx.nd.waitall()
        # dumps() also writes the profile to `filename`, replacing the file: never os.devnull
        # (as root that turned /dev/null into a plain file), a folder of its own instead
        with tempfile.TemporaryDirectory(prefix="bnexp-profile-") as folder:
            profiler.set_config(profile_all=True, aggregate_stats=True,
                                filename=os.path.join(folder, "profile.json"))
            profiler.set_state("run")
            for _ in range(steps):
                once()
            mx.nd.waitall()
            profiler.set_state("stop")
            stats = json.loads(profiler.dumps(reset=True, format="json"))
    finally:
        os.environ.pop("MXNET_EXEC_BULK_EXEC_TRAIN", None)
    ops = [{"op": name, "ms": round(entry["Total"] / steps, 3), "calls": entry["Count"] // steps}
           for section in ("operator", "Custom Operator") for name, entry in
           stats.get("Time", {}).get(section, {}).items()
           # DeleteVariable: freeing; SetValueOp: zeroing the test input's gradient each pass
           if name not in ("DeleteVariable", "SetValueOp")]
    return sorted(ops, key=lambda op: -op["ms"])


def bn_profiles(bn_impl: str) -> dict[str, list[dict]]:
    """Operator by operator: gluon's BatchNorm and the from-scratch layer at LeNet's first BN."""
    shape, c = BN_SHAPES[0], BN_SHAPES[0][1]
    return {"gluon BatchNorm": profile_ops(gluon.nn.BatchNorm(in_channels=c), shape),
            f"scratch ({bn_impl})": profile_ops(ScratchBatchNorm(in_channels=c, formulation=bn_impl), shape)}


def format_floor(rows: list[dict], profiles: dict[str, list[dict]] | None = None) -> str:
    lines = [f"{'BN input':<16} {'forward + backward':<32} {'ms':>8}"]
    lines += [f"{r['shape']:<16} {r['what']:<32} {r['ms']:>8.2f}" for r in rows]
    for name, ops in (profiles or {}).items():
        total = sum(op["ms"] for op in ops)
        lines.append(f"\nMXNet profiler, {name} at {'x'.join(map(str, BN_SHAPES[0]))}, bulk "
                     f"execution off (ms per forward + backward; {total:.1f} in all):")
        lines += [f"  {op['op']:<34} {op['ms']:>7.2f}  ({op['calls']} call(s))" for op in ops[:10]]
    return "\n".join(lines)
