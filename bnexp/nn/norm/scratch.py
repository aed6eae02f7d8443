"""Batch normalization from scratch, interchangeable with `gluon.nn.BatchNorm` (`bn=scratch`).

The maths follows Ioffe & Szegedy (2015) and the source tutorial:
    mean, var = per-channel statistics of the batch (biased variance)
    x_hat     = (x - mean) / sqrt(var + eps)
    y         = gamma * x_hat + beta
    moving    = momentum * moving + (1 - momentum) * batch statistic
Training uses the batch statistics and updates the moving averages; inference
uses the moving averages. The mode follows `autograd.is_training()`.

A hybridized graph is traced once and cannot assign to the moving averages; the
run-time mode and the in-place update come from native operators
(bnexp/nn/norm/moving.py), and the graph picks batch or moving statistics with
`where`. No Python runs during a step.

Three formulations of the same maths (`impl`, perf.bn_impl; bnexp's tuning times them
and takes the fastest): `centered` and `surrogate` compose MXNet operators, as written
below; `compiled` is the same layer written from scratch in C++ as one operator
(bnexp/nn/norm/kernels/batch_norm.cc), built on the machine that runs it -- MXNet's
operators make the from-scratch layer read many times over its input, one loop does not.
"""
from __future__ import annotations

import mxnet as mx
from mxnet import gluon

from bnexp.config import BN_IMPLS
from bnexp.nn.norm import kernels
from bnexp.nn.norm.moving import TrainingFlag, moving_average
from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


def channel_mean(F, X4):
    """Mean of X4 (N, C, L, 1) over all axes but 1: shape (C,).

    Written as a matrix-vector product because MXNet's CPU reduction over the
    non-contiguous axes (0, 2) is about 10x slower than a BLAS GEMV."""
    rows = F.reshape(X4, (-3, -1))                                       # (N*C, L)
    ones = F.ones_like(F.slice_axis(rows, axis=0, begin=0, end=1))       # (1, L)
    per_row = F.dot(rows, F.broadcast_div(ones, F.sum(ones)), transpose_b=True)  # (N*C, 1)
    per_sample = F.reshape_like(per_row, X4, lhs_begin=0, lhs_end=2, rhs_begin=0, rhs_end=2)
    return F.mean(per_sample, axis=0)                                    # (N, C) -> (C,)


def channel_affine(F, X4, scale, shift, channels: int):
    """X4 * scale[c] + shift[c] for each channel c, as a 1x1 depthwise convolution:
    one fused pass with efficient gradients, where broadcast ops would need slow
    reductions over axes (0, 2) in the backward pass."""
    return F.Convolution(X4, F.reshape(scale, (-1, 1, 1, 1)), shift, kernel=(1, 1),
                         num_filter=channels, num_group=channels)


def batch_statistics(F, X4, channels: int, impl: str):
    """Per-channel batch mean and biased variance of X4 (N, C, L, 1), two ways (`impl`)
    with the same value and the same gradient; which is faster depends on the CPU.
    Also returns what the output affine transform starts from and that tensor's offset
    from X4 (per channel).

    centered:  var = mean((x - mean)^2), the centering a depthwise convolution,
               differentiated as written; the output is formed from the centered x.
    surrogate: the same value from the same centered pass, cut off from autograd (its
               backward is the costly part), plus a zero -- s - BlockGrad(s) with
               s = mean(x^2) - mean^2 -- that carries the gradient: d var / dx =
               2 (x - mean) / M exactly, through two cheap GEMVs. (s alone would lose
               digits to cancellation when |mean| >> std; here it never sets the value.)
               The output is formed from x itself.
    """
    mean = channel_mean(F, X4)
    if impl == "centered":
        centered = channel_affine(F, X4, F.ones_like(mean), -mean, channels)
        return mean, channel_mean(F, F.square(centered)), centered, mean
    if impl == "surrogate":
        centered = channel_affine(F, F.BlockGrad(X4), F.ones_like(mean), F.BlockGrad(-mean),
                                  channels)
        value = F.BlockGrad(channel_mean(F, F.square(centered)))
        gradient_carrier = channel_mean(F, F.square(X4)) - F.square(mean)
        var = value + (gradient_carrier - F.BlockGrad(gradient_carrier))
        return mean, var, X4, F.zeros_like(mean)
    raise ValueError(f"unknown ScratchBatchNorm impl {impl!r}; expected one of {BN_IMPLS}")


