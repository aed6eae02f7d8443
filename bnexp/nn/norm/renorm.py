"""Batch Renormalization (Ioffe 2017) from scratch, `bn=renorm`.

BN normalizes with the batch's statistics in training and the moving ones in inference;
with small or non-i.i.d. batches the two disagree. Batch Renorm corrects the training
output towards what the moving statistics would give:
    sigma_B = sqrt(var_B + eps),  sigma = sqrt(moving_var + eps)
    r = clip(sigma_B / sigma, 1/r_max, r_max)        d = clip((mu_B - mu) / sigma, -d_max, d_max)
    x_hat = (x - mu_B) / sigma_B * r + d,            y = gamma * x_hat + beta
r and d are constants in backprop (the gradient flows through mu_B and sigma_B as in BN).
With r_max = 1 and d_max = 0 this is BN exactly. r_max and d_max are relaxed from 1 and 0
linearly between steps `relax_begin` and `relax_end` (the paper holds them for 5k steps,
while the moving averages settle, then relaxes them over tens of thousands); the training
loop hands the layer its step (`set_step`, bnexp/nn/build.py: step_hooks). The moving
averages are BN's (of the mean and of the *variance*; the paper averages sigma), so that
the r_max = 1, d_max = 0 layer equals BN also in inference.

r and d use the moving statistics as they were before this step's update
(bnexp/nn/norm/moving.py: moving_average returns both).
"""
from __future__ import annotations

import math

from bnexp.config import fail
from bnexp.nn.lazy_block import LazyHybridBlock
from bnexp.nn.norm.formulations import batch_statistics, channel_affine
from bnexp.nn.norm.moving import moving_average
from bnexp.nn.norm.parameters import add_batch_norm_parameters, check_batch_norm


def relaxed_limits(step: int, r_max: float, d_max: float, begin: int, end: int) -> tuple[float, float]:
    """(r_max, d_max) at training step `step`: 1 and 0 until `begin`, the final values from
    `end`, linear in between."""
    if step >= end:
        progress = 1.0
    else:  # step < end, so end > begin whenever step > begin
        progress = max(0.0, (step - begin) / (end - begin)) if step > begin else 0.0
    return 1 + (r_max - 1) * progress, d_max * progress


class BatchRenorm(LazyHybridBlock):
    """Batch Renormalization of the channels (axis 1) of 2-D or 4-D input."""
    op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op (its in-place update)

    def __init__(self, in_channels: int, momentum: float = 0.9, epsilon: float = 1e-5,
                 r_max: float = 3.0, d_max: float = 5.0, relax_begin: int = 0, relax_end: int = 0,
                 init: str = "standard"):
        super().__init__()
        import mxnet as mx
        import numpy as np
        from bnexp.nn.norm.moving import TrainingFlag
        self.channels, self.momentum, self.epsilon = in_channels, momentum, epsilon
        self.r_max, self.d_max, self.relax_begin, self.relax_end = r_max, d_max, relax_begin, relax_end
        with self.name_scope():
            add_batch_norm_parameters(self, in_channels, init)
            # [r_max, d_max] now: a parameter, so that a hybridized graph reads the current values
            self.limits = self.params.get("limits", shape=(2,), grad_req="null", differentiable=False,
                                          init=mx.init.Constant(np.array(relaxed_limits(
                                              0, r_max, d_max, relax_begin, relax_end))))
            self.training = TrainingFlag()

    def set_step(self, step: int) -> None:
        import mxnet as mx
        limits = relaxed_limits(step, self.r_max, self.d_max, self.relax_begin, self.relax_end)
        for data in self.limits.list_data():
            data[:] = mx.nd.array(limits, ctx=data.context)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var, limits):
        X4 = F.reshape(x, (0, 0, -1, 1))   # (N, C, L, 1)
        mean_B, var_B, base, offset = batch_statistics(F, X4, self.channels)
        training = self.training(mean_B)
        mu, moving_mean = moving_average(F, running_mean, mean_B, self.momentum, training)
        sigma2, moving_var = moving_average(F, running_var, var_B, self.momentum, training)
        sigma = F.sqrt(sigma2 + self.epsilon)
        r_max, d_max = F.slice_axis(limits, axis=0, begin=0, end=1), F.slice_axis(limits, axis=0, begin=1, end=2)
        # constants in backprop (Ioffe 2017, Alg. 1); in inference r = 1 and d = 0
        r = F.broadcast_minimum(F.broadcast_maximum(
            F.sqrt(F.BlockGrad(var_B) + self.epsilon) / sigma, 1 / r_max), r_max)
        d = F.broadcast_minimum(F.broadcast_maximum(
            (F.BlockGrad(mean_B) - mu) / sigma, -d_max), d_max)
        r = F.where(training, r, F.ones_like(r))
        d = F.where(training, d, F.zeros_like(d))
        mean = F.where(training, mean_B, moving_mean)
        var = F.where(training, var_B, moving_var)
        # y = gamma * ((x - mean) / sqrt(var + eps) * r + d) + beta = base * scale + shift
        scale = F.elemwise_mul(gamma, r * (1.0 / F.sqrt(var + self.epsilon)))
        shift = F.elemwise_add(beta, gamma * d) - (mean - offset) * scale
        return F.reshape_like(channel_affine(F, base, scale, shift, self.channels), x)


def renorm(channels: int, momentum: float = 0.9, eps: float = 1e-5, r_max: float = 3.0,
           d_max: float = 5.0, relax_begin: int = 50, relax_end: int = 250,
           init: str = "standard") -> BatchRenorm:
    """bn=renorm: Batch Renormalization, relaxed from BN between relax_begin and relax_end."""
    return BatchRenorm(channels, momentum, eps, r_max, d_max, relax_begin, relax_end, init)


def check(network, momentum: float, eps: float, r_max: float, d_max: float, relax_begin: int,
          relax_end: int, init: str) -> None:
    check_batch_norm(momentum, eps, init)
    if not (math.isfinite(r_max) and r_max >= 1):
        fail("bn.r_max", r_max, "r is clipped to [1/r_max, r_max]: must be >= 1 (1 = BN).")
    if not (math.isfinite(d_max) and d_max >= 0):
        fail("bn.d_max", d_max, "d is clipped to [-d_max, d_max]: must be >= 0 (0 = BN).")
    if not 0 <= relax_begin <= relax_end:
        fail("bn.relax_end", relax_end, f"the relaxation must end at or after it begins "
             f"(bn.relax_begin={relax_begin} >= 0), in steps.")
