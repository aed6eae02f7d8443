"""Bad configuration on the real command line: one line naming the override and what is
allowed, exit status 2, no traceback, before any training and without leaving a folder --
whether bnexp's value checks or Hydra's composition find the mistake (bnexp/preflight.py)."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from bnexp.runtime import context
from bnexp.errors import ConfigError
from conftest import run_cli

# override -> words the message must contain (the key, the value, what is allowed)
BAD = {
    "bn=foo": ["bn", "foo", "scratch"],
    # found by Hydra while composing, told in bnexp's words: the allowed options, a close match
    "bn=bogus": ["bn=bogus", "choose from", "gluon", "none", "scratch"],
    "trainer.batch_sze=64": ["trainer.batch_sze=64", "no such key", "Did you mean trainer.batch_size?"],
    "monitor=[bogus]": ["monitor=[bogus]", "activations", "ics", "landscape"],
    "monitor.ics.every=5": ["monitor.ics.every=5", "not selected", "monitor=[ics] monitor.ics.every=5"],
    "monitor=[ics] monitor.ics.evry=5": ["monitor.ics.evry=5", "Did you mean monitor.ics.every?"],
    "trainer.max_steps=abc": ["trainer.max_steps=abc", "whole number"],
    "hydra/launcher=bogus": ["hydra/launcher=bogus", "basic", "joblib"],
    "lr=[1": ["cannot parse", "[1"],
    "+trainer.batch_sze=64": ["+trainer.batch_sze=64", "would ignore it", "trainer.batch_size"],
    "seed=0,1": ["seed=0,1", "--multirun"],
    "lr=0": ["lr=0", "> 0"],
    "lr=-1": ["lr=-1", "> 0"],
    "lr=abc": ["lr=abc", "takes a number"],
    "momentum=1": ["momentum=1", "[0, 1)"],
    "eps=0": ["eps=0", "> 0"],
    "trainer.batch_size=0": ["trainer.batch_size=0", "between 1 and 60000"],
    "trainer.batch_size=70000": ["trainer.batch_size=70000", "between 1 and 60000"],
    "trainer.epochs=0": ["trainer.epochs=0", "at least 1"],
    "ctx=tpu": ["ctx", "tpu", "allowed"],
    "ctx=gpu:x": ["ctx", "gpu:x", "allowed"],
    "ctx=gpu": ["ctx=gpu", "ctx=cpu", "ctx=auto"],
    "foo=1": ["foo"],
    "bn=scracth": ["bn=scracth", "choose from", "Did you mean scratch?"],
    "bn=group momentum=0.99": ["momentum=0.99", "bn=group has none", "groups, eps, init"],
    "bn=scratch bn.groups=5": ["bn.groups=5", "bn=scratch has no setting 'groups'", "momentum, eps, init"],
    "bn=none eps=1e-3": ["eps=1e-3", "bn=none has none"],
    "bn=group bn.groups=7": ["bn.groups=7", "must divide", "choose one of 1, 2, 5, 10"],
    "optimizer=adam optimizer.beta1=1.5": ["optimizer.beta1=1.5", "[0, 1)"],
    "optimizer=sgd optimizer.beta1=0.5": ["optimizer=sgd has no setting 'beta1'", "momentum, weight_decay"],
    "report.targets=[0.8,0.7]": ["report.targets", "increasing"],
    "perf.probe_seconds=0": ["perf.probe_seconds=0", "between 0.05 and 60"],
    "perf.bn_impl=compiled ctx=gpu": ["perf.bn_impl=compiled", "CPU only", "centered"],
    "--multirun --cfg job bn=none,gluon": ["--multirun and --cfg cannot be combined"],
}

# Found only once MXNet is imported (it knows the GPUs), after the run's first log lines.
FOUND_AT_RUN_TIME = ("ctx=gpu",)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")

    def run(item):
        index, override = item
        run_dir = base / str(index)
        return override, (run_cli(*override.split(" "), f"hydra.run.dir={run_dir}", timeout=120),
                          run_dir)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, enumerate(BAD)))


@pytest.mark.slow
@pytest.mark.parametrize("override", BAD)
def test_bad_override_fails_clearly(results, override):
    proc, run_dir = results[override]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    if override in FOUND_AT_RUN_TIME:  # after MXNet's import: progress lines, then the error
        lines = [line for line in lines if "ERROR" in line]
    assert len(lines) == 1, output  # one line, whoever found the mistake
    for words in BAD[override]:
        assert words in output, f"{words!r} missing from: {output}"
    assert " BN (lenet) on " not in output  # stopped before training started
    assert not run_dir.exists(), list(run_dir.rglob("*"))  # a run that never started leaves nothing


@pytest.mark.slow
def test_rejected_runs_leave_no_folder_in_outputs(tmp_path):
    """Ten typos must not leave ten junk folders beside the real runs in outputs/runs/."""
    for override in ("lr=-1", "momentum=1.5"):
        proc = run_cli(override, cwd=tmp_path)
        assert proc.returncode == 2 and override in proc.stdout + proc.stderr
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not list(runs.iterdir()), list(runs.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("swept", ["seed=0,1", "bn=none,bogus"])
def test_sweep_rejected_before_any_job(tmp_path, swept):
    """A bad fixed override (or a swept option Hydra cannot compose) fails the whole sweep
    at once, exit 2, one line -- not every job into the same error and exit 0."""
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("--multirun", "trainer.progress=fancy" if swept == "seed=0,1" else "lr=0.1",
                   swept, f"hydra.sweep.dir={sweep_dir}", timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert len(output.strip().splitlines()) == 1, output
    assert ("trainer.progress=fancy" if swept == "seed=0,1" else "bn=bogus") in output
    assert not sweep_dir.exists()  # no job started, no report of failures


@pytest.mark.slow
def test_failed_resume_leaves_nothing(tmp_path):
    """Hydra would create the missing run folder and its parents before bnexp noticed."""
    missing = tmp_path / "outputs" / "runs" / "no-such-run"
    proc = run_cli(f"resume={missing}", timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert f"resume={missing}: no such run folder" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_unwritable_output_folder(mode):
    # a folder below a regular file can never be created, not even by root
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    args = ["--multirun"] if mode == "multirun" else []
    proc = run_cli(*args, f"{key}={__file__}/out")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "cannot write the output folder" in output and key in output
    assert "Traceback" not in output


@pytest.mark.parametrize("spec,expected", [
    ("cpu", [("cpu", 0)]), ("gpu:1", [("gpu", 1)]), ("gpu:0,1", [("gpu", 0), ("gpu", 1)]),
    ("cpu:0,cpu:1", [("cpu", 0), ("cpu", 1)]), ("auto", []), (" GPU ", [("gpu", 0)]),
])
def test_context_parse(spec, expected):
    assert context.parse(spec) == expected


@pytest.mark.parametrize("spec", ["tpu", "gpu:x", "gpu:-1", "", "cpu,cpu", "0"])
def test_context_parse_rejects(spec):
    with pytest.raises(ConfigError, match="ctx="):
        context.parse(spec)


def test_auto_is_cpu_without_gpu():
    import mxnet as mx
    if mx.context.num_gpus() == 0:
        assert context.resolve("auto") == [mx.cpu()]
