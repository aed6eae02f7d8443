"""Checkpoints: one file per run, replaced atomically.

`checkpoint.params` (an MXNet NDArray file) holds the network parameters,
including the BN moving statistics, the optimizer state, and the loop state as
JSON bytes. It is written to a temporary file, synced, then renamed over the
old one (`bnexp.files`), so a crash mid-write leaves the previous checkpoint
intact. The data order needs no saved RNG state: each epoch's shuffle is a pure function of
(seed, epoch), and training itself draws no random numbers.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from mxnet import gluon, nd

from bnexp.files import replaced_atomically
from bnexp.training.callback import Callback
from bnexp.training.state import TrainingClock

CHECKPOINT_FILE = "checkpoint.params"
_STATE, _TRAINER, _PARAM = "__state__", "__trainer__", "param:"


def saved_params(net: gluon.Block) -> dict[str, gluon.Parameter]:
    """Every parameter but the Constants: those are fixed by the network's construction
    (bn=noisy's noise banks, 2 x 32 MB a layer) and rebuilt with it."""
    return {name: p for name, p in net._collect_params_with_prefix().items()
            if not isinstance(p, gluon.Constant)}


def _bytes_array(blob: bytes) -> nd.NDArray:
    return nd.array(np.frombuffer(blob, dtype=np.uint8), dtype="uint8")


def save(run_dir: Path, net: gluon.Block, trainer: gluon.Trainer, state: dict) -> Path:
    """Write params + optimizer state + `state` atomically; returns the checkpoint path."""
    path = run_dir / CHECKPOINT_FILE
    arrays = {_PARAM + name: param.data() for name, param in saved_params(net).items()}
    with tempfile.TemporaryDirectory(dir=run_dir) as scratch:  # save_states wants a file name
        states_file = Path(scratch) / "trainer.states"
        trainer.save_states(str(states_file))
        arrays[_TRAINER] = _bytes_array(states_file.read_bytes())
    arrays[_STATE] = _bytes_array(json.dumps(state).encode())
    with replaced_atomically(path) as tmp:
        nd.save(str(tmp), arrays)
    return path


def read_state(run_dir: Path) -> dict | None:
    """The loop state of the run's checkpoint, or None if there is none."""
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    blob = nd.load(str(path))[_STATE].asnumpy().tobytes()
    return json.loads(blob)


def restore(run_dir: Path, net: gluon.Block, trainer: gluon.Trainer) -> dict:
    """Load params and optimizer state into `net` and `trainer`; return the loop state."""
    arrays = nd.load(str(run_dir / CHECKPOINT_FILE))
    for name, param in saved_params(net).items():
        param.set_data(arrays[_PARAM + name])
    with tempfile.TemporaryDirectory(dir=run_dir) as scratch:  # load_states wants a file name
        states_file = Path(scratch) / "trainer.states"
        states_file.write_bytes(arrays[_TRAINER].asnumpy().tobytes())
        trainer.load_states(str(states_file))
    return json.loads(arrays[_STATE].asnumpy().tobytes())


def resume(state, run_dir: Path) -> int:
    """Put a Trainer's FitState back where the checkpoint in `run_dir` left it: weights, BN
    statistics and optimizer state, the step, the training seconds and the epoch's running
    totals. Returns the step."""
    saved = restore(run_dir, state.net, state.optimizer)
    state.step = saved["step"]
    state.clock = TrainingClock(saved["train_seconds"])
    state.accumulator.epoch = dict(saved["epoch"])
    return state.step


class Checkpointing(Callback):
    """Writes the checkpoint every `every_epochs` epochs (0: never on a schedule), after the
    last step (a finished run keeps its weights) and when a stop was requested, off the
    training clock. Put it after every callback that records something at the end of a
    step (evaluations, monitors): the checkpoint holds the record as of that step."""

    def __init__(self, run_dir: Path, record, config: dict, every_epochs: int):
        self.run_dir, self.record, self.config, self.every = run_dir, record, config, every_epochs

    def on_step_end(self, state) -> None:
        epochs_done, into_epoch = divmod(state.step, state.steps_per_epoch)
        scheduled = self.every and into_epoch == 0 and epochs_done % self.every == 0
        if state.stop_requested or state.step == state.total_steps or scheduled:
            with state.aside():
                save(self.run_dir, state.net, state.optimizer, {
                    "step": state.step, "train_seconds": state.clock.seconds,
                    "epoch": state.accumulator.epoch, "record": self.record.to_json(),
                    "config": self.config})
