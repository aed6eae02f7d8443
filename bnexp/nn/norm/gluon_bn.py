"""MXNet's own batch normalization, `gluon.nn.BatchNorm` (`bn=gluon`): the reference the
from-scratch layer must equal."""
from __future__ import annotations

from bnexp.nn.norm.parameters import check_batch_norm, initializers


def gluon_bn(channels: int, momentum: float = 0.9, eps: float = 1e-5, init: str = "standard"):
    """bn=gluon: gluon.nn.BatchNorm for `channels` channels."""
    from mxnet import gluon
    return gluon.nn.BatchNorm(momentum=momentum, epsilon=eps, in_channels=channels,
                              **initializers(init))


def check(network, momentum: float, eps: float, init: str) -> None:
    check_batch_norm(momentum, eps, init)
