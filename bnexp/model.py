"""The networks: the source experiment's LeNet and Ioffe & Szegedy's Fig. 1 MLP, each with
a selectable BN layer before every hidden activation."""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from bnexp.bn import BNSpec, make_bn
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


def lenet(spec: BNSpec, bn_on_dense: bool = False, pool: str = "native") -> nn.HybridSequential:
    """The source's LeNet: conv(20, 5x5) -> BN -> ReLU -> maxpool -> conv(50, 3x3) -> BN
    -> ReLU -> maxpool -> dense 128 [-> BN] -> ReLU -> dense 10. BN sits before each
    activation. `pool` changes speed, not results (bnexp/tuning.py chooses it)."""
    net = nn.HybridSequential(prefix="lenet_")
    bias = _bias_initializer(spec)
    with net.name_scope():
        _normalized(net, nn.Conv2D(20, kernel_size=5, bias_initializer=bias), 20, spec, 0, "relu")
        net.add(max_pool(pool))
        _normalized(net, nn.Conv2D(50, kernel_size=3, bias_initializer=bias), 50, spec, 1, "relu")
        net.add(max_pool(pool))
        if bn_on_dense:
            _normalized(net, nn.Dense(128, bias_initializer=bias), 128, spec, 2, "relu")
        else:
            net.add(nn.Dense(128, activation="relu", bias_initializer=bias))
        net.add(nn.Dense(10, bias_initializer=bias))
    return net


def mlp(spec: BNSpec, hidden: tuple[int, ...] = (100, 100, 100),
        activation: str = "sigmoid") -> nn.HybridSequential:
    """Ioffe & Szegedy's Fig. 1 network: fully connected hidden layers (3 of 100 sigmoid
    units), BN before each activation when BN is on, then dense 10."""
    net = nn.HybridSequential(prefix="mlp_")
    bias = _bias_initializer(spec)
    with net.name_scope():
        for i, units in enumerate(hidden):
            _normalized(net, nn.Dense(units, bias_initializer=bias), units, spec, i, activation)
        net.add(nn.Dense(10, bias_initializer=bias))
    return net


def _normalized(net: nn.HybridSequential, layer: nn.HybridBlock, channels: int, spec: BNSpec,
                index: int, activation: str) -> None:
    """layer -> BN (unless bn=none) -> activation."""
    net.add(layer)
    bn_layer = make_bn(spec, channels, index)
    if bn_layer is not None:
        net.add(bn_layer)
    net.add(nn.Activation(activation))


def _bias_initializer(spec: BNSpec):
    """Zero biases, or (bn.init=source) normal(0, 0.01) like every parameter of the tutorial."""
    return mx.init.Normal(spec.init_sigma) if spec.init == "source" else "zeros"


def initializer(name: str, sigma: float) -> mx.init.Initializer:
    """Weights from normal(0, sigma) (the source's) or Xavier. Biases and BN parameters
    bring their own initializers (bnexp.bn.BNSpec.init)."""
    if name == "normal":
        return mx.init.Normal(sigma)
    if name == "xavier":
        return mx.init.Xavier()
    raise ValueError(f"unknown initializer {name!r}; expected one of {INITIALIZERS}")
