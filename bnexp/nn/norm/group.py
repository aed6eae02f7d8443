"""Group Normalization from scratch (Wu & He 2018), `bn=group`.

For each sample, the C channels are split into G groups of C/G consecutive channels, and
each group is normalized over its channels and all their positions:
    mean, var = statistics of x[n, group g] over (C/G, H, W)   (biased variance)
    x_hat     = (x - mean) / sqrt(var + eps)
    y         = gamma[c] * x_hat + beta[c]                      (per channel, as in the paper)
Nothing is taken over the batch: a sample's output does not depend on the others, training
and inference compute the same thing, and there are no moving statistics. G = 1 is Layer
Normalization over (C, H, W) (`bn=layer`), G = C Instance Normalization (`bn=instance`);
those modules build this layer. A dense layer's output (N, C) is a (N, C, 1, 1) image.
"""
from __future__ import annotations

from bnexp.config import fail
from bnexp.nn.lazy_block import LazyHybridBlock
from bnexp.nn.norm.formulations import channel_affine
from bnexp.nn.norm.parameters import check_eps, check_init, initializers


def row_mean(F, rows):
    """Mean of each row of `rows` (R, M): (R, 1). Written as a matrix-vector product: MXNet's
    CPU reductions are far slower than a BLAS GEMV (LeNet's first layer: 15x per step)."""
    ones = F.ones_like(F.slice_axis(rows, axis=0, begin=0, end=1))       # (1, M)
    return F.dot(rows, F.broadcast_div(ones, F.sum(ones)), transpose_b=True)


def group_norm(F, X, gamma, beta, groups: int, eps: float, channels: int):
    """Normalize X (N, C, ...) per sample in `groups` groups of channels; per-channel affine.
    Works with F = mx.nd (imperative) and F = mx.sym (hybridized)."""
    X_grouped = F.reshape(F.reshape(X, (0, groups, -1)), (-3, -1))   # (N*G, C/G * H * W): a row per group
    mean = row_mean(F, X_grouped)
    centered = F.broadcast_sub(X_grouped, mean)
    var = row_mean(F, F.square(centered))
    X_hat = F.broadcast_div(centered, F.sqrt(var + eps))
    X_hat = F.reshape(F.reshape_like(X_hat, X), (0, 0, -1, 1))       # (N, C, H*W, 1)
    return F.reshape_like(channel_affine(F, X_hat, gamma, beta, channels), X)  # gamma[c] x_hat + beta[c]


class GroupNorm(LazyHybridBlock):
    """`group_norm` with learnable per-channel gamma (1) and beta (0); no moving statistics."""

    def __init__(self, in_channels: int, groups: int, epsilon: float = 1e-5,
                 init: str = "standard", **kwargs):
        super().__init__(**kwargs)
        if in_channels < 1 or groups < 1 or in_channels % groups:
            raise ValueError(f"GroupNorm: {groups} groups do not divide {in_channels} channels")
        self.channels, self.groups, self.epsilon = in_channels, groups, epsilon
        given = initializers(init, moving=False)
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=(in_channels,),
                                         init=given.get("gamma_initializer", "ones"))
            self.beta = self.params.get("beta", shape=(in_channels,),
                                        init=given.get("beta_initializer", "zeros"))

    def hybrid_forward(self, F, x, gamma, beta):
        return group_norm(F, x, gamma, beta, self.groups, self.epsilon, self.channels)

    def __repr__(self):
        return f"{type(self).__name__}(channels={self.channels}, groups={self.groups}, eps={self.epsilon})"


def group(channels: int, groups: int = 10, eps: float = 1e-5, init: str = "standard") -> GroupNorm:
    """bn=group: GroupNorm with `groups` groups for `channels` channels."""
    return GroupNorm(channels, groups, eps, init)


def check(network, groups: int, eps: float, init: str) -> None:
    """`groups` must divide the channels of every normalized layer."""
    check_eps(eps)
    check_init(init)
    check_groups(network, groups)


def check_groups(network, groups: int) -> None:
    widths = network.widths()
    if groups < 1 or any(width % groups for width in widths):
        divisors = [g for g in range(1, min(widths, default=1) + 1) if all(w % g == 0 for w in widths)]
        fail("bn.groups", groups, f"must divide the channels of every normalized layer "
             f"({', '.join(map(str, widths))} with {network.model}); choose one of "
             f"{', '.join(map(str, divisors))}.")
