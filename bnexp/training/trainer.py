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

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import mxnet as mx
from mxnet import gluon, nd

from bnexp.nn.build import step_hooks
from bnexp.training.callback import Callback, TrainMetrics
from bnexp.training.step import Accumulator, DeviceSplit, epoch_order, train_step

log = logging.getLogger(__name__)


class TrainingClock:
    """Optimizer time only: wall time minus the work done off the clock (evaluations,
    checkpoints, monitors' measurements). Read at device syncs (`lap`)."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds            # training time up to the last lap
        self._start = time.perf_counter()
        self._off = 0.0

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        """Work off the clock: what training queued on the device finishes first, then the
        block's time is kept apart."""
        mx.nd.waitall()
        start = time.perf_counter()
        try:
            yield
        finally:
            mx.nd.waitall()
            self._off += time.perf_counter() - start

    def lap(self) -> float:
        """At a device sync: add the training time since the last lap; return it."""
        now = time.perf_counter()
        elapsed = now - self._start - self._off
        self.seconds += elapsed
        self._start, self._off = now, 0.0
        return elapsed


@dataclass
class FitState:
    """What the Trainer and its callbacks share. The Trainer changes the step, the batch and
    the status; callbacks read it, and may end the run (`end`) or ask for a read (`read_at`).
    `record` and `logger` are the run's record and TensorBoard writer, for callbacks only."""
    net: gluon.HybridBlock
    optimizer: gluon.Trainer
    ctx: list[mx.Context]
    train: DeviceSplit
    batch_size: int
    total_steps: int
    seed: int
    log_every: int = 10
    callbacks: list[Callback] = field(default_factory=list)
    record: Any = None
    logger: Any = None
    step: int = 0                          # optimizer steps taken
    images: nd.NDArray | None = None       # the batch of the current step
    labels: nd.NDArray | None = None
    status: str = "running"                # running | completed | diverged | interrupted
    stop_requested: str = ""               # a signal's name, once one asked to stop
    read_at: set[int] = field(default_factory=set)
    clock: TrainingClock = field(default_factory=TrainingClock)
    accumulator: Accumulator | None = None

    def __post_init__(self):
        if self.accumulator is None:
            self.accumulator = Accumulator(self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train) // self.batch_size   # the last partial batch is dropped

    @property
    def running(self) -> bool:
        return self.status == "running"

    def end(self, status: str) -> None:
        """End the run after the current event (e.g. "diverged")."""
        self.status = status

    def emit(self, event: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)
            if not self.running and event not in ("on_fit_end", "on_teardown"):
                break  # a callback ended the run: the rest do not act on this event

    def aside(self):
        """Work off the training clock (a monitor measuring, an evaluation)."""
        return self.clock.off()


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
