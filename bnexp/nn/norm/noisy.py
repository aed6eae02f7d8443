"""Santurkar et al.'s "noisy BatchNorm" (2018, Fig. 2): BN followed by injected noise (`bn=noisy`)."""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon

from bnexp.nn.norm.moving import TrainingFlag
from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec
from bnexp.nn.norm.scratch import channel_affine


class NoisyBatchNorm(gluon.HybridBlock):
    """gluon's BatchNorm followed by per-channel noise in training (Santurkar et al. 2018,
    Fig. 2, "noisy BatchNorm": covariate shift injected on purpose after BN).

    At every training step each channel c is scaled by s and shifted by m, drawn anew:
        m ~ N(mu_c(t), sd_c(t)^2),   s = exp(nu_c(t) + tau_c(t) z),   z ~ N(0, 1)
    and the distributions themselves drift over training: mu, sd, nu, tau follow slow
    sinusoids in the step t with per-channel random periods (200 to 1000 steps), phases
    and amplitudes, all proportional to `strength`. So the layer's output has a mean and
    a variance that are neither 0 and 1 nor constant. strength 0 gives s = 1 and m = 0
    exactly: the plain BN layer. Inference adds no noise.

    The draws are a pure function of (seed, layer, step) (`set_step`, called by the
    training loop before each step): a resumed run sees the same noise, and extra passes
    by a monitor within a step see the step's noise without consuming any randomness.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, in_channels: int = 0,
                 strength: float = 1.0, seed: int = 0, layer: int = 0, **bn_kwargs):
        super().__init__()
        if in_channels < 1:
            raise ValueError("NoisyBatchNorm needs in_channels")
        self.channels, self.strength, self.seed, self.layer = in_channels, strength, seed, layer
        with self.name_scope():
            self.bn = gluon.nn.BatchNorm(momentum=momentum, epsilon=epsilon,
                                         in_channels=in_channels, **bn_kwargs)
            self.training = TrainingFlag()
            self.noise_scale = self.params.get("noise_scale", shape=(in_channels,), init="ones",
                                               grad_req="null", differentiable=False)
            self.noise_shift = self.params.get("noise_shift", shape=(in_channels,), init="zeros",
                                               grad_req="null", differentiable=False)
        drift = np.random.default_rng([seed, layer, 0xD51F])
        shape = (4, in_channels)  # for mu, sd, nu, tau
        self._period = drift.uniform(200, 1000, shape)
        self._phase = drift.uniform(0, 2 * np.pi, shape)
        self._amplitude = drift.uniform(0.5, 1.0, shape)

    def noise_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) per channel at training step `step`."""
        wave = self._amplitude * np.sin(2 * np.pi * step / self._period + self._phase)
        mu, sd, nu, tau = self.strength * wave
        sd, tau = np.abs(sd), np.abs(tau) / 2
        z = np.random.default_rng([self.seed, self.layer, step]).standard_normal((2, self.channels))
        return np.exp(nu / 2 + tau * z[0]), mu + sd * z[1]

    def set_step(self, step: int) -> None:
        scale, shift = self.noise_at(step)
        self.noise_scale.set_data(mx.nd.array(scale))
        self.noise_shift.set_data(mx.nd.array(shift))

    def hybrid_forward(self, F, x, noise_scale, noise_shift):
        y = self.bn(x)
        training = self.training(noise_scale)  # 1 in training, 0 in inference
        scale = F.where(training, noise_scale, F.ones_like(noise_scale))
        shift = F.where(training, noise_shift, F.zeros_like(noise_shift))
        y4 = F.reshape(y, (0, 0, -1, 1))
        return F.reshape_like(channel_affine(F, y4, scale, shift, self.channels), y)


@NORMALIZATIONS.register(
    "noisy", order=3, settings=("noise",),
    summary="gluon BN followed by drifting noise (Santurkar et al. 2018, Fig. 2)")
def noisy(spec: NormSpec, channels: int, layer: int) -> NoisyBatchNorm:
    return NoisyBatchNorm(momentum=spec.momentum, epsilon=spec.eps, in_channels=channels,
                          strength=spec.noise, seed=spec.seed, layer=layer, **spec.initializers())
