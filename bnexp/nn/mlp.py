"""Ioffe & Szegedy's Fig. 1 network (`model=mlp`)."""
from __future__ import annotations

from mxnet.gluon import nn

from bnexp.config import ModelConfig
from bnexp.nn.blocks import bias_initializer, normalized
from bnexp.nn.norm.registry import NormSpec
from bnexp.nn.registry import MODELS


@MODELS.register(
    "mlp", summary="Ioffe & Szegedy's Fig. 1 network: 3 hidden layers of 100 sigmoid units")
def mlp(model: ModelConfig, spec: NormSpec, pool: str = "native") -> nn.HybridSequential:
    """Fully connected hidden layers (model.hidden, default 3 of 100 units with
    model.activation, default sigmoid), BN before each activation when BN is on, then
    dense 10. (`pool`: unused, the MLP has no pooling.)"""
    net = nn.HybridSequential(prefix="mlp_")
    bias = bias_initializer(spec)
    with net.name_scope():
        for i, units in enumerate(model.hidden):
            normalized(net, nn.Dense(units, bias_initializer=bias), units, spec, i, model.activation)
        net.add(nn.Dense(10, bias_initializer=bias))
    return net
