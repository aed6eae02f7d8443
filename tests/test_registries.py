"""The registries (bnexp/registry.py): each name has one owner -- the module that registers
it -- and the config check, the configs, the schema and the builders agree with it."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnexp.config import MonitorConfig
from bnexp.errors import ConfigError
from bnexp.monitors.registry import MONITORS
from bnexp.nn.norm.registry import NORMALIZATIONS
from bnexp.nn.registry import MODELS
from bnexp.registry import Registry
from conftest import REPO


def yaml_names(group: str, key: str | None) -> set[str]:
    """The option names of a config group: a key inside each file, or the file names."""
    files = sorted((REPO / "bnexp" / "conf" / group).glob("*.yaml"))
    return {str(OmegaConf.load(f)[key]) if key else f.stem for f in files}


def test_every_normalization_has_a_config_file_and_back():
    assert set(NORMALIZATIONS.names()) == yaml_names("bn", "variant")
    assert set(NORMALIZATIONS.names()) == yaml_names("bn", None)  # bn=<name> selects <name>.yaml


def test_every_model_has_a_config_file_and_back():
    assert set(MODELS.names()) == yaml_names("model", "name")


def test_every_monitor_has_options_in_the_schema_and_a_config_file():
    names = set(MONITORS.names())
    assert names == {f.name for f in dataclasses.fields(MonitorConfig)}
    assert names == yaml_names("monitor", None)


def test_registered_objects_are_what_the_names_build():
    from mxnet import gluon

    from bnexp.nn.norm.registry import NormSpec, make_norm
    for name in NORMALIZATIONS.names():
        layer = make_norm(NormSpec(name), 20)  # LeNet's first layer: the default groups divide it
        assert layer is None if name == "none" else isinstance(layer, gluon.HybridBlock), name
    for entry in MONITORS.entries():
        assert MONITORS.get(entry.name).name == entry.name
        assert entry.summary  # shown in error messages and the docs


def test_names_are_known_without_importing_mxnet():
    """The config is checked before MXNet is imported (its thread count is fixed then)."""
    code = ("import sys; from bnexp.nn.norm.registry import NORMALIZATIONS; "
            "from bnexp.monitors.registry import MONITORS; from bnexp.nn.registry import MODELS; "
            "print(len(NORMALIZATIONS.names()) > 2, len(MONITORS.names()) > 2, "
            "len(MODELS.names()) > 1, 'mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout.strip()
    assert out == "True True True False"


def test_unknown_name_says_which_key_the_choices_and_the_closest():
    with pytest.raises(ConfigError) as err:
        NORMALIZATIONS.get("scracth")
    message = str(err.value)
    assert message.startswith("bn=scracth: unknown normalization; choose one of ")
    assert all(name in message for name in NORMALIZATIONS.names())
    assert message.endswith("Did you mean bn=scratch?")


def test_a_new_module_registers_itself(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    package = "plugins_under_test"
    (tmp_path / package).mkdir()
    for name, body in {
        "__init__": "",
        "a": "from bnexp.registry import Registry\n"
             "REG = Registry('thing', 'plugins_under_test', 'REG', 'thing')\n",
        "b": "from plugins_under_test.a import REG\n"
             "@REG.register('bee', summary='the second', order=2)\nclass Bee: pass\n",
        "c": "from plugins_under_test.a import REG\n"
             "@REG.register('sea', 'the first', 1)\ndef sea(): return 'c'\n",
    }.items():
        (tmp_path / package / f"{name}.py").write_text(body)
    from importlib import import_module
    registry: Registry = import_module(f"{package}.a").REG
    assert registry.names() == ["sea", "bee"]  # by order, then name
    assert [e.summary for e in registry.entries()] == ["the first", "the second"]
    assert registry.get("sea")() == "c" and registry.get("bee").__name__ == "Bee"
    for name in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[name]


def test_a_name_registered_twice_is_an_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "twice_under_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module in ("x", "y"):
        (package / f"{module}.py").write_text("@REG.register('same')\nclass Same: pass\n")
    with pytest.raises(ValueError, match="'same' is registered in both twice_under_test.x and "
                                         "twice_under_test.y"):
        Registry("thing", "twice_under_test", "REG", "thing").names()
