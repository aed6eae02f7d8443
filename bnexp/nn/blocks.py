"""What the models share: a weight layer followed by its normalization and activation."""
from __future__ import annotations

from mxnet.gluon import nn


def normalized(net: nn.HybridSequential, layer: nn.HybridBlock, norm, activation: str) -> None:
    """layer -> `norm` (unless None: bn=none) -> activation."""
    net.add(layer)
    if norm is not None:
        net.add(norm)
    net.add(nn.Activation(activation))
