"""The from-scratch BN's faster formulations: the maths of bnexp/nn/norm/scratch.py's
`batch_norm` (the reference, as the tutorial writes it), computed otherwise.

MXNet's CPU reductions over the non-contiguous axes (0, 2, 3) are about 10x slower than a
BLAS matrix-vector product, and broadcasting a per-channel factor back over them is slow in
the backward pass. So:

  centered   the statistics as GEMVs, the centering and the output's affine transform as
             1x1 depthwise convolutions (one fused pass each, with efficient gradients);
             differentiated as written
  surrogate  the same value, with the variance's costly backward pass replaced by a
             zero-valued term that carries the exact gradient through two GEMVs
  compiled   the whole layer as one C++ operator, built for the machine that runs it
             (bnexp/nn/norm/kernels/batch_norm.cc): one loop over the input, where MXNet's
             operators read it many times

All three equal the reference (and gluon.nn.BatchNorm) to float rounding: tests/test_bn.py.
Which is fastest depends on the CPU: bnexp/tuning/ measures them (`perf.bn_impl`).
Each takes X as (N, C, ...) and the layer's parameters, `training` 1 per channel in
training and 0 in inference (bnexp/nn/norm/moving.py: TrainingFlag), with F = mx.nd or mx.sym.
"""
from __future__ import annotations

from bnexp.nn.norm.moving import moving_average


def channel_mean(F, X4):
    """Mean of X4 (N, C, L, 1) over all axes but 1: shape (C,), as a matrix-vector product."""
    rows = F.reshape(X4, (-3, -1))                                       # (N*C, L)
    ones = F.ones_like(F.slice_axis(rows, axis=0, begin=0, end=1))       # (1, L)
    per_row = F.dot(rows, F.broadcast_div(ones, F.sum(ones)), transpose_b=True)  # (N*C, 1)
    per_sample = F.reshape_like(per_row, X4, lhs_begin=0, lhs_end=2, rhs_begin=0, rhs_end=2)
    return F.mean(per_sample, axis=0)                                    # (N, C) -> (C,)


def channel_affine(F, X4, scale, shift, channels: int):
    """X4 * scale[c] + shift[c] for each channel c, as a 1x1 depthwise convolution: one fused
    pass with efficient gradients, where broadcast ops would need slow reductions over axes
    (0, 2) in the backward pass."""
    return F.Convolution(X4, F.reshape(scale, (-1, 1, 1, 1)), shift, kernel=(1, 1),
                         num_filter=channels, num_group=channels)


def batch_statistics(F, X4, channels: int, how: str = "centered"):
    """Per-channel batch mean and biased variance of X4 (N, C, L, 1), with the same value and
    gradient either way (`how`); also what the output's affine transform starts from and
    that tensor's offset from X4 (per channel).

    centered:  var = mean((x - mean)^2), differentiated as written; the output is formed
               from the centered x.
    surrogate: the same value from the same centered pass, cut off from autograd (its
               backward is the costly part), plus a zero -- s - BlockGrad(s) with
               s = mean(x^2) - mean^2 -- that carries the gradient: d var / dx =
               2 (x - mean) / M exactly, through two cheap GEMVs. (s alone would lose digits
               to cancellation when |mean| >> std; here it never sets the value.) The output
               is formed from x itself.
    """
    mean = channel_mean(F, X4)
    if how == "centered":
        centered = channel_affine(F, X4, F.ones_like(mean), -mean, channels)
        return mean, channel_mean(F, F.square(centered)), centered, mean
    centered = channel_affine(F, F.BlockGrad(X4), F.ones_like(mean), F.BlockGrad(-mean), channels)
    value = F.BlockGrad(channel_mean(F, F.square(centered)))
    gradient_carrier = channel_mean(F, F.square(X4)) - F.square(mean)
    var = value + (gradient_carrier - F.BlockGrad(gradient_carrier))
    return mean, var, X4, F.zeros_like(mean)


def composed(F, X, gamma, beta, moving_mean, moving_var, training, momentum: float,
             eps: float, channels: int, how: str):
    """The centered or surrogate formulation (`how`), composed of MXNet operators."""
    X4 = F.reshape(X, (0, 0, -1, 1))   # (N, C, L, 1): L = H*W for images, 1 for features
    mean, var, base, offset = batch_statistics(F, X4, channels, how)
    _, moving_mean = moving_average(F, moving_mean, mean, momentum, training)
    _, moving_var = moving_average(F, moving_var, var, momentum, training)
    used_mean = F.where(training, mean, moving_mean)
    used_var = F.where(training, var, moving_var)
    # y = gamma * (X - used_mean) / sqrt(used_var + eps) + beta = base * scale + shift, with
    # base = X - offset and the per-channel factors formed on C values. (The elementwise ops
    # on gamma and beta also let MXNet infer their shapes for deferred initialization.)
    scale = F.elemwise_mul(gamma, 1.0 / F.sqrt(used_var + eps))
    shift = F.elemwise_sub(beta, (used_mean - offset) * scale)
    return F.reshape_like(channel_affine(F, base, scale, shift, channels), X)


def compiled(F, X, gamma, beta, moving_mean, moving_var, training, momentum: float,
             eps: float, channels: int):
    """The C++ operator (bnexp/nn/norm/kernels/: loaded when the layer is built)."""
    return F.bnexp_batch_norm(X, gamma, beta, moving_mean, moving_var, training,
                              momentum=momentum, eps=eps)[0]


def normalize(F, X, gamma, beta, moving_mean, moving_var, training, momentum: float,
              eps: float, channels: int, formulation: str):
    """The formulation named `formulation` (centered, surrogate or compiled)."""
    if formulation == "compiled":
        return compiled(F, X, gamma, beta, moving_mean, moving_var, training, momentum, eps, channels)
    return composed(F, X, gamma, beta, moving_mean, moving_var, training, momentum, eps,
                    channels, formulation)
