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

from bnexp.config import fail
from bnexp.nn.lazy_block import LazyHybridBlock
from bnexp.nn.norm.formulations import channel_affine
from bnexp.nn.norm.group import row_mean
from bnexp.nn.norm.moving import moving_average
from bnexp.nn.norm.parameters import add_batch_norm_parameters, check_batch_norm


def ghost_batch_norm(F, X, gamma, beta, moving_mean, moving_var, training, virtual_batch: int,
                     momentum: float, eps: float, channels: int):
    """Normalize X (N, C, ...) per channel within each virtual batch of `virtual_batch`
    images (training) or with the moving statistics (inference); `training` is 1 per
    channel in training, 0 in inference (`TrainingFlag`)."""
    X_virtual = F.reshape(F.reshape(X, (0, 0, -1)), (-4, -1, virtual_batch, -2))   # (N/v, v, C, L)
    # a row per (virtual batch, channel): its v * L values
    rows = F.reshape(F.transpose(X_virtual, axes=(0, 2, 1, 3)), (-3, -1))          # (N/v * C, v * L)
    mean = row_mean(F, rows)
    var = row_mean(F, F.square(F.broadcast_sub(rows, mean)))
    per_virtual_batch = (-1, channels)                                             # (N/v, C)
    # The moving averages take the mean over the virtual batches.
    _, moving_mean = moving_average(F, moving_mean, F.mean(F.reshape(mean, per_virtual_batch), axis=0),
                                 momentum, training)
    _, moving_var = moving_average(F, moving_var, F.mean(F.reshape(var, per_virtual_batch), axis=0),
                                momentum, training)
    per_row = lambda stat: F.reshape_like(  # noqa: E731  (C,) -> one value per row
        F.broadcast_like(F.reshape(stat, (1, -1)), F.reshape(mean, per_virtual_batch)), mean)
    training = per_row(training)
    used_mean = F.where(training, mean, per_row(moving_mean))
    used_var = F.where(training, var, per_row(moving_var))
    X_hat = F.broadcast_div(F.broadcast_sub(rows, used_mean), F.sqrt(used_var + eps))
    X_hat = F.transpose(F.reshape_like(X_hat, F.transpose(X_virtual, axes=(0, 2, 1, 3))),
                        axes=(0, 2, 1, 3))                                          # (N/v, v, C, L)
    X_hat = F.reshape(F.reshape_like(F.reshape(X_hat, (-3, -2)), F.reshape(X, (0, 0, -1))),
                      (0, 0, -1, 1))                                                # (N, C, L, 1)
    return F.reshape_like(channel_affine(F, X_hat, gamma, beta, channels), X)


class GhostBatchNorm(LazyHybridBlock):
    """`ghost_batch_norm` with BN's parameters (gamma, beta, moving mean and variance)."""
    op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op (its in-place update)

    def __init__(self, in_channels: int, virtual_batch: int, momentum: float = 0.9,
                 epsilon: float = 1e-5, init: str = "standard"):
        super().__init__()
        from bnexp.nn.norm.moving import TrainingFlag
        self.channels, self.virtual_batch = in_channels, virtual_batch
        self.momentum, self.epsilon = momentum, epsilon
        with self.name_scope():
            add_batch_norm_parameters(self, in_channels, init)
            self.training = TrainingFlag()

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        return ghost_batch_norm(F, x, gamma, beta, running_mean, running_var,
                                self.training(gamma), self.virtual_batch,
                                self.momentum, self.epsilon, self.channels)


def ghost(channels: int, virtual_batch: int = 32, momentum: float = 0.9, eps: float = 1e-5,
          init: str = "standard") -> GhostBatchNorm:
    """bn=ghost: each virtual batch of `virtual_batch` images normalized with its own statistics."""
    return GhostBatchNorm(channels, virtual_batch, momentum, eps, init)


def check(network, virtual_batch: int, momentum: float, eps: float, init: str) -> None:
    """`virtual_batch` must divide the images a device normalizes at once (also the
    activations monitor's probe batches: they have the training batch's size)."""
    check_batch_norm(momentum, eps, init)
    per_device = network.batch_per_device
    if virtual_batch < 1 or per_device % virtual_batch:
        largest = max(d for d in range(1, min(per_device, 32) + 1) if per_device % d == 0)
        fail("bn.virtual_batch", virtual_batch, f"must divide the per-device batch "
             f"({per_device} images), e.g. bn.virtual_batch={largest}.")
