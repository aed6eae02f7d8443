"""What the Trainer and its callbacks share: the FitState, and the clock that keeps
optimizer time apart from everything done on the side."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import mxnet as mx
from mxnet import gluon, nd

from bnexp.training.step import Accumulator, DeviceSplit


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
    callbacks: list = field(default_factory=list)   # bnexp.training.callback.Callback
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
