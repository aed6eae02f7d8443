"""TensorBoard logging: one writer per run, writing into the run's own folder.

Hyperparameters go into the same event file as the curves (session start and session end
summaries written through the run's writer, as PyTorch Lightning does), so TensorBoard's
HParams tab lists each run exactly once; `SummaryWriter.add_hparams()` would add an extra
sub-run per call. No run writes an experiment summary: runs of different normalizations have
different settings (bn=group's groups, bn=gluon's momentum), and TensorBoard takes the first
experiment summary it finds as the whole table's columns, where without one it builds the
columns from every run's settings.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

from bnexp.training.callback import Callback, TrainMetrics


@contextlib.contextmanager
def torch_hidden() -> Iterator[None]:
    """`import torch` fails inside, unless torch is imported already; it works again after.
    tensorboardX's writer imports torch where it is installed, to accept its tensors: 2 s of
    every run's start on a machine with the bench's optional PyTorch row (docs/speed.md).
    bnexp logs plain numbers."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # how Python marks "not importable"
    try:
        yield
    finally:
        if sys.modules.get("torch", True) is None:  # still our marker: torch importable again
            del sys.modules["torch"]


with torch_hidden():
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams as hparams_summary

# The Custom Scalars tab: every run's test (or validation) accuracy in one chart, training
# loss in another.
LAYOUT = {"bnexp": {"test accuracy": ["Multiline", ["test/acc"]],
                    "validation accuracy": ["Multiline", ["val/acc"]],
                    "training loss": ["Multiline", ["train/loss"]]}}


class RunLogger:
    """Scalars on the optimizer-step axis plus this run's hyperparameters."""

    def __init__(self, run_dir: Path, hparams: dict[str, str | int | float | bool],
                 enabled: bool = True, flush_secs: int = 10, resume_step: int | None = None):
        """`resume_step`: the checkpoint step a resumed run continues from. Points
        logged after it by the interrupted process are dropped by TensorBoard
        (purge_step), so the curves have no duplicates."""
        self.writer = None
        if enabled:
            purge = resume_step + 1 if resume_step is not None else None
            self.writer = SummaryWriter(logdir=str(run_dir), flush_secs=flush_secs,
                                        purge_step=purge)
        self.hparams = hparams
        if self.writer is not None and resume_step is None:
            _, session_start, _ = hparams_summary(hparams, {})
            self.writer.file_writer.add_summary(session_start)
            self.writer.add_custom_scalars(LAYOUT)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def histogram(self, tag: str, values, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, values, step)

    def close(self, step: int, metrics: dict[str, float], status: str) -> None:
        """Write the hparam metrics and the session end, then close (the only real barrier)."""
        if self.writer is None:
            return
        self.scalars(step, metrics)
        _, _, session_end = hparams_summary(self.hparams, metrics)
        if status != "completed":
            # The HParams tab shows a session's status: failure for diverged or failed runs.
            session_end.value[0].metadata.plugin_data.content = _end_content(status)
        self.writer.file_writer.add_summary(session_end)
        self.writer.close()
        self.writer = None


def _end_content(status: str) -> bytes:
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.api_pb2 import Status
    code = {"diverged": Status.Value("STATUS_FAILURE"), "failed": Status.Value("STATUS_FAILURE"),
            "interrupted": Status.Value("STATUS_UNKNOWN")}.get(status, Status.Value("STATUS_SUCCESS"))
    return HParamsPluginData(session_end_info=SessionEndInfo(status=code), version=0).SerializeToString()


class TensorBoardCurves(Callback):
    """The training and evaluation curves, on the optimizer-step axis, through the run's
    RunLogger (the monitors write their own tags through the same one)."""

    def __init__(self, logger: RunLogger):
        self.logger = logger

    def on_train_metrics(self, state, metrics: TrainMetrics) -> None:
        self.logger.scalars(metrics.step, {
            "train/loss": metrics.loss, "train/acc": metrics.acc,
            "lr": state.optimizer.learning_rate,
            "perf/images_per_sec": metrics.images / metrics.seconds if metrics.seconds > 0 else 0.0})

    def on_evaluation(self, state, split: str, metrics: dict[str, float]) -> None:
        self.logger.scalars(state.step, {f"{split}/loss": metrics["loss"], f"{split}/acc": metrics["acc"]})
