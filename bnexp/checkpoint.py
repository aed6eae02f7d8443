"""Checkpoints: one file per run, replaced atomically.

`checkpoint.params` (an MXNet NDArray file) holds the network parameters,
including the BN moving statistics, the optimizer state, and the loop state as
JSON bytes. It is written to a temporary file, synced, then renamed over the
old one, so a crash mid-write leaves the previous checkpoint intact. The data
order needs no saved RNG state: each epoch's shuffle is a pure function of
(seed, epoch), and training itself draws no random numbers.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from mxnet import gluon, nd

CHECKPOINT_FILE = "checkpoint.params"
_STATE, _TRAINER, _PARAM = "__state__", "__trainer__", "param:"


def _bytes_array(blob: bytes) -> nd.NDArray:
    return nd.array(np.frombuffer(blob, dtype=np.uint8), dtype="uint8")


def save(run_dir: Path, net: gluon.Block, trainer: gluon.Trainer, state: dict) -> Path:
    """Write params + optimizer state + `state` atomically; returns the checkpoint path."""
    path = run_dir / CHECKPOINT_FILE
    arrays = {_PARAM + name: param.data() for name, param in
              net._collect_params_with_prefix().items()}
    with tempfile.TemporaryDirectory(dir=run_dir) as scratch:
        states_file = os.path.join(scratch, "trainer.states")
        trainer.save_states(states_file)
        with open(states_file, "rb") as f:
            arrays[_TRAINER] = _bytes_array(f.read())
        arrays[_STATE] = _bytes_array(json.dumps(state).encode())
        tmp = os.path.join(scratch, CHECKPOINT_FILE)
        nd.save(tmp, arrays)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
    params = net._collect_params_with_prefix()
    for name, param in params.items():
        param.set_data(arrays[_PARAM + name])
    with tempfile.TemporaryDirectory(dir=run_dir) as scratch:
        states_file = os.path.join(scratch, "trainer.states")
        with open(states_file, "wb") as f:
            f.write(arrays[_TRAINER].asnumpy().tobytes())
        trainer.load_states(states_file)
    return json.loads(arrays[_STATE].asnumpy().tobytes())
