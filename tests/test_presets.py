"""Every preset in conf/experiment/ composes with the real config and passes the checks;
the sizes the README promises (jobs, steps) are the ones the presets ask for."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import bnexp.run  # noqa: F401  (registers the resolvers the configs use)
from bnexp import config, options, validate
from bnexp.config import CONF_DIR
from conftest import REPO

PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.fixture
def composer():
    config.register()
    options.register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda *overrides, hydra=True: compose("config", overrides=list(overrides),
                                                     return_hydra_config=hydra)
    GlobalHydra.instance().clear()


def sweep_values(key: str, value) -> list[str]:
    """The values a sweep of `key` tries, read the way Hydra reads them: a list, range(...), or
    glob(...) over the config group's files (conf/<group>/*.yaml); an Optuna search space
    (`tag(log, interval(0.01, 4.0))`) gives its lower end."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob, IntervalSweep

    override = OverridesParser.create().parse_override(f"{key}={value}")
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        return [str(sweep.start)]
    if isinstance(sweep, Glob):
        return sweep.filter(sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml")))
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(value)]


def jobs_of(cfg) -> int:
    count = 1
    for key, value in (cfg.hydra.sweeper.params or {}).items():
        count *= len(sweep_values(key, value))
    return count


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_is_valid(composer, name):
    cfg = composer(f"experiment={name}")
    params = cfg.hydra.sweeper.params
    assert params, f"{name} sweeps nothing"
    first = {key: sweep_values(key, value)[0] for key, value in params.items()}
    job = composer(f"experiment={name}", *(f"{k}={v}" for k, v in first.items()), hydra=False)
    validate.load(job)  # the schema and the range checks


def test_preset_sizes(composer):
    # 8 arms (none/BN x N(0, 0.01)/Xavier x SGD/momentum) x 10 paired seeds
    assert jobs_of(composer("experiment=convergence")) == 80
    assert len(list((CONF_DIR / "arm").glob("*.yaml"))) == 8
    assert jobs_of(composer("experiment=mechanism")) == 15
    assert jobs_of(composer("experiment=lr_grid")) == 32 and jobs_of(composer("experiment=lr_grid_momentum")) == 48
    assert jobs_of(composer("experiment=momentum_eps")) == 12
    assert jobs_of(composer("experiment=batch_size")) == 10
    assert jobs_of(composer("experiment=source_defects")) == 6
    small_batch = composer("experiment=small_batch")
    assert jobs_of(small_batch) == 160   # 2 models x 4 normalizations x 4 batch sizes x 5 seeds
    assert small_batch.hydra.launcher._target_.endswith("JoblibLauncher")   # two jobs at a time
    assert small_batch.hydra.launcher.n_jobs == 2 and small_batch.perf.threads == "1"
    # another launcher replaces it whole (no joblib key is left behind to fail the composition)
    assert composer("experiment=small_batch", "hydra/launcher=basic").hydra.launcher.get("n_jobs") is None
    mechanism = composer("experiment=mechanism")
    assert set(mechanism.monitor) == {"ics", "landscape"}
    ioffe = composer("experiment=ioffe_fig1")
    assert ioffe.hydra.runtime.choices.model == "mlp" and set(ioffe.monitor) == {"activations"}
    assert composer("experiment=momentum_eps").hydra.runtime.choices.bn == "gluon"
    assert composer("experiment=source_defects").hydra.runtime.choices.bn == "scratch"
    search = composer("experiment=lr_search")
    assert search.hydra.sweeper.n_trials == 12 and search.hydra.sweeper.direction == "maximize"
    assert search.data.val_size > 0  # it optimises the validation accuracy, not the test's


def test_every_figure_in_docs_is_made_by_make_figures():
    """docs/*.png are copies that scripts/figures.py writes from its presets' sweeps: each
    names a real preset and a figure a report study draws, and no figure in docs/ is
    left to be copied by hand."""
    import importlib
    import importlib.util

    from bnexp.report.studies import sections

    spec = importlib.util.spec_from_file_location("figures", REPO / "scripts" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    assert set(figures.PRESETS) <= set(PRESETS)
    drawn = {getattr(importlib.import_module(section.__module__), "PNG", None) for _, _, section in sections()}
    copies = [pair for pairs in figures.PRESETS.values() for pair in pairs]
    assert {source for source, _ in copies} <= drawn
    assert {p.name for p in (REPO / "docs").glob("*.png")} == {name for _, name in copies}


@pytest.mark.parametrize("optimizer, grid", [("sgd", "lr_grid"), ("momentum", "lr_grid_momentum")])
def test_each_arm_trains_at_the_lr_its_grid_chose(optimizer, grid):
    """conf/arm/<bn>_<init>_<optimizer>.yaml carries the lr that experiment=<grid> chose for
    that bn and init (the table's "chosen" column in docs/results/<grid>.md, which
    scripts/figures.py writes from the sweep)."""
    import re

    import yaml

    table = (REPO / "docs" / "results" / f"{grid}.md").read_text()
    chosen = {(bn, init): float(lr) for bn, init, lr in re.findall(
        r"^\| bn=(\w+),model\.init=(\w+) \|.*\| lr ([\d.]+) \(by [\d.]+\) \|$", table, re.M)}
    assert len(chosen) == 4, f"docs/results/{grid}.md: expected a choice for each of 4 arms, found {chosen}"
    for (bn, init), lr in chosen.items():
        arm = yaml.safe_load((CONF_DIR / "arm" / f"{bn}_{init}_{optimizer}.yaml").read_text())
        assert arm["lr"] == lr, f"conf/arm/{bn}_{init}_{optimizer}.yaml: lr {arm['lr']}, the grid chose {lr}"
