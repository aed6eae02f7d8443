"""One run, start to finish: config in; data, network and a Trainer with its callbacks
built from it; metrics.json and TensorBoard out. Also where a run is resumed from its
checkpoint, or skipped if already complete."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf

from bnexp import data, options, resume
from bnexp.config import Config, effective_lr, flat, run_steps
from bnexp.errors import UserError
from bnexp.files import write_json_atomic
from bnexp.nn.build import build_net
from bnexp.record import METRICS_FILE, RunRecord
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
from bnexp.tuning import cache as tuning_cache
from bnexp.tuning.choice import Choice
from bnexp.tuning.machine import setting_of
from bnexp.validate import check_late, label

log = logging.getLogger(__name__)

# Settings that cannot change what a run computes, left out of TensorBoard's HParams (the
# short forms `momentum` and `eps` are there as bn.momentum and bn.eps).
NOT_HPARAM_SECTIONS = ("perf.", "logger.", "report.")
NOT_HPARAM_KEYS = ("trainer.progress", "resume", "data.root", "momentum", "eps")
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


def source_path(module) -> str:
    """A module's file, relative to the folder that holds the package (bnexp/nn/norm/scratch.py)."""
    path = Path(module.__file__)
    return str(path.relative_to(Path(options.__file__).parents[1])) if "bnexp" in path.parts else str(path)


def write_record(path: Path, record: RunRecord) -> str | None:
    """Write metrics.json; if that fails (a full disk, a file-size limit), write at least a
    small record saying the run failed and why, and return the reason (else None)."""
    try:
        write_json_atomic(path, record.to_json())
        return None
    except OSError as err:
        why = f"cannot write {path}: {'disk full' if err.errno == errno.ENOSPC else err.strerror}"
    small = RunRecord(status="failed", config=record.config, overrides=record.overrides,
                      choices=record.choices, steps=record.steps,
                      error="; ".join(filter(None, [record.error, why])))
    with contextlib.suppress(OSError):
        write_json_atomic(path, small.to_json())
    return why


def run(cfg: Config, run_dir: Path, overrides: list[str], process_start: float,
        speed: Choice | None = None, policy: ThreadPolicy | None = None,
        choices: dict[str, str] | None = None) -> RunRecord:
    """Train once as configured; `run_dir/metrics.json` records the outcome, whatever it is.
    `cfg.resume` continues a checkpointed run ("auto": this job's own dir, if any;
    bnexp/resume.py). `speed`: the threads, pooling layout and formulation bnexp.tuning
    chose; `policy`: the thread policy they were chosen under (both recorded); `choices`:
    the option chosen in each config group (bn=scratch, ...)."""
    resumed = resume.prepare(cfg, run_dir, overrides, run_steps)
    if resumed.finished:
        return resumed.previous
    cfg, saved = resumed.cfg, resumed.state
    check_late(cfg)
    speed = speed or Choice(None)
    log_speed(speed, cfg)
    ctx = context.resolve(cfg.ctx)
    dataset = data.load(cfg.data.root)
    record = resume.continued_record(resumed, flat(cfg), overrides)
    record.choices = dict(choices or record.choices)
    record.targets = list(cfg.report.targets)
    record.perf = {**speed.to_json(), "threads": mxnet_import.threads_in_effect(),
                   "engine": mxnet_import.engine_in_effect(),
                   "omp_wait": mxnet_import.wait_policy_in_effect(),
                   "policy": policy.to_json() if policy else None}
    metrics_path = run_dir / METRICS_FILE
    problem = write_record(metrics_path, record)
    if problem:
        raise UserError(f"{problem}. Choose another output folder with hydra.run.dir=... "
                        f"(or hydra.sweep.dir=... for sweeps).")
    logger = RunLogger(run_dir, hparams(record.config, record.choices), cfg.logger.tensorboard,
                       cfg.logger.flush_secs, resume_step=saved["step"] if saved else None)
    earlier = resume.earlier_wall_seconds(resumed)
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
        record.wall_seconds = earlier + time.time() - process_start
        problem = close(logger, record, metrics_path)
    if problem:
        raise UserError(f"{problem}; the checkpoint of step {record.steps} is intact: continue "
                        f"with {command_name()} resume={run_dir}")
    report_end(record, run_dir, metrics_path, stop)
    return record


def close(logger: RunLogger, record: RunRecord, metrics_path: Path) -> str | None:
    """End the TensorBoard file and write metrics.json; never raises (an exception on its
    way must not be hidden): returns why a write failed, if one did."""
    problems = []
    try:
        logger.close(record.steps, {
            "hparams/final_test_acc": record.final.get("test_acc", 0.0),
            **{f"hparams/steps_to_{t}": m["step"] or -1 for t, m in record.milestones().items()},
        }, record.status)
    except OSError as err:
        problems.append(f"cannot write the TensorBoard events: {err.strerror}")
    problems.append(write_record(metrics_path, record))
    return "; ".join(filter(None, problems)) or None


def log_speed(speed: Choice, cfg: Config) -> None:
    """The run's first lines: its threads and speed settings, and which formulation of the
    normalization trains (and how to train the readable reference instead)."""
    log.info("threads: %s, engine: %s, pid %d", mxnet_import.threads_in_effect(),
             mxnet_import.engine_in_effect(), os.getpid())
    log.info("speed settings: %s", speed.describe())
    if speed.bn_impl and speed.bn_impl != "reference":
        log.info("the normalization trains with its %r formulation, equal to its reference to "
                 "float rounding; perf.bn_impl=reference trains the reference as written in %s",
                 speed.bn_impl, source_path(options.module_of(cfg.bn)))


def command_name() -> str:
    """How the user started bnexp: `bnexp` (the command) or `python -m bnexp.run`."""
    return "bnexp" if Path(sys.argv[0]).name == "bnexp" else "python -m bnexp.run"


def report_end(record: RunRecord, run_dir: Path, metrics_path: Path, stop) -> None:
    """The run's last log lines (and, if it was interrupted, how to continue it)."""
    final = record.final
    log.info("%s after %d steps: test acc %.4f, train loss %.4f (%.1f s training, %.1f s total)",
             record.status, record.steps, final.get("test_acc", float("nan")),
             final.get("train_loss", float("nan")), record.train_seconds, record.wall_seconds)
    log.info("wrote %s", metrics_path)
    if record.status == "interrupted":
        log.warning("interrupted at step %d; continue with: %s resume=%s",
                    record.steps, command_name(), run_dir)
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
        ThroughputCheck(record, speed.ms_per_step if len(ctx) == 1 else None,
                        partial(tuning_cache.feedback, setting_of(cfg), speed.cache_key)),
        TensorBoardCurves(logger),
        Progress(tc.progress),
    ]
    if tc.stop_at_targets:
        callbacks.append(StopAtTargets(record, list(cfg.report.targets), watched_name))
    steps = run_steps(cfg)
    optimizer = options.build("optimizer", cfg.optimizer, learning_rate=lr)
    return Trainer(net, make_optimizer(net, optimizer, ctx), ctx, train, batch_size=tc.batch_size,
                   total_steps=steps, seed=cfg.seed, log_every=tc.log_every_steps,
                   callbacks=callbacks, stop_requested=stop, record=record, logger=logger)
