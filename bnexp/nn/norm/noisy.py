"""Santurkar et al.'s "noisy BatchNorm" (2018, Fig. 2; Appendix A.2.1, Algorithm 1): BN
followed by per-activation noise whose distribution changes every step (`bn=noisy`)."""
from __future__ import annotations

import math

import numpy as np

from bnexp.config import fail
from bnexp.nn.lazy_block import LazyHybridBlock
from bnexp.nn.norm.parameters import check_batch_norm, initializers

# Algorithm 1's constants, as the paper's experiments set them (Appendix A.2.1):
N_MU, N_SIGMA, R_MU, R_SIGMA = 0.5, 1.25, 0.1, 0.1
# Per layer, BANK_SIZE uniform and as many normal values, drawn once; each step reads the
# pass's activations' worth of both from a random offset (wrapping around), so a layer's noise
# within a pass is i.i.d. up to 2^23 (8.4M) activations (LeNet's first layer at batch 128: 1.47M).
BANK_SIZE = 2 ** 23


class NoisyBatchNorm(LazyHybridBlock):
    """gluon's BatchNorm, then in training every activation a[i, j] (sample i, channel or
    unit j; for convolutions height and width count as samples) becomes s[i, j] a[i, j] +
    m[i, j], Santurkar et al.'s Algorithm 1. At every step t, per channel j:
        mu_j ~ U(-n_mu, n_mu),  sigma_j ~ U(1, n_sigma)          (the step's distribution D_j^t)
    and per activation, i.i.d. given those:
        m[i, j] ~ U(mu_j - r_mu, mu_j + r_mu),  s[i, j] ~ N(sigma_j, r_sigma^2)
    with the paper's n_mu = 0.5, n_sigma = 1.25, r_mu = r_sigma = 0.1 at `strength` 1. The
    paper writes N(sigma, r_sigma); we read r_sigma as the standard deviation. `strength`
    scales every deviation from the plain layer: n_mu, n_sigma - 1, r_mu and r_sigma; at 0,
    s = 1 and m = 0 exactly (the plain BN layer). Inference adds no noise.

    The noise is a pure function of (seed, layer, step): `set_step` (called by the training
    loop before each step) draws the step's mu, sigma and an offset into two fixed banks of
    r_mu U(-1, 1) and r_sigma N(0, 1) values; the graph reads one value of each per
    activation from that offset (a gather), so a step costs a few element-wise passes and no
    host-side arrays, and a resumed run, or a monitor's extra passes within a step, see the
    step's noise. Within a step the values are i.i.d.; across steps an activation reads the
    banks at a random offset, so a value recurs only by chance.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, in_channels: int = 0,
                 strength: float = 1.0, seed: int = 0, layer: int = 0, init: str = "standard"):
        super().__init__()
        import mxnet as mx
        from mxnet import gluon
        from bnexp.nn.norm.moving import TrainingFlag
        if in_channels < 1:
            raise ValueError("NoisyBatchNorm needs in_channels")
        self.channels, self.strength, self.seed, self.layer = in_channels, strength, seed, layer
        rng = np.random.default_rng([seed, layer, 0xBA4C])
        jitter_m = strength * R_MU * rng.uniform(-1, 1, BANK_SIZE)
        jitter_s = strength * R_SIGMA * rng.standard_normal(BANK_SIZE)
        with self.name_scope():
            self.bn = gluon.nn.BatchNorm(momentum=momentum, epsilon=epsilon,
                                         in_channels=in_channels, **initializers(init))
            self.training = TrainingFlag()
            # Constants: fixed by (seed, layer), so checkpoints and `preserved` skip them
            self.jitter_m = self.params.get_constant("jitter_m", mx.nd.array(jitter_m))
            self.jitter_s = self.params.get_constant("jitter_s", mx.nd.array(jitter_s))
            self.noise_mu = self.params.get("noise_mu", shape=(in_channels,), init="zeros",
                                            grad_req="null", differentiable=False)
            self.noise_sigma = self.params.get("noise_sigma", shape=(in_channels,), init="ones",
                                               grad_req="null", differentiable=False)
            self.noise_offset = self.params.get("noise_offset", shape=(1,), init="zeros",
                                                grad_req="null", differentiable=False)

    def noise_at(self, step: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(mu, sigma) per channel and the bank offset at training step `step`."""
        rng = np.random.default_rng([self.seed, self.layer, step])
        mu = rng.uniform(-N_MU, N_MU, self.channels) * self.strength
        sigma = 1 + rng.uniform(0, N_SIGMA - 1, self.channels) * self.strength
        return mu, sigma, int(rng.integers(BANK_SIZE))

    def set_step(self, step: int) -> None:
        import mxnet as mx
        mu, sigma, offset = self.noise_at(step)
        # in place on every device: Parameter.set_data would reset a kvstore that updates on
        # the devices' behalf, and with it the optimizer's state
        for param, value in ((self.noise_mu, mu), (self.noise_sigma, sigma),
                             (self.noise_offset, [offset])):
            for data in param.list_data():
                data[:] = mx.nd.array(value, ctx=data.context)

    def hybrid_forward(self, F, x, jitter_m, jitter_s, noise_mu, noise_sigma, noise_offset):
        y = self.bn(x)
        training = self.training(noise_offset)  # 1 in training, 0 in inference: no noise
        # positions below 2^24: exact in float32; 'wrap' reads the banks circularly
        position = F.broadcast_add(F.contrib.arange_like(F.reshape(y, (-1,))), noise_offset)
        y3 = F.reshape(y, (0, 0, -1))  # (batch, channels, positions)

        def per_activation(bank, per_channel):
            jitter = F.reshape_like(F.take(bank, position, mode="wrap"), y3)
            return F.broadcast_mul(F.broadcast_add(jitter, F.reshape(per_channel, (1, -1, 1))),
                                   F.reshape(training, (1, 1, 1)))

        m = per_activation(jitter_m, noise_mu)
        s_minus_1 = per_activation(jitter_s, noise_sigma - 1)  # both 0 in inference: y exactly
        return F.reshape_like(y3 + s_minus_1 * y3 + m, y)


def noisy(channels: int, noise: float = 1.0, momentum: float = 0.9, eps: float = 1e-5,
          init: str = "standard", seed: int = 0, layer: int = 0) -> NoisyBatchNorm:
    """bn=noisy: gluon's BatchNorm followed by Algorithm 1's noise of strength `noise`; the
    noise of layer `layer` is a pure function of the run's seed and the step."""
    return NoisyBatchNorm(momentum, eps, channels, noise, seed, layer, init)


def check(network, noise: float, momentum: float, eps: float, init: str) -> None:
    check_batch_norm(momentum, eps, init)
    if not (math.isfinite(noise) and noise >= 0):
        fail("bn.noise", noise, "the noise strength must be a finite number >= 0.")
