"""The source experiment's LeNet, with a selectable BN layer after each convolution."""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from bnexp.bn import make_bn

INITIALIZERS = ("normal", "xavier")


def lenet(bn: str, momentum: float, eps: float, bn_on_dense: bool = False) -> nn.HybridSequential:
    """conv(20, 5x5) -> BN -> ReLU -> maxpool -> conv(50, 3x3) -> BN -> ReLU -> maxpool
    -> dense 128 [-> BN] -> ReLU -> dense 10. BN sits before each activation."""
    net = nn.HybridSequential(prefix="lenet_")

    def normalized(layer: nn.HybridBlock) -> None:
        net.add(layer)
        bn_layer = make_bn(bn, momentum, eps)
        if bn_layer is not None:
            net.add(bn_layer)
        net.add(nn.Activation("relu"))

    with net.name_scope():
        normalized(nn.Conv2D(20, kernel_size=5))
        net.add(nn.MaxPool2D(pool_size=2, strides=2))
        normalized(nn.Conv2D(50, kernel_size=3))
        net.add(nn.MaxPool2D(pool_size=2, strides=2))
        if bn_on_dense:
            normalized(nn.Dense(128))
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
