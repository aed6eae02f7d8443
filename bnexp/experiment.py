"""One run, start to finish: data and devices in, metrics.json and TensorBoard out.
Also where a run is resumed from its checkpoint, or skipped if already complete."""
from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from bnexp import checkpoint, context, data, mxenv
from bnexp.config import Config, check, flat
from bnexp.errors import ConfigError, UserError
from bnexp.files import write_json_atomic
from bnexp.metrics import METRICS_FILE, RunRecord, read
from bnexp.signals import graceful_stop
from bnexp import monitors
from bnexp.loop import fit
from bnexp.tblog import RunLogger
from bnexp.tuning import Choice

log = logging.getLogger(__name__)

# Hyperparameters shown in TensorBoard's HParams tab (plain values only).
HPARAM_KEYS = ("bn.variant", "bn.noise", "bn.init", "lr", "momentum", "eps", "seed",
               "trainer.batch_size", "trainer.epochs", "trainer.max_steps", "model.name",
               "model.bn_on_dense", "model.init", "data.val_size", "ctx")
# What a resumed run may change: how long it trains, where and how fast it runs.
RESUMABLE_OVERRIDES = ("trainer.epochs", "trainer.max_steps", "trainer.progress", "ctx",
                       "perf.threads", "perf.pool", "perf.bn_impl", "resume")


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


def run(cfg: Config, run_dir: Path, overrides: list[str], process_start: float,
        speed: Choice | None = None) -> RunRecord:
    """Train once as configured; `run_dir/metrics.json` records the outcome, whatever it is.
    `cfg.resume` continues a checkpointed run ("auto": this job's own dir, if any).
    `speed`: the threads, pooling layout and BN formulation chosen by bnexp.tuning."""
    state = None  # the loop state of the checkpoint this run continues from
    if cfg.resume is not None:
        previous = read(run_dir) if (run_dir / METRICS_FILE).is_file() else None
        if previous and previous["status"] == "completed":
            log.info("%s already completed; skipping (delete it to train again)", run_dir)
            return RunRecord.from_json(previous)
        state = checkpoint.read_state(run_dir)
        if state is None and cfg.resume != "auto":
            raise ConfigError(f"resume={run_dir}: no {checkpoint.CHECKPOINT_FILE} there; "
                              f"give the folder of a run that was interrupted or checkpointed.")
        if state is not None:
            cfg = resumed_config(cfg, state, overrides)
    speed = speed or Choice(None, *cfg.perf.layout())
    log.info("threads: %s, pid %d", mxenv.threads_in_effect(), os.getpid())
    log.info("speed settings: %s", speed.describe())
    ctx = context.resolve(cfg.ctx)
    dataset = data.load(cfg.data.root)
    settings = flat(cfg)
    record = RunRecord.from_json(state["record"]) if state else RunRecord(config=settings)
    record.overrides = overrides
    record.perf = {**speed.to_json(), "threads": mxenv.threads_in_effect()}
    built = replace(cfg, perf=replace(cfg.perf, pool=speed.pool, bn_impl=speed.bn_impl))
    metrics_path = run_dir / METRICS_FILE
    try:
        write_json_atomic(metrics_path, record.to_json())
    except OSError as err:
        reason = "disk full" if err.errno == errno.ENOSPC else err.strerror
        raise UserError(f"cannot write {metrics_path}: {reason}. Choose another output folder "
                        f"with hydra.run.dir=... (or hydra.sweep.dir=... for sweeps).") from None
    hparams = {key: settings[key] for key in HPARAM_KEYS}
    logger = RunLogger(run_dir, hparams, cfg.logger.tensorboard, cfg.logger.flush_secs,
                       resume_step=state["step"] if state else None)
    try:
        with graceful_stop() as stop:
            fit(built, dataset, ctx, record, logger, run_dir, process_start, stop,
                resume=state is not None, monitors=monitors.build(cfg))
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
            "hparams/steps_to_0.80": record.milestones()["0.80"]["step"] or -1,
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
