"""The configuration schema (structured configs).

Hydra merges `bnexp/conf/*.yaml` into these dataclasses, so a misspelt key or a value
of the wrong type fails before any work starts, naming the key. Values are
checked by bnexp/validate.py (names against the registries, ranges), which says the
key, the value and what is allowed. This module imports nothing else of bnexp's:
every other module may import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from bnexp.errors import ConfigError

TRAIN_SIZE, TEST_SIZE = 60000, 10000
PROGRESS_MODES = ("auto", "bar", "log")
LR_SCALINGS = ("none", "linear")
BN_INITS = ("standard", "source")        # BN initializations (bnexp/nn/norm/registry.py: NormSpec)
ACTIVATIONS = ("sigmoid", "relu", "tanh")  # mlp hidden activations
INITIALIZERS = ("normal", "xavier")      # weight initializers (bnexp/nn/blocks.py)
POOL_LAYOUTS = ("native", "folded")      # max pooling (bnexp/nn/pooling.py), speed depends on the CPU
BN_IMPLS = ("centered", "surrogate", "compiled")     # ScratchBatchNorm formulations (bnexp/nn/norm/scratch.py), likewise


@dataclass
class BNConfig:
    """The normalization layer before each hidden activation (bnexp/conf/bn/, bnexp/nn/norm/)."""
    variant: str = "scratch"  # a name of bnexp.nn.norm.registry.NORMALIZATIONS
    momentum: float = 0.9     # moving = momentum * moving + (1 - momentum) * batch statistic
    eps: float = 1e-5         # x_hat = (x - mean) / sqrt(var + eps)
    noise: float = 1.0        # bn=noisy: strength of the injected noise (0 = plain BN)
    init: str = "standard"    # standard (gamma 1, beta 0, moving var 1) | source (the tutorial's)
    # Each variant's own settings (registered with it: NORMALIZATIONS.entry(name).settings);
    # the others ignore them. conf/bn/<variant>.yaml says what they mean for that variant.
    groups: int = 10          # bn=group/group_gluon: channel groups per layer (Wu & He's G);
                              # must divide every normalized layer (LeNet 20, 50; dense 128; MLP 100)
    virtual_batch: int = 32   # bn=ghost: images per ghost batch; must divide the per-device batch
    r_max: float = 3.0        # bn=renorm: r = clip(sigma_B / sigma, 1/r_max, r_max) once relaxed (>= 1)
    d_max: float = 5.0        # bn=renorm: d = clip((mu_B - mu) / sigma, -d_max, d_max) once relaxed (>= 0)
    relax_begin: int = 50     # bn=renorm: plain BN (r_max 1, d_max 0) until this step ...
    relax_end: int = 250      # ... then r_max and d_max grow linearly to their values at this step


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
    stop_at_targets: bool = False      # end once the watched accuracy reached every report.targets value


@dataclass
class PerfConfig:
    threads: str = "auto"    # OpenMP threads: auto (measured, bnexp/runtime/tuning/) or a number
    pool: str = "auto"       # max pooling: auto | native | folded
    bn_impl: str = "auto"    # ScratchBatchNorm formulation: auto | centered | surrogate | compiled
    probe_seconds: float = 0.5  # auto: seconds of training per option and round of the probe

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
            fail(f"{key}.units", self.units, "must be at least 1.")
        if not 1 <= self.images <= TRAIN_SIZE:
            fail(f"{key}.images", self.images, f"must be between 1 and {TRAIN_SIZE}.")


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
    factors: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 3.0])  # x lr (conf/monitor/landscape.yaml)

    def check(self, key: str) -> None:
        _check_every(key, self.every)
        if not (self.factors and min(self.factors) > 0):
            fail(f"{key}.factors", self.factors,
                  "a list of step sizes > 0, in units of the learning rate, e.g. [0.5,1,2,3].")


def _check_every(key: str, every: int) -> None:
    if every < 1:
        fail(f"{key}.every", every, "must be at least 1 (steps).")


@dataclass
class MonitorConfig:
    """Diagnostics of the training loop, none by default: one field per monitor that
    bnexp.monitors.registry.MONITORS lists, with its options (tests/test_registries.py
    holds the two, and bnexp/conf/monitor/, together)."""
    activations: Optional[ActivationsMonitorConfig] = None
    ics: Optional[ICSMonitorConfig] = None
    landscape: Optional[LandscapeMonitorConfig] = None


@dataclass
class ReportConfig:
    """What a run's record and a sweep's report measure convergence by (bnexp/report/)."""
    targets: List[float] = field(default_factory=lambda: [0.70, 0.80, 0.85])  # accuracies (validation, else test)


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
    report: ReportConfig = field(default_factory=ReportConfig)
    lr: float = 0.2            # SGD learning rate (at trainer.lr_reference_batch if scaled)
    # Short command-line forms of bn.momentum and bn.eps (`momentum=0.99 eps=1e-3`): bnexp/conf/config.yaml
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
    """Make the schema available to bnexp/conf/config.yaml as `schema`."""
    ConfigStore.instance().store(name="schema", node=Config)


def fail(key: str, value, allowed: str) -> None:
    """A one-line ConfigError: which key, which value, what is allowed."""
    raise ConfigError(f"{key}={value}: {allowed}")


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
