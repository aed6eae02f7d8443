"""The events the Trainer emits, and the base class of everything that reacts to them.

The Trainer (bnexp/training/trainer.py) owns the order of things; everything optional
-- evaluation, the training curve, the divergence guard, checkpoints, the progress bar,
TensorBoard, the monitors of bnexp/monitors/ -- is a callback that overrides the
events it needs:

  on_fit_start(state)                   before the first step (a resumed run: restored first)
  on_step_start(state)                  the step's batch is chosen, the update not yet taken
  on_step_end(state)                    the update has been taken (state.step counts it)
  on_train_metrics(state, metrics)      the per-step training losses and accuracies since
                                        the last read were read from the device
  on_evaluation(state, split, metrics)  after an evaluation of `split` ({"loss", "acc"})
  on_fit_end(state)                     after the last step of a run that ended normally
  on_teardown(state)                    always, last (also after an exception)

Callbacks hear an event in the order of the Trainer's list. A callback that ends the
run (`state.end(...)`) is the last to hear that event.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the monitors' modules import this one before MXNet is imported
    from bnexp.training.state import FitState


@dataclass
class TrainMetrics:
    """What a read of the device gives: one loss and accuracy per step since the last read."""
    step: int                # the last step read
    losses: np.ndarray
    accs: np.ndarray
    seconds: float           # training time of those steps
    images: int              # images trained on in those steps

    @property
    def loss(self) -> float:
        """The mean training loss over those steps."""
        return float(self.losses.mean())

    @property
    def acc(self) -> float:
        """The mean training accuracy over those steps."""
        return float(self.accs.mean())


class Callback:
    """Every event does nothing."""

    def on_fit_start(self, state: FitState) -> None:
        pass

    def on_step_start(self, state: FitState) -> None:
        pass

    def on_step_end(self, state: FitState) -> None:
        pass

    def on_train_metrics(self, state: FitState, metrics: TrainMetrics) -> None:
        pass

    def on_evaluation(self, state: FitState, split: str, metrics: dict[str, float]) -> None:
        pass

    def on_fit_end(self, state: FitState) -> None:
        pass

    def on_teardown(self, state: FitState) -> None:
        pass
