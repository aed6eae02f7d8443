"""The base of the monitors: callbacks (bnexp/training/callback.py) that measure on the side.

A monitor overrides the events it needs and measures at its own interval (`due`). It
never changes the trajectory: whatever it computes on the side (extra forward and
backward passes, trial steps) runs inside `network.preserved`, which puts back every
parameter, BN moving statistic and noise value exactly as it was (it never calls the
optimizer), and off the training clock (`state.aside()`). Its measurements go to
TensorBoard and into metrics.json (`monitors.<name>`), where the sweep report finds them.
"""
from __future__ import annotations

from bnexp.config import fail
from bnexp.training.callback import Callback


class Monitor(Callback):
    """`due(step)` says whether `step` is a measuring step; `keep` stores a measurement."""
    name = "monitor"

    def __init__(self, every: int = 25):
        self.every = every

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def keep(self, state, measurement: dict) -> None:
        """Keep a measurement in metrics.json (monitors.<name>)."""
        state.record.monitors.setdefault(self.name, []).append(measurement)


def check_every(name: str, every: int) -> None:
    if every < 1:
        fail(f"monitor.{name}.every", every, "must be at least 1 (steps).")
