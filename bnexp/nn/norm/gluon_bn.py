"""MXNet's own batch normalization, `gluon.nn.BatchNorm` (`bn=gluon`): the reference the
from-scratch layer must equal."""
from __future__ import annotations

from mxnet import gluon

from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


@NORMALIZATIONS.register(
    "gluon", order=2,
    summary="MXNet's gluon.nn.BatchNorm")
def gluon_bn(spec: NormSpec, channels: int, layer: int) -> gluon.nn.BatchNorm:
    return gluon.nn.BatchNorm(momentum=spec.momentum, epsilon=spec.eps, in_channels=channels,
                              **spec.initializers())
