"""The source experiment's LeNet (`model=lenet`): conv(20, 5x5) -> norm -> ReLU -> maxpool
-> conv(50, 3x3) -> norm -> ReLU -> maxpool -> dense 128 [-> norm] -> ReLU -> dense 10.
The normalization sits before each activation, as in the source."""
from __future__ import annotations

from typing import Callable

from bnexp.nn.plan import NormSite

CONV = ((20, 5), (50, 3))   # (channels, kernel size) of the two convolutions
DENSE_UNITS = 128           # the hidden dense layer


def normalized_layers(bn_on_dense: bool = False) -> list[NormSite]:
    """Where LeNet normalizes (bnexp/nn/plan.py)."""
    return ([NormSite(channels, True) for channels, _ in CONV]
            + ([NormSite(DENSE_UNITS, False)] if bn_on_dense else []))


def lenet(norm: Callable, pool: str = "native", bias_initializer="zeros",
          bn_on_dense: bool = False):
    """The network, with `norm(channels, layer)` (a block, or None for no normalization)
    after each convolution (and the hidden dense layer if `bn_on_dense`). `pool` changes
    speed, not results (bnexp/nn/pooling.py)."""
    from mxnet.gluon import nn

    from bnexp.nn.blocks import normalized
    from bnexp.nn.pooling import max_pool

    net = nn.HybridSequential(prefix="lenet_")
    with net.name_scope():
        for index, (channels, kernel) in enumerate(CONV):
            normalized(net, nn.Conv2D(channels, kernel_size=kernel, bias_initializer=bias_initializer),
                       norm(channels, index), "relu")
            net.add(max_pool(pool))
        if bn_on_dense:
            normalized(net, nn.Dense(DENSE_UNITS, bias_initializer=bias_initializer),
                       norm(DENSE_UNITS, len(CONV)), "relu")
        else:
            net.add(nn.Dense(DENSE_UNITS, activation="relu", bias_initializer=bias_initializer))
        net.add(nn.Dense(10, bias_initializer=bias_initializer))
    return net
