"""The network of a run, as configured: its model and normalization from the registries,
its weights drawn from the seed, compiled (hybridized) when asked."""
from __future__ import annotations

import logging
from typing import Callable

import mxnet as mx
from mxnet import gluon, nd

from bnexp.config import Config
from bnexp.nn.blocks import initializer
from bnexp.nn.norm.registry import NormSpec
from bnexp.nn.registry import MODELS

log = logging.getLogger(__name__)


def norm_spec(cfg: Config) -> NormSpec:
    """The normalization settings of `cfg` (`cfg.perf` picks the scratch layer's formulation)."""
    _, bn_impl = cfg.perf.layout()
    return NormSpec(cfg.bn.variant, cfg.bn.momentum, cfg.bn.eps, bn_impl, cfg.bn.noise,
                    cfg.bn.init, cfg.model.init_sigma, cfg.seed)


def build_net(cfg: Config, ctx: list[mx.Context]) -> gluon.HybridBlock:
    """The configured network on the devices `ctx`, its weights drawn from the seed
    (`cfg.perf` picks pooling layout and BN formulation: speed only)."""
    mx.random.seed(cfg.seed)
    pool, _ = cfg.perf.layout()
    net = MODELS.get(cfg.model.name)(cfg.model, norm_spec(cfg), pool)
    net.initialize(initializer(cfg.model.init, cfg.model.init_sigma), ctx=ctx)
    if cfg.model.hybridize and cfg.bn.variant == "scratch" and len(ctx) > 1:
        # MXNet 1.9's engine can deadlock running the custom moving-statistics
        # operator of several devices' cached graphs at once (seen on cpu:0,cpu:1).
        log.warning("bn=scratch on %d devices runs op by op (model.hybridize ignored)", len(ctx))
    elif cfg.model.hybridize:
        # A fixed batch shape (the last partial batch is dropped or padded) lets
        # MXNet plan all memory once.
        net.hybridize(static_alloc=True, static_shape=True)
    per_device = cfg.trainer.batch_size // len(ctx)
    for c in ctx:  # draw the (otherwise deferred) weights now, in a fixed order
        net(nd.zeros((per_device, 1, 28, 28), ctx=c))
    return net


def step_hooks(net: gluon.Block) -> list[Callable[[int], None]]:
    """What must learn the step number before each training step (bn=noisy's noise)."""
    hooks: list[Callable[[int], None]] = []
    net.apply(lambda block: hooks.append(block.set_step) if hasattr(block, "set_step") else None)
    return hooks
