"""The composed config, checked before any work starts: each error names the key, the value
and what is allowed, in one line (a ConfigError).

Hydra has already checked keys and types (bnexp/config.py, and bnexp/options.py for the
options). Here: the sections' ranges (their `check` methods), what spans sections (devices
and the batch, the short forms of BN's settings), and each chosen option's own `check`
against the network it is placed in. For bnexp's own options that all happens before MXNet
is imported; a user's option (its module may import MXNet) is checked by `check_late`, just
before it is built.
"""
from __future__ import annotations

import importlib
from dataclasses import replace

from omegaconf import DictConfig, OmegaConf, open_dict

from bnexp import config, options
from bnexp.config import CONF_DIR, Config, fail
from bnexp.errors import ConfigError
from bnexp.nn.plan import NetworkPlan
from bnexp.runtime import context
from bnexp.training import schedule

SHORT_FORMS = ("momentum", "eps")   # top-level keys that set the bn option's setting of that name


def load(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = (),
         choices: dict | None = None) -> Config:
    """The composed Hydra config as a checked `Config`, the options as plain dicts.
    `overrides`: the command line's (the short forms are checked against the bn option);
    `choices`: the options chosen (bn=scratch, ...), to name them in errors."""
    nodes = {group: OmegaConf.to_container(cfg[group], resolve=True) for group in options.GROUPS}
    if "hydra" in cfg:  # composed with return_hydra_config (bnexp/preflight.py)
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    obj = replace(OmegaConf.to_object(cfg), **nodes)
    assert isinstance(obj, Config), "conf/config.yaml must start from the `schema` defaults entry"
    check(obj, overrides, choices)
    return obj


def chosen(cfg: Config) -> list[tuple[str, dict]]:
    """(group, option) of every option the config chose, monitors one by one."""
    picked = [(group, getattr(cfg, group)) for group in options.GROUPS if group != "monitor"]
    return picked + [("monitor", node) for node in cfg.monitor.values()]


def check(cfg: Config, overrides: list[str] | tuple[str, ...] = (),
          choices: dict | None = None) -> None:
    """Every check that can run before MXNet is imported."""
    cfg.check()
    problem = schedule.check(cfg.trainer.eval_schedule)
    if problem:
        fail("trainer.eval_schedule", cfg.trainer.eval_schedule, problem + ".")
    devices = max(1, len(context.parse(cfg.ctx)))
    if cfg.trainer.batch_size % devices:
        fail("trainer.batch_size", cfg.trainer.batch_size,
             f"must be divisible by the number of devices in ctx={cfg.ctx} ({devices}).")
    check_short_forms(cfg, overrides, (choices or {}).get("bn"))
    network = plan(cfg, (choices or {}).get("model"))
    for group, node in chosen(cfg):
        if options.early(node):
            options.check(group, node, network)


def check_late(cfg: Config) -> None:
    """The `check` of the options whose modules may import MXNet (a user's), once it runs."""
    network = plan(cfg)
    for group, node in chosen(cfg):
        if not options.early(node):
            options.check(group, node, network)


def check_short_forms(cfg: Config, overrides, bn_choice: str | None = None) -> None:
    """`momentum=0.99` sets bn.momentum: an error where the bn option has no momentum."""
    chosen_bn = f"bn={bn_choice}" if bn_choice else label("bn", cfg.bn)
    for override in overrides:
        key = str(override).split("=", 1)[0].lstrip("+~")
        if key in SHORT_FORMS and key not in cfg.bn:
            has = ", ".join(options.settings("bn", cfg.bn)) or "none"
            raise ConfigError(f"{override}: {key} is BN's (bn.{key}), and {chosen_bn} has "
                              f"none; its settings: {has}.")


def plan(cfg: Config, model_choice: str | None = None) -> NetworkPlan:
    """What the options' checks know of the network (bnexp/nn/plan.py); `model_choice`
    names the model option in their messages."""
    devices = max(1, len(context.parse(cfg.ctx)))
    sites = None
    if options.early(cfg.model):
        module = importlib.import_module(cfg.model["_target_"].rpartition(".")[0])
        layers = getattr(module, "normalized_layers", None)
        if layers is not None:
            sites = tuple(layers(**options.settings("model", cfg.model)))
    name = f"model={model_choice}{changed_settings(cfg.model)}" if model_choice \
        else label("model", cfg.model)
    return NetworkPlan(sites, name, cfg.trainer.batch_size // devices,
                       devices, tuple(cfg.monitor))


def changed_settings(model: dict) -> str:
    """' model.bn_on_dense=true': a bnexp model option's settings that differ from its
    target's defaults, as they would be typed."""
    if not options.early(model):
        return ""
    defaults = options.settings_of(options.target(model["_target_"]), "model")
    changed = {k: v for k, v in options.settings("model", model).items()
               if k in defaults and v != defaults[k][1] and not (
                   isinstance(v, list) and list(defaults[k][1] or []) == v)}
    return "".join(f" model.{k}={str(v).lower() if isinstance(v, bool) else v}"
                   for k, v in changed.items())


def label(group: str, node: dict) -> str:
    """An option as its target and own settings: 'lenet (bn_on_dense=True)'."""
    name = str(node.get("_target_", "?")).rpartition(".")[2]
    own = ", ".join(f"{k}={v}" for k, v in options.settings(group, node).items())
    return f"{name} ({own})" if own else name


def compose(overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The checked config that the command line `overrides` give, composed as `bnexp` composes
    it: for tools and tests that build a network or a run without the Hydra app."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config.register()
    options.register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    return load(cfg, overrides, dict(cfg.hydra.runtime.choices))
