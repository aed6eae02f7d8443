"""The training curve and the run's counters in its record: mean training loss and
accuracy per read, steps, images and training seconds so far (kept up to date at every
read, so that a run that fails later still says how far it got), and at the end the
status and the last epoch's mean training loss and accuracy."""
from __future__ import annotations

from bnexp.record import RunRecord, TrainPoint
from bnexp.training.callback import Callback, TrainMetrics


class TrainingCurve(Callback):
    def __init__(self, record: RunRecord):
        self.record = record

    def _counters(self, state) -> None:
        self.record.steps, self.record.images_seen = state.step, state.step * state.batch_size
        self.record.train_seconds = state.clock.seconds

    def on_train_metrics(self, state, metrics: TrainMetrics) -> None:
        self._counters(state)
        self.record.train_curve.append(TrainPoint(metrics.step, metrics.loss,
                                                  metrics.acc))

    def on_fit_end(self, state) -> None:
        self._counters(state)
        self.record.status = state.status
        epoch = state.accumulator.epoch
        if epoch["steps"]:
            self.record.final.update(train_loss=epoch["loss"] / epoch["steps"],
                                     train_acc=epoch["acc"] / epoch["steps"])
