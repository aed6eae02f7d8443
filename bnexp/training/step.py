"""The mechanics of training: the device-resident data, one SGD step, an evaluation pass.
The Trainer that orders them is bnexp/training/trainer.py.

Nothing is read back from the device per batch: a step returns its loss and number
of correct answers as NDArrays, which `Accumulator` collects until the loop reads them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd


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


def make_optimizer(net: gluon.Block, optimizer: mx.optimizer.Optimizer,
                   ctx: list[mx.Context]) -> gluon.Trainer:
    """`optimizer` (bnexp/training/optimizers.py) on every trainable parameter of `net`
    (gluon calls its optimizer driver `Trainer`)."""
    return gluon.Trainer(net.collect_params(), optimizer, kvstore="device" if len(ctx) > 1 else None)


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




def device_splits(dataset, val_size: int, val_seed: int, test_subset: int | None,
                  ctx: mx.Context) -> tuple[DeviceSplit, DeviceSplit | None, DeviceSplit]:
    """Training, validation (None unless `val_size`) and test images of a bnexp.data
    dataset, on the device `ctx`."""
    from bnexp.data import validation_split

    train_idx, val_idx = validation_split(dataset.train.labels, val_size, val_seed)
    train = DeviceSplit.from_numpy(dataset.train.images[train_idx], dataset.train.labels[train_idx], ctx)
    val = (DeviceSplit.from_numpy(dataset.train.images[val_idx], dataset.train.labels[val_idx], ctx)
           if len(val_idx) else None)
    test_n = test_subset or len(dataset.test.labels)
    test = DeviceSplit.from_numpy(dataset.test.images[:test_n], dataset.test.labels[:test_n], ctx)
    return train, val, test
