"""Diagnostics that watch training, selected with `monitor=[...]` (conf/monitor/).

The loop (bnexp/loop.py) owns the order of things and calls every monitor at four
events; a monitor overrides the ones it needs and measures at its own interval:

  on_step_start(state)             the step's batch is chosen, the update not yet taken
  on_step_end(state)               the update has been taken
  on_evaluation(state, metrics)    after an evaluation ({"loss", "acc"})
  on_run_end(state)                once, at the end

A monitor never changes the trajectory: whatever it computes on the side (extra
forward and backward passes, trial steps) runs inside `network.preserved`, which puts
back every parameter, BN moving statistic and noise value exactly as it was (it never
calls the optimizer). Its measurements go to TensorBoard and into metrics.json
(`monitors.<name>`), where the sweep report finds them.

  activations  Ioffe & Szegedy 2015, Fig. 1b-c   bnexp/monitors/activations.py
  ics          Santurkar et al. 2018, Fig. 3     bnexp/monitors/ics.py
  landscape    Santurkar et al. 2018, Fig. 4     bnexp/monitors/landscape.py
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bnexp.config import Config
    from bnexp.loop import LoopState

NAMES = ("activations", "ics", "landscape")


class Monitor:
    """Base: every event does nothing; `due(step)` says whether `step` is a measuring step."""
    name = "monitor"

    def __init__(self, every: int):
        self.every = every

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def record(self, state: LoopState, measurement: dict) -> None:
        """Keep a measurement in metrics.json (monitors.<name>)."""
        state.record.monitors.setdefault(self.name, []).append(measurement)

    def on_step_start(self, state: LoopState) -> None:
        pass

    def on_step_end(self, state: LoopState) -> None:
        pass

    def on_evaluation(self, state: LoopState, metrics: dict) -> None:
        pass

    def on_run_end(self, state: LoopState) -> None:
        pass


def build(cfg: Config) -> list[Monitor]:
    """The monitors the config selects, in a fixed order."""
    from bnexp.monitors.activations import ActivationsMonitor
    from bnexp.monitors.ics import ICSMonitor
    from bnexp.monitors.landscape import LandscapeMonitor

    classes = {"activations": ActivationsMonitor, "ics": ICSMonitor, "landscape": LandscapeMonitor}
    return [classes[name](getattr(cfg.monitor, name), cfg) for name in NAMES
            if getattr(cfg.monitor, name) is not None]
