"""The configuration schema (structured configs) and its value checks.

Hydra merges `conf/*.yaml` into these dataclasses, so a misspelt key or a value
of the wrong type fails before any work starts, naming the key. Ranges are
checked by `check()`, which names the key, the value and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from bnexp.errors import ConfigError
from bnexp.monitors.registry import MONITORS
from bnexp.nn.norm.registry import NORMALIZATIONS
from bnexp.nn.registry import MODELS
from bnexp.runtime import context
from bnexp.training import schedule

TRAIN_SIZE, TEST_SIZE = 60000, 10000
PROGRESS_MODES = ("auto", "bar", "log")
LR_SCALINGS = ("none", "linear")
BN_INITS = ("standard", "source")        # BN initializations (bnexp/nn/norm/registry.py: NormSpec)
ACTIVATIONS = ("sigmoid", "relu", "tanh")  # mlp hidden activations
INITIALIZERS = ("normal", "xavier")      # weight initializers (bnexp/nn/blocks.py)
POOL_LAYOUTS = ("native", "folded")      # max pooling (bnexp/nn/pooling.py), speed depends on the CPU
BN_IMPLS = ("centered", "surrogate")     # ScratchBatchNorm formulations (bnexp/nn/norm/scratch.py), likewise


@dataclass
class BNConfig:
    """The normalization layer before each hidden activation (conf/bn/, bnexp/nn/norm/)."""
    variant: str = "scratch"  # a name of bnexp.nn.norm.registry.NORMALIZATIONS
    momentum: float = 0.9     # moving = momentum * moving + (1 - momentum) * batch statistic
    eps: float = 1e-5         # x_hat = (x - mean) / sqrt(var + eps)
    noise: float = 1.0        # bn=noisy: strength of the injected noise (0 = plain BN)
    init: str = "standard"    # standard (gamma 1, beta 0, moving var 1) | source (the tutorial's)


@dataclass
class ModelConfig:
    name: str = "lenet"         # a name of bnexp.nn.registry.MODELS: lenet | mlp (Ioffe & Szegedy's Fig. 1)
    bn_on_dense: bool = False   # lenet: also normalize the hidden dense layer
    hidden: List[int] = field(default_factory=lambda: [100, 100, 100])  # mlp: hidden layer widths
    activation: str = "sigmoid"  # mlp: activation of the hidden layers
    init: str = "normal"        # normal (the source's) | xavier
    init_sigma: float = 0.01    # std of the normal initializer
    hybridize: bool = True      # compile the network into one static graph


@dataclass
class DataConfig:
    root: Optional[str] = None         # folder with the four .gz files; null = search
    test_subset: Optional[int] = None  # evaluate on the first N test images; null = all
    val_size: int = 0                  # training images held out for validation (stratified); 0 = none
    val_seed: int = 0                  # which ones: fixed by this seed, independent of the run's seed


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 128
    max_steps: Optional[int] = None    # stop after this many optimizer steps; null = no limit
    max_images: Optional[int] = None   # stop after this many training images (a batch-size sweep's budget)
    lr_scaling: str = "none"           # none | linear: lr * batch_size / lr_reference_batch (Goyal et al. 2017)
    lr_reference_batch: int = 128      # the batch size at which `lr` is meant
    eval_every_steps: int = 117        # evaluation interval (and at each epoch end)
    eval_schedule: Any = "uniform"     # uniform | dense_early | a list of steps (bnexp/schedule.py)
    log_every_steps: int = 10          # training loss/accuracy logging interval
    checkpoint_every_epochs: int = 1   # 0 = only at the end of the run and when interrupted
    diverge_above: Optional[float] = 1000.0  # a training loss above this (or non-finite) = diverged
    progress: str = "auto"             # auto (bar on a terminal, else log lines) | bar | log


@dataclass
class PerfConfig:
    threads: str = "auto"    # OpenMP threads: auto (measured, bnexp/tuning.py) or a number
    pool: str = "auto"       # max pooling: auto | native | folded
    bn_impl: str = "auto"    # ScratchBatchNorm formulation: auto | centered | surrogate

    def layout(self) -> tuple[str, str]:
        """(pool, bn_impl) to build with: `auto` that nobody resolved means the default."""
        return (self.pool if self.pool != "auto" else POOL_LAYOUTS[0],
                self.bn_impl if self.bn_impl != "auto" else BN_IMPLS[0])


@dataclass
class ActivationsMonitorConfig:
    """bnexp/monitors/activations.py"""
    every: int = 25      # steps between measurements
    units: int = 8       # channels/units per layer, fixed for the run, whose percentiles are kept
    images: int = 512    # the fixed probe batch: training images, the same at every measurement

    def check(self, key: str) -> None:
        _check_every(key, self.every)
        if self.units < 1:
            _fail(f"{key}.units", self.units, "must be at least 1.")
        if not 1 <= self.images <= TRAIN_SIZE:
            _fail(f"{key}.images", self.images, f"must be between 1 and {TRAIN_SIZE}.")


@dataclass
class ICSMonitorConfig:
    """bnexp/monitors/ics.py"""
    every: int = 25      # steps between measurements

    def check(self, key: str) -> None:
        _check_every(key, self.every)


@dataclass
class LandscapeMonitorConfig:
    """bnexp/monitors/landscape.py"""
    every: int = 25      # steps between measurements
    factors: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])  # x learning rate

    def check(self, key: str) -> None:
        _check_every(key, self.every)
        if not (self.factors and min(self.factors) > 0):
            _fail(f"{key}.factors", self.factors,
                  "a list of step sizes > 0, in units of the learning rate, e.g. [0.5,1,2,4].")


def _check_every(key: str, every: int) -> None:
    if every < 1:
        _fail(f"{key}.every", every, "must be at least 1 (steps).")


@dataclass
class MonitorConfig:
    """Diagnostics of the training loop, none by default: one field per monitor that
    bnexp.monitors.registry.MONITORS lists, with its options (tests/test_registries.py
    holds the two, and conf/monitor/, together)."""
    activations: Optional[ActivationsMonitorConfig] = None
    ics: Optional[ICSMonitorConfig] = None
    landscape: Optional[LandscapeMonitorConfig] = None


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    flush_secs: int = 10


@dataclass
class Config:
    bn: BNConfig = field(default_factory=BNConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    lr: float = 0.2            # SGD learning rate (at trainer.lr_reference_batch if scaled)
    # Short command-line forms of bn.momentum and bn.eps (`momentum=0.99 eps=1e-3`): conf/config.yaml
    # sets bn.momentum: ${momentum} and bn.eps: ${eps}; the code reads only cfg.bn.
    momentum: float = 0.9
    eps: float = 1e-5
    ctx: str = "auto"          # cpu | gpu | gpu:N | gpu:0,1 | auto
    seed: int = 0
    resume: Optional[str] = None   # a run dir to continue, or "auto" (sweeps: skip/continue/start each job)


def scaled_lr(lr: float, scaling: str, batch_size: int, reference_batch: int) -> float:
    """The learning rate SGD uses for `lr` given at `reference_batch` (trainer.lr_scaling)."""
    return lr * batch_size / reference_batch if scaling == "linear" else lr


def effective_lr(cfg: Config) -> float:
    """The learning rate SGD uses: `lr`, scaled with the batch size if asked."""
    return scaled_lr(cfg.lr, cfg.trainer.lr_scaling, cfg.trainer.batch_size,
                     cfg.trainer.lr_reference_batch)


def register() -> None:
    """Make the schema available to conf/config.yaml as `schema`."""
    ConfigStore.instance().store(name="schema", node=Config)


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"{key}={value}: {allowed}")


def check(cfg: Config) -> None:
    """Range checks that the type schema cannot express."""
    if cfg.bn.variant not in NORMALIZATIONS:
        raise ConfigError(NORMALIZATIONS.unknown(cfg.bn.variant))
    if not (math.isfinite(cfg.bn.noise) and cfg.bn.noise >= 0):
        _fail("bn.noise", cfg.bn.noise, "the noise strength must be a finite number >= 0.")
    if cfg.bn.init not in BN_INITS:
        _fail("bn.init", cfg.bn.init, f"choose one of {', '.join(BN_INITS)}.")
    if cfg.model.name not in MODELS:
        raise ConfigError(MODELS.unknown(cfg.model.name))
    if not cfg.model.hidden or min(cfg.model.hidden) < 1:
        _fail("model.hidden", cfg.model.hidden, "a list of layer widths >= 1, e.g. [100,100,100].")
    if cfg.model.activation not in ACTIVATIONS:
        _fail("model.activation", cfg.model.activation, f"choose one of {', '.join(ACTIVATIONS)}.")
    for name in MONITORS.names():
        options = getattr(cfg.monitor, name)
        if options is not None:
            options.check(f"monitor.{name}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        _fail("lr", cfg.lr, "the learning rate must be a finite number > 0, e.g. lr=0.2.")
    if not (0 <= cfg.bn.momentum < 1):
        _fail("momentum", cfg.bn.momentum, "the BN momentum must be in [0, 1), e.g. momentum=0.9.")
    if not (math.isfinite(cfg.bn.eps) and cfg.bn.eps > 0):
        _fail("eps", cfg.bn.eps, "the BN epsilon must be a finite number > 0, e.g. eps=1e-5.")
    if not (1 <= cfg.trainer.batch_size <= TRAIN_SIZE - cfg.data.val_size):
        _fail("trainer.batch_size", cfg.trainer.batch_size,
              f"must be between 1 and {TRAIN_SIZE - cfg.data.val_size} (the training set size).")
    if cfg.trainer.epochs < 1:
        _fail("trainer.epochs", cfg.trainer.epochs, "must be at least 1.")
    if cfg.trainer.max_steps is not None and cfg.trainer.max_steps < 1:
        _fail("trainer.max_steps", cfg.trainer.max_steps, "must be at least 1, or null for no limit.")
    if cfg.trainer.max_images is not None and cfg.trainer.max_images < cfg.trainer.batch_size:
        _fail("trainer.max_images", cfg.trainer.max_images,
              "must be at least one batch (trainer.batch_size), or null for no limit.")
    if cfg.trainer.lr_scaling not in LR_SCALINGS:
        _fail("trainer.lr_scaling", cfg.trainer.lr_scaling, f"choose one of {', '.join(LR_SCALINGS)}.")
    if cfg.trainer.lr_reference_batch < 1:
        _fail("trainer.lr_reference_batch", cfg.trainer.lr_reference_batch, "must be at least 1.")
    for key in ("eval_every_steps", "log_every_steps"):
        if getattr(cfg.trainer, key) < 1:
            _fail(f"trainer.{key}", getattr(cfg.trainer, key), "must be at least 1.")
    if cfg.trainer.checkpoint_every_epochs < 0:
        _fail("trainer.checkpoint_every_epochs", cfg.trainer.checkpoint_every_epochs,
              "must be 0 (only at the end and when interrupted) or more.")
    limit = cfg.trainer.diverge_above
    if limit is not None and not limit > 0:
        _fail("trainer.diverge_above", limit, "must be a number > 0, or null to stop only on NaN/inf.")
    if cfg.trainer.progress not in PROGRESS_MODES:
        _fail("trainer.progress", cfg.trainer.progress, f"choose one of {', '.join(PROGRESS_MODES)}.")
    if cfg.model.init not in INITIALIZERS:
        _fail("model.init", cfg.model.init, f"choose one of {', '.join(INITIALIZERS)}.")
    if not (math.isfinite(cfg.model.init_sigma) and cfg.model.init_sigma > 0):
        _fail("model.init_sigma", cfg.model.init_sigma, "must be a finite number > 0.")
    threads = str(cfg.perf.threads)
    if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
        _fail("perf.threads", threads, "auto, or a number of threads >= 1.")
    if cfg.perf.pool not in ("auto", *POOL_LAYOUTS):
        _fail("perf.pool", cfg.perf.pool, f"choose one of auto, {', '.join(POOL_LAYOUTS)}.")
    if cfg.perf.bn_impl not in ("auto", *BN_IMPLS):
        _fail("perf.bn_impl", cfg.perf.bn_impl, f"choose one of auto, {', '.join(BN_IMPLS)}.")
    problem = schedule.check(cfg.trainer.eval_schedule)
    if problem:
        _fail("trainer.eval_schedule", cfg.trainer.eval_schedule, problem + ".")
    if not 0 <= cfg.data.val_size <= TRAIN_SIZE // 2:
        _fail("data.val_size", cfg.data.val_size,
              f"must be between 0 (no validation split) and {TRAIN_SIZE // 2}.")
    subset = cfg.data.test_subset
    if subset is not None and not (1 <= subset <= TEST_SIZE):
        _fail("data.test_subset", subset, f"must be between 1 and {TEST_SIZE}, or null for all.")
    devices = max(1, len(context.parse(cfg.ctx)))
    if cfg.trainer.batch_size % devices:
        _fail("trainer.batch_size", cfg.trainer.batch_size,
              f"must be divisible by the number of devices in ctx={cfg.ctx} ({devices}).")


def load(cfg: DictConfig) -> Config:
    """The composed Hydra config as a checked `Config` object."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config), "conf/config.yaml must start from the `schema` defaults entry"
    check(obj)
    return obj


def flat(cfg: Config) -> dict[str, str | int | float | bool]:
    """Dotted key -> plain value (for TensorBoard hparams and metrics.json)."""
    out: dict[str, str | int | float | bool] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = "null" if value is None else value

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return out
