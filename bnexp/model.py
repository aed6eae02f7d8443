"""The source experiment's LeNet, with a selectable BN layer after each convolution."""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from bnexp.bn import make_bn

INITIALIZERS = ("normal", "xavier")


class MaxPool2D(nn.HybridBlock):
    """2x2 max pooling with stride 2, the same as `nn.MaxPool2D(2, 2)`, computed
    with the channels folded into the batch axis: (N, C, H, W) -> (N*C, 1, H, W).
    oneDNN in MXNet 1.9 pools 20 or 50 plain-layout channels with a slow generic
    kernel (~10 ms per call here); one channel at a time is ~3x faster, forward
    and backward (`python -m bnexp.bench` shows the effect on whole steps)."""

    def hybrid_forward(self, F, x):
        folded = F.reshape(x, (-1, 1, 0, 0))
        pooled = F.Pooling(folded, kernel=(2, 2), stride=(2, 2), pool_type="max")
        return F.reshape_like(pooled, x, lhs_begin=0, lhs_end=2, rhs_begin=0, rhs_end=2)


def lenet(bn: str, momentum: float, eps: float, bn_on_dense: bool = False) -> nn.HybridSequential:
    """conv(20, 5x5) -> BN -> ReLU -> maxpool -> conv(50, 3x3) -> BN -> ReLU -> maxpool
    -> dense 128 [-> BN] -> ReLU -> dense 10. BN sits before each activation."""
    net = nn.HybridSequential(prefix="lenet_")

    def normalized(layer: nn.HybridBlock, channels: int) -> None:
        net.add(layer)
        bn_layer = make_bn(bn, momentum, eps, channels)
        if bn_layer is not None:
            net.add(bn_layer)
        net.add(nn.Activation("relu"))

    with net.name_scope():
        normalized(nn.Conv2D(20, kernel_size=5), 20)
        net.add(MaxPool2D())
        normalized(nn.Conv2D(50, kernel_size=3), 50)
        net.add(MaxPool2D())
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
