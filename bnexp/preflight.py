"""The command line checked before Hydra starts anything: every mistake one line, exit 2.

Hydra reports its own errors in several lines with exit status 1 (`monitor.ics.every=5`
with ics not selected even ends in a traceback), and a sweep would start every job with a
bad fixed override. So before the Hydra app runs, this module composes the configuration
the way Hydra will -- for a sweep with its fixed overrides, and once per swept value --
and turns whatever goes wrong into one line naming the override, what is wrong and what is
allowed; a setting the chosen option does not have (`bn=group momentum=0.99`) too. The
value checks are bnexp's own (bnexp/validate.py); a swept value that fails them stays that
job's failure (the report lists it).

`HYDRA_FULL_ERROR=1` skips this translation and shows Hydra's own error and traceback.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import (ConfigCompositionException, MissingConfigException,
                          OverrideParseException)
from omegaconf import DictConfig, OmegaConf

from bnexp import config, options, resume
from bnexp.config import CONF_DIR
from bnexp.errors import ConfigError, UserError

CONFIG_NAME = "config"
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
    modes = [flag for flag, on in (("--run", args.run), ("--multirun", args.multirun),
                                   ("--cfg", args.cfg), ("--info", args.info),
                                   ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1:  # Hydra raises a ValueError with a traceback for this
        raise UserError(f"{' and '.join(modes)} cannot be combined: choose one (to see a sweep's "
                        "jobs' config, run --cfg job with one value of each swept key)")
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
        _check_appended_keys(overrides, fixed)
        cfg = _compose(fixed)
        for override in swept:  # a swept option Hydra cannot compose would stop the sweep midway
            for value in _sweep_values(override):
                _compose(fixed + [f"{override.get_key_element()}={value}"])
    if args.cfg:
        return  # only shows the config: the value checks are for runs
    problem = resume.folder_problem(None if cfg.get("resume") is None else str(cfg.resume))
    if problem:  # before Hydra creates the folder, MXNet is imported or a probe runs
        raise ConfigError(problem)
    if cfg.get("resume") in (None, "auto"):  # a resumed folder: checked against its saved config
        from bnexp import validate
        validate.load(cfg, fixed, dict(cfg.hydra.runtime.choices))


@contextmanager
def _config_module() -> Iterator[None]:
    """Hydra's compose API over bnexp's configs, left as it was found (the app
    initializes Hydra itself afterwards)."""
    config.register()
    options.register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def _compose(overrides: list[str]) -> DictConfig:
    try:
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    except Exception as err:  # noqa: BLE001 -- every kind becomes one line below
        raise UserError(explain(err, overrides)) from None


def _check_appended_keys(overrides, fixed: list[str]) -> None:
    """`+trainer.batch_sze=64` composes (Hydra appends the key) and bnexp would never read
    it: a silently ignored typo. Appending is for config groups (`+experiment=...`) and
    Hydra's own settings only."""
    loader = GlobalHydra.instance().config_loader()
    for override in overrides:
        key = override.get_key_element().lstrip("+~").split("@", 1)[0]
        if not override.is_add() or key.startswith("hydra") or loader.get_group_options(key):
            continue
        known = _known_keys([o for o in fixed if not o.lstrip("~").startswith("+")])
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
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
    choices = _options(group)
    close = difflib.get_close_matches(option, choices, n=1)
    typed = _override_for(group, overrides)
    several = f" (several at once: {group}=[{','.join(choices[:2])}])" if group in LIST_GROUPS else ""
    hint = f" Did you mean {close[0]}?" if close else ""
    extra = PLUGIN_EXTRAS.get(f"{group}/{option}")
    if extra:
        hint = f" The plugin is not installed: pip install \"bnexp[{extra}]\"."
    return (f"{typed}: {group} has no option {option!r}; choose from {', '.join(choices)}"
            f"{several}.{hint}")


