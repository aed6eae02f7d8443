"""The config groups are the registry.

An option of the groups `bn`, `model`, `optimizer` and `monitor` is one YAML file in
conf/<group>/ naming a callable, its `_target_`, and holding that callable's own settings:

    # conf/bn/group.yaml
    defaults: [/schema/bn/group@_here_, _self_]   # its settings' types (below)
    _target_: bnexp.nn.norm.group.group_norm
    groups: 10
    eps: ${eps}

Nothing else lists the options: the command line's errors, `--help`, the report and the
docs ask Hydra for the group's options. bnexp builds an option by calling its target with
the option's settings and what bnexp supplies (`CONTEXT`): a normalization is called with
`channels` and may also take `layer`, `seed`, `devices` or `formulation` by naming them as
parameters. A user's own option works the same from their own config folder
(`hydra.searchpath=[file://DIR]`), its target importable from their PYTHONPATH.

The types of bnexp's own options come from their targets' signatures: `register_schemas`
derives a structured config from each and stores it in Hydra's ConfigStore as
`schema/<group>/<option>`, which the option's YAML puts first in its defaults list, so a
misspelt setting or a value of the wrong type fails while Hydra composes, naming the key.
That needs the target's module before MXNet is imported (MXNet fixes its thread count
then, bnexp/runtime/mxnet_import.py): bnexp's option modules import no MXNet at module
level (their layers derive from bnexp/nn/lazy_block.py). A target's module may define
`check(network, **settings)` for what a type cannot say (bnexp/nn/plan.py: the network it
is placed in); bnexp calls it before MXNet is imported for its own options and just before
building for a user's, whose module may import MXNet.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import typing
from pathlib import Path
from typing import Any, Callable

import yaml
from hydra.core.config_store import ConfigStore

from bnexp.config import CONF_DIR, ModelSettings
from bnexp.errors import ConfigError

# What bnexp supplies when it calls an option's target, by group; a target takes the ones it
# names as parameters (a normalization must take `channels`).
CONTEXT: dict[str, tuple[str, ...]] = {
    "bn": ("channels", "layer", "seed", "devices", "formulation"),
    "model": ("norm", "pool", "bias_initializer"),
    "optimizer": ("learning_rate",),
    "monitor": ("seed", "lr"),
}
GROUPS = tuple(CONTEXT)
# Settings every option of a group has, read by bnexp itself, not passed to the target.
COMMON: dict[str, type] = {"model": ModelSettings}
BNEXP_PREFIX = "bnexp."  # targets whose modules import no MXNet (tests/test_options.py)


def option_files(group: str) -> dict[str, Path]:
    """bnexp's own options of `group`: name -> its YAML file."""
    return {path.stem: path for path in sorted((CONF_DIR / group).glob("*.yaml"))}


def yaml_target(path: Path) -> str | None:
    """The `_target_` a YAML option names (None: it extends another option, e.g.
    conf/bn/ghost_2.yaml, and has that one's target and schema)."""
    target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
    return target if isinstance(target, str) else None


def target(path: str) -> Callable:
    """The callable a dotted `_target_` names, imported now; a ConfigError if there is none."""
    module_name, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"_target_={path}: cannot import it ({type(err).__name__}: {err}); "
                          "a target is a dotted path to a callable importable from the "
                          "PYTHONPATH, e.g. mypackage.mylayer.build") from None
    if not callable(found):
        raise ConfigError(f"_target_={path}: not a callable")
    return found


def settings_of(fn: Callable, group: str) -> dict[str, tuple[Any, Any]]:
    """The settings an option's target takes: parameter -> (type, default), without what
    bnexp supplies (`CONTEXT`). Types from the annotations (Any where there is none)."""
    module = importlib.import_module(fn.__module__)
    out = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in CONTEXT[group] or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is param.empty else param.default
        out[name] = (_annotation(param.annotation, module), default)
    return out


def _annotation(annotation: Any, module) -> Any:
    """A parameter's annotation as a type OmegaConf understands (`list[int]` -> List[int])."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, {**vars(typing), **vars(module)})  # noqa: S307 -- our own source
        except Exception:  # noqa: BLE001 -- a type OmegaConf cannot hold: no type check
            return Any
    if typing.get_origin(annotation) is list:
        return typing.List[typing.get_args(annotation)]  # type: ignore[misc]
    return annotation if annotation in (int, float, str, bool) or typing.get_origin(annotation) else Any


def schema(group: str, fn: Callable, target_path: str) -> type:
    """A structured config of an option whose target is `fn`: `_target_` and its settings."""
    fields = [("_target_", str, dataclasses.field(default=target_path))]
    for name, (kind, default) in settings_of(fn, group).items():
        value = (dataclasses.field(default_factory=lambda d=default: list(d))
                 if isinstance(default, (list, tuple)) else dataclasses.field(default=default))
        fields.append((name, kind if default is not None else typing.Optional[kind], value))
    for common in dataclasses.fields(COMMON[group]) if group in COMMON else ():
        fields.append((common.name, common.type, dataclasses.field(default=common.default)))
    return dataclasses.make_dataclass(f"{group}_{fn.__name__}_settings", fields)


@functools.cache
def register_schemas() -> None:
    """Store the schema of every bnexp option in Hydra's ConfigStore (see the docstring);
    once per process."""
    store = ConfigStore.instance()
    for group in GROUPS:
        for name, path in option_files(group).items():
            target_path = yaml_target(path)
            if target_path is None:
                continue
            store.store(group=f"schema/{group}", name=name,
                        node=schema(group, target(target_path), target_path))


def settings(group: str, node: dict) -> dict:
    """An option's own settings: its node without `_target_` and without the settings every
    option of the group has, which bnexp reads itself (`COMMON`)."""
    common = {f.name for f in dataclasses.fields(COMMON[group])} if group in COMMON else set()
    return {k: v for k, v in node.items() if k != "_target_" and k not in common}


def accepted(fn: Callable, context: dict[str, Any]) -> dict[str, Any]:
    """The part of `context` that `fn` takes (all of it if it takes **kwargs)."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(context)
    return {k: v for k, v in context.items() if k in params}


def build(group: str, node: dict, **context: Any) -> Any:
    """Call the option's target with its settings and the part of `context` it takes."""
    fn = target(node["_target_"])
    try:
        return fn(**settings(group, node), **accepted(fn, context))
    except TypeError as err:
        if "argument" not in str(err):
            raise
        raise ConfigError(f"{group}: {node['_target_']} does not take these settings ({err}); "
                          f"its parameters: {', '.join(inspect.signature(fn).parameters)}") from None


def early(node: dict) -> bool:
    """Whether an option's target may be imported before MXNet (bnexp's own modules)."""
    return str(node.get("_target_", "")).startswith(BNEXP_PREFIX)


def module_of(node: dict):
    """The module of an option's target, imported now."""
    return importlib.import_module(str(node["_target_"]).rpartition(".")[0])


def check(group: str, node: dict, network) -> None:
    """The target module's `check(network, **settings)`, if it has one."""
    check_fn = getattr(module_of(node), "check", None)
    if check_fn is not None:
        check_fn(network, **settings(group, node))
