"""The configuration's root schema, and where the configs live.

conf/config.yaml composes a run: the groups `bn`, `model`, `optimizer` and `monitor` choose
options that name a callable with its own settings (bnexp/options.py); the other groups fill
the sections below. Hydra merges the YAML into these dataclasses, so a misspelt key or a
value of the wrong type fails before any work starts, naming the key; each section's
`check` says what a type cannot (ranges), naming the key, the value and what is allowed.
This module imports nothing of bnexp's but its errors: every other module may import it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from bnexp.errors import ConfigError

# conf/ at the top of a checkout (and of an editable install); inside the package in a wheel.
_PACKAGED = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "conf"

TRAIN_SIZE, TEST_SIZE = 60000, 10000
PROGRESS_MODES = ("auto", "bar", "log")
LR_SCALINGS = ("none", "linear")
POOL_LAYOUTS = ("native", "folded")   # max pooling (bnexp/nn/pooling.py); speed depends on the CPU
INITIALIZERS = ("normal", "xavier", "kaiming")  # weight initializers (bnexp/nn/build.py)


def fail(key: str, value, allowed: str) -> None:
    """A one-line ConfigError: which key, which value, what is allowed."""
    raise ConfigError(f"{key}={value}: {allowed}")


def _check_positive(key: str, value: float, example: str) -> None:
    if not (math.isfinite(value) and value > 0):
        fail(key, value, f"must be a finite number > 0, e.g. {example}.")


@dataclass
class ModelSettings:
    """What every model option has besides its own settings: bnexp reads these itself
    (bnexp/nn/build.py) and passes the rest to the option's target."""
    init: str = "normal"      # weights: normal (the source's N(0, init_sigma)) | xavier | kaiming
    init_sigma: float = 0.01  # std of the normal initializer
    hybridize: bool = True    # compile the network into one static graph (false: op by op)

    def check(self) -> None:
        if self.init not in INITIALIZERS:
            fail("model.init", self.init, f"choose one of {', '.join(INITIALIZERS)}.")
        _check_positive("model.init_sigma", self.init_sigma, "0.01")


@dataclass
class DataConfig:
    root: Optional[str] = None         # folder with the four .gz files; null = search
    test_subset: Optional[int] = None  # evaluate on the first N test images; null = all
    val_size: int = 0                  # training images held out for validation (stratified); 0 = none
    val_seed: int = 0                  # which ones: fixed by this seed, independent of the run's seed

    def check(self) -> None:
        if not 0 <= self.val_size <= TRAIN_SIZE // 2:
            fail("data.val_size", self.val_size,
                 f"must be between 0 (no validation split) and {TRAIN_SIZE // 2}.")
        if self.test_subset is not None and not 1 <= self.test_subset <= TEST_SIZE:
            fail("data.test_subset", self.test_subset, f"must be between 1 and {TEST_SIZE}, or null for all.")


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 128
    max_steps: Optional[int] = None    # stop after this many optimizer steps; null = no limit
    max_images: Optional[int] = None   # stop after this many training images (a batch-size sweep's budget)
    lr_scaling: str = "none"           # none | linear: lr * batch_size / lr_reference_batch (Goyal et al. 2017)
    lr_reference_batch: int = 128      # the batch size at which `lr` is meant
    eval_every_steps: int = 117        # evaluation interval (and at each epoch end)
    eval_schedule: Any = "uniform"     # uniform | dense_early | a list of steps (bnexp/training/schedule.py)
    log_every_steps: int = 10          # training loss/accuracy logging interval
    checkpoint_every_epochs: int = 1   # 0 = only at the end of the run and when interrupted
    diverge_above: Optional[float] = 1000.0  # a training loss above this (or non-finite) = diverged
    progress: str = "auto"             # auto (bar on a terminal, else log lines) | bar | log
    stop_at_targets: bool = False      # end once the watched accuracy reached every report.targets value

    def check(self, train_images: int) -> None:
        at_least_one = {"trainer.epochs": self.epochs, "trainer.lr_reference_batch": self.lr_reference_batch,
                        "trainer.eval_every_steps": self.eval_every_steps,
                        "trainer.log_every_steps": self.log_every_steps}
        for key, value in at_least_one.items():
            if value < 1:
                fail(key, value, "must be at least 1.")
        if not 1 <= self.batch_size <= train_images:
            fail("trainer.batch_size", self.batch_size,
                 f"must be between 1 and {train_images} (the training images).")
        if self.max_steps is not None and self.max_steps < 1:
            fail("trainer.max_steps", self.max_steps, "must be at least 1, or null for no limit.")
        if self.max_images is not None and self.max_images < self.batch_size:
            fail("trainer.max_images", self.max_images,
                 "must be at least one batch (trainer.batch_size), or null for no limit.")
        choices = {"trainer.lr_scaling": (self.lr_scaling, LR_SCALINGS),
                   "trainer.progress": (self.progress, PROGRESS_MODES)}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                fail(key, value, f"choose one of {', '.join(allowed)}.")
        if self.checkpoint_every_epochs < 0:
            fail("trainer.checkpoint_every_epochs", self.checkpoint_every_epochs,
                 "must be 0 (only at the end and when interrupted) or more.")
        if self.diverge_above is not None and not self.diverge_above > 0:
            fail("trainer.diverge_above", self.diverge_above,
                 "must be a number > 0, or null to stop only on NaN/inf.")


