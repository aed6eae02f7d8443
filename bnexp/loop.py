"""The training loop: it owns the order of things and tells the monitors what happened.

Per optimizer step: the step's batch is chosen (a pure function of seed and epoch,
so a resumed run sees the same batches), layers that follow the step number learn
it (bn=noisy), monitors hear `on_step_start`, the SGD step is taken, monitors hear
`on_step_end`. At the scheduled steps (bnexp/schedule.py) the network is evaluated
and monitors hear `on_evaluation`; at the end, `on_run_end`. Diagnostics live in
bnexp/monitors/ and never change the trajectory: anything they compute on the side
is undone before the loop goes on.

Nothing is read back from the device per batch: training loss and accuracy
accumulate as NDArrays and are read every `trainer.log_every_steps` steps, which is
also when a non-finite loss is noticed.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from omegaconf import OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bnexp import checkpoint, data, schedule
from bnexp.config import Config, effective_lr
from bnexp.metrics import EvalPoint, RunRecord, TrainPoint
from bnexp.tblog import RunLogger
from bnexp.train import (Accumulator, DeviceSplit, build_net, epoch_order, evaluate,
                         make_trainer, step_hooks, train_step)

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """What the loop and its monitors share. Monitors read it; the loop changes it."""
    cfg: Config
    net: gluon.HybridBlock
    trainer: gluon.Trainer
    ctx: list[mx.Context]
    train: DeviceSplit
    record: RunRecord
    logger: RunLogger
    steps_per_epoch: int
    total_steps: int
    step: int = 0                          # optimizer steps taken
    images: nd.NDArray | None = None       # the batch of the current step
    labels: nd.NDArray | None = None
    train_seconds: float = 0.0             # optimizer time only
    aside_seconds: float = 0.0             # monitors' measurements: off the training clock
    monitors: list = field(default_factory=list)

    def emit(self, event: str, *args) -> None:
        for monitor in self.monitors:
            getattr(monitor, event)(self, *args)

    @contextlib.contextmanager
    def aside(self):
        """Work off the training clock (a monitor measuring): what training queued on the
        device finishes first, then the block's time is kept apart."""
        mx.nd.waitall()
        start = time.perf_counter()
        try:
            yield
        finally:
            mx.nd.waitall()
            self.aside_seconds += time.perf_counter() - start


def take_step(state: LoopState, images: nd.NDArray, labels: nd.NDArray, acc: Accumulator,
              hooks: list[Callable[[int], None]]) -> None:
    """One optimizer step as the loop takes it: the layers that follow the step number
    learn it, monitors hear on_step_start, SGD steps, monitors hear on_step_end. (The
    benchmark times this very function: bnexp.bench.runners.BnexpRunner.)"""
    state.images, state.labels = images, labels
    for hook in hooks:
        hook(state.step)
    state.emit("on_step_start")
    acc.add(*train_step(state.net, state.trainer, images, labels, state.ctx))
    state.step += 1
    state.emit("on_step_end")


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


def device_splits(cfg: Config, dataset: data.FashionMNIST, ctx: mx.Context
                  ) -> tuple[DeviceSplit, DeviceSplit | None, DeviceSplit]:
    """Training, validation (None unless data.val_size) and test images on the device."""
    train_idx, val_idx = data.validation_split(dataset.train.labels, cfg.data.val_size,
                                               cfg.data.val_seed)
    train = DeviceSplit.from_numpy(dataset.train.images[train_idx], dataset.train.labels[train_idx], ctx)
    val = (DeviceSplit.from_numpy(dataset.train.images[val_idx], dataset.train.labels[val_idx], ctx)
           if len(val_idx) else None)
    test_n = cfg.data.test_subset or len(dataset.test.labels)
    test = DeviceSplit.from_numpy(dataset.test.images[:test_n], dataset.test.labels[:test_n], ctx)
    return train, val, test


