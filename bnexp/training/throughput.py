"""Does the run train as fast as its speed settings promised? The sustained time per
step over the first epoch (training time only: evaluations, checkpoints and monitors are
off the clock), against what the tuning probe measured for the chosen settings. Far
slower -- another load on the machine, or a probe fooled by one -- says so in one line and
has the setting measured again by the next run (bnexp/tuning/cache.py): off the
training clock, and without waiting for the cache's lock (training never waits on it)."""
from __future__ import annotations

import logging

from bnexp.record import RunRecord
from bnexp.training.callback import Callback, TrainMetrics

log = logging.getLogger(__name__)

SLOWER = 1.5          # sustained this much slower than promised: re-measure
MIN_STEPS = 50        # fewer steps say too little


class ThroughputCheck(Callback):
    def __init__(self, record: RunRecord, promised_ms: float | None, feedback=None):
        """`feedback(sustained_ms, too_slow)`: tells the speed tuner what the run sustained
        and whether far slower than promised; True if the setting will be measured again.
        It must not block (bnexp.tuning.cache.feedback)."""
        self.record, self.promised, self.feedback = record, promised_ms, feedback
        self.seconds, self.steps, self.done = 0.0, 0, False

    def on_fit_start(self, state) -> None:
        self.done = state.step >= state.steps_per_epoch  # a resumed run past its first epoch

    def on_train_metrics(self, state, metrics: TrainMetrics) -> None:
        if self.done:
            return
        self.seconds += metrics.seconds
        self.steps += len(metrics.losses)
        if state.step >= min(state.steps_per_epoch, state.total_steps):
            self.conclude(state)

    def on_fit_end(self, state) -> None:
        if not self.done:
            self.conclude(state)

    def conclude(self, state) -> None:
        self.done = True
        if self.steps < MIN_STEPS:
            return
        sustained = 1000 * self.seconds / self.steps
        self.record.perf["sustained_ms_per_step"] = round(sustained, 3)
        self.record.perf["sustained_steps"] = self.steps
        too_slow = bool(self.promised and sustained > SLOWER * self.promised)
        with state.aside():  # a file write, not training
            again = bool(self.feedback and self.feedback(sustained, too_slow))
        if too_slow:
            log.warning("training ran at %.1f ms/step over its first %d steps, %.1fx slower than "
                        "the %.1f ms the speed settings were chosen on (other load on the "
                        "machine?)%s", sustained, self.steps, sustained / self.promised,
                        self.promised, "; the next run measures them again" if again else "")
