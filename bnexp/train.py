"""The mechanics of training: the device-resident data, the network as configured, one
SGD step, an evaluation pass. The loop that orders them is bnexp/loop.py.

Nothing is read back from the device per batch: a step returns its loss and number
of correct answers as NDArrays, which `Accumulator` collects until the loop reads them.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from bnexp.bn import BNSpec
from bnexp.config import Config
from bnexp.model import initializer, lenet, mlp

log = logging.getLogger(__name__)


@dataclass
class DeviceSplit:
    """Images scaled to [0, 1] as (N, 1, 28, 28) float32, labels as float32, on one device."""
    images: nd.NDArray
    labels: nd.NDArray

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray, ctx: mx.Context) -> DeviceSplit:
        x = nd.array(images[:, None, :, :], ctx=ctx, dtype="uint8").astype("float32") / 255.0
        return cls(x, nd.array(labels, ctx=ctx, dtype="float32"))

    def __len__(self) -> int:
        return self.images.shape[0]


def build_net(cfg: Config, ctx: list[mx.Context]) -> gluon.HybridBlock:
    """LeNet for the configured BN variant, its weights drawn from the seed
    (`cfg.perf` picks pooling layout and BN formulation: speed only)."""
    mx.random.seed(cfg.seed)
    pool, bn_impl = cfg.perf.layout()
    spec = BNSpec(cfg.bn.variant, cfg.momentum, cfg.eps, bn_impl, cfg.bn.noise, cfg.bn.init,
                  cfg.model.init_sigma, cfg.seed)
    if cfg.model.name == "mlp":
        net = mlp(spec, tuple(cfg.model.hidden), cfg.model.activation)
    else:
        net = lenet(spec, cfg.model.bn_on_dense, pool)
    net.initialize(initializer(cfg.model.init, cfg.model.init_sigma), ctx=ctx)
    if cfg.model.hybridize and cfg.bn.variant == "scratch" and len(ctx) > 1:
        # MXNet 1.9's engine can deadlock running the custom moving-statistics
        # operator of several devices' cached graphs at once (seen on cpu:0,cpu:1).
        log.warning("bn=scratch on %d devices runs op by op (model.hybridize ignored)", len(ctx))
    elif cfg.model.hybridize:
        # A fixed batch shape (the last partial batch is dropped or padded) lets
        # MXNet plan all memory once.
        net.hybridize(static_alloc=True, static_shape=True)
    per_device = cfg.trainer.batch_size // len(ctx)
    for c in ctx:  # draw the (otherwise deferred) weights now, in a fixed order
        net(nd.zeros((per_device, 1, 28, 28), ctx=c))
    return net


def step_hooks(net: gluon.Block) -> list[Callable[[int], None]]:
    """What must learn the step number before each training step (bn=noisy's noise)."""
    hooks: list[Callable[[int], None]] = []
    net.apply(lambda block: hooks.append(block.set_step) if hasattr(block, "set_step") else None)
    return hooks


def make_trainer(net: gluon.Block, lr: float, ctx: list[mx.Context]) -> gluon.Trainer:
    return gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr},
                         kvstore="device" if len(ctx) > 1 else None)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a pure function of (seed, epoch),
    so a resumed run sees exactly the batches the uninterrupted run would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def split(batch: nd.NDArray, ctx: list[mx.Context]) -> list[nd.NDArray]:
    if len(ctx) == 1:
        return [batch]
    return gluon.utils.split_and_load(batch, ctx, even_split=True)


LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def train_step(net: gluon.Block, trainer: gluon.Trainer, images: nd.NDArray,
               labels: nd.NDArray, ctx: list[mx.Context]) -> tuple[nd.NDArray, nd.NDArray]:
    """One SGD step on the mean cross-entropy of the batch, split across `ctx`.
    Returns the batch's mean loss and correct count, still on the device."""
    xs, ys = split(images, ctx), split(labels, ctx)
    with autograd.record():
        outs = [net(x) for x in xs]
        losses = [LOSS(out, y) for out, y in zip(outs, ys)]
    autograd.backward(losses)
    batch_size = images.shape[0]
    trainer.step(batch_size)  # gradients of the summed loss, divided by the batch size
    home = ctx[0]
    loss = nd.add_n(*[l.sum().as_in_context(home) for l in losses]) / batch_size
    correct = nd.add_n(*[(o.argmax(axis=1) == y).sum().as_in_context(home)
                         for o, y in zip(outs, ys)])
    return loss, correct


EVAL_BATCH = 256  # at least this many images per evaluation pass (small training batches)


def evaluate(net: gluon.HybridBlock, data: DeviceSplit, batch_size: int,
             ctx: list[mx.Context]) -> tuple[float, float]:
    """Mean loss and accuracy over `data` in inference mode (BN on its moving statistics,
    so the pass size changes nothing computed), in passes of one fixed size: the training
    batch, or EVAL_BATCH if that is larger (a batch of 8 would take 1,250 passes over the
    test set). The last pass is padded with repeated samples that a mask leaves out."""
    per_device = max(batch_size, EVAL_BATCH) // len(ctx)
    batch_size = per_device * len(ctx)
    n = len(data)
    padded = math.ceil(n / batch_size) * batch_size
    order = nd.array(np.arange(padded) % n, ctx=data.images.context, dtype="int64")
    mask = nd.array(np.arange(padded) < n, ctx=data.images.context, dtype="float32")
    loss_sum = nd.zeros((1,), ctx=ctx[0])
    correct = nd.zeros((1,), ctx=ctx[0])
    for start in range(0, padded, batch_size):
        idx = order[start:start + batch_size]
        xs = split(nd.take(data.images, idx), ctx)
        ys = split(nd.take(data.labels, idx), ctx)
        ms = split(mask[start:start + batch_size], ctx)
        for x, y, m in zip(xs, ys, ms):
            out = net(x)
            loss_sum += (LOSS(out, y) * m).sum().as_in_context(ctx[0])
            correct += ((out.argmax(axis=1) == y) * m).sum().as_in_context(ctx[0])
    return loss_sum.asscalar() / n, correct.asscalar() / n


class Accumulator:
    """Per-step device values since the last read, and epoch totals on the host."""

    def __init__(self, batch_size: int, epoch_totals: dict | None = None):
        self.batch_size = batch_size
        self.losses: list[nd.NDArray] = []
        self.correct: list[nd.NDArray] = []
        self.epoch = dict(epoch_totals or {"loss": 0.0, "acc": 0.0, "steps": 0})

    def add(self, loss: nd.NDArray, correct: nd.NDArray) -> None:
        self.losses.append(loss)
        self.correct.append(correct)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-step losses and accuracies since the last read (one host sync)."""
        if not self.losses:
            return np.zeros(0), np.zeros(0)
        losses = nd.concat(*self.losses, dim=0).asnumpy()
        accs = nd.concat(*self.correct, dim=0).asnumpy() / self.batch_size
        self.losses, self.correct = [], []
        if np.all(np.isfinite(losses)):  # a diverged interval does not count
            self.epoch["loss"] += float(losses.sum())
            self.epoch["acc"] += float(accs.sum())
            self.epoch["steps"] += len(losses)
        return losses, accs

    def new_epoch(self) -> None:
        self.epoch = {"loss": 0.0, "acc": 0.0, "steps": 0}