ENGINE_CHOICES = ("naive", "threaded")   # MXNet's engines (bnexp/runtime/threads.py: ENGINES)


@dataclass
class PerfConfig:
    """Speed settings: none changes what is computed (bnexp/tuning/)."""
    threads: str = "auto"    # OpenMP threads: auto (measured) or a number
    engine: str = "auto"     # MXNet's engine: auto | naive (each operation in the calling thread) | threaded
    pool: str = "auto"       # max pooling: auto | native | folded
    bn_impl: str = "auto"    # the formulation of a layer that has several (bn=scratch): auto | one of its names
    probe_seconds: float = 0.3  # auto: seconds of training per option and round of the probe

    def check(self) -> None:
        threads = str(self.threads)
        if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
            fail("perf.threads", threads, "auto, or a number of threads >= 1.")
        problem = probe_seconds_problem(self.probe_seconds)
        if problem:
            fail("perf.probe_seconds", self.probe_seconds, problem)
        if self.pool not in ("auto", *POOL_LAYOUTS):
            fail("perf.pool", self.pool, f"choose one of auto, {', '.join(POOL_LAYOUTS)}.")
        if self.engine not in ("auto", *ENGINE_CHOICES):
            fail("perf.engine", self.engine, f"choose one of auto, {', '.join(ENGINE_CHOICES)}.")


def probe_seconds_problem(seconds: float) -> str | None:
    """What is wrong with a tuning probe length (perf.probe_seconds, bench --probe-seconds):
    long enough to time a few steps, short enough to wait for; None if nothing."""
    if math.isfinite(seconds) and 0.05 <= seconds <= 60:
        return None
    return "seconds between 0.05 and 60, e.g. 1."


@dataclass
class ClaimConfig:
    """A claim a sweep tests, and the rule that decides it, written before the run
    (bnexp/report/claims.py): the ratio baseline / treated of `measure` at `phase`, paired
    by seed; `above`: reproduced if its interval lies above `threshold`, contradicted if below."""
    id: str = ""
    says: str = ""            # the claim, in the paper's words or close to them
    paper: str = ""           # where it is made
    measure: str = ""         # "<monitor>.<key>" (at a training-loss level), "steps_to" (an accuracy) or "final_error"
    phase: float = 0.0        # the training loss (monitors) or validation accuracy (steps_to) compared at
    baseline: str = "none"    # the baseline arm: a bn option, or overrides ("bn=gluon,trainer.batch_size=64")
    treated: str = "gluon"    # the treated arm, alike
    rule: str = "above"       # above | below
    threshold: float = 1.0

    def check(self, key: str) -> None:
        if self.rule not in ("above", "below"):
            fail(f"{key}.rule", self.rule, "choose above or below.")
        if not (self.measure in ("steps_to", "final_error") or "." in self.measure):
            fail(f"{key}.measure", self.measure,
                 "steps_to, final_error, or <monitor>.<key> (e.g. landscape.beta_smoothness).")
        if not (math.isfinite(self.threshold) and self.threshold > 0
                and (self.phase > 0 or self.measure == "final_error")):
            fail(key, self.id, "threshold and phase must be numbers > 0.")


