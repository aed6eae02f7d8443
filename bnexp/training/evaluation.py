"""Evaluation: when (bnexp/training/schedule.py), on what, and what is kept.

At the scheduled steps the network is evaluated on the watched split -- the validation
split if the run has one (`data.val_size`), else the test set -- off the training
clock; the point goes into the record's eval curve and its final numbers, and the
other callbacks hear `on_evaluation`. A run with a validation split that completes is
evaluated once more, on the test set: the final number, on data never looked at before.
"""
from __future__ import annotations

import logging
import time

from bnexp.record import EvalPoint, RunRecord
from bnexp.training import schedule
from bnexp.training.callback import Callback
from bnexp.training.step import DeviceSplit, evaluate

log = logging.getLogger(__name__)


class Evaluation(Callback):
    def __init__(self, record: RunRecord, watched: DeviceSplit, watched_name: str,
                 final_test: DeviceSplit | None, eval_schedule, eval_every_steps: int,
                 process_start: float, describe: str = ""):
        """`final_test`: the test set, evaluated after a completed run (None: the watched
        split is the test set already). `describe`: what the run trains, for its first log line."""
        self.record, self.watched, self.watched_name = record, watched, watched_name
        self.final_test, self.schedule, self.every = final_test, eval_schedule, eval_every_steps
        self.process_start, self.describe = process_start, describe
        self.due: set[int] = set()

    def on_fit_start(self, state) -> None:
        self.due = set(schedule.evaluation_steps(self.schedule, self.every, state.steps_per_epoch,
                                                 state.total_steps))
        state.read_at |= self.due  # the training metrics are read before each evaluation
        log.info("training %s: %d steps (%d per epoch), batch %d, %d evaluations on %s",
                 self.describe, state.total_steps, state.steps_per_epoch, state.batch_size,
                 len([s for s in self.due if s > state.step]), self.watched_name)

    def on_step_end(self, state) -> None:
        if state.step in self.due:
            metrics = self.run(state, self.watched, self.watched_name)
            self.record.eval_curve.append(EvalPoint(
                state.step, state.step * state.batch_size, state.clock.seconds, metrics["acc"],
                metrics["loss"], time.time() - self.process_start, self.watched_name))

    def on_fit_end(self, state) -> None:
        if state.status == "completed" and self.final_test is not None:
            self.run(state, self.final_test, "test")

    def run(self, state, split: DeviceSplit, name: str) -> dict[str, float]:
        start = time.perf_counter()
        with state.aside():
            loss, accuracy = evaluate(state.net, split, state.batch_size, state.ctx)
        self.record.eval_seconds += time.perf_counter() - start
        self.record.final.update({f"{name}_loss": loss, f"{name}_acc": accuracy})
        metrics = {"loss": loss, "acc": accuracy}
        state.emit("on_evaluation", name, metrics)
        return metrics