def fit(cfg: Config, dataset: data.FashionMNIST, ctx: list[mx.Context], record: RunRecord,
        logger: RunLogger, run_dir: Path, process_start: float,
        stop_requested: Callable[[], str] = lambda: "", resume: bool = False,
        monitors: list | None = None) -> RunRecord:
    """Train as configured, filling `record` (curves, final metrics, status).
    `stop_requested()` names a signal that asks to stop after the current step ('' if none).
    With `resume`, continue from the checkpoint in `run_dir`."""
    tc = cfg.trainer
    train, val, test = device_splits(cfg, dataset, ctx[0])
    watched, watched_name = (val, "val") if val is not None else (test, "test")
    net = build_net(cfg, ctx)
    lr = effective_lr(cfg)
    trainer = make_trainer(net, lr, ctx)
    steps_per_epoch = len(train) // tc.batch_size
    total_steps = tc.epochs * steps_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    if tc.max_images is not None:
        total_steps = min(total_steps, tc.max_images // tc.batch_size)
    state = LoopState(cfg, net, trainer, ctx, train, record, logger, steps_per_epoch, total_steps,
                      monitors=list(monitors or []))
    epoch_totals = None
    if resume:
        saved = checkpoint.restore(run_dir, net, trainer)
        state.step, state.train_seconds, epoch_totals = (saved["step"], saved["train_seconds"],
                                                         saved["epoch"])
        log.info("resumed from %s at step %d", run_dir / checkpoint.CHECKPOINT_FILE, state.step)
    acc = Accumulator(tc.batch_size, epoch_totals)
    due = schedule.evaluation_steps(tc.eval_schedule, tc.eval_every_steps, steps_per_epoch,
                                    total_steps)
    hooks = step_hooks(net)
    log.info("training %s BN (%s) on %s: %d steps (%d per epoch), batch %d, lr %g, %d "
             "evaluations on %s", cfg.bn.variant, cfg.model.name,
             ",".join(str(c) for c in ctx), total_steps, steps_per_epoch, tc.batch_size, lr,
             len([s for s in due if s > state.step]), watched_name)
    progress = Progress(tc.progress, total_steps, initial=state.step)  # after the line above
    interval = {"start": time.perf_counter(), "images": 0, "aside": 0.0}

    def restart_clock() -> None:
        interval.update(start=time.perf_counter(), aside=state.aside_seconds)

    def read_train_metrics() -> bool:
        """Log the steps since the last read; False if the loss became non-finite."""
        losses, accs = acc.read()
        elapsed = (time.perf_counter() - interval["start"]
                   - (state.aside_seconds - interval["aside"]))
        state.train_seconds += elapsed
        step = state.step
        record.steps, record.images_seen = step, step * tc.batch_size  # also if a later step fails
        record.train_seconds = state.train_seconds
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
                              "perf/images_per_sec": interval["images"] / elapsed})
        progress.report(step, {"loss": loss, "acc": accuracy})
        restart_clock()
        interval["images"] = 0
        return True

    def run_evaluation(split: DeviceSplit, name: str) -> dict[str, float]:
        start = time.perf_counter()
        loss, accuracy = evaluate(net, split, tc.batch_size, ctx)
        record.eval_seconds += time.perf_counter() - start
        record.final.update({f"{name}_loss": loss, f"{name}_acc": accuracy})
        logger.scalars(state.step, {f"{name}/loss": loss, f"{name}/acc": accuracy})
        progress.report(state.step, {f"{name}_loss": loss, f"{name}_acc": accuracy}, eval_line=True)
        restart_clock()  # evaluation time is not training time
        return {"loss": loss, "acc": accuracy}

    def save_checkpoint() -> None:
        saved = {"step": state.step, "train_seconds": state.train_seconds, "epoch": acc.epoch,
                 "record": record.to_json(),
                 "config": OmegaConf.to_container(OmegaConf.structured(cfg))}
        checkpoint.save(run_dir, net, trainer, saved)
        restart_clock()

    status = "completed"
    with progress:
        while state.step < total_steps:
            epoch, batch = divmod(state.step, steps_per_epoch)
            if batch == 0:
                acc.new_epoch()
            order = nd.array(epoch_order(cfg.seed, epoch, len(train)), ctx=ctx[0], dtype="int64")
            for batch in range(batch, steps_per_epoch):
                idx = order[batch * tc.batch_size:(batch + 1) * tc.batch_size]
                take_step(state, nd.take(train.images, idx), nd.take(train.labels, idx), acc, hooks)
                interval["images"] += tc.batch_size
                progress.step()
                step = state.step
                end_of_epoch = batch == steps_per_epoch - 1
                stopping = stop_requested()
                evaluating = step in due
                if step % tc.log_every_steps == 0 or evaluating or stopping:
                    if not read_train_metrics():
                        status = "diverged"
                        break
                if evaluating:
                    metrics = run_evaluation(watched, watched_name)
                    record.eval_curve.append(EvalPoint(
                        step, step * tc.batch_size, state.train_seconds, metrics["acc"],
                        metrics["loss"], time.time() - process_start, watched_name))
                    state.emit("on_evaluation", metrics)
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
        if status == "completed" and val is not None:
            run_evaluation(test, "test")  # the final number, on data never looked at before
        state.emit("on_run_end")

    if status == "diverged":
        log.error("training loss became non-finite or exceeded trainer.diverge_above at step %d: "
                  "the run diverged (try a smaller lr)", record.diverged_at_step)
    record.status = status
    record.steps = state.step
    record.images_seen = state.step * tc.batch_size
    record.train_seconds = state.train_seconds
    if acc.epoch["steps"]:
        record.final.update(train_loss=acc.epoch["loss"] / acc.epoch["steps"],
                            train_acc=acc.epoch["acc"] / acc.epoch["steps"])
    record.wall_seconds = time.time() - process_start
    return record
