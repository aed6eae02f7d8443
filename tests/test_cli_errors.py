"""Bad configuration on the real command line: one clear message, no traceback,
non-zero exit, before any training."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from bnexp.runtime import context
from bnexp.errors import ConfigError
from conftest import run_cli

# override -> words the message must contain (the key, the value, what is allowed)
BAD = {
    "bn=foo": ["bn", "foo", "scratch"],
    "lr=0": ["lr=0", "> 0"],
    "lr=-1": ["lr=-1", "> 0"],
    "lr=abc": ["lr", "abc"],
    "momentum=1": ["momentum=1", "[0, 1)"],
    "eps=0": ["eps=0", "> 0"],
    "trainer.batch_size=0": ["trainer.batch_size=0", "between 1 and 60000"],
    "trainer.batch_size=70000": ["trainer.batch_size=70000", "between 1 and 60000"],
    "trainer.epochs=0": ["trainer.epochs=0", "at least 1"],
    "ctx=tpu": ["ctx", "tpu", "allowed"],
    "ctx=gpu:x": ["ctx", "gpu:x", "allowed"],
    "ctx=gpu": ["ctx=gpu", "ctx=cpu", "ctx=auto"],
    "foo=1": ["foo"],
    "bn.variant=scracth": ["bn=scracth", "choose one of", "Did you mean bn=scratch?"],
    "report.targets=[0.8,0.7]": ["report.targets", "increasing"],
    "perf.probe_seconds=0": ["perf.probe_seconds=0", "between 0.05 and 60"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")

    def run(item):
        index, override = item
        run_dir = base / str(index)
        return override, (run_cli(override, f"hydra.run.dir={run_dir}", timeout=120), run_dir)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, enumerate(BAD)))


@pytest.mark.slow
@pytest.mark.parametrize("override", BAD)
def test_bad_override_fails_clearly(results, override):
    proc, run_dir = results[override]
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output  # 2 from bnexp's checks, 1 from Hydra's
    assert "Traceback" not in output, output
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
