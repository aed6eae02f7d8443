"""The config's values checked before any work starts: names against the registries,
ranges the type schema cannot express. Each error names the key, the value and what is
allowed, in one line (a ConfigError)."""
from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from bnexp.config import (ACTIVATIONS, BN_IMPLS, BN_INITS, INITIALIZERS, LR_SCALINGS,
                          POOL_LAYOUTS, PROGRESS_MODES, TEST_SIZE, TRAIN_SIZE, Config, fail)
from bnexp.errors import ConfigError
from bnexp.monitors.registry import MONITORS
from bnexp.nn.norm.registry import NORMALIZATIONS
from bnexp.nn.registry import MODELS
from bnexp.nn.shapes import normalized_layers
from bnexp.runtime import context
from bnexp.training import schedule


def check(cfg: Config) -> None:
    """Range checks that the type schema cannot express."""
    if cfg.bn.variant not in NORMALIZATIONS:
        raise ConfigError(NORMALIZATIONS.unknown(cfg.bn.variant))
    if not (math.isfinite(cfg.bn.noise) and cfg.bn.noise >= 0):
        fail("bn.noise", cfg.bn.noise, "the noise strength must be a finite number >= 0.")
    if cfg.bn.init not in BN_INITS:
        fail("bn.init", cfg.bn.init, f"choose one of {', '.join(BN_INITS)}.")
    if cfg.model.name not in MODELS:
        raise ConfigError(MODELS.unknown(cfg.model.name))
    check_variant_settings(cfg)
    if not cfg.model.hidden or min(cfg.model.hidden) < 1:
        fail("model.hidden", cfg.model.hidden, "a list of layer widths >= 1, e.g. [100,100,100].")
    if cfg.model.activation not in ACTIVATIONS:
        fail("model.activation", cfg.model.activation, f"choose one of {', '.join(ACTIVATIONS)}.")
    for name in MONITORS.names():
        options = getattr(cfg.monitor, name)
        if options is not None:
            options.check(f"monitor.{name}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        fail("lr", cfg.lr, "the learning rate must be a finite number > 0, e.g. lr=0.2.")
    if not (0 <= cfg.bn.momentum < 1):
        fail("momentum", cfg.bn.momentum, "the BN momentum must be in [0, 1), e.g. momentum=0.9.")
    if not (math.isfinite(cfg.bn.eps) and cfg.bn.eps > 0):
        fail("eps", cfg.bn.eps, "the BN epsilon must be a finite number > 0, e.g. eps=1e-5.")
    if not (1 <= cfg.trainer.batch_size <= TRAIN_SIZE - cfg.data.val_size):
        fail("trainer.batch_size", cfg.trainer.batch_size,
              f"must be between 1 and {TRAIN_SIZE - cfg.data.val_size} (the training set size).")
    if cfg.trainer.epochs < 1:
        fail("trainer.epochs", cfg.trainer.epochs, "must be at least 1.")
    if cfg.trainer.max_steps is not None and cfg.trainer.max_steps < 1:
        fail("trainer.max_steps", cfg.trainer.max_steps, "must be at least 1, or null for no limit.")
    if cfg.trainer.max_images is not None and cfg.trainer.max_images < cfg.trainer.batch_size:
        fail("trainer.max_images", cfg.trainer.max_images,
              "must be at least one batch (trainer.batch_size), or null for no limit.")
    if cfg.trainer.lr_scaling not in LR_SCALINGS:
        fail("trainer.lr_scaling", cfg.trainer.lr_scaling, f"choose one of {', '.join(LR_SCALINGS)}.")
    if cfg.trainer.lr_reference_batch < 1:
        fail("trainer.lr_reference_batch", cfg.trainer.lr_reference_batch, "must be at least 1.")
    for key in ("eval_every_steps", "log_every_steps"):
        if getattr(cfg.trainer, key) < 1:
            fail(f"trainer.{key}", getattr(cfg.trainer, key), "must be at least 1.")
    if cfg.trainer.checkpoint_every_epochs < 0:
        fail("trainer.checkpoint_every_epochs", cfg.trainer.checkpoint_every_epochs,
              "must be 0 (only at the end and when interrupted) or more.")
    limit = cfg.trainer.diverge_above
    if limit is not None and not limit > 0:
        fail("trainer.diverge_above", limit, "must be a number > 0, or null to stop only on NaN/inf.")
    if cfg.trainer.progress not in PROGRESS_MODES:
        fail("trainer.progress", cfg.trainer.progress, f"choose one of {', '.join(PROGRESS_MODES)}.")
    if cfg.model.init not in INITIALIZERS:
        fail("model.init", cfg.model.init, f"choose one of {', '.join(INITIALIZERS)}.")
    if not (math.isfinite(cfg.model.init_sigma) and cfg.model.init_sigma > 0):
        fail("model.init_sigma", cfg.model.init_sigma, "must be a finite number > 0.")
    threads = str(cfg.perf.threads)
    if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
        fail("perf.threads", threads, "auto, or a number of threads >= 1.")
    problem = probe_seconds_problem(cfg.perf.probe_seconds)
    if problem:
        fail("perf.probe_seconds", cfg.perf.probe_seconds, problem)
    if cfg.perf.pool not in ("auto", *POOL_LAYOUTS):
        fail("perf.pool", cfg.perf.pool, f"choose one of auto, {', '.join(POOL_LAYOUTS)}.")
    if cfg.perf.bn_impl not in ("auto", *BN_IMPLS):
        fail("perf.bn_impl", cfg.perf.bn_impl, f"choose one of auto, {', '.join(BN_IMPLS)}.")
    if cfg.perf.bn_impl == "compiled" and any(kind == "gpu" for kind, _ in context.parse(cfg.ctx)):
        fail("perf.bn_impl", cfg.perf.bn_impl, f"the compiled formulation runs on CPU only "
             f"(ctx={cfg.ctx}); choose auto, centered or surrogate.")
    targets = cfg.report.targets
    if not targets or not all(0 < t <= 1 for t in targets) or sorted(set(targets)) != list(targets):
        fail("report.targets", targets, "accuracies in (0, 1], increasing, e.g. [0.7,0.8,0.85].")
    problem = schedule.check(cfg.trainer.eval_schedule)
    if problem:
        fail("trainer.eval_schedule", cfg.trainer.eval_schedule, problem + ".")
    if not 0 <= cfg.data.val_size <= TRAIN_SIZE // 2:
        fail("data.val_size", cfg.data.val_size,
              f"must be between 0 (no validation split) and {TRAIN_SIZE // 2}.")
    subset = cfg.data.test_subset
    if subset is not None and not (1 <= subset <= TEST_SIZE):
        fail("data.test_subset", subset, f"must be between 1 and {TEST_SIZE}, or null for all.")
    devices = max(1, len(context.parse(cfg.ctx)))
    if cfg.trainer.batch_size % devices:
        fail("trainer.batch_size", cfg.trainer.batch_size,
              f"must be divisible by the number of devices in ctx={cfg.ctx} ({devices}).")


def check_variant_settings(cfg: Config) -> None:
    """The settings of the chosen normalization against the network and the batch."""
    bn, variant = cfg.bn, cfg.bn.variant
    layers = normalized_layers(cfg.model)
    where = f"model={cfg.model.name}" + (" model.bn_on_dense=true" if cfg.model.bn_on_dense else "")
    widths = [layer.width for layer in layers]
    if variant in ("group", "group_gluon"):
        if bn.groups < 1 or any(width % bn.groups for width in widths):
            divisors = [g for g in range(1, min(widths) + 1) if all(w % g == 0 for w in widths)]
            fail("bn.groups", bn.groups, f"must divide the channels of every normalized layer "
                 f"({', '.join(map(str, widths))} with {where}); choose one of "
                 f"{', '.join(map(str, divisors))}.")
    if variant in ("instance", "instance_gluon") and not all(layer.spatial for layer in layers):
        fail("bn", variant, f"instance normalization averages over a channel's positions and a "
             f"dense layer has none ({where}): every output would be beta; use bn=layer or bn=group.")
    if variant == "ghost":
        per_device = cfg.trainer.batch_size // max(1, len(context.parse(cfg.ctx)))
        if bn.virtual_batch < 1 or per_device % bn.virtual_batch:
            fail("bn.virtual_batch", bn.virtual_batch, f"must divide the per-device batch "
                 f"({per_device} images), e.g. bn.virtual_batch={_largest_divisor(per_device, 32)}.")
        probe = cfg.monitor.activations
        if probe is not None and probe.images % bn.virtual_batch:
            fail("bn.virtual_batch", bn.virtual_batch, f"must divide monitor.activations.images "
                 f"({probe.images}), the probe batch that is normalized as in training.")
    if variant == "renorm":
        if not (math.isfinite(bn.r_max) and bn.r_max >= 1):
            fail("bn.r_max", bn.r_max, "r is clipped to [1/r_max, r_max]: must be >= 1 (1 = BN).")
        if not (math.isfinite(bn.d_max) and bn.d_max >= 0):
            fail("bn.d_max", bn.d_max, "d is clipped to [-d_max, d_max]: must be >= 0 (0 = BN).")
        if not 0 <= bn.relax_begin <= bn.relax_end:
            fail("bn.relax_end", bn.relax_end, f"the relaxation must end at or after it begins "
                 f"(bn.relax_begin={bn.relax_begin} >= 0), in steps.")
    if variant == "sync" and len(context.parse(cfg.ctx)) > 1 and cfg.monitor.activations is not None:
        fail("monitor.activations", "on", "its probe runs the network on one device in training "
             "mode, where bn=sync waits for the other devices forever; use one device or drop it.")


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def load(cfg: DictConfig) -> Config:
    """The composed Hydra config as a checked `Config` object."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config), "bnexp/conf/config.yaml must start from the `schema` defaults entry"
    check(obj)
    return obj


def probe_seconds_problem(seconds: float) -> str | None:
    """What is wrong with a tuning probe length (perf.probe_seconds, bench --probe-seconds):
    long enough to time a few steps, short enough to wait for; None if nothing."""
    if math.isfinite(seconds) and 0.05 <= seconds <= 60:
        return None
    return "seconds between 0.05 and 60, e.g. 1."
