"""Stopping once the run has answered its question: `trainer.stop_at_targets`.

A convergence study needs from each run the first evaluation at or above each accuracy
in `report.targets`. Once the watched split (validation, else test) reached the highest
one every crossing is known, and the steps after it would only cost time: the run ends
there as completed, and `metrics.json` says why (`stopped_early`). A run that never
reaches it trains its full length, and the report counts it as not reaching it."""
from __future__ import annotations

import logging

from bnexp.record import RunRecord
from bnexp.training.callback import Callback

log = logging.getLogger(__name__)


class StopAtTargets(Callback):
    """Ends the run once an evaluation of `split` reaches every accuracy in `targets`.
    Last in the Trainer's list: every other callback has heard the evaluation."""

    def __init__(self, record: RunRecord, targets: list[float], split: str):
        self.record, self.highest, self.split = record, max(targets), split

    def on_evaluation(self, state, split: str, metrics: dict[str, float]) -> None:
        if split == self.split and state.running and metrics["acc"] >= self.highest:
            self.record.stopped_early = (f"{split} accuracy {metrics['acc']:.4f} reached every "
                                         f"target (up to {self.highest:.2f}) at step {state.step}")
            log.info("stopping: %s (trainer.stop_at_targets)", self.record.stopped_early)
            state.end("completed")