def batch_norm(F, X, gamma, beta, moving_mean, moving_var, training, axis: int,
               momentum: float, eps: float, channels: int, impl: str = "centered"):
    """Normalize X per feature (2-D input) or per channel (4-D NCHW input).

    `axis` is the feature/channel axis; statistics are taken over all others. `training`
    is 1 per channel in training, 0 in inference (`TrainingFlag`).
    Works with F = mx.nd (imperative) and F = mx.sym (hybridized).
    """
    if axis != 1:
        X = F.swapaxes(X, dim1=1, dim2=axis)
    if impl == "compiled":  # the same maths in one C++ loop (kernels/batch_norm.cc)
        Y = F.bnexp_batch_norm(X, gamma, beta, moving_mean, moving_var, training,
                               momentum=momentum, eps=eps)[0]
        return F.swapaxes(Y, dim1=1, dim2=axis) if axis != 1 else Y
    X4 = F.reshape(X, (0, 0, -1, 1))   # (N, C, L, 1): L = H*W for images, 1 for features
    mean, var, base, offset = batch_statistics(F, X4, channels, impl)
    # Batch statistics in training, moving averages in inference (decided at run time).
    _, moving_mean = moving_average(F, moving_mean, mean, momentum, training)
    _, moving_var = moving_average(F, moving_var, var, momentum, training)
    used_mean = F.where(training, mean, moving_mean)
    used_var = F.where(training, var, moving_var)
    # y = gamma * (X - used_mean) / sqrt(used_var + eps) + beta = base * scale + shift, with
    # base = X - offset and the per-channel factors formed on C values. (The elementwise ops
    # on gamma and beta also let MXNet infer their shapes for deferred initialization.)
    scale = F.elemwise_mul(gamma, 1.0 / F.sqrt(used_var + eps))
    shift = F.elemwise_sub(beta, (used_mean - offset) * scale)
    Y = F.reshape_like(channel_affine(F, base, scale, shift, channels), X)
    return F.swapaxes(Y, dim1=1, dim2=axis) if axis != 1 else Y


def add_batch_norm_parameters(block: gluon.HybridBlock, channels: int, gamma_initializer="ones",
                              beta_initializer="zeros", running_mean_initializer="zeros",
                              running_variance_initializer="ones") -> None:
    """`block.gamma`, `.beta`, `.running_mean`, `.running_var` as gluon.nn.BatchNorm has them
    (same names, so checkpoints and monitors treat every BN-like layer alike); the running
    statistics get no gradient. Call inside the block's name scope."""
    shape = (channels,)
    block.gamma = block.params.get("gamma", shape=shape, init=gamma_initializer)
    block.beta = block.params.get("beta", shape=shape, init=beta_initializer)
    block.running_mean = block.params.get("running_mean", shape=shape, grad_req="null",
                                          init=running_mean_initializer, differentiable=False)
    block.running_var = block.params.get("running_var", shape=shape, grad_req="null",
                                         init=running_variance_initializer, differentiable=False)


class ScratchBatchNorm(gluon.HybridBlock):
    """From-scratch BN with the constructor and parameters of `gluon.nn.BatchNorm`."""
    op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op (its in-place update)

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5,
                 in_channels: int = 0, impl: str = "centered", gamma_initializer="ones",
                 beta_initializer="zeros", running_mean_initializer="zeros",
                 running_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if impl not in BN_IMPLS:
            raise ValueError(f"unknown ScratchBatchNorm impl {impl!r}; expected one of {BN_IMPLS}")
        if impl == "compiled":
            kernels.load()  # F.bnexp_batch_norm (built for this machine if not cached yet)
        self._axis, self._momentum, self._epsilon, self._impl = axis, momentum, epsilon, impl
        shape = (in_channels,)
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=shape, init=gamma_initializer,
                                         allow_deferred_init=True)
            self.beta = self.params.get("beta", shape=shape, init=beta_initializer,
                                        allow_deferred_init=True)
            self.running_mean = self.params.get("running_mean", shape=shape,
                                                init=running_mean_initializer, grad_req="null",
                                                differentiable=False, allow_deferred_init=True)
            self.running_var = self.params.get("running_var", shape=shape,
                                               init=running_variance_initializer, grad_req="null",
                                               differentiable=False, allow_deferred_init=True)
            self.training = TrainingFlag()

    def infer_shape(self, x, *args):
        channels = x.shape[self._axis]
        for param in (self.gamma, self.beta, self.running_mean, self.running_var):
            param.shape = (channels,)

    def forward(self, x, *args):
        if isinstance(x, mx.nd.NDArray) and self.gamma.shape[0] == 0:
            # Deferred initialization, called directly: the channel count comes from x.
            self.infer_shape(x)
            for param in self.params.values():
                param._finish_deferred_init()
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        channels = self.gamma.shape[0]
        if channels == 0:
            raise ValueError(f"{self.name}: inside a hybridized network, ScratchBatchNorm needs "
                             f"in_channels (the graph is built before shapes are known)")
        return batch_norm(F, x, gamma, beta, running_mean, running_var, self.training(gamma),
                          axis=self._axis,
                          momentum=self._momentum, eps=self._epsilon, channels=channels,
                          impl=self._impl)

    def __repr__(self):
        return (f"{type(self).__name__}(axis={self._axis}, momentum={self._momentum}, "
                f"eps={self._epsilon}, in_channels={self.gamma.shape[0]}, impl={self._impl})")


@NORMALIZATIONS.register(
    "scratch", order=1,
    summary="from-scratch BN, the source tutorial's formulas; equal to gluon's")
def scratch(spec: NormSpec, channels: int, layer: int) -> ScratchBatchNorm:
    return ScratchBatchNorm(momentum=spec.momentum, epsilon=spec.eps, in_channels=channels,
                            impl=spec.impl, **spec.initializers())
