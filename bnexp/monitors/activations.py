"""Ioffe & Szegedy (2015), Fig. 1b-c: how the input to a hidden activation is distributed
over training -- its 15th, 50th and 85th percentiles -- with and without BN.

For every hidden activation the network has (after BN when there is BN; the same
position in bn=none) the monitor keeps a fixed set of channels (convolutions) or units
(dense layers), drawn once from the run's seed. Every `every` steps it runs the network,
in training mode, on a fixed probe batch of training images (the same images each time,
in batches of the training size, so that only the parameters change between
measurements) and takes the percentiles of each kept channel's values (all samples and
positions). TensorBoard: `act/<layer>/p15|p50|p85` of the first kept channel (the
paper's "typical" one) and a histogram `act/<layer>`; metrics.json: the percentiles of
every kept channel, for the report's bands.
"""
from __future__ import annotations

import numpy as np

from bnexp.config import TRAIN_SIZE, fail
from bnexp.monitors.base import Monitor, check_every

PERCENTILES = (15, 50, 85)


def percentiles(values: np.ndarray, qs=PERCENTILES) -> dict[str, float]:
    """{"p15": ..., "p50": ..., "p85": ...} of `values` (numpy's linear interpolation)."""
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(values, qs))}


def channel_values(activation: np.ndarray, channel: int) -> np.ndarray:
    """All values of one channel (N, C, H, W) or unit (N, C) over samples and positions."""
    return activation[:, channel].reshape(-1)


class ActivationsMonitor(Monitor):
    """`every` steps: the percentiles of `units` channels per layer over a probe batch of
    `images` training images (drawn from the run's `seed`)."""
    name = "activations"

    def __init__(self, every: int = 25, units: int = 8, images: int = 512,
                 at_loss: list[float] = (), samples: int = 5, seed: int = 0):
        super().__init__(every, at_loss, samples)
        self.units, self.images, self.seed = units, images, seed
        self.kept: dict[str, list[int]] = {}   # layer -> the channels kept, drawn at first use
        self.probe: list | None = None   # NDArrays, once drawn

    def on_step_start(self, state) -> None:
        if state.step == 0:  # the distribution before any training: Fig. 1's starting point
            self.measure(state, 0)

    def on_step_end(self, state) -> None:
        if self.due(state.step):
            self.measure(state, state.step)

    def probe_batches(self, state) -> list:
        """The same training images at every measurement, in batches of the training shape."""
        from mxnet import nd
        if self.probe is None:
            size = state.batch_size // len(state.ctx)
            count = max(size, self.images // size * size)
            picked = np.random.default_rng([self.seed, 0xAC7]).choice(len(state.train), count,
                                                                      replace=False)
            images = nd.take(state.train.images, nd.array(np.sort(picked), dtype="int64"))
            self.probe = [images[i:i + size].as_in_context(state.ctx[0])
                          for i in range(0, count, size)]
        return self.probe

    def measure(self, state, step: int) -> None:
        from mxnet import autograd

        from bnexp.monitors.network import activation_inputs, preserved
        captured: dict[str, list[np.ndarray]] = {}
        with state.aside(), preserved(state.net), autograd.train_mode():  # BN as in training
            for batch in self.probe_batches(state):
                for layer, values in activation_inputs(state.net, batch).items():
                    captured.setdefault(layer, []).append(values.asnumpy())
        layers = {}
        for layer, parts in captured.items():
            activation = np.concatenate(parts)
            if layer not in self.kept:
                rng = np.random.default_rng([self.seed, 0xAC7, len(self.kept)])
                count = min(self.units, activation.shape[1])
                self.kept[layer] = sorted(rng.choice(activation.shape[1], count, replace=False).tolist())
            units = {str(c): percentiles(channel_values(activation, c)) for c in self.kept[layer]}
            layers[layer] = units
            typical = self.kept[layer][0]
            state.logger.scalars(step, {f"act/{layer}/{k}": v for k, v in units[str(typical)].items()})
            state.logger.histogram(f"act/{layer}", channel_values(activation, typical), step)
        self.keep(state, {"step": step, "layers": layers})


def check(network, every: int, units: int, images: int, at_loss: list[float], samples: int) -> None:
    check_every("activations", every, at_loss, samples)
    if units < 1:
        fail("monitor.activations.units", units, "must be at least 1.")
    if not 1 <= images <= TRAIN_SIZE:
        fail("monitor.activations.images", images, f"must be between 1 and {TRAIN_SIZE}.")
