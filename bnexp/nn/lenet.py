"""The source experiment's LeNet (`model=lenet`)."""
from __future__ import annotations

from mxnet.gluon import nn

from bnexp.config import ModelConfig
from bnexp.nn.blocks import bias_initializer, normalized
from bnexp.nn.norm.registry import NormSpec
from bnexp.nn.pooling import max_pool
from bnexp.nn.registry import MODELS


@MODELS.register(
    "lenet", summary="the source's LeNet: conv 20 5x5, conv 50 3x3, dense 128, dense 10")
def lenet(model: ModelConfig, spec: NormSpec, pool: str = "native") -> nn.HybridSequential:
    """conv(20, 5x5) -> BN -> ReLU -> maxpool -> conv(50, 3x3) -> BN -> ReLU -> maxpool
    -> dense 128 [-> BN if model.bn_on_dense] -> ReLU -> dense 10. BN sits before each
    activation. `pool` changes speed, not results (bnexp/runtime/tuning/ chooses it)."""
    net = nn.HybridSequential(prefix="lenet_")
    bias = bias_initializer(spec)
    with net.name_scope():
        normalized(net, nn.Conv2D(20, kernel_size=5, bias_initializer=bias), 20, spec, 0, "relu")
        net.add(max_pool(pool))
        normalized(net, nn.Conv2D(50, kernel_size=3, bias_initializer=bias), 50, spec, 1, "relu")
        net.add(max_pool(pool))
        if model.bn_on_dense:
            normalized(net, nn.Dense(128, bias_initializer=bias), 128, spec, 2, "relu")
        else:
            net.add(nn.Dense(128, activation="relu", bias_initializer=bias))
        net.add(nn.Dense(10, bias_initializer=bias))
    return net
