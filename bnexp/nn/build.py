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


def norm_spec(cfg: Config, devices: int = 1) -> NormSpec:
    """The normalization settings of `cfg` for a network on `devices` devices (`cfg.perf`
    picks the scratch layer's formulation)."""
    _, bn_impl = cfg.perf.layout()
    bn = cfg.bn
    return NormSpec(bn.variant, bn.momentum, bn.eps, bn_impl, bn.noise, bn.init,
                    cfg.model.init_sigma, cfg.seed, groups=bn.groups,
                    virtual_batch=bn.virtual_batch, r_max=bn.r_max, d_max=bn.d_max,
                    relax_begin=bn.relax_begin, relax_end=bn.relax_end, devices=devices)


def build_net(cfg: Config, ctx: list[mx.Context]) -> gluon.HybridBlock:
    """The configured network on the devices `ctx`, its weights drawn from the seed
    (`cfg.perf` picks pooling layout and BN formulation: speed only)."""
    mx.random.seed(cfg.seed)
    pool, _ = cfg.perf.layout()
    net = MODELS.get(cfg.model.name)(cfg.model, norm_spec(cfg, len(ctx)), pool)
    net.initialize(initializer(cfg.model.init, cfg.model.init_sigma), ctx=ctx)
    if cfg.model.hybridize and len(ctx) > 1 and must_run_op_by_op(net):
        # MXNet 1.9's engine can deadlock running several devices' cached graphs at once
        # when they hold SyncBatchNorm's barrier (bnexp/nn/norm/sync.py) or an in-place update
        # of bnexp's moving statistics (bnexp/nn/norm/moving.py); both seen on cpu:0,cpu:1.
        log.warning("bn=%s on %d devices runs op by op (model.hybridize ignored)",
                    cfg.bn.variant, len(ctx))
    elif cfg.model.hybridize:
        # A fixed batch shape (the last partial batch is dropped or padded) lets
        # MXNet plan all memory once.
        net.hybridize(static_alloc=True, static_shape=True)
    per_device = cfg.trainer.batch_size // len(ctx)
    for c in ctx:  # draw the (otherwise deferred) weights now, in a fixed order
        net(nd.zeros((per_device, 1, 28, 28), ctx=c))
    return net


def must_run_op_by_op(net: gluon.Block) -> bool:
    """Whether a layer of `net` cannot run hybridized on several devices (SyncBatchNorm's
    barrier: bn=sync; bnexp's in-place moving statistics: bn=scratch, ghost, renorm). Such
    layers set `op_by_op_on_devices = True`."""
    found: list[bool] = []
    net.apply(lambda block: found.append(getattr(block, "op_by_op_on_devices", False)))
    return any(found)


def step_hooks(net: gluon.Block) -> list[Callable[[int], None]]:
    """What must learn the step number before each training step (bn=noisy's noise,
    bn=renorm's relaxation of r_max and d_max)."""
    hooks: list[Callable[[int], None]] = []
    net.apply(lambda block: hooks.append(block.set_step) if hasattr(block, "set_step") else None)
    return hooks
