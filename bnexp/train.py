"""The training loop: SGD on the device-resident dataset, periodic evaluation.

Nothing is read back from the device per batch: training loss and accuracy
accumulate as NDArrays and are read every `log_every_steps` steps, which is
also when a non-finite loss is noticed.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from tqdm import tqdm

from bnexp.config import Config
from bnexp.data import FashionMNIST
from bnexp.metrics import EvalPoint, RunRecord, TrainPoint
from bnexp.model import initializer, lenet
from bnexp.tblog import RunLogger

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
    """LeNet for the configured BN variant, initialized from the seed."""
    mx.random.seed(cfg.seed)
    net = lenet(cfg.bn.variant, cfg.momentum, cfg.eps, cfg.model.bn_on_dense)
    net.initialize(initializer(cfg.model.init, cfg.model.init_sigma), ctx=ctx)
    if cfg.model.hybridize:
        # A fixed batch shape (the last partial batch is dropped or padded) lets
        # MXNet plan all memory once.
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a pure function of (seed, epoch),
    so a resumed run sees exactly the batches the uninterrupted run would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def split(batch: nd.NDArray, ctx: list[mx.Context]) -> list[nd.NDArray]:
    if len(ctx) == 1:
        return [batch]
    return gluon.utils.split_and_load(batch, ctx, even_split=True)


def evaluate(net: gluon.HybridBlock, data: DeviceSplit, batch_size: int,
             ctx: list[mx.Context]) -> tuple[float, float]:
    """Mean loss and accuracy over `data`, in batches of the training shape.
    The last batch is padded with repeated samples that a mask leaves out."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
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
            loss_sum += (loss_fn(out, y) * m).sum().as_in_context(ctx[0])
            correct += ((out.argmax(axis=1) == y) * m).sum().as_in_context(ctx[0])
    return loss_sum.asscalar() / n, correct.asscalar() / n


