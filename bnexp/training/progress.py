"""The progress display: a tqdm bar on a terminal, plain log lines otherwise. While the bar
is shown, console log lines are written above it (tqdm.write) instead of through it."""
from __future__ import annotations

import contextlib
import logging
import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bnexp.training.callback import Callback, TrainMetrics

log = logging.getLogger(__name__)


class Progress(Callback):
    def __init__(self, mode: str):
        """`mode`: auto (a bar on a terminal, else log lines) | bar | log."""
        self.use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar: tqdm | None = None
        self.total = 0
        self._redirect = contextlib.ExitStack()

    def on_fit_start(self, state) -> None:
        self.total = state.total_steps
        if self.use_bar:
            self._redirect.enter_context(logging_redirect_tqdm())
            self.bar = tqdm(total=state.total_steps, initial=state.step, unit="step",
                            dynamic_ncols=True)

    def on_step_end(self, state) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train_metrics(self, state, metrics: TrainMetrics) -> None:
        self.report(metrics.step, {"loss": metrics.loss,
                                   "acc": metrics.acc})

    def on_evaluation(self, state, split: str, metrics: dict[str, float]) -> None:
        self.report(state.step, {f"{split}_{k}": v for k, v in metrics.items()}, eval_line=True)

    def on_teardown(self, state) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()

    def report(self, step: int, values: dict[str, float], eval_line: bool = False) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self.bar is None:
            log.info("step %d/%d %s", step, self.total, text)
        elif eval_line:
            self.bar.write(f"step {step}/{self.total} {text}")
        else:
            self.bar.set_postfix_str(text, refresh=False)
