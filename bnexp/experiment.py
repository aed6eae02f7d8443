"""One run, start to finish: config in; data, network and a Trainer with its callbacks
built from it; metrics.json and TensorBoard out. Also where a run is resumed from its
checkpoint, or skipped if already complete."""
from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from omegaconf import OmegaConf

from bnexp import data, options
from bnexp.config import Config, effective_lr, flat
from bnexp.errors import ConfigError, UserError
from bnexp.files import write_json_atomic
from bnexp.nn.build import build_net
from bnexp.record import METRICS_FILE, RunRecord, read
from bnexp.runtime import context, mxnet_import
from bnexp.runtime.threads import ThreadPolicy
from bnexp.training import checkpoint
from bnexp.training.callback import Callback
from bnexp.training.curve import TrainingCurve
from bnexp.training.divergence import DivergenceGuard
from bnexp.training.evaluation import Evaluation
from bnexp.training.progress import Progress
from bnexp.training.signals import graceful_stop
from bnexp.training.step import device_splits, make_optimizer
from bnexp.training.stopping import StopAtTargets
from bnexp.training.tensorboard import RunLogger, TensorBoardCurves
from bnexp.training.throughput import ThroughputCheck
from bnexp.training.trainer import Trainer
from bnexp.tuning import Choice
from bnexp.tuning import cache as tuning_cache
from bnexp.validate import check, check_late, label

log = logging.getLogger(__name__)

# Settings that cannot change what a run computes, left out of TensorBoard's HParams (the
# short forms `momentum` and `eps` are there as bn.momentum and bn.eps).
NOT_HPARAM_SECTIONS = ("perf.", "logger.")
NOT_HPARAM_KEYS = ("trainer.progress", "resume", "data.root", "momentum", "eps")
# What a resumed run may change: how long it trains, where and how fast it runs.
RESUMABLE_OVERRIDES = ("trainer.epochs", "trainer.max_steps", "trainer.progress", "ctx",
                       "perf.threads", "perf.pool", "perf.bn_impl", "perf.probe_seconds", "resume")


