"""Command-line entry point: `python -m bnexp.run [overrides]`.

    python -m bnexp.run bn=scratch lr=0.2
    python -m bnexp.run --multirun bn=none,scratch,gluon seed=0,1,2
"""
from __future__ import annotations

import logging
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bnexp import config, options, preflight, record, tuning, validate
from bnexp.config import CONF_DIR, Config
from bnexp.errors import UserError
from bnexp.runtime import context, mxnet_import
from bnexp.runtime.threads import ThreadPolicy
from bnexp.sweep import callbacks, clock, naming
from bnexp.tuning.choice import import_with

log = logging.getLogger("bnexp")

config.register()
options.register_schemas()
# A random component in output folder names: two runs started in the same second
# must not share a folder (cached, so one run resolves it to one value).
OmegaConf.register_new_resolver("bnexp_uid", lambda: secrets.token_hex(3), use_cache=True)
# A sweep job's folder is named by its swept overrides (bnexp.sweep.naming).
OmegaConf.register_new_resolver(
    "bnexp_job_name", lambda overrides, sweep_dir, num: naming.job_name(
        list(overrides), sweep_dir, num, naming.UNNAMED_KEYS))
# For presets: a step count from an image count, e.g. ${bnexp_steps:10000,${trainer.batch_size}}.
# A single run's folder is named by its normalization and overrides (TensorBoard shows the name).
OmegaConf.register_new_resolver(
    "bnexp_run_name", lambda bn, overrides: naming.run_name(str(bn), list(overrides)))
OmegaConf.register_new_resolver("bnexp_steps", lambda images, batch: max(1, int(images) // int(batch)))
# `bnexp --help` lists the config groups and their options, not the options' schemas.
OmegaConf.register_new_resolver("bnexp_config_groups", lambda: preflight.config_groups())
# `resume=<run dir>` continues in that folder and keeps its .hydra/ as first written.
OmegaConf.register_new_resolver(
    "bnexp_run_dir", lambda resume, default: default if resume in (None, "auto") else resume)
OmegaConf.register_new_resolver(
    "bnexp_hydra_subdir", lambda resume: ".hydra" if resume in (None, "auto") else None)


def slurm_restarts() -> int:
    """How often SLURM has requeued the job this process runs in (0 outside SLURM)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def cpu_temp_copies(cfg: Config) -> int | None:
    """MXNet's CPU workspace copies for this run: what the normalization's module asks for
    on several CPU contexts (`CPU_TEMP_COPIES`: bn=sync, where MXNet's default deadlocks,
    bnexp/nn/norm/sync.py); else MXNet's default."""
    devices = context.parse(cfg.ctx)
    if len(devices) > 1 and all(kind == "cpu" for kind, _ in devices) and options.early(cfg.bn):
        return getattr(options.module_of(cfg.bn), "CPU_TEMP_COPIES", None)
    return None


def chosen_options() -> dict[str, str]:
    """The option chosen in each of bnexp's config groups: {"bn": "scratch", ...}."""
    choices = HydraConfig.get().runtime.choices
    return {group: str(choices[group]) for group in options.GROUPS if choices.get(group)}


def speed_settings(settings: Config, policy: ThreadPolicy, run_dir: Path) -> tuning.Choice:
    """A resumed run keeps its own speed settings (those the command line does not fix
    again); a new one has them chosen (bnexp/tuning/)."""
    saved = record.saved_perf(run_dir) if settings.resume else None
    if saved is None:
        return tuning.choose(settings, policy)
    return tuning.Choice.resumed(saved, settings.perf, policy)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    """Train once; return what a sweeper optimises (bnexp.record.objective): the validation
    accuracy, else the training accuracy, never the test accuracy; 0.0 if the run failed
    or diverged."""
    job_start = clock.job_start()
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    try:
        settings = validate.load(cfg, overrides)
        if in_sweep and settings.resume is None and slurm_restarts():
            # SLURM runs a requeued job (preempted, or out of time and requeued by submitit)
            # with its first command again: continue from the checkpoint, don't start over.
            log.info("SLURM requeued this job (restart %d): continuing it as with resume=auto",
                     slurm_restarts())
            settings = replace(settings, resume="auto")
        # Speed settings first: MXNet fixes its thread count when it is imported.
        policy = ThreadPolicy.resolve(settings.perf.threads)
        speed = speed_settings(settings, policy, run_dir)
        problem = import_with(speed, cpu_temp_copies(settings))
        if problem:  # a broken MXNet install is the user's to fix: one line, status 2
            raise UserError(problem)
        from bnexp import experiment
        result = experiment.run(settings, run_dir, overrides, job_start, speed, policy,
                                chosen_options())
    except UserError as err:
        log.error("%s", err)
        if in_sweep:  # the other jobs of the sweep go on; the report lists this one
            record.record_failure(run_dir, overrides, err)
            return 0.0
        callbacks.discard_if_never_started(run_dir)
        sys.exit(2)
    except Exception:
        if not in_sweep:
            raise
        log.exception("job failed; the sweep goes on")
        return 0.0
    if result.status == "interrupted":
        sys.exit(130)  # also stops a sweep: the user asked to stop
    value, source = record.objective(result)
    if in_sweep:
        log.info("returned to the sweeper: %s %.4f%s", source, value,
                 "" if source == record.OBJECTIVE_VALIDATION else
                 " -- the test accuracy is never returned; set data.val_size (e.g. 5000) "
                 "to optimise the validation accuracy")
    return value


def cli() -> None:
    """The command line (`python -m bnexp.run`, `bnexp`): checked first (bnexp/preflight.py:
    one line and exit 2 for any mistake), then the Hydra app, which reads sys.argv."""
    preflight.check_or_exit(sys.argv[1:])
    try:
        main()
    except KeyboardInterrupt:  # a second Ctrl-C (metrics.json says "interrupted"), or one
        print("aborted", file=sys.stderr)  # outside training: Hydra starting, the report
        sys.exit(130)


if __name__ == "__main__":
    cli()
