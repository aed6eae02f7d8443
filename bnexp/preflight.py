"""The command line checked before Hydra starts anything: every mistake one line, exit 2.

Hydra reports its own errors (an unknown group option, a wrong type, an unknown key) in
several lines with exit status 1, and a key inside a monitor that is not selected
(`monitor.ics.every=5`) even ends in an AssertionError traceback. A sweep would also
start every job with a bad fixed override and let each one fail alike. So before the
Hydra app runs, this module composes the configuration the way Hydra will -- for a sweep
with its fixed overrides, and once per swept value -- and turns whatever goes wrong into
one line naming the override, what is wrong and what is allowed. The value checks are
bnexp's own (bnexp/validate.py); for a sweep they run once on the fixed overrides, a
swept value that fails them stays that job's failure (the report lists it).

`HYDRA_FULL_ERROR=1` skips this translation and shows Hydra's own error and traceback.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hydra import compose, initialize_config_module
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import (ConfigCompositionException, MissingConfigException,
                          OverrideParseException)
from omegaconf import DictConfig, OmegaConf

from bnexp.errors import ConfigError, UserError

CONFIG_MODULE, CONFIG_NAME = "bnexp.conf", "config"
LIST_GROUPS = ("monitor",)  # groups that take several options at once: monitor=[a,b]
# Hydra plugins that bnexp's presets use, and the extra of bnexp that installs each.
PLUGIN_EXTRAS = {"hydra/sweeper/optuna": "optuna", "hydra/launcher/joblib": "launchers",
                 "hydra/launcher/submitit_local": "slurm", "hydra/launcher/submitit_slurm": "slurm"}


def check_command_line(argv: list[str]) -> None:
    """Raise a UserError (one line) for a command line Hydra would reject or every job of a
    sweep would fail on; return quietly when it is fine or not a run (help, completion)."""
    if "--version" in argv:
        return  # argparse would print the version here, and Hydra again
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:
        return  # Hydra's own parser will say what is wrong with the flags
    if (args.help or args.hydra_help or args.shell_completion or args.info
            or args.config_path or args.config_dir or args.experimental_rerun
            or (args.config_name or CONFIG_NAME) != CONFIG_NAME):
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except OverrideParseException as err:
        raise UserError(f"cannot parse the overrides: {_one_line(err)} "
                        "(grammar: https://hydra.cc/docs/advanced/override_grammar/basic/)") from None
    if args.multirun:
        fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
        swept = [o for o in overrides if o.is_sweep_override()]
    else:
        fixed, swept = list(args.overrides), []
    with _config_module():
        _check_appended_keys(overrides)
        cfg = _compose(fixed)
        for override in swept:  # a swept option Hydra cannot compose would stop the sweep midway
            for value in _sweep_values(override):
                _compose(fixed + [f"{override.get_key_element()}={value}"])
    if args.cfg:
        return  # only shows the config: the value checks are for runs
    _check_resume(cfg)
    if cfg.get("resume") in (None, "auto"):  # a resumed folder: checked against its saved config
        from bnexp import validate
        validate.load(cfg)


@contextmanager
def _config_module() -> Iterator[None]:
    """Hydra's compose API over bnexp's configs, left as it was found (the app
    initializes Hydra itself afterwards)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def _compose(overrides: list[str]) -> DictConfig:
    try:
        return compose(CONFIG_NAME, overrides=overrides)
    except Exception as err:  # noqa: BLE001 -- every kind becomes one line below
        raise UserError(explain(err, overrides)) from None


def _check_appended_keys(overrides) -> None:
    """`+trainer.batch_sze=64` composes (Hydra appends the key) and bnexp would never read
    it: a silently ignored typo. Appending is for config groups (`+experiment=...`) and
    Hydra's own settings only."""
    loader = GlobalHydra.instance().config_loader()
    for override in overrides:
        key = override.get_key_element().lstrip("+~").split("@", 1)[0]
        if (override.is_add() and not key.startswith("hydra")
                and not loader.get_group_options(key) and key not in _known_keys()):
            close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise UserError(f"{override.input_line}: bnexp has no setting {key} and would ignore "
                            f"it.{hint} (`--cfg job` lists every key)")


def _sweep_values(override) -> list[str]:
    """The values of a discrete sweep (a,b / range / choice); none for what only the
    sweeper knows how to draw from (interval, tags)."""
    try:
        return list(override.sweep_string_iterator())
    except Exception:  # noqa: BLE001
        return []


def _check_resume(cfg: DictConfig) -> None:
    """`resume=<folder>` must name an existing run folder: Hydra would create the path
    (parents included) before bnexp could say it is missing."""
    resume = cfg.get("resume")
    if resume in (None, "auto") or Path(str(resume)).is_dir():
        return
    raise ConfigError(f"resume={resume}: no such run folder; give the folder of an interrupted "
                      "or checkpointed run (outputs/runs/<stamp>), or resume=auto in a sweep.")


# ------------------------------------------------------------------ one line per error

