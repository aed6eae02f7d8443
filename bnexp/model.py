"""The source experiment's LeNet, with a selectable BN layer after each convolution."""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from bnexp.bn import make_bn
from bnexp.config import INITIALIZERS, POOL_LAYOUTS


class FoldedMaxPool2D(nn.HybridBlock):
    """2x2 max pooling with stride 2, the same as `nn.MaxPool2D(2, 2)`, computed
    with the channels folded into the batch axis: (N, C, H, W) -> (N*C, 1, H, W).
    oneDNN in MXNet 1.9 pools 20 or 50 plain-layout channels with a generic kernel;
    on one CPU folding was 3x faster, on another 1.35x slower, so `perf.pool`
    chooses by measuring (bnexp/tuning.py). Same results either way."""

    def hybrid_forward(self, F, x):
        folded = F.reshape(x, (-1, 1, 0, 0))
        pooled = F.Pooling(folded, kernel=(2, 2), stride=(2, 2), pool_type="max")
        return F.reshape_like(pooled, x, lhs_begin=0, lhs_end=2, rhs_begin=0, rhs_end=2)


def max_pool(layout: str) -> nn.HybridBlock:
    """2x2 max pooling, stride 2, in the given layout (config.POOL_LAYOUTS)."""
    if layout == "native":
        return nn.MaxPool2D(pool_size=2, strides=2)
    if layout == "folded":
        return FoldedMaxPool2D()
    raise ValueError(f"unknown pooling layout {layout!r}; expected one of {POOL_LAYOUTS}")


def lenet(bn: str, momentum: float, eps: float, bn_on_dense: bool = False,
          pool: str = "native", bn_impl: str = "centered") -> nn.HybridSequential:
    """conv(20, 5x5) -> BN -> ReLU -> maxpool -> conv(50, 3x3) -> BN -> ReLU -> maxpool
    -> dense 128 [-> BN] -> ReLU -> dense 10. BN sits before each activation.
    `pool` and `bn_impl` change speed, not results (bnexp/tuning.py chooses them)."""
    net = nn.HybridSequential(prefix="lenet_")

    def normalized(layer: nn.HybridBlock, channels: int) -> None:
        net.add(layer)
        bn_layer = make_bn(bn, momentum, eps, channels, bn_impl)
        if bn_layer is not None:
            net.add(bn_layer)
        net.add(nn.Activation("relu"))

    with net.name_scope():
        normalized(nn.Conv2D(20, kernel_size=5), 20)
        net.add(max_pool(pool))
        normalized(nn.Conv2D(50, kernel_size=3), 50)
        net.add(max_pool(pool))
        if bn_on_dense:
            normalized(nn.Dense(128), 128)
        else:
            net.add(nn.Dense(128, activation="relu"))
        net.add(nn.Dense(10))
    return net


def initializer(name: str, sigma: float) -> mx.init.Initializer:
    """Weights from normal(0, sigma) (the source's) or Xavier; biases 0.
    BN layers keep their own gamma=1, beta=0, moving mean 0, moving variance 1."""
    if name == "normal":
        return mx.init.Normal(sigma)
    if name == "xavier":
        return mx.init.Xavier()
    raise ValueError(f"unknown initializer {name!r}; expected one of {INITIALIZERS}")
