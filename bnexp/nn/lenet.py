"""The source experiment's LeNet (`model=lenet`)."""
from __future__ import annotations

from mxnet.gluon import nn

from bnexp.config import ModelConfig
from bnexp.nn.blocks import bias_initializer, normalized
from bnexp.nn.norm.registry import NormSpec
from bnexp.nn.pooling import max_pool
from bnexp.nn.registry import MODELS
from bnexp.nn.shapes import LENET_CONV_CHANNELS, LENET_DENSE_UNITS


@MODELS.register(
    "lenet", summary="the source's LeNet: conv 20 5x5, conv 50 3x3, dense 128, dense 10")
def lenet(model: ModelConfig, spec: NormSpec, pool: str = "native") -> nn.HybridSequential:
    """conv(20, 5x5) -> BN -> ReLU -> maxpool -> conv(50, 3x3) -> BN -> ReLU -> maxpool
    -> dense 128 [-> BN if model.bn_on_dense] -> ReLU -> dense 10. BN sits before each
    activation. `pool` changes speed, not results (bnexp/runtime/tuning/ chooses it)."""
    net = nn.HybridSequential(prefix="lenet_")
    bias = bias_initializer(spec)
    with net.name_scope():
        for index, (channels, kernel) in enumerate(zip(LENET_CONV_CHANNELS, (5, 3))):
            normalized(net, nn.Conv2D(channels, kernel_size=kernel, bias_initializer=bias),
                       channels, spec, index, "relu")
            net.add(max_pool(pool))
        units = LENET_DENSE_UNITS
        if model.bn_on_dense:
            normalized(net, nn.Dense(units, bias_initializer=bias), units, spec, 2, "relu")
        else:
            net.add(nn.Dense(units, activation="relu", bias_initializer=bias))
        net.add(nn.Dense(10, bias_initializer=bias))
    return net
