"""One run, start to finish: data and devices in, metrics.json and TensorBoard out."""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from pathlib import Path

from bnexp import context, data
from bnexp.config import Config, flat
from bnexp.metrics import METRICS_FILE, RunRecord, write_json_atomic
from bnexp.tblog import RunLogger
from bnexp.train import fit

log = logging.getLogger(__name__)

# Hyperparameters shown in TensorBoard's HParams tab (plain values only).
HPARAM_KEYS = ("bn.variant", "lr", "momentum", "eps", "seed", "trainer.batch_size",
               "trainer.epochs", "trainer.max_steps", "model.bn_on_dense", "model.init", "ctx")


@contextlib.contextmanager
def graceful_stop():
    """The first SIGINT/SIGTERM asks the loop to stop after the current step;
    a second SIGINT interrupts at once."""
    requested: list[int] = []

    def handler(signum, frame):
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)
        log.warning("%s received: stopping after the current step (Ctrl-C again to abort now)",
                    signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(cfg: Config, run_dir: Path, overrides: list[str], process_start: float) -> RunRecord:
    """Train once as configured; `run_dir/metrics.json` records the outcome, whatever it is."""
    ctx = context.resolve(cfg.ctx)
    dataset = data.load(cfg.data.root)
    settings = flat(cfg)
    record = RunRecord(config=settings, overrides=overrides)
    metrics_path = run_dir / METRICS_FILE
    write_json_atomic(metrics_path, record.to_json())  # fails early if run_dir is not writable
    hparams = {key: settings[key] for key in HPARAM_KEYS}
    logger = RunLogger(run_dir, hparams, cfg.logger.tensorboard, cfg.logger.flush_secs)
    try:
        with graceful_stop() as stop_requested:
            fit(cfg, dataset, ctx, record, logger, process_start, stop_requested)
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
    return record
