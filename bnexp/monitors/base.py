"""The base of the monitors: callbacks (bnexp/training/callback.py) that measure on the side.

A monitor overrides the events it needs and measures when `due`: every `every` steps, and
at matched states of training -- the first time the run's training loss (the mean since the
last read, every `trainer.log_every_steps` steps) is at or below each level of `at_loss`, at
that step and the `samples` - 1 after it, each measurement marked with its `phase` (the
level). Comparing runs at the same phase compares them where they have learned as much,
not after as many steps (a run without BN sits for hundreds of steps on a plateau where
nothing is learned; bnexp/report/claims.py). It never changes the trajectory: whatever it computes on the side (extra forward and
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

    def __init__(self, every: int = 25, at_loss: list[float] = (), samples: int = 5):
        self.every, self.samples = every, samples
        self.levels = sorted(at_loss, reverse=True)   # training losses, the first reached first
        self.phases: dict[int, float] = {}            # step -> the level it measures
        self.reached: set[float] = set()

    def on_fit_start(self, state) -> None:
        """A resumed run: the levels it reached before (their measurements are kept)."""
        self.reached = {m["phase"] for m in state.record.monitors.get(self.name, [])
                        if m.get("phase") is not None}

    def on_train_metrics(self, state, metrics) -> None:
        step = max(self.phases, default=metrics.step - 1) + 1
        for level in self.levels:
            if level not in self.reached and metrics.loss <= level:
                self.reached.add(level)   # levels reached at one read: one after the other
                start = max(step, metrics.step)
                self.phases.update({s: level for s in range(start, start + self.samples)})
                step = start + self.samples

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step in self.phases

    def keep(self, state, measurement: dict) -> None:
        """Keep a measurement in metrics.json (monitors.<name>), with its phase if it has one."""
        phase = self.phases.get(measurement.get("step"))
        if phase is not None:
            measurement = {**measurement, "phase": phase}
        state.record.monitors.setdefault(self.name, []).append(measurement)


def check_every(name: str, every: int, at_loss=(), samples: int = 1) -> None:
    """The settings every monitor has: its interval and its matched states."""
    if every < 1:
        fail(f"monitor.{name}.every", every, "must be at least 1 (steps).")
    if any(not level > 0 for level in at_loss):
        fail(f"monitor.{name}.at_loss", list(at_loss), "training losses > 0, e.g. [1.5,1.0,0.7].")
    if samples < 1:
        fail(f"monitor.{name}.samples", samples, "must be at least 1 (measurements per level).")
