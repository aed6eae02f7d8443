"""Checkpoints: one file per run, replaced atomically, loaded without unpickling.

`checkpoint.params` (an MXNet NDArray file, `nd.save`) holds the network parameters,
including the BN moving statistics, the optimizer state and the loop state. The optimizer
state is arrays too: each parameter's state (None, an NDArray, or a tuple of them: SGD's
momentum, Adam's mean and variance) under `optimizer:<n>.<i>`, and as JSON bytes its
layout and the optimizer's update counters (Adam's bias correction and any learning-rate
schedule read them). Not `gluon.Trainer.save_states`: that pickles the state, and
`load_states` unpickles whatever a file holds -- a checkpoint planted in a folder given to
`resume=` would run its code. For the same reason a checkpoint is read only if it and its
folder belong to this user and nobody else can write them (bnexp.files.untrusted_reason).

It is written to a temporary file, synced, then renamed over the old one (`bnexp.files`),
so a crash mid-write leaves the previous checkpoint intact. The data order needs no saved
RNG state: each epoch's shuffle is a pure function of (seed, epoch), and training itself
draws no random numbers.
"""
from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
from mxnet import gluon, nd
from mxnet.base import MXNetError

from bnexp.errors import UserError
from bnexp.files import replaced_atomically, untrusted_reason
from bnexp.record import CHECKPOINT_FILE
from bnexp.training.callback import Callback
from bnexp.training.state import TrainingClock

_STATE, _OPTIMIZER, _PARAM, _SLOT = "__state__", "__optimizer__", "param:", "optimizer:"
_PICKLED = "__trainer__"  # what bnexp wrote before: Trainer.save_states' pickle, never loaded


def saved_params(net: gluon.Block) -> dict[str, gluon.Parameter]:
    """Every parameter but the Constants: those are fixed by the network's construction
    (bn=noisy's noise banks, 2 x 32 MB a layer) and rebuilt with it."""
    return {name: p for name, p in net._collect_params_with_prefix().items()
            if not isinstance(p, gluon.Constant)}


def _bytes_array(blob: bytes) -> nd.NDArray:
    return nd.array(np.frombuffer(blob, dtype=np.uint8), dtype="uint8")


def _json_of(array: nd.NDArray, path: Path):
    try:
        return json.loads(array.asnumpy().tobytes())
    except ValueError as err:
        raise UserError(f"{path}: its saved state is not JSON ({err}); delete it to start the "
                        f"run again.") from None


def _updaters(trainer: gluon.Trainer) -> list:
    """The Updaters holding a gluon.Trainer's optimizer state, chosen as MXNet 1.9's own
    save_states/load_states choose: the kvstore's when it updates (several devices,
    kvstore="device"), else one per device. Call it after the parameters are set: setting
    one resets a kvstore that updates, and with it the state."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    return [trainer._kvstore._updater] if trainer._update_on_kvstore else trainer._updaters


def _flatten(state, name: str, arrays: dict):
    """The JSON layout of one parameter's state -- null, "array", or a list of layouts --
    with its arrays added to `arrays` under names starting with `name`."""
    if state is None:
        return None
    if isinstance(state, nd.NDArray):
        arrays[name] = state
        return "array"
    if isinstance(state, (tuple, list)):
        return [_flatten(part, f"{name}.{i}", arrays) for i, part in enumerate(state)]
    raise TypeError(f"optimizer state of type {type(state).__name__} cannot be checkpointed")


def _rebuild(layout, name: str, arrays: dict, shape: tuple):
    """The state `_flatten` laid out, as fresh arrays (each updater gets its own)."""
    if layout is None:
        return None
    if layout == "array":
        array = arrays[name]
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, its parameter {shape}")
        return array.copy()
    if not isinstance(layout, list):
        raise ValueError(f"{name}: unknown state layout {layout!r}")
    return tuple(_rebuild(part, f"{name}.{i}", arrays, shape) for i, part in enumerate(layout))


def optimizer_state(trainer: gluon.Trainer, arrays: dict) -> dict:
    """The optimizer's per-parameter state added to `arrays`; its layout and counters."""
    updater = _updaters(trainer)[0]
    optimizer = updater.optimizer
    slots = [[index, _flatten(state, f"{_SLOT}{n}", arrays)]
             for n, (index, state) in enumerate(updater.states.items())]
    return {"slots": slots, "num_update": optimizer.num_update,
            "begin_num_update": optimizer.begin_num_update,
            "update_counts": [[device, list(counts.items())] for device, counts
                              in optimizer._all_index_update_counts.items()]}


