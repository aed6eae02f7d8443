"""The config groups are the registry (bnexp/options.py): every option names its code and
holds that code's settings, nothing else lists them, and a user's own layer, model and
monitor work from their own folder, one Python file and one YAML each."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bnexp import options
from bnexp.config import CONF_DIR
from bnexp.errors import ConfigError
from conftest import QUICK, REPO, config, run_cli


def own_options(group: str) -> dict[str, dict]:
    """bnexp's options of `group` that name a target (not those extending another)."""
    loaded = {name: yaml.safe_load(path.read_text()) for name, path in options.option_files(group).items()}
    return {name: data for name, data in loaded.items() if "_target_" in data}


@pytest.mark.parametrize("group", options.GROUPS)
def test_every_option_names_a_target_whose_settings_it_holds(group):
    """The YAML keys are the target's settings (its signature, minus what bnexp supplies and
    the group's common settings), and the YAML is typed by the schema derived from it."""
    found = own_options(group)
    assert found, f"conf/{group}/ has no option"
    common = set(options.COMMON[group].__dataclass_fields__) if group in options.COMMON else set()
    for name, data in found.items():
        fn = options.target(data["_target_"])
        keys = set(data) - {"_target_", "defaults"} - common
        assert keys == set(options.settings_of(fn, group)), (group, name)
        assert f"/schema/{group}/{name}@_here_" in data["defaults"], (group, name)


def test_option_modules_import_no_mxnet():
    """Their settings are checked before MXNet is imported (its thread count is fixed then)."""
    modules = sorted({options.yaml_target(p).rpartition(".")[0] for g in options.GROUPS
                      for p in options.option_files(g).values() if options.yaml_target(p)})
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
            "from bnexp import options, config; config.register(); options.register_schemas(); "
            "print('mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_every_option_builds():
    """A normalization: a Gluon block (none: None); a model: a network; an optimizer: MXNet's;
    a monitor: a Trainer callback."""
    import mxnet as mx
    from mxnet import gluon

    from bnexp.monitors.base import Monitor
    from bnexp.nn.build import build_net
    for name in options.option_files("bn"):
        layer = options.build("bn", config(f"bn={name}").bn, channels=20, layer=0, seed=0,
                              devices=1, formulation="reference")
        assert layer is None if name == "none" else isinstance(layer, gluon.HybridBlock), name
    for name in options.option_files("model"):
        net = build_net(config(f"model={name}", "bn=gluon", "trainer.batch_size=4"), [mx.cpu()])
        assert net(mx.nd.zeros((4, 1, 28, 28))).shape == (4, 10), name
    for name in options.option_files("optimizer"):
        built = options.build("optimizer", config(f"optimizer={name}").optimizer, learning_rate=0.1)
        assert isinstance(built, mx.optimizer.Optimizer), name
    for name in options.option_files("monitor"):
        node = config(f"monitor=[{name}]").monitor[name]
        assert isinstance(options.build("monitor", node, seed=0), Monitor), name


def test_schema_types_come_from_the_signature():
    with pytest.raises(Exception, match="groups"):
        config("bn=group", "bn.groups=abc")
    assert config("bn=group", "bn.groups=5").bn["groups"] == 5
    assert config("model=mlp", "model.hidden=[64,32]").model["hidden"] == [64, 32]


def test_a_setting_the_option_does_not_have_is_an_error():
    with pytest.raises(Exception, match="groups"):
        config("bn=scratch", "bn.groups=5")
    with pytest.raises(ConfigError, match="bn=group has none"):
        config("bn=group", "momentum=0.99")


@pytest.mark.slow
def test_cfg_job_shows_only_the_options_own_settings():
    out = run_cli("bn=scratch", "--cfg", "job").stdout
    bn = yaml.safe_load(out)["bn"]
    assert set(bn) == {"_target_", "momentum", "eps", "init"}


# ------------------------------------------------------------------ bring your own

