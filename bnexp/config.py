"""The configuration schema (structured configs) and its value checks.

Hydra merges `conf/*.yaml` into these dataclasses, so a misspelt key or a value
of the wrong type fails before any work starts, naming the key. Ranges are
checked by `check()`, which names the key, the value and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from bnexp import context
from bnexp.errors import ConfigError

TRAIN_SIZE, TEST_SIZE = 60000, 10000
PROGRESS_MODES = ("auto", "bar", "log")
VARIANTS = ("none", "scratch", "gluon")  # BN variants (bnexp/bn.py: make_bn)
INITIALIZERS = ("normal", "xavier")      # weight initializers (bnexp/model.py)
POOL_LAYOUTS = ("native", "folded")      # max pooling (bnexp/model.py), speed depends on the CPU
BN_IMPLS = ("centered", "surrogate")     # ScratchBatchNorm formulations (bnexp/bn.py), likewise


@dataclass
class BNConfig:
    variant: str = "scratch"  # none | scratch | gluon


@dataclass
class ModelConfig:
    bn_on_dense: bool = False   # also normalize the hidden dense layer
    init: str = "normal"        # normal (the source's) | xavier
    init_sigma: float = 0.01    # std of the normal initializer
    hybridize: bool = True      # compile the network into one static graph


@dataclass
class DataConfig:
    root: Optional[str] = None         # folder with the four .gz files; null = search
    test_subset: Optional[int] = None  # evaluate on the first N test images; null = all


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 128
    max_steps: Optional[int] = None    # stop after this many optimizer steps; null = no limit
    eval_every_steps: int = 117        # test-set evaluation interval (and at each epoch end)
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
    lr: float = 0.2            # SGD learning rate
    momentum: float = 0.9      # BN moving-average momentum: moving = m*moving + (1-m)*batch
    eps: float = 1e-5          # BN epsilon
    ctx: str = "auto"          # cpu | gpu | gpu:N | gpu:0,1 | auto
    seed: int = 0
    resume: Optional[str] = None   # a run dir to continue, or "auto" (sweeps: skip/continue/start each job)


def register() -> None:
    """Make the schema available to conf/config.yaml as `schema`."""
    ConfigStore.instance().store(name="schema", node=Config)


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"{key}={value}: {allowed}")


def check(cfg: Config) -> None:
    """Range checks that the type schema cannot express."""
    if cfg.bn.variant not in VARIANTS:
        _fail("bn", cfg.bn.variant, f"unknown BN variant; choose one of {', '.join(VARIANTS)}.")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        _fail("lr", cfg.lr, "the learning rate must be a finite number > 0, e.g. lr=0.2.")
    if not (0 <= cfg.momentum < 1):
        _fail("momentum", cfg.momentum, "the BN momentum must be in [0, 1), e.g. momentum=0.9.")
    if not (math.isfinite(cfg.eps) and cfg.eps > 0):
        _fail("eps", cfg.eps, "the BN epsilon must be a finite number > 0, e.g. eps=1e-5.")
    if not (1 <= cfg.trainer.batch_size <= TRAIN_SIZE):
        _fail("trainer.batch_size", cfg.trainer.batch_size,
              f"must be between 1 and {TRAIN_SIZE} (the training set size).")
    if cfg.trainer.epochs < 1:
        _fail("trainer.epochs", cfg.trainer.epochs, "must be at least 1.")
    if cfg.trainer.max_steps is not None and cfg.trainer.max_steps < 1:
        _fail("trainer.max_steps", cfg.trainer.max_steps, "must be at least 1, or null for no limit.")
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
