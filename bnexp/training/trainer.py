"""The Trainer: it takes SGD steps over the training split and tells its callbacks what
happened (bnexp/training/callback.py lists the events). Everything else -- evaluation,
the training curve, the divergence guard, checkpoints, the progress bar, TensorBoard,
the monitors -- is a callback, so the Trainer never learns about a new one.

Per step: the batch is chosen (a pure function of seed and epoch, so a resumed run
sees the same batches), layers that follow the step number learn it (bn=noisy),
callbacks hear `on_step_start`, the SGD step is taken, and callbacks hear
`on_step_end`. Nothing is read back from the device per step: losses and accuracies
accumulate as NDArrays and are read every `log_every` steps, at the steps a callback
asked for (`state.read_at`: the evaluations) and when a stop was requested; callbacks
then hear `on_train_metrics`. The benchmark and the speed probe time this same `step`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import mxnet as mx
from mxnet import gluon, nd

from bnexp.nn.build import step_hooks
from bnexp.training.callback import Callback, TrainMetrics
from bnexp.training.state import FitState, TrainingClock
from bnexp.training.step import DeviceSplit, epoch_order, train_step

log = logging.getLogger(__name__)


class Trainer:
    """Steps SGD over `train` and emits the events of bnexp/training/callback.py."""

    def __init__(self, net: gluon.HybridBlock, optimizer: gluon.Trainer, ctx: list[mx.Context],
                 train: DeviceSplit, *, batch_size: int, total_steps: int, seed: int,
                 log_every: int = 10, callbacks: list[Callback] | None = None,
                 stop_requested: Callable[[], str] = lambda: "", record: Any = None,
                 logger: Any = None):
        self.state = FitState(net, optimizer, ctx, train, batch_size, total_steps, seed,
                              log_every, list(callbacks or []), record, logger)
        self.stop_requested = stop_requested
        self._hooks = step_hooks(net)
        self._order: nd.NDArray | None = None
        self._order_epoch: int | None = None
        self._images_since_read = 0

    def fit(self) -> FitState:
        """Train until `total_steps`, a callback ends the run, or a stop is requested."""
        s = self.state
        s.emit("on_fit_start")  # a resumed run's checkpoint restores the step here
        s.clock = TrainingClock(s.clock.seconds)
        try:
            while s.running and s.step < s.total_steps:
                self.step()
                if s.running and s.stop_requested:
                    log.warning("%s received: stopped after step %d", s.stop_requested, s.step)
                    s.end("interrupted")
            if s.running:
                s.end("completed")
            s.emit("on_fit_end")
        finally:
            s.emit("on_teardown")
        return s

    def step(self) -> None:
        """One optimizer step, with its events (and a read of the metrics when due)."""
        s = self.state
        epoch, batch = divmod(s.step, s.steps_per_epoch)
        if batch == 0:
            s.accumulator.new_epoch()
        if self._order_epoch != epoch:
            self._order = nd.array(epoch_order(s.seed, epoch, len(s.train)), ctx=s.ctx[0],
                                   dtype="int64")
            self._order_epoch = epoch
        idx = self._order[batch * s.batch_size:(batch + 1) * s.batch_size]
        s.images, s.labels = nd.take(s.train.images, idx), nd.take(s.train.labels, idx)
        for hook in self._hooks:
            hook(s.step)
        s.emit("on_step_start")
        s.accumulator.add(*train_step(s.net, s.optimizer, s.images, s.labels, s.ctx))
        s.step += 1
        self._images_since_read += s.batch_size
        s.stop_requested = s.stop_requested or self.stop_requested()
        if s.step % s.log_every == 0 or s.step in s.read_at or s.stop_requested:
            self.read_metrics()
        if s.running:
            s.emit("on_step_end")

    def read_metrics(self) -> None:
        """Read the per-step losses and accuracies since the last read (one device sync)."""
        s = self.state
        losses, accs = s.accumulator.read()
        seconds = s.clock.lap()
        if len(losses):
            metrics = TrainMetrics(s.step, losses, accs, seconds, self._images_since_read)
            self._images_since_read = 0
            s.emit("on_train_metrics", metrics)
