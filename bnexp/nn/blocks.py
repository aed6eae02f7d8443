"""What the models share: a weight layer followed by its normalization and activation,
and the initializers of weights and biases."""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from bnexp.config import INITIALIZERS
from bnexp.nn.norm.registry import NormSpec, make_norm


def normalized(net: nn.HybridSequential, layer: nn.HybridBlock, channels: int, spec: NormSpec,
               index: int, activation: str) -> None:
    """layer -> normalization (unless bn=none) -> activation."""
    net.add(layer)
    norm = make_norm(spec, channels, index)
    if norm is not None:
        net.add(norm)
    net.add(nn.Activation(activation))


def bias_initializer(spec: NormSpec):
    """Zero biases, or (bn.init=source) normal(0, 0.01) like every parameter of the tutorial."""
    return mx.init.Normal(spec.init_sigma) if spec.init == "source" else "zeros"


def initializer(name: str, sigma: float) -> mx.init.Initializer:
    """Weights from normal(0, sigma) (the source's) or Xavier. Biases and normalization
    parameters bring their own initializers (NormSpec.initializers)."""
    if name == "normal":
        return mx.init.Normal(sigma)
    if name == "xavier":
        return mx.init.Xavier()
    raise ValueError(f"unknown initializer {name!r}; expected one of {INITIALIZERS}")
