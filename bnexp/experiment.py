"""One run, start to finish: config in; data, network and a Trainer with its callbacks
built from it; metrics.json and TensorBoard out. Also where a run is resumed from its
checkpoint, or skipped if already complete."""
from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from bnexp import data
from bnexp.config import Config, effective_lr, flat
from bnexp.errors import ConfigError, UserError
from bnexp.files import write_json_atomic
from bnexp.monitors.registry import build as build_monitors
from bnexp.nn.build import build_net
from bnexp.nn.norm.registry import NORMALIZATIONS, variant_label
from bnexp.record import METRICS_FILE, RunRecord, read
from bnexp.runtime import context, mxnet_import
from bnexp.runtime.threads import ThreadPolicy
from bnexp.runtime.tuning import Choice
from bnexp.runtime.tuning import cache as tuning_cache
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
from bnexp.validate import check

log = logging.getLogger(__name__)

# Hyperparameters shown in TensorBoard's HParams tab (plain values only); each run adds its
# normalization's own settings (`hparam_keys`).
HPARAM_KEYS = ("bn.variant", "bn.init", "bn.momentum", "bn.eps", "lr", "seed",
               "trainer.batch_size", "trainer.epochs", "trainer.max_steps", "model.name",
               "model.bn_on_dense", "model.init", "data.val_size", "ctx")
# What a resumed run may change: how long it trains, where and how fast it runs.
RESUMABLE_OVERRIDES = ("trainer.epochs", "trainer.max_steps", "trainer.progress", "ctx",
                       "perf.threads", "perf.pool", "perf.bn_impl", "perf.probe_seconds", "resume")


def hparam_keys(cfg: Config) -> tuple[str, ...]:
    """HPARAM_KEYS and the settings of the run's normalization (bn=group: bn.groups; bn=noisy:
    bn.noise), as its registration names them: the HParams table shows what tells runs apart."""
    own = NORMALIZATIONS.entry(cfg.bn.variant).settings
    return HPARAM_KEYS + tuple(f"bn.{key}" for key in own)


def resumed_config(cfg: Config, state: dict, overrides: list[str]) -> Config:
    """The saved run's config, with only the overrides a resumed run may change."""
    config = dict(state["config"])
    if "momentum" in config and "momentum" not in config.get("bn", {}):
        # a checkpoint from before bn.momentum/bn.eps: its top-level values were BN's
        config["bn"] = {**config.get("bn", {}), "momentum": config["momentum"],
                        "eps": config.get("eps", 1e-5)}
    saved = OmegaConf.merge(OmegaConf.structured(Config), config)
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


def run(cfg: Config, run_dir: Path, overrides: list[str], process_start: float,
        speed: Choice | None = None, policy: ThreadPolicy | None = None) -> RunRecord:
    """Train once as configured; `run_dir/metrics.json` records the outcome, whatever it is.
    `cfg.resume` continues a checkpointed run ("auto": this job's own dir, if any).
    `speed`: the threads, pooling layout and BN formulation bnexp.runtime.tuning chose;
    `policy`: the thread policy they were chosen under (both recorded)."""
    saved = None  # the checkpoint's state, if this run continues one
    if cfg.resume is not None:
        previous = read(run_dir) if (run_dir / METRICS_FILE).is_file() else None
        if previous and previous.status == "completed":
            log.info("%s already completed; skipping (delete it to train again)", run_dir)
            return previous
        saved = checkpoint.read_state(run_dir)
        if saved is None and cfg.resume != "auto":
            raise ConfigError(f"resume={run_dir}: no {checkpoint.CHECKPOINT_FILE} there; "
                              f"give the folder of a run that was interrupted or checkpointed.")
        if saved is not None:
            cfg = resumed_config(cfg, saved, overrides)
    speed = speed or Choice(None, *cfg.perf.layout())
    threads = mxnet_import.threads_in_effect()
    log.info("threads: %s, pid %d", threads, os.getpid())
    log.info("speed settings: %s", speed.describe())
    ctx = context.resolve(cfg.ctx)
    dataset = data.load(cfg.data.root)
    settings = flat(cfg)
    record = RunRecord.from_json(saved["record"]) if saved else RunRecord(config=settings)
    record.targets = list(cfg.report.targets)
    record.overrides = overrides
    record.perf = {**speed.to_json(), "threads": threads,
                   "policy": policy.to_json() if policy else None}
    built = replace(cfg, perf=replace(cfg.perf, pool=speed.pool, bn_impl=speed.bn_impl))
    metrics_path = run_dir / METRICS_FILE
    try:
        write_json_atomic(metrics_path, record.to_json())
    except OSError as err:
        reason = "disk full" if err.errno == errno.ENOSPC else err.strerror
        raise UserError(f"cannot write {metrics_path}: {reason}. Choose another output folder "
                        f"with hydra.run.dir=... (or hydra.sweep.dir=... for sweeps).") from None
    logger = RunLogger(run_dir, {key: settings[key] for key in hparam_keys(cfg)},
                       ["hparams/final_test_acc", *(f"hparams/steps_to_{t:.2f}" for t in record.targets)],
                       cfg.logger.tensorboard, cfg.logger.flush_secs,
                       resume_step=saved["step"] if saved else None)
    try:
        with graceful_stop() as stop:
            trainer = make_trainer(built, dataset, ctx, record, logger, run_dir, process_start, stop,
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
    final = record.final
    log.info("%s after %d steps: test acc %.4f, train loss %.4f (%.1f s training, %.1f s total)",
             record.status, record.steps, final.get("test_acc", float("nan")),
             final.get("train_loss", float("nan")), record.train_seconds, record.wall_seconds)
    log.info("wrote %s", metrics_path)
    if record.status == "interrupted":
        log.warning("interrupted at step %d; continue with: python -m bnexp.run resume=%s",
                    record.steps, run_dir)
        stop.deliver_deferred()  # e.g. submitit's checkpoint-and-requeue, now that it is safe
    return record


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
    net = build_net(cfg, ctx)
    lr = effective_lr(cfg)
    watched, watched_name = (val, "val") if val is not None else (test, "test")
    describe = (f"{variant_label(cfg.bn.variant, vars(cfg.bn))} BN ({cfg.model.name}) on {','.join(str(c) for c in ctx)}, "
                f"lr {lr:g}")
    config = OmegaConf.to_container(OmegaConf.structured(cfg))
    callbacks: list[Callback] = [
        DivergenceGuard(tc.diverge_above, record),
        TrainingCurve(record),
        *build_monitors(cfg),
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
    return Trainer(net, make_optimizer(net, lr, ctx), ctx, train, batch_size=tc.batch_size,
                   total_steps=steps, seed=cfg.seed, log_every=tc.log_every_steps,
                   callbacks=callbacks, stop_requested=stop, record=record, logger=logger)
