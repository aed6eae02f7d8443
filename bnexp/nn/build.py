"""The network of a run, as configured: the model option built around the normalization
option (bnexp/options.py), its weights drawn from the seed, compiled (hybridized) when asked.
`pool` and `formulation` are speed settings chosen by bnexp/tuning/: they change how fast the
network runs, never what it computes."""
from __future__ import annotations

import logging
from typing import Callable

import mxnet as mx
from mxnet import gluon, nd

from bnexp import options
from bnexp.config import Config, ModelSettings, model_settings

log = logging.getLogger(__name__)


def weight_initializer(model: ModelSettings) -> mx.init.Initializer:
    """Weights from N(0, init_sigma) (the source's), Xavier/Glorot (uniform, fan average) or
    Kaiming/He (normal, std sqrt(2 / fan_in), for ReLU). Biases and normalization parameters
    bring their own initializers."""
    if model.init == "normal":
        return mx.init.Normal(model.init_sigma)
    if model.init == "xavier":
        return mx.init.Xavier()
    return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


def norm_factory(cfg: Config, devices: int, formulation: str) -> Callable:
    """`norm(channels, layer)`: the normalization option's layer for a model to place."""
    def norm(channels: int, layer: int):
        return options.build("bn", cfg.bn, channels=channels, layer=layer, seed=cfg.seed,
                             devices=devices, formulation=formulation)
    return norm


def build_net(cfg: Config, ctx: list[mx.Context], pool: str = "native",
              formulation: str = "reference") -> gluon.HybridBlock:
    """The configured network on the devices `ctx`, its weights drawn from the seed."""
    mx.random.seed(cfg.seed)
    model = model_settings(cfg)
    # the source tutorial's defects (bn.init=source) include biases drawn from N(0, sigma)
    bias = mx.init.Normal(model.init_sigma) if cfg.bn.get("init") == "source" else "zeros"
    net = options.build("model", cfg.model, norm=norm_factory(cfg, len(ctx), formulation),
                        pool=pool, bias_initializer=bias)
    net.initialize(weight_initializer(model), ctx=ctx)
    if model.hybridize and len(ctx) > 1 and must_run_op_by_op(net):
        # MXNet 1.9's engine can deadlock running several devices' cached graphs at once
        # when they hold SyncBatchNorm's barrier (bnexp/nn/norm/sync.py) or an in-place update
        # of bnexp's moving statistics (bnexp/nn/norm/moving.py); both seen on cpu:0,cpu:1.
        log.warning("this normalization runs op by op on %d devices (model.hybridize ignored)",
                    len(ctx))
    elif model.hybridize:
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