@dataclass
class ReportConfig:
    """What a run's record and a sweep's report measure convergence by (bnexp/report/)."""
    targets: List[float] = field(default_factory=lambda: [0.70, 0.80, 0.85])  # accuracies (validation, else test)
    claims: List[ClaimConfig] = field(default_factory=list)  # decided by rules written before the run

    def check(self) -> None:
        targets = self.targets
        if not targets or not all(0 < t <= 1 for t in targets) or sorted(set(targets)) != list(targets):
            fail("report.targets", targets, "accuracies in (0, 1], increasing, e.g. [0.7,0.8,0.85].")
        for index, claim in enumerate(self.claims):
            claim.check(f"report.claims[{index}]")


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    flush_secs: int = 10


@dataclass
class Config:
    # The chosen options (conf/bn, model, optimizer, monitor/): `_target_` and its settings.
    bn: Any = None
    model: Any = None
    optimizer: Any = None
    monitor: Dict[str, Any] = field(default_factory=dict)   # name -> option, several at once
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    lr: float = 0.2            # the learning rate (at trainer.lr_reference_batch if scaled)
    # Short forms of BN's settings (`momentum=0.99 eps=1e-3`): an option with such a setting
    # takes it from here (conf/bn/scratch.yaml: momentum: ${momentum}); the code reads cfg.bn.
    momentum: float = 0.9
    eps: float = 1e-5
    ctx: Any = "auto"          # cpu | gpu | gpu:N | auto, or a list: [cpu:0,cpu:1]
    seed: int = 0
    resume: Optional[str] = None   # a run dir to continue, or "auto" (sweeps: skip/continue/start each job)

    def check(self) -> None:
        """The sections' checks and the short settings' ranges."""
        if not (math.isfinite(self.lr) and self.lr > 0):
            fail("lr", self.lr, "the learning rate must be a finite number > 0, e.g. lr=0.2.")
        model_settings(self).check()
        self.data.check()
        self.trainer.check(TRAIN_SIZE - self.data.val_size)
        self.perf.check()
        self.report.check()


def steps_per_epoch(cfg: Config) -> int:
    """Optimizer steps in an epoch of the training split (the last partial batch dropped)."""
    return (TRAIN_SIZE - cfg.data.val_size) // cfg.trainer.batch_size


def run_steps(cfg: Config) -> int:
    """The run's length in optimizer steps: its epochs, cut by trainer.max_steps and
    trainer.max_images."""
    tc = cfg.trainer
    steps = tc.epochs * steps_per_epoch(cfg)
    if tc.max_steps is not None:
        steps = min(steps, tc.max_steps)
    if tc.max_images is not None:
        steps = min(steps, tc.max_images // tc.batch_size)
    return steps


def model_settings(cfg: Config) -> ModelSettings:
    """The settings every model option has, from the chosen model option."""
    return ModelSettings(**{key: cfg.model[key] for key in ("init", "init_sigma", "hybridize")
                            if key in cfg.model})


def scaled_lr(lr: float, scaling: str, batch_size: int, reference_batch: int) -> float:
    """The learning rate the optimizer uses for `lr` given at `reference_batch` (trainer.lr_scaling)."""
    return lr * batch_size / reference_batch if scaling == "linear" else lr


def effective_lr(cfg: Config) -> float:
    """The learning rate the optimizer uses: `lr`, scaled with the batch size if asked."""
    return scaled_lr(cfg.lr, cfg.trainer.lr_scaling, cfg.trainer.batch_size,
                     cfg.trainer.lr_reference_batch)


def register() -> None:
    """Make the root schema available to conf/config.yaml as `schema`."""
    ConfigStore.instance().store(name="schema", node=Config)


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
