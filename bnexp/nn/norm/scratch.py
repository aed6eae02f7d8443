"""Batch normalization from scratch (`bn=scratch`), as the source tutorial writes it.

    mean, var = per-channel statistics of the batch (the biased variance)
    x_hat     = (x - mean) / sqrt(var + eps)
    y         = gamma * x_hat + beta
    moving    = momentum * moving + (1 - momentum) * batch statistic

Training normalizes with the batch's statistics and folds them into the moving averages;
inference normalizes with the moving averages (Ioffe & Szegedy 2015, Algorithm 1). Two
things differ from the tutorial's imperative code, because a hybridized graph is traced once:
the mode is read at run time (`training`, 1 or 0), and the moving averages are updated in
place by a native operator (bnexp/nn/norm/moving.py). `batch_norm` below is the whole layer.
"""
from __future__ import annotations

import logging

from bnexp.config import fail
from bnexp.nn.lazy_block import LazyHybridBlock
from bnexp.nn.norm.moving import moving_average
from bnexp.nn.norm.parameters import check_batch_norm, initializers


def batch_norm(F, X, gamma, beta, moving_mean, moving_var, training, momentum: float, eps: float):
    """Normalize X, (batch, features) or (batch, channels, height, width), per feature or
    channel; `training` is 1 per channel in training, 0 in inference. F is mx.nd or mx.sym."""
    # per channel, over the batch (and the positions); (1, C) or (1, C, 1, 1)
    mean = F.mean(X, axis=1, exclude=True, keepdims=True)
    var = F.mean(F.square(F.broadcast_sub(X, mean)), axis=1, exclude=True, keepdims=True)

    def per_channel(v):  # (C,) -> mean's shape
        return F.reshape_like(v, mean)

    # moving = momentum * moving + (1 - momentum) * batch, in training only
    _, moving_mean = moving_average(F, moving_mean, F.reshape(mean, (-1,)), momentum, training)
    _, moving_var = moving_average(F, moving_var, F.reshape(var, (-1,)), momentum, training)
    # training: the batch's statistics; inference: the moving ones
    mean = F.where(per_channel(training), mean, per_channel(moving_mean))
    var = F.where(per_channel(training), var, per_channel(moving_var))
    X_hat = F.broadcast_div(F.broadcast_sub(X, mean), F.sqrt(var + eps))
    return F.broadcast_add(F.broadcast_mul(per_channel(gamma), X_hat), per_channel(beta))


log = logging.getLogger(__name__)

# `formulation`: how the maths is computed. The reference is `batch_norm` above; the others
# are faster and equal to it to float rounding (bnexp/nn/norm/formulations.py), and the speed
# tuner (bnexp/tuning/) times them and trains with the fastest unless perf.bn_impl names one.
FORMULATIONS = ("reference", "compiled", "centered", "surrogate")


class ScratchBatchNorm(LazyHybridBlock):
    """From-scratch BN with the constructor and parameters of `gluon.nn.BatchNorm`."""
    op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op (its in-place update)

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5,
                 in_channels: int = 0, formulation: str = "reference", init: str = "standard",
                 **kwargs):
        super().__init__(**kwargs)
        if formulation not in FORMULATIONS:
            raise ValueError(f"unknown formulation {formulation!r}; expected one of {FORMULATIONS}")
        if formulation == "compiled":
            from bnexp.nn.norm import kernels
            kernels.load()  # F.bnexp_batch_norm (built for this machine if not cached yet)
        from bnexp.nn.norm.moving import TrainingFlag
        self._axis, self._momentum, self._epsilon = axis, momentum, epsilon
        self._formulation = formulation
        given, shape = initializers(init), (in_channels,)
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=shape, allow_deferred_init=True,
                                         init=given.get("gamma_initializer", "ones"))
            self.beta = self.params.get("beta", shape=shape, allow_deferred_init=True,
                                        init=given.get("beta_initializer", "zeros"))
            self.running_mean = self.params.get("running_mean", shape=shape, init="zeros",
                                                grad_req="null", differentiable=False,
                                                allow_deferred_init=True)
            self.running_var = self.params.get(
                "running_var", shape=shape, grad_req="null", differentiable=False,
                allow_deferred_init=True, init=given.get("running_variance_initializer", "ones"))
            self.training = TrainingFlag()

    def infer_shape(self, x, *args):
        channels = x.shape[self._axis]
        for param in (self.gamma, self.beta, self.running_mean, self.running_var):
            param.shape = (channels,)

    def forward(self, x, *args):
        if self.gamma.shape[0] == 0 and not _is_symbol(x):
            # Deferred initialization, called directly: the channel count comes from x.
            self.infer_shape(x)
            for param in self.params.values():
                param._finish_deferred_init()
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        from bnexp.nn.norm.formulations import normalize
        channels = self.gamma.shape[0]
        if channels == 0:
            raise ValueError(f"{self.name}: inside a hybridized network, ScratchBatchNorm needs "
                             f"in_channels (the graph is built before shapes are known)")
        X = F.swapaxes(x, dim1=1, dim2=self._axis) if self._axis != 1 else x
        args = (F, X, gamma, beta, running_mean, running_var, self.training(gamma),
                self._momentum, self._epsilon)
        Y = (batch_norm(*args) if self._formulation == "reference"
             else normalize(*args, channels=channels, formulation=self._formulation))
        return F.swapaxes(Y, dim1=1, dim2=self._axis) if self._axis != 1 else Y

    def __repr__(self):
        return (f"{type(self).__name__}(axis={self._axis}, momentum={self._momentum}, "
                f"eps={self._epsilon}, in_channels={self.gamma.shape[0]}, "
                f"formulation={self._formulation})")


def _is_symbol(x) -> bool:
    return type(x).__name__ == "Symbol"


def scratch(channels: int, momentum: float = 0.9, eps: float = 1e-5, init: str = "standard",
            formulation: str = "reference") -> ScratchBatchNorm:
    """bn=scratch: the layer for `channels` channels (the target of conf/bn/scratch.yaml)."""
    return ScratchBatchNorm(momentum=momentum, epsilon=eps, in_channels=channels,
                            formulation=formulation, init=init)


def check(network, momentum: float, eps: float, init: str) -> None:
    check_batch_norm(momentum, eps, init)


def formulations(device: str, wanted: str = "auto") -> tuple[str, ...]:
    """The formulations to choose among on `device` ("cpu" or "gpu"): for `auto` the ones worth
    timing -- all but the reference (the slowest: MXNet's reductions), the compiled one only
    on a CPU where it builds; else `wanted` alone, if it can run here (a ConfigError saying
    why not)."""
    from bnexp.nn.norm import kernels
    if wanted == "auto":
        reason = kernels.unavailable_reason() if device == "cpu" else "the device is a GPU"
        if reason:  # said once per machine by `make install`, and by `bnexp doctor`
            log.debug("tuning: the compiled BN formulation is left out: %s", reason)
        return tuple(f for f in FORMULATIONS[1:] if f != "compiled" or reason is None)
    if wanted not in FORMULATIONS:
        fail("perf.bn_impl", wanted, f"bn=scratch has the formulations auto, {', '.join(FORMULATIONS)}.")
    if wanted == "compiled" and device != "cpu":
        fail("perf.bn_impl", wanted, "the compiled formulation runs on CPU only, and ctx resolves "
             "to a GPU here; choose auto, reference, centered or surrogate (or ctx=cpu).")
    if wanted == "compiled":
        kernels.library()  # KernelUnavailable (a UserError): one line saying why
    return (wanted,)
