"""Ioffe & Szegedy's Fig. 1 network (`model=mlp`): fully connected hidden layers (3 of 100
sigmoid units by default), the normalization before each activation, then dense 10."""
from __future__ import annotations

from typing import Callable

from bnexp.config import fail
from bnexp.nn.plan import NormSite

ACTIVATIONS = ("sigmoid", "relu", "tanh")


def normalized_layers(hidden: tuple[int, ...] = (100, 100, 100), activation: str = "sigmoid") -> list[NormSite]:
    """Where the MLP normalizes: every hidden layer (bnexp/nn/plan.py)."""
    return [NormSite(units, False) for units in hidden]


def mlp(norm: Callable, bias_initializer="zeros", hidden: list[int] = (100, 100, 100),
        activation: str = "sigmoid"):
    """The network, with `norm(units, layer)` (a block, or None) before each activation."""
    from mxnet.gluon import nn

    from bnexp.nn.blocks import normalized

    net = nn.HybridSequential(prefix="mlp_")
    with net.name_scope():
        for index, units in enumerate(hidden):
            normalized(net, nn.Dense(units, bias_initializer=bias_initializer),
                       norm(units, index), activation)
        net.add(nn.Dense(10, bias_initializer=bias_initializer))
    return net


def check(network, hidden: list[int], activation: str) -> None:
    if not hidden or min(hidden) < 1:
        fail("model.hidden", list(hidden), "a list of layer widths >= 1, e.g. [100,100,100].")
    if activation not in ACTIVATIONS:
        fail("model.activation", activation, f"choose one of {', '.join(ACTIVATIONS)}.")
