"""Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017) from scratch, `bn=ghost`.

The batch (on each device) is cut into consecutive virtual batches of `virtual_batch`
images, and in training each is normalized with its own statistics, as BN would a batch
of that size:
    x[k] = images k*v .. (k+1)*v - 1;   mean_k, var_k over them (and all positions)
    y[k] = gamma * (x[k] - mean_k) / sqrt(var_k + eps) + beta
The moving statistics follow the average over the virtual batches of mean_k and var_k,
folded in once per step with BN's momentum: they estimate the statistics training
normalized with (those of v images) on BN's time scale in steps, and a virtual batch as
large as the batch gives BN exactly. Inference normalizes with them, like BN.
"""
from __future__ import annotations

from mxnet import gluon

from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec
from bnexp.nn.norm import scratch  # noqa: F401  registers bnexp_moving_stats


def ghost_batch_norm(F, X, gamma, beta, moving_mean, moving_var, virtual_batch: int,
                     momentum: float, eps: float):
    """Normalize X (N, C, ...) per channel within each virtual batch of `virtual_batch`
    images (training) or with the moving statistics (inference)."""
    X_virtual = F.reshape(F.reshape(X, (0, 0, -1)), (-4, -1, virtual_batch, -2))  # (N/v, v, C, L)
    mean = F.mean(X_virtual, axis=(1, 3), keepdims=True)                          # (N/v, 1, C, 1)
    var = F.mean(F.square(F.broadcast_sub(X_virtual, mean)), axis=(1, 3), keepdims=True)
    # The moving averages take the mean over the virtual batches; the op outputs the mode.
    training = F.Custom(F.BlockGrad(F.mean(mean, axis=(0, 1, 3))),
                        F.BlockGrad(F.mean(var, axis=(0, 1, 3))), moving_mean, moving_var,
                        op_type="bnexp_moving_stats", momentum=momentum)
    training = F.broadcast_like(F.reshape(F.BlockGrad(training), (1, 1, 1, 1)), mean)
    per_channel = (1, 1, -1, 1)
    used_mean = F.where(training, mean, F.broadcast_like(F.reshape(moving_mean, per_channel), mean))
    used_var = F.where(training, var, F.broadcast_like(F.reshape(moving_var, per_channel), var))
    X_hat = F.broadcast_div(F.broadcast_sub(X_virtual, used_mean), F.sqrt(used_var + eps))
    Y = F.broadcast_add(F.broadcast_mul(X_hat, F.reshape(gamma, per_channel)),
                        F.reshape(beta, per_channel))
    return F.reshape_like(Y, X)


class GhostBatchNorm(gluon.HybridBlock):
    """`ghost_batch_norm` with BN's parameters (gamma, beta, moving mean and variance)."""
    op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op

    def __init__(self, in_channels: int, virtual_batch: int, momentum: float = 0.9,
                 epsilon: float = 1e-5, gamma_initializer="ones", beta_initializer="zeros",
                 running_mean_initializer="zeros", running_variance_initializer="ones"):
        super().__init__()
        self.channels, self.virtual_batch = in_channels, virtual_batch
        self.momentum, self.epsilon = momentum, epsilon
        shape = (in_channels,)
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=shape, init=gamma_initializer)
            self.beta = self.params.get("beta", shape=shape, init=beta_initializer)
            self.running_mean = self.params.get("running_mean", shape=shape, grad_req="null",
                                                init=running_mean_initializer, differentiable=False)
            self.running_var = self.params.get("running_var", shape=shape, grad_req="null",
                                               init=running_variance_initializer, differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        return ghost_batch_norm(F, x, gamma, beta, running_mean, running_var, self.virtual_batch,
                                self.momentum, self.epsilon)


@NORMALIZATIONS.register("ghost", summary="Ghost BN from scratch (Hoffer et al. 2017): each virtual "
                         "sub-batch normalized separately", order=22, settings=("virtual_batch",))
def ghost(spec: NormSpec, channels: int, layer: int) -> GhostBatchNorm:
    return GhostBatchNorm(channels, spec.virtual_batch, spec.momentum, spec.eps, **spec.initializers())