class Progress:
    """A tqdm bar on a terminal, plain log lines otherwise."""

    def __init__(self, mode: str, total: int, initial: int = 0):
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True) if use_bar else None
        self.total = total

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, step: int, values: dict[str, float], eval_line: bool = False) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            if eval_line:
                self.bar.write(f"step {step}/{self.total} {text}")
        else:
            log.info("step %d/%d %s", step, self.total, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(cfg: Config, dataset: FashionMNIST, ctx: list[mx.Context], record: RunRecord,
        logger: RunLogger, process_start: float,
        stop_requested: Callable[[], bool] = lambda: False) -> RunRecord:
    """Train as configured, filling `record` (curves, final metrics, status)."""
    tc = cfg.trainer
    if tc.batch_size % len(ctx):
        raise ValueError(f"trainer.batch_size={tc.batch_size} must divide evenly across "
                         f"{len(ctx)} devices")
    train = DeviceSplit.from_numpy(dataset.train.images, dataset.train.labels, ctx[0])
    test_n = cfg.data.test_subset or len(dataset.test.labels)
    test = DeviceSplit.from_numpy(dataset.test.images[:test_n], dataset.test.labels[:test_n], ctx[0])

    net = build_net(cfg, ctx)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": cfg.lr},
                            kvstore="device" if len(ctx) > 1 else None)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    steps_per_epoch = len(train) // tc.batch_size
    total_steps = tc.epochs * steps_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    progress = Progress(tc.progress, total_steps)
    log.info("training %s BN on %s: %d steps (%d per epoch), batch %d, lr %g",
             cfg.bn.variant, ",".join(str(c) for c in ctx), total_steps, steps_per_epoch,
             tc.batch_size, cfg.lr)

    step_losses: list[nd.NDArray] = []   # per-step mean loss since the last read
    step_correct: list[nd.NDArray] = []  # per-step correct count since the last read
    epoch_loss, epoch_acc, epoch_steps = 0.0, 0.0, 0
    train_seconds = 0.0
    interval_start = time.perf_counter()
    interval_images = 0
    step = 0

    def read_train_metrics() -> bool:
        """Fold the pending per-step values into the curves; False if the loss diverged."""
        nonlocal step_losses, step_correct, epoch_loss, epoch_acc, epoch_steps
        nonlocal train_seconds, interval_start, interval_images
        if not step_losses:
            return True
        losses = nd.concat(*step_losses, dim=0).asnumpy()
        correct = nd.concat(*step_correct, dim=0).asnumpy()
        now = time.perf_counter()
        elapsed = now - interval_start
        train_seconds += elapsed
        first_step = step - len(losses) + 1
        bad = np.flatnonzero(~np.isfinite(losses))
        loss, acc = float(losses.mean()), float(correct.sum() / (len(losses) * tc.batch_size))
        step_losses, step_correct = [], []
        if bad.size:
            record.diverged_at_step = int(first_step + bad[0])
            return False
        epoch_loss += float(losses.sum())
        epoch_acc += float(correct.sum()) / tc.batch_size
        epoch_steps += len(losses)
        record.train_curve.append(TrainPoint(step, loss, acc))
        values = {"train/loss": loss, "train/acc": acc, "lr": trainer.learning_rate,
                  "perf/images_per_sec": interval_images / elapsed}
        logger.scalars(step, values)
        progress.report(step, {"loss": loss, "acc": acc})
        interval_start, interval_images = time.perf_counter(), 0
        return True

    def run_evaluation() -> None:
        nonlocal interval_start
        loss, acc = evaluate(net, test, tc.batch_size, ctx)
        record.eval_curve.append(EvalPoint(step, step * tc.batch_size, train_seconds, acc, loss))
        record.final.update(test_loss=loss, test_acc=acc)
        logger.scalars(step, {"test/loss": loss, "test/acc": acc})
        progress.report(step, {"test_loss": loss, "test_acc": acc}, eval_line=True)
        interval_start = time.perf_counter()  # evaluation time is not training time

    status = "completed"
    for epoch in range(math.ceil(total_steps / steps_per_epoch)):
        order = nd.array(epoch_order(cfg.seed, epoch, len(train)), ctx=ctx[0], dtype="int64")
        epoch_loss, epoch_acc, epoch_steps = 0.0, 0.0, 0
        for batch in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = order[batch * tc.batch_size:(batch + 1) * tc.batch_size]
            xs = split(nd.take(train.images, idx), ctx)
            ys = split(nd.take(train.labels, idx), ctx)
            with autograd.record():
                outs = [net(x) for x in xs]
                losses = [loss_fn(out, y) for out, y in zip(outs, ys)]
            autograd.backward(losses)
            trainer.step(tc.batch_size)
            step += 1
            interval_images += tc.batch_size
            step_losses.append(nd.add_n(*[l.sum().as_in_context(ctx[0]) for l in losses])
                               / tc.batch_size)
            step_correct.append(nd.add_n(*[(o.argmax(axis=1) == y).sum().as_in_context(ctx[0])
                                           for o, y in zip(outs, ys)]))
            progress.step()
            end_of_epoch = batch == steps_per_epoch - 1 or step == total_steps
            if step % tc.log_every_steps == 0 or end_of_epoch or step % tc.eval_every_steps == 0:
                if not read_train_metrics():
                    status = "diverged"
                    break
            if step % tc.eval_every_steps == 0 or end_of_epoch:
                run_evaluation()
            if stop_requested():
                read_train_metrics()
                status = "interrupted"
                break
        if status != "completed" or step >= total_steps:
            break
    progress.close()

    if status == "diverged":
        log.error("loss became non-finite at step %d: the run diverged (try a smaller lr)",
                  record.diverged_at_step)
    record.status = status
    record.steps = step
    record.images_seen = step * tc.batch_size
    record.train_seconds = train_seconds
    if epoch_steps:
        record.final.update(train_loss=epoch_loss / epoch_steps, train_acc=epoch_acc / epoch_steps)
    record.wall_seconds = time.time() - process_start
    return record