def restore_optimizer(trainer: gluon.Trainer, meta: dict, arrays: dict) -> None:
    """Put `optimizer_state`'s state and counters into every updater of `trainer`; the
    states move to their parameter's device on the first update, as after load_states."""
    updaters = _updaters(trainer)
    shapes = [param.shape for param in trainer._params]
    for updater in updaters:
        updater.states = {index: _rebuild(layout, f"{_SLOT}{n}", arrays, shapes[index])
                          for n, (index, layout) in enumerate(meta["slots"])}
        updater.states_synced = dict.fromkeys(updater.states, False)
    optimizer = updaters[0].optimizer
    optimizer.num_update = int(meta["num_update"])
    optimizer.begin_num_update = int(meta["begin_num_update"])
    counts = {device: {index: int(n) for index, n in pairs} for device, pairs in meta["update_counts"]}
    optimizer._all_index_update_counts = counts or {0: {}}
    optimizer._index_update_count = next(iter(optimizer._all_index_update_counts.values()))


def save(run_dir: Path, net: gluon.Block, trainer: gluon.Trainer, state: dict) -> Path:
    """Write params + optimizer state + `state` atomically; returns the checkpoint path."""
    path = run_dir / CHECKPOINT_FILE
    arrays = {_PARAM + name: param.data() for name, param in saved_params(net).items()}
    arrays[_OPTIMIZER] = _bytes_array(json.dumps(optimizer_state(trainer, arrays)).encode())
    arrays[_STATE] = _bytes_array(json.dumps(state).encode())
    try:
        with replaced_atomically(path) as tmp:
            nd.save(str(tmp), arrays)
    except (OSError, MXNetError) as err:
        raise UserError(f"cannot write the checkpoint {path} ({_why_not_written(err)}); the "
                        f"previous checkpoint, if any, is intact. Free space or raise the limit, "
                        f"then continue with resume={run_dir}") from None
    return path


def _why_not_written(err: Exception) -> str:
    """OSError says why; MXNet's writer only that its write stopped short."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"the write stopped short: this process may write at most {limit} bytes a file (ulimit -f)"
    return "the write stopped short: is the disk full?"


def _load(path: Path) -> dict:
    """The arrays of a checkpoint this user can trust (module docstring); UserError if not."""
    reason = untrusted_reason(path)
    if reason:
        raise UserError(f"{path}: not loaded, {reason}; a checkpoint must be this user's own "
                        f"(chmod go-w the folder, or copy the run to a folder of yours).")
    try:
        arrays = nd.load(str(path))
    except Exception as err:  # MXNetError, or what a truncated file gives
        raise UserError(f"{path}: not a readable checkpoint ({str(err).strip().splitlines()[0]}); "
                        f"delete it to start the run again.") from None
    if not isinstance(arrays, dict) or _STATE not in arrays:
        raise UserError(f"{path}: not a bnexp checkpoint (no {_STATE}); delete it to start the "
                        f"run again.")
    return arrays


def read_state(run_dir: Path) -> dict | None:
    """The loop state of the run's checkpoint, or None if there is none."""
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return _json_of(_load(path)[_STATE], path)


def restore(run_dir: Path, net: gluon.Block, trainer: gluon.Trainer) -> dict:
    """Load params and optimizer state into `net` and `trainer`; return the loop state.
    UserError (one line) for a checkpoint that is not this user's, was written by an older
    bnexp (a pickled optimizer state) or does not fit the network."""
    path = run_dir / CHECKPOINT_FILE
    arrays = _load(path)
    if _OPTIMIZER not in arrays:
        old = " (a pickle, which is never loaded: it can run code)" if _PICKLED in arrays else ""
        raise UserError(f"{path}: holds no optimizer state bnexp can read{old}; it was written "
                        f"by an older bnexp: delete it to start the run again.")
    try:
        for name, param in saved_params(net).items():
            if arrays[_PARAM + name].shape != param.shape:
                raise ValueError(f"{name} has shape {arrays[_PARAM + name].shape}, the network's "
                                 f"{param.shape}")
            param.set_data(arrays[_PARAM + name])
        restore_optimizer(trainer, _json_of(arrays[_OPTIMIZER], path), arrays)
    except (KeyError, IndexError, TypeError, ValueError, RecursionError) as err:
        raise UserError(f"{path}: does not fit this run's network and optimizer ({err}); delete "
                        f"it to start the run again.") from None
    return _json_of(arrays[_STATE], path)


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
