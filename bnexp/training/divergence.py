"""The divergence guard: a training loss above `trainer.diverge_above`, or not finite, ends
the run as "diverged" at the first such step (chance level is a loss of 2.3)."""
from __future__ import annotations

import logging

import numpy as np

from bnexp.training.callback import Callback, TrainMetrics

log = logging.getLogger(__name__)


class DivergenceGuard(Callback):
    """Put it before the callbacks that record the training curve: when it ends the run,
    they do not hear the diverged read."""

    def __init__(self, limit: float | None, record):
        self.record = record
        self.limit = limit if limit is not None else np.inf
        self.step: int | None = None     # the first diverged step
        self.loss: float | None = None   # its loss

    def on_train_metrics(self, state, metrics: TrainMetrics) -> None:
        bad = np.flatnonzero(~(metrics.losses <= self.limit))  # NaN compares false: caught too
        if bad.size:
            self.step = metrics.step - len(metrics.losses) + 1 + int(bad[0])
            self.loss = float(metrics.losses[bad[0]])
            log.error("training loss became non-finite or exceeded trainer.diverge_above at step "
                      "%d: the run diverged (try a smaller lr)", self.step)
            state.end("diverged")

    def on_fit_end(self, state) -> None:
        if self.step is not None:
            self.record.diverged_at_step = self.step
            if state.logger is not None:
                state.logger.scalars(self.step, {"train/loss": self.loss})
