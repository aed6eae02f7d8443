"""The training loop: SGD on the device-resident dataset, periodic evaluation,
checkpoints, and a clean stop on request.

Nothing is read back from the device per batch: training loss and accuracy
accumulate as NDArrays and are read every `log_every_steps` steps, which is
also when a non-finite loss is noticed.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from omegaconf import OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bnexp import checkpoint
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
    """LeNet for the configured BN variant, its weights drawn from the seed
    (`cfg.perf` picks pooling layout and BN formulation: speed only)."""
    mx.random.seed(cfg.seed)
    pool, bn_impl = cfg.perf.layout()
    net = lenet(cfg.bn.variant, cfg.momentum, cfg.eps, cfg.model.bn_on_dense, pool, bn_impl)
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


def evaluate(net: gluon.HybridBlock, data: DeviceSplit, batch_size: int,
             ctx: list[mx.Context]) -> tuple[float, float]:
    """Mean loss and accuracy over `data`, in batches of the training shape.
    The last batch is padded with repeated samples that a mask leaves out."""
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


class Progress:
    """A tqdm bar on a terminal, plain log lines otherwise. Use as a context manager:
    while the bar is shown, console log lines are written above it (tqdm.write)
    instead of through it."""

    def __init__(self, mode: str, total: int, initial: int = 0):
        self.use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.total, self.initial = total, initial
        self.bar: tqdm | None = None
        self._redirect = contextlib.ExitStack()

    def __enter__(self) -> Progress:
        if self.use_bar:
            self._redirect.enter_context(logging_redirect_tqdm())
            self.bar = tqdm(total=self.total, initial=self.initial, unit="step", dynamic_ncols=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, step: int, values: dict[str, float], eval_line: bool = False) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self.bar is None:
            log.info("step %d/%d %s", step, self.total, text)
        elif eval_line:
            self.bar.write(f"step {step}/{self.total} {text}")
        else:
            self.bar.set_postfix_str(text, refresh=False)


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


def fit(cfg: Config, dataset: FashionMNIST, ctx: list[mx.Context], record: RunRecord,
        logger: RunLogger, run_dir: Path, process_start: float,
        stop_requested: Callable[[], str] = lambda: "", resume: bool = False) -> RunRecord:
    """Train as configured, filling `record` (curves, final metrics, status).
    `stop_requested()` names a signal that asks to stop after the current step ('' if none).
    With `resume`, continue from the checkpoint in `run_dir`."""
    tc = cfg.trainer
    train = DeviceSplit.from_numpy(dataset.train.images, dataset.train.labels, ctx[0])
    test_n = cfg.data.test_subset or len(dataset.test.labels)
    test = DeviceSplit.from_numpy(dataset.test.images[:test_n], dataset.test.labels[:test_n], ctx[0])
    net = build_net(cfg, ctx)
    trainer = make_trainer(net, cfg.lr, ctx)

    steps_per_epoch = len(train) // tc.batch_size
    total_steps = tc.epochs * steps_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    step, train_seconds, epoch_totals = 0, 0.0, None
    if resume:
        state = checkpoint.restore(run_dir, net, trainer)
        step, train_seconds, epoch_totals = state["step"], state["train_seconds"], state["epoch"]
        log.info("resumed from %s at step %d", run_dir / checkpoint.CHECKPOINT_FILE, step)
    acc = Accumulator(tc.batch_size, epoch_totals)
    log.info("training %s BN on %s: %d steps (%d per epoch), batch %d, lr %g",
             cfg.bn.variant, ",".join(str(c) for c in ctx), total_steps, steps_per_epoch,
             tc.batch_size, cfg.lr)
    progress = Progress(tc.progress, total_steps, initial=step)  # after the line above: not through the bar

    interval_start, interval_images = time.perf_counter(), 0

    def read_train_metrics() -> bool:
        """Log the steps since the last read; False if the loss became non-finite."""
        nonlocal train_seconds, interval_start, interval_images
        losses, accs = acc.read()
        elapsed = time.perf_counter() - interval_start
        train_seconds += elapsed
        record.steps, record.images_seen = step, step * tc.batch_size  # also if a later step fails
        record.train_seconds = train_seconds
        if not len(losses):
            return True
        limit = tc.diverge_above if tc.diverge_above is not None else np.inf
        bad = np.flatnonzero(~(losses <= limit))  # NaN compares false: caught too
        if bad.size:
            record.diverged_at_step = step - len(losses) + 1 + int(bad[0])
            logger.scalars(record.diverged_at_step, {"train/loss": float(losses[bad[0]])})
            return False
        loss, accuracy = float(losses.mean()), float(accs.mean())
        record.train_curve.append(TrainPoint(step, loss, accuracy))
        logger.scalars(step, {"train/loss": loss, "train/acc": accuracy, "lr": trainer.learning_rate,
                              "perf/images_per_sec": interval_images / elapsed})
        progress.report(step, {"loss": loss, "acc": accuracy})
        interval_start, interval_images = time.perf_counter(), 0
        return True

    def run_evaluation() -> None:
        nonlocal interval_start
        loss, accuracy = evaluate(net, test, tc.batch_size, ctx)
        record.eval_curve.append(EvalPoint(step, step * tc.batch_size, train_seconds, accuracy,
                                           loss, time.time() - process_start))
        record.final.update(test_loss=loss, test_acc=accuracy)
        logger.scalars(step, {"test/loss": loss, "test/acc": accuracy})
        progress.report(step, {"test_loss": loss, "test_acc": accuracy}, eval_line=True)
        interval_start = time.perf_counter()  # evaluation time is not training time

    def save_checkpoint() -> None:
        nonlocal interval_start
        state = {"step": step, "train_seconds": train_seconds, "epoch": acc.epoch,
                 "record": record.to_json(),
                 "config": OmegaConf.to_container(OmegaConf.structured(cfg))}
        checkpoint.save(run_dir, net, trainer, state)
        interval_start = time.perf_counter()

    status = "completed"
    with progress:
        while step < total_steps:
            epoch, batch = divmod(step, steps_per_epoch)
            if batch == 0:
                acc.new_epoch()
            order = nd.array(epoch_order(cfg.seed, epoch, len(train)), ctx=ctx[0], dtype="int64")
            for batch in range(batch, steps_per_epoch):
                idx = order[batch * tc.batch_size:(batch + 1) * tc.batch_size]
                acc.add(*train_step(net, trainer, nd.take(train.images, idx),
                                    nd.take(train.labels, idx), ctx))
                step += 1
                interval_images += tc.batch_size
                progress.step()
                end_of_epoch = batch == steps_per_epoch - 1
                stopping = stop_requested()
                evaluating = step % tc.eval_every_steps == 0 or end_of_epoch or step == total_steps
                if step % tc.log_every_steps == 0 or evaluating or stopping:
                    if not read_train_metrics():
                        status = "diverged"
                        break
                if evaluating:
                    run_evaluation()
                every = tc.checkpoint_every_epochs
                if (stopping or step == total_steps
                        or (end_of_epoch and every and (epoch + 1) % every == 0)):
                    save_checkpoint()  # and at the end: a finished run keeps its weights
                if stopping:
                    log.warning("%s received: stopped after step %d and wrote a checkpoint",
                                stopping, step)
                    status = "interrupted"
                    break
                if step == total_steps:
                    break
            if status != "completed":
                break

    if status == "diverged":
        log.error("training loss became non-finite or exceeded trainer.diverge_above at step %d: "
                  "the run diverged (try a smaller lr)", record.diverged_at_step)
    record.status = status
    record.steps = step
    record.images_seen = step * tc.batch_size
    record.train_seconds = train_seconds
    if acc.epoch["steps"]:
        record.final.update(train_loss=acc.epoch["loss"] / acc.epoch["steps"],
                            train_acc=acc.epoch["acc"] / acc.epoch["steps"])
    record.wall_seconds = time.time() - process_start
    return record