MY_LAYER = '''
"""A normalization of my own: per-channel RMS scaling, y = gamma * x / sqrt(mean(x^2) + eps)."""
from mxnet import gluon

from bnexp.errors import ConfigError


class ChannelRMS(gluon.HybridBlock):
    def __init__(self, channels, eps):
        super().__init__()
        self.eps = eps
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=(channels,), init="ones")

    def hybrid_forward(self, F, x, gamma):
        ms = F.mean(F.square(x), axis=1, exclude=True, keepdims=True)
        return F.broadcast_mul(F.broadcast_div(x, F.sqrt(ms + self.eps)), F.reshape_like(gamma, ms))


def build(channels: int, eps: float = 1e-5):
    return ChannelRMS(channels, eps)


def check(network, eps):
    if eps <= 0:
        raise ConfigError(f"bn.eps={eps}: must be > 0")
'''
MY_MODEL = '''
"""A model of my own: one convolution, the normalization, ReLU, pooling, a dense layer."""
from mxnet.gluon import nn


def tiny(norm, pool="native", bias_initializer="zeros", channels: int = 8):
    net = nn.HybridSequential(prefix="tiny_")
    with net.name_scope():
        net.add(nn.Conv2D(channels, 5, bias_initializer=bias_initializer))
        layer = norm(channels, 0)
        if layer is not None:
            net.add(layer)
        net.add(nn.Activation("relu"), nn.MaxPool2D(2, 2), nn.Dense(10))
    return net
'''
MY_MONITOR = '''
"""A monitor of my own: the norm of every weight, every few steps."""
from bnexp.monitors.base import Monitor


class WeightNorm(Monitor):
    name = "weightnorm"

    def on_step_end(self, state):
        if self.due(state.step):
            norms = {k: float((p.data() ** 2).sum().asscalar()) ** 0.5
                     for k, p in state.net.collect_params().items() if k.endswith("weight")}
            self.keep(state, {"step": state.step, "norms": norms})
'''
MY_YAMLS = {
    "bn/rms.yaml": "_target_: mynorm.build\neps: 1.0e-5\n",
    "model/tiny.yaml": "_target_: mymodel.tiny\nchannels: 8\n",
    "monitor/weightnorm.yaml": "# @package monitor.weightnorm\n_target_: mymonitor.WeightNorm\nevery: 2\n",
}


@pytest.fixture(scope="module")
def own_folder(tmp_path_factory) -> Path:
    """A folder outside the clone: one Python file and one YAML per addition."""
    folder = tmp_path_factory.mktemp("mine")
    for name, text in (("mynorm", MY_LAYER), ("mymodel", MY_MODEL), ("mymonitor", MY_MONITOR)):
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    for relative, text in MY_YAMLS.items():
        (folder / "conf" / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / "conf" / relative).write_text(text)
    return folder


def run_mine(folder: Path, *args: str):
    flags = [a for a in args if a.startswith("--")]
    return run_cli(*flags, f"hydra.searchpath=[file://{folder / 'conf'}]",
                   *(a for a in args if a not in flags), cwd=folder, env={"PYTHONPATH": str(folder)})


@pytest.mark.slow
def test_own_layer_model_and_monitor_train_and_are_reported(own_folder):
    files = sorted(p.relative_to(own_folder).as_posix() for p in own_folder.rglob("*.*"))
    assert len(files) == 6  # three additions, one module and one YAML each
    sweep = own_folder / "sweep"
    proc = run_mine(own_folder, "--multirun", "bn=rms,none", "model=tiny", "monitor=[weightnorm]",
                    "trainer.max_steps=4", "trainer.eval_every_steps=2", "data.test_subset=256",
                    "trainer.progress=log", "perf.threads=1", "perf.pool=native",
                    f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((sweep / "bn=rms" / "metrics.json").read_text())
    assert record["status"] == "completed" and record["choices"]["bn"] == "rms"
    assert record["config"]["bn._target_"] == "mynorm.build"
    assert [m["step"] for m in record["monitors"]["weightnorm"]] == [2, 4]
    assert "bn=rms" in (sweep / "summary.md").read_text()
    events = b"".join(p.read_bytes() for p in (sweep / "bn=rms").glob("events.out.tfevents.*"))
    assert b"bn.eps" in events and b"rms" in events   # TensorBoard's HParams name it


@pytest.mark.slow
def test_own_layers_mistakes_are_one_line(own_folder):
    typo = run_mine(own_folder, "bn=rms", "bn.esp=1", "trainer.max_steps=1")
    assert typo.returncode == 2 and "bn=rms has no setting 'esp'" in typo.stderr, typo.stderr
    assert "Did you mean bn.eps?" in typo.stderr
    bad = run_mine(own_folder, "bn=rms", "bn.eps=-1", "model=tiny", *QUICK, "perf.threads=1",
                   "perf.pool=native", f"hydra.run.dir={own_folder / 'bad'}")
    output = bad.stdout + bad.stderr
    assert bad.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "bn.eps=-1: must be > 0" in errors[0], output[-2000:]
    assert "Traceback" not in output
