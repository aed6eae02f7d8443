"""The real CLI end to end: a short training run, its metrics.json and its
TensorBoard events read back; same seed, same numbers; outputs readable by the team."""
import json
import math
import re
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import QUICK, REPO, run_cli

TAGS = {"train/loss", "train/acc", "test/loss", "test/acc", "lr", "perf/images_per_sec"}


UMASK = 0o002  # run "b" writes under this umask: group-writable files, not the default 022


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two identical gluon-BN runs (the second under UMASK) and one scratch-BN run (with its
    own report targets), 20 steps each."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, variant in (("a", "gluon"), ("b", "gluon"), ("scratch", "scratch")):
        run_dir = base / name
        umask = UMASK if name == "b" else 0o022
        extra = ["report.targets=[0.3,0.5]"] if name == "scratch" else []
        proc = run_cli(f"bn={variant}", "lr=0.2", "seed=7", *QUICK, *extra, f"hydra.run.dir={run_dir}",
                       umask=umask)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[name] = (run_dir, proc)
    return out


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_metrics_json(runs):
    run_dir, proc = runs["a"]
    m = metrics(run_dir)
    assert m["status"] == "completed"
    assert m["steps"] == 20 and m["images_seen"] == 20 * 128
    assert m["choices"]["bn"] == "gluon" and m["config"]["seed"] == 7
    assert m["config"]["bn._target_"] == "bnexp.nn.norm.gluon_bn.gluon_bn"
    assert "bn=gluon" in m["overrides"]
    assert [p["step"] for p in m["eval_curve"]] == [10, 20]
    assert all(p["images"] == p["step"] * 128 for p in m["eval_curve"])
    assert m["final"]["test_acc"] == m["eval_curve"][-1]["acc"]
    assert {p["split"] for p in m["eval_curve"]} == {"test"}  # no validation split asked for
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert math.isfinite(m["final"][key])
    assert set(m["to_accuracy"]) == {"0.70", "0.80", "0.85"}
    assert m["wall_seconds"] > m["train_seconds"] > 0
    walls = [p["wall_seconds"] for p in m["eval_curve"]]
    assert 0 < walls[0] < walls[1] <= m["wall_seconds"]
    # BN trains: after 20 steps at lr 0.2 it is well above chance (0.10)
    assert m["final"]["test_acc"] > 0.4
    # the speed settings it ran with, and where each came from (bnexp/tuning/)
    perf = m["perf"]
    assert perf["pool"] in ("native", "folded") and perf["threads"] >= 1
    assert perf["source"]["bn_impl"] == "unused" and perf["engine"] in ("naive", "threaded")
    # 20 steps cannot earn a speed probe: the defaults, said in one line
    assert perf["source"]["pool"] == "default" and perf["source"]["engine"] == "default"
    assert re.search(r"a run of 20 steps \((about|at least) \d+ s[^)]*\) cannot earn a speed probe",
                     proc.stdout)
    assert "MXNet start using engine" not in proc.stderr   # recorded in metrics.json instead
    assert "speed settings: threads=" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_tensorboard_events(runs):
    run_dir, _ = runs["a"]
    events = list(run_dir.glob("events.out.tfevents.*"))
    assert len(events) == 1, "one writer, one event file per run"
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert TAGS <= tags
    assert [e.step for e in acc.Scalars("test/acc")] == [10, 20]
    assert [e.step for e in acc.Scalars("train/loss")] == [10, 20]
    logged = acc.Scalars("test/acc")[-1].value
    assert logged == pytest.approx(metrics(run_dir)["final"]["test_acc"], abs=1e-6)
    # hyperparameters are in the same run (no extra sub-run directory)
    assert not [p for p in run_dir.iterdir() if p.is_dir() and p.name != ".hydra"]
    plugins = acc.PluginTagToContent("hparams")
    # no experiment summary: TensorBoard builds the table's columns from every run's settings
    assert set(plugins) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}


@pytest.mark.slow
def test_same_seed_same_metrics(runs):
    a, b = metrics(runs["a"][0]), metrics(runs["b"][0])
    timeless = lambda curve: [{k: v for k, v in p.items() if "seconds" not in k} for p in curve]
    assert timeless(a["eval_curve"]) == timeless(b["eval_curve"])
    assert a["train_curve"] == b["train_curve"]
    assert a["final"] == b["final"]


@pytest.mark.slow
def test_scratch_bn_trains_like_gluon(runs):
    """Step for step the layers agree to float32 rounding (test_bn.py); over many
    steps at lr 0.2 the rounding differences grow chaotically, and after 20 steps
    the moving statistics used for testing still lag, so whole runs are compared
    by outcome: both well above chance (0.10), with falling training loss."""
    for name in ("a", "scratch"):
        m = metrics(runs[name][0])
        assert m["final"]["test_acc"] > 0.2, name
        assert m["train_curve"][-1]["loss"] < m["train_curve"][0]["loss"], name