def hparams(settings: dict, choices: dict[str, str]) -> dict[str, str | int | float | bool]:
    """What tells runs apart, for TensorBoard's HParams tab: the options chosen and every
    setting that can change what a run computes (the options' own settings, the data
    subsets, the evaluation cadence), as plain values."""
    out: dict[str, str | int | float | bool] = {group: name for group, name in choices.items()}
    for key, value in settings.items():
        if (key.endswith("._target_") or key in NOT_HPARAM_KEYS
                or key.startswith(NOT_HPARAM_SECTIONS)):
            continue
        out[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return out


def resumed_config(cfg: Config, state: dict, overrides: list[str]) -> Config:
    """The saved run's config, with only the overrides a resumed run may change."""
    saved = OmegaConf.merge(OmegaConf.structured(Config), state["config"])
    current = OmegaConf.structured(cfg)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        value = OmegaConf.select(current, key)
        if key in RESUMABLE_OVERRIDES:
            OmegaConf.update(saved, key, value)
        elif OmegaConf.select(saved, key) != value:  # a sweep repeats its own overrides: fine
            raise ConfigError(f"{override}: a resumed run keeps its saved configuration "
                              f"({key}={OmegaConf.select(saved, key)}); only "
                              f"{', '.join(RESUMABLE_OVERRIDES[:-1])} may change.")
    resumed: Config = OmegaConf.to_object(saved)
    check(resumed)
    return resumed


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """The run's length: epochs, cut by trainer.max_steps and trainer.max_images."""
    tc = cfg.trainer
    steps = tc.epochs * steps_per_epoch
    if tc.max_steps is not None:
        steps = min(steps, tc.max_steps)
    if tc.max_images is not None:
        steps = min(steps, tc.max_images // tc.batch_size)
    return steps


def saved_state(cfg: Config, run_dir: Path, overrides: list[str]) -> tuple[Config, dict | None, RunRecord | None]:
    """For `resume`: the config to continue with, the checkpoint's state (None: start
    afresh), and the finished record if the run is already complete (then nothing runs)."""
    if cfg.resume is None:
        return cfg, None, None
    previous = read(run_dir) if (run_dir / METRICS_FILE).is_file() else None
    if previous and previous.status == "completed":
        log.info("%s already completed; skipping (delete it to train again)", run_dir)
        return cfg, None, previous
    saved = checkpoint.read_state(run_dir)
    if saved is None and cfg.resume != "auto":
        raise ConfigError(f"resume={run_dir}: no {checkpoint.CHECKPOINT_FILE} there; "
                          f"give the folder of a run that was interrupted or checkpointed.")
    return (resumed_config(cfg, saved, overrides) if saved else cfg), saved, None


def source_path(module) -> str:
    """A module's file, relative to the folder that holds the package (bnexp/nn/norm/scratch.py)."""
    path = Path(module.__file__)
    return str(path.relative_to(Path(options.__file__).parents[1])) if "bnexp" in path.parts else str(path)


def write_record(path: Path, record: RunRecord) -> None:
    """metrics.json, or one line saying why it cannot be written."""
    try:
        write_json_atomic(path, record.to_json())
    except OSError as err:
        reason = "disk full" if err.errno == errno.ENOSPC else err.strerror
        raise UserError(f"cannot write {path}: {reason}. Choose another output folder "
                        f"with hydra.run.dir=... (or hydra.sweep.dir=... for sweeps).") from None


def run(cfg: Config, run_dir: Path, overrides: list[str], process_start: float,
        speed: Choice | None = None, policy: ThreadPolicy | None = None,
        choices: dict[str, str] | None = None) -> RunRecord:
    """Train once as configured; `run_dir/metrics.json` records the outcome, whatever it is.
    `cfg.resume` continues a checkpointed run ("auto": this job's own dir, if any).
    `speed`: the threads, pooling layout and formulation bnexp.tuning chose; `policy`: the
    thread policy they were chosen under (both recorded); `choices`: the option chosen in
    each config group (bn=scratch, ...), for the record and TensorBoard."""
    cfg, saved, finished = saved_state(cfg, run_dir, overrides)
    if finished is not None:
        return finished
    check_late(cfg)
    speed = speed or Choice(None)
    threads = mxnet_import.threads_in_effect()
    log.info("threads: %s, pid %d", threads, os.getpid())
    log.info("speed settings: %s", speed.describe())
    if speed.bn_impl and speed.bn_impl != "reference":
        log.info("the normalization trains with its %r formulation, equal to its reference to "
                 "float rounding; perf.bn_impl=reference trains the reference as written in %s",
                 speed.bn_impl, source_path(options.module_of(cfg.bn)))
    ctx = context.resolve(cfg.ctx)
    dataset = data.load(cfg.data.root)
    settings = flat(cfg)
    record = RunRecord.from_json(saved["record"]) if saved else RunRecord(config=settings)
    record.choices = dict(choices or record.choices)
    record.targets = list(cfg.report.targets)
    record.overrides = overrides
    record.perf = {**speed.to_json(), "threads": threads,
                   "policy": policy.to_json() if policy else None}
    metrics_path = run_dir / METRICS_FILE
    write_record(metrics_path, record)
    logger = RunLogger(run_dir, hparams(settings, record.choices), cfg.logger.tensorboard,
                       cfg.logger.flush_secs,
                       resume_step=saved["step"] if saved else None)
    try:
        with graceful_stop() as stop:
            trainer = make_trainer(cfg, dataset, ctx, record, logger, run_dir, process_start, stop,
                                   speed)
            if saved is not None:
                step = checkpoint.resume(trainer.state, run_dir)
                log.info("resumed from %s at step %d", run_dir / checkpoint.CHECKPOINT_FILE, step)
            trainer.fit()
    except KeyboardInterrupt:
        record.status = "interrupted"
        raise
    except BaseException as err:
        record.status, record.error = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        record.wall_seconds = time.time() - process_start
        logger.close(record.steps, {
            "hparams/final_test_acc": record.final.get("test_acc", 0.0),
            **{f"hparams/steps_to_{t}": m["step"] or -1 for t, m in record.milestones().items()},
        }, record.status)
        write_json_atomic(metrics_path, record.to_json())
    report_end(record, run_dir, metrics_path, stop)
    return record


def report_end(record: RunRecord, run_dir: Path, metrics_path: Path, stop) -> None:
    """The run's last log lines (and, if it was interrupted, how to continue it)."""
    final = record.final
    log.info("%s after %d steps: test acc %.4f, train loss %.4f (%.1f s training, %.1f s total)",
             record.status, record.steps, final.get("test_acc", float("nan")),
             final.get("train_loss", float("nan")), record.train_seconds, record.wall_seconds)
    log.info("wrote %s", metrics_path)
    if record.status == "interrupted":
        log.warning("interrupted at step %d; continue with: python -m bnexp.run resume=%s",
                    record.steps, run_dir)
        stop.deliver_deferred()  # e.g. submitit's checkpoint-and-requeue, now that it is safe


def make_trainer(cfg: Config, dataset: data.FashionMNIST, ctx: list, record: RunRecord,
                 logger: RunLogger, run_dir: Path, process_start: float, stop,
                 speed: Choice) -> Trainer:
    """The Trainer of `cfg` with its callbacks, in the order they must hear each event
    (bnexp/training/callback.py): the divergence guard before what records a read; the
    monitors and the evaluation before the checkpoint, which holds the record as of its
    step; the display last."""
    tc = cfg.trainer
    train, val, test = device_splits(dataset, cfg.data.val_size, cfg.data.val_seed,
                                     cfg.data.test_subset, ctx[0])
    net = build_net(cfg, ctx, speed.pool, speed.formulation)
    lr = effective_lr(cfg)
    watched, watched_name = (val, "val") if val is not None else (test, "test")
    describe = (f"{label('bn', cfg.bn)} normalization, {label('model', cfg.model)} on "
                f"{','.join(str(c) for c in ctx)}, {label('optimizer', cfg.optimizer)} at lr {lr:g}")
    config = OmegaConf.to_container(OmegaConf.structured(cfg))
    callbacks: list[Callback] = [
        DivergenceGuard(tc.diverge_above, record),
        TrainingCurve(record),
        *(options.build("monitor", node, seed=cfg.seed) for node in cfg.monitor.values()),
        Evaluation(record, watched, watched_name, test if val is not None else None,
                   tc.eval_schedule, tc.eval_every_steps, process_start, describe),
        checkpoint.Checkpointing(run_dir, record, config, tc.checkpoint_every_epochs),
        ThroughputCheck(record, speed.ms_per_step if len(ctx) == 1 else None, speed.cache_key,
                        tuning_cache.mark_stale),
        TensorBoardCurves(logger),
        Progress(tc.progress),
    ]
    if tc.stop_at_targets:
        callbacks.append(StopAtTargets(record, list(cfg.report.targets), watched_name))
    steps = total_steps(cfg, len(train) // tc.batch_size)
    optimizer = options.build("optimizer", cfg.optimizer, learning_rate=lr)
    return Trainer(net, make_optimizer(net, optimizer, ctx), ctx, train, batch_size=tc.batch_size,
                   total_steps=steps, seed=cfg.seed, log_every=tc.log_every_steps,
                   callbacks=callbacks, stop_requested=stop, record=record, logger=logger)