def explain(err: Exception, overrides: list[str]) -> str:
    """One line for an error Hydra raised while composing `overrides`."""
    if isinstance(err, MissingConfigException):
        return _missing_option(err, overrides)
    if isinstance(err, OverrideParseException):
        return (f"cannot parse the overrides: {_one_line(err)} "
                "(grammar: https://hydra.cc/docs/advanced/override_grammar/basic/)")
    cause = err.__cause__
    text = str(err)
    if isinstance(err, ConfigCompositionException):
        match = re.match(r"Could not override '([^']+)'", text)
        if match:
            return _unknown_key(match.group(1), overrides)
        match = re.match(r"Error merging override (\S+?)=(.*)", text)
        if match and cause is not None:
            return _wrong_type(match.group(1), match.group(2), str(cause), overrides)
    if "Ambiguous value for argument" in text:
        return (f"{_one_line(err).split(chr(39))[1]}: a comma list is a sweep; add --multirun, "
                "or quote a value that contains commas (key='\"a,b\"').")
    unselected = _unselected_monitor_setting(overrides)
    if unselected:
        return unselected
    return f"{' '.join(overrides)}: {_one_line(cause or err)}"


def _one_line(err: BaseException) -> str:
    first = str(err).strip().splitlines()
    return first[0].strip() if first else type(err).__name__


def _override_for(key: str, overrides: list[str]) -> str:
    """The override the user typed for `key` (with a leading +, ~ or an @package)."""
    for item in overrides:
        name = item.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        if name == key:
            return item
    return key


def _missing_option(err: MissingConfigException, overrides: list[str]) -> str:
    """`bn=bogus`, `monitor=[bogus]`, `hydra/launcher=bogus`: the options of the group."""
    match = re.search(r"Could not (?:find|load) '(.+)/([^/']+)'", str(err))
    if not match:
        return _one_line(err)
    group, option = match.groups()
    options = sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    close = difflib.get_close_matches(option, options, n=1)
    typed = _override_for(group, overrides)
    several = f" (several at once: {group}=[{','.join(options[:2])}])" if group in LIST_GROUPS else ""
    hint = f" Did you mean {close[0]}?" if close else ""
    extra = PLUGIN_EXTRAS.get(f"{group}/{option}")
    if extra:
        hint = f" The plugin is not installed: pip install \"bnexp[{extra}]\"."
    return (f"{typed}: {group} has no option {option!r}; choose from {', '.join(options)}"
            f"{several}.{hint}")


def _known_keys() -> list[str]:
    """Every dotted key of the default config, monitor settings included (a key the user
    may mistype)."""
    import typing

    from bnexp.config import Config, MonitorConfig

    container = OmegaConf.to_container(OmegaConf.structured(Config))
    keys: list[str] = []

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            keys.append(prefix + key)
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(container, "")
    for name, hint in typing.get_type_hints(MonitorConfig).items():  # null until selected
        options_class = next(a for a in typing.get_args(hint) if a is not type(None))
        walk(OmegaConf.to_container(OmegaConf.structured(options_class)), f"monitor.{name}.")
    return keys


def _unknown_key(key: str, overrides: list[str]) -> str:
    typed = _override_for(key, overrides)
    if key.startswith("hydra."):
        return f"{typed}: Hydra has no setting {key} (see `--cfg hydra` for its settings)."
    close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"{typed}: no such key.{hint} (`--cfg job` lists every key and its value)"


TYPE_NAMES = {"Float": "a number, e.g. 0.2", "Integer": "a whole number",
              "Boolean": "true or false"}


def _wrong_type(key: str, value: str, cause: str, overrides: list[str]) -> str:
    match = re.search(r"could not be converted to (\w+)", cause)
    wanted = TYPE_NAMES.get(match.group(1), match.group(1)) if match else _one_line(Exception(cause))
    return f"{_override_for(key, overrides)}: {key} takes {wanted}, not {value!r}."


def _unselected_monitor_setting(overrides: list[str]) -> str | None:
    """`monitor.ics.every=5` without `monitor=[ics]`: Hydra fails with an AssertionError
    (the monitor's node is null until it is selected)."""
    from bnexp.monitors.registry import MONITORS

    settings = [o for o in overrides
                if re.match(r"[+]?monitor\.(\w+)\.", o) and "=" in o]
    if not settings:
        return None
    rest = [o for o in overrides if o not in settings]
    try:
        selected = compose(CONFIG_NAME, overrides=rest).monitor
    except Exception:  # noqa: BLE001 -- something else is wrong: the caller says it
        return None
    for item in settings:
        name = item.lstrip("+").split(".")[1]
        if name in MONITORS and selected.get(name) is None:
            chosen = [n for n in MONITORS.names() if selected.get(n) is not None] + [name]
            return (f"{item}: the {name} monitor is not selected; select it too: "
                    f"monitor=[{','.join(chosen)}] {item}")
        if name not in MONITORS:
            return (f"{item}: there is no monitor {name!r}; monitors: "
                    f"{', '.join(MONITORS.names())}.")
    return None


def check_or_exit(argv: list[str]) -> None:
    """`check_command_line`; a rejected command line prints its one line and exits 2.
    Skipped with HYDRA_FULL_ERROR=1 (the user asked for Hydra's own errors)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    try:
        check_command_line(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