def _keys(node, prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in node.items():
        out.append(prefix + str(key))
        if isinstance(value, dict):
            out += _keys(value, f"{prefix}{key}.")
    return out


def _known_keys(overrides: list[str]) -> list[str]:
    """Every dotted key of the config `overrides` compose (a key the user may mistype)."""
    try:
        composed = compose(CONFIG_NAME, overrides=overrides)
    except Exception:  # noqa: BLE001 -- something else is wrong: the caller says it
        composed = compose(CONFIG_NAME)
    return _keys(OmegaConf.to_container(composed))


def _unknown_key(key: str, overrides: list[str]) -> str:
    """A key Hydra could not override: Hydra's own, a setting the chosen option does not
    have, a monitor not selected, or a misspelt key."""
    typed = _override_for(key, overrides)
    if key.startswith("hydra."):
        return f"{typed}: Hydra has no setting {key} (see `--cfg hydra` for its settings)."
    rest = [o for o in overrides if o != typed]
    group, _, setting = key.partition(".")
    if group in options.GROUPS and setting:
        try:
            composed = compose(CONFIG_NAME, overrides=rest, return_hydra_config=True)
        except Exception:  # noqa: BLE001 -- something else is wrong: say what we know
            composed = None
        if composed is not None:
            return _not_a_setting(typed, group, setting, composed)
    close = difflib.get_close_matches(key, _known_keys(rest), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"{typed}: no such key.{hint} (`--cfg job` lists every key and its value)"


def _not_a_setting(typed: str, group: str, setting: str, composed: DictConfig) -> str:
    """`bn.groups=5` with bn=scratch; `monitor.ics.every=5` without monitor=[ics]."""
    loader = GlobalHydra.instance().config_loader()
    if group in LIST_GROUPS:
        name = setting.split(".")[0]
        selected = list(composed[group])
        if name not in selected:
            if name in loader.get_group_options(group):
                return (f"{typed}: the {name} {group} is not selected; select it too: "
                        f"{group}=[{','.join(selected + [name])}] {typed}")
            return f"{typed}: there is no {group} {name!r}; {group}s: {', '.join(_options(group))}."
        node, choice = composed[group][name], f"{group}={name}"
        setting = setting.split(".", 1)[-1]
    else:
        node, choice = composed[group], f"{group}={composed.hydra.runtime.choices[group]}"
    own = [k for k in node if k != "_target_"]
    close = difflib.get_close_matches(setting, own, n=1, cutoff=0.6)
    prefix = typed.lstrip("+~").split("=", 1)[0][:-len(setting)]
    hint = f" Did you mean {prefix}{close[0]}?" if close else ""
    return (f"{typed}: {choice} has no setting {setting!r}; its settings: "
            f"{', '.join(own) or 'none'}.{hint} (`--cfg job` shows them)")


def _options(group: str) -> list[str]:
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def config_groups() -> str:
    """`group: option, option, ...` for every config group the user chooses from (for
    `--help`; Hydra's own list also shows the options' schemas, `schema/...`)."""
    loader = GlobalHydra.instance().config_loader()

    def groups(parent: str) -> list[str]:
        out = []
        for name in loader.list_groups(parent):
            path = f"{parent}/{name}" if parent else name
            out += [path] if loader.get_group_options(path) else []
            out += groups(path)
        return out

    return "\n".join(f"{g}: {', '.join(_options(g))}" for g in sorted(groups(""))
                     if not g.startswith(("hydra", "schema")))


TYPE_NAMES = {"Float": "a number, e.g. 0.2", "Integer": "a whole number",
              "Boolean": "true or false"}


def _wrong_type(key: str, value: str, cause: str, overrides: list[str]) -> str:
    match = re.search(r"could not be converted to (\w+)", cause)
    wanted = TYPE_NAMES.get(match.group(1), match.group(1)) if match else _one_line(Exception(cause))
    return f"{_override_for(key, overrides)}: {key} takes {wanted}, not {value!r}."


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