@pytest.mark.slow
def test_report_targets_set_the_recorded_milestones(runs):
    m = metrics(runs["scratch"][0])
    assert m["targets"] == [0.3, 0.5] and set(m["to_accuracy"]) == {"0.30", "0.50"}
    reached = m["to_accuracy"]["0.30"]
    first = next(p for p in m["eval_curve"] if p["acc"] >= 0.3)
    assert (reached["step"], reached["after_step"]) == (first["step"], 0 if first is m["eval_curve"][0]
                                                         else m["eval_curve"][0]["step"])


@pytest.mark.slow
def test_log_lines_without_terminal(runs):
    _, proc = runs["a"]
    assert "step 20/20" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_output_honors_the_umask(runs):
    run_dir, _ = runs["b"]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"metrics.json", "checkpoint.params", "run.log", "config.yaml"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    for path in [run_dir, *run_dir.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~UMASK
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))
    assert not [p for p in files if p.name.endswith(".tmp")]  # no temporary file left over


@pytest.mark.slow
def test_a_finished_run_keeps_its_weights(runs):
    from bnexp.training import checkpoint
    state = checkpoint.read_state(runs["a"][0])
    assert state["step"] == 20


def pieces(text: str) -> list[str]:
    """What a terminal shows as separate line starts: split at newlines and carriage returns."""
    return [p for line in text.split("\n") for p in line.split("\r")]


def test_log_lines_during_the_bar_start_on_their_own_line(capsys):
    """A log line written while the bar is shown (e.g. "SIGINT received") is written above
    the bar, not appended to it."""
    import logging
    from types import SimpleNamespace

    from bnexp.training.progress import Progress

    handler = logging.StreamHandler(sys.stderr)  # the console handler Hydra installs
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress, state = Progress("bar"), SimpleNamespace(total_steps=4, step=0)
        progress.on_fit_start(state)
        progress.on_step_end(state)
        logging.getLogger("bnexp.training.trainer").warning("SIGINT received: stopped after step 1")
        progress.on_step_end(state)
        progress.on_teardown(state)
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "%|" in err
    logged = [p for p in pieces(err) if "SIGINT received" in p]
    assert logged == ["[bnexp.training.trainer] SIGINT received: stopped after step 1"], pieces(err)


@pytest.mark.slow
def test_first_log_line_comes_before_the_bar(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bnexp.run", *QUICK, "trainer.progress=bar",
                           f"hydra.run.dir={tmp_path}"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "%|" in out  # the bar was drawn
    assert out.index(") on cpu") < out.index("%|")  # "training gluon BN (lenet) on cpu(0)..."
    logged = [p for p in pieces(out) if "][bnexp" in p]
    assert logged and all(p.startswith("[") for p in logged), [p for p in logged if p[:1] != "["]


@pytest.mark.slow
def test_the_engine_and_the_wait_policy_change_no_number(tmp_path):
    """MXNet's naive and threaded engines on one device, and OpenMP threads that sleep
    while they wait (bnexp's OMP_WAIT_POLICY=PASSIVE) or spin (the user's ACTIVE): the same
    curves and final numbers, bit for bit (speed settings only; on several devices see
    tests/test_multidevice.py)."""
    runs = {}
    for engine, env, wait in (("naive", {}, "OMP_WAIT_POLICY=PASSIVE"),
                              ("threaded", {"OMP_WAIT_POLICY": "ACTIVE"}, "OMP_WAIT_POLICY=ACTIVE")):
        proc = run_cli("bn=scratch", *QUICK, "perf.threads=2", "perf.pool=native",
                       "perf.bn_impl=compiled", f"perf.engine={engine}",
                       f"hydra.run.dir={tmp_path / engine}", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        m = metrics(tmp_path / engine)
        assert m["perf"]["engine"] == engine and m["perf"]["omp_wait"] == wait
        runs[engine] = ([(p["step"], p["acc"], p["loss"]) for p in m["eval_curve"]],
                        m["train_curve"], m["final"])
    assert runs["naive"] == runs["threaded"]


@pytest.mark.slow
def test_mxnet_is_imported_with_sleeping_openmp_threads_unless_the_user_says_otherwise():
    """OMP_WAIT_POLICY holds PASSIVE at the moment MXNet (and with it libgomp, which reads it
    once) is loaded, and is put back as the user had it afterwards; a user's own
    OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone."""
    probe = textwrap.dedent("""
        import importlib.abc, os, sys
        seen = {}
        class Watch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "mxnet":
                    seen["at_import"] = os.environ.get("OMP_WAIT_POLICY")
        sys.meta_path.insert(0, Watch())
        from bnexp.runtime import mxnet_import
        assert mxnet_import.import_mxnet(1) is None
        print(seen["at_import"], os.environ.get("OMP_WAIT_POLICY"), mxnet_import.wait_policy_in_effect())
    """)
    for env, expected in (({}, "PASSIVE None OMP_WAIT_POLICY=PASSIVE"),
                          ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE ACTIVE OMP_WAIT_POLICY=ACTIVE"),
                          ({"GOMP_SPINCOUNT": "1000"}, "None None GOMP_SPINCOUNT=1000")):
        full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                              text=True, env={**full, **env}, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split("\n")[-2] == expected, done.stdout
