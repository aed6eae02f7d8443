"""The throughput benchmark `python -m bnexp.bench`: its output, its JSON, its helpers.

No speed number is ever asserted: only that every variant was measured and that the
measurements are positive and finite.
"""
from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, nd

from bnexp import bench
from bnexp.bench import compare, measure, observe, runners
from bnexp.nn.norm import kernels

REPO = Path(__file__).resolve().parents[1]
COMPILED_PROBLEM = kernels.unavailable_reason()  # None where the compiled BN builds (make install)


def positive_finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


LOOPS = ["plain-none", "plain-gluon", "none", "gluon"]  # (source and scratch: slow to probe or step)


@pytest.mark.slow
def test_cli_table_and_json(tmp_path):
    """Every loop in every process setting (threads x engine), each in its own process;
    ratios best against best; the tuner's setting for each bnexp loop, chosen for the run
    --run-override describes: here one too short to earn a probe (the probe itself:
    tests/test_tuning.py), with its pooling layout fixed."""
    out, cache = tmp_path / "bench.json", tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "bnexp.bench", "--steps", "3", "--warmup", "1",
                           "--repeats", "1", "--threads", "1,2", "--engines", "naive,threaded",
                           "--variants", *LOOPS, "--json", str(out),
                           "--run-override", "trainer.max_steps=50", "--run-override", "perf.pool=folded"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "BNEXP_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (cache / "tuning.json").exists()  # the default run's length would have probed
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("img/s at"))
    for setting in ("1 thr naive", "1 thr threaded", "2 thr naive", "2 thr threaded"):
        assert setting in lines[header]
    rows = {line.split()[0]: line for line in lines[header + 2:header + 2 + len(LOOPS)]}
    assert set(rows) == set(LOOPS)
    assert "(plain-none)" in rows["none"] and "(plain-gluon)" in rows["gluon"]
    assert rows["plain-gluon"].rstrip().endswith("-")   # not bnexp's: no tuner
    assert "targets:" in proc.stdout and "gluon >= 0.95 x plain-gluon" in proc.stdout
    assert "tuner's threads x engine for gluon within 5% of the fastest" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report["machine"]) >= {"cpu_model", "cores", "mxnet", "simd"}
    assert report["settings"]["processes"] == [[1, "naive"], [1, "threaded"], [2, "naive"],
                                               [2, "threaded"]]
    assert set(report["variants"]) == set(LOOPS)
    for name, result in report["variants"].items():
        assert set(result["by_process"]) == {"1/naive", "1/threaded", "2/naive", "2/threaded"}
        for figures in result["by_process"].values():
            assert len(figures["images_per_sec"]) == 1
            assert positive_finite(figures["images_per_sec"] + figures["ms_per_step"])
        best = result["by_process"][result["best"]]
        assert result["median_images_per_sec"] == best["median_images_per_sec"] == max(
            f["median_images_per_sec"] for f in result["by_process"].values())
    for variant in ("none", "gluon"):
        tuned = report["variants"][variant]["tuned"]["process"]
        assert tuned in report["variants"][variant]["by_process"]
        settings = report["speed_settings"][variant]
        assert (settings["pool"], settings["source"]["pool"], settings["source"]["threads"]) == \
            ("folded", "config", "default")
    assert report["variants"]["gluon"]["reference"] == "plain-gluon"
    assert {t["variant"] + "/" + t["base"] for t in report["targets"]} == \
        {"none/plain-none", "gluon/plain-gluon", "gluon/none",
         "none/fastest setting", "gluon/fastest setting"}
    for layouts in report["layouts_by_process"].values():
        assert {layout[0] for layout in layouts.values()} == {"folded"}


def test_bn_floor_rows_and_profile():
    rows = measure.bn_floor(steps=2, repeats=1)
    assert {r["shape"] for r in rows} == {"128x20x24x24", "128x50x10x10"}
    assert {r["what"] for r in rows} >= {"gluon BatchNorm", "scratch (reference)", "scratch (centered)",
                                         "scratch (surrogate)", "affine only, depthwise conv"}
    assert ("scratch (compiled)" in {r["what"] for r in rows}) == (COMPILED_PROBLEM is None)
    assert positive_finite([r["ms"] for r in rows])
    profiles = measure.bn_profiles("centered")
    gluon_ops = {op["op"] for op in profiles["gluon BatchNorm"]}
    scratch_ops = {op["op"] for op in profiles["scratch (centered)"]}
    assert {"BatchNorm", "_backward_BatchNorm"} <= gluon_ops   # one fused kernel each way
    assert {"Convolution", "dot", "sgd_mom_update"} <= scratch_ops  # the in-place moving update
    assert "_backward_BatchNorm" not in scratch_ops  # from scratch indeed (BatchNorm only tells the mode)
    assert not any("::" in op for op in scratch_ops)  # no Python custom operator on the step
    assert "profiler" in measure.format_floor(rows, profiles)
    # MXNet's profiler replaces the file it writes: it once turned /dev/null (as root) into a
    # plain file, and SLURM's munged then refused to start
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.skipif(COMPILED_PROBLEM is not None, reason=str(COMPILED_PROBLEM))
def test_the_compiled_formulation_is_one_operator_each_way():
    compiled = {op["op"] for op in measure.bn_profiles("compiled")["scratch (compiled)"]}
    assert {"bnexp_batch_norm", "_backward_bnexp_batch_norm"} <= compiled
    assert "_backward_BatchNorm" not in compiled  # (BatchNorm only tells the mode)


def test_plain_loop_trains(fashion_root):
    """The textbook loop is a real training loop: its loss falls."""
    from bnexp import data
    from bnexp.training.step import DeviceSplit
    dataset = data.load(fashion_root)
    split = DeviceSplit.from_numpy(dataset.train.images[:2560], dataset.train.labels[:2560], mx.cpu())
    runner = runners.PlainRunner("gluon", split, 128, mx.cpu())
    runner.step()
    runner.read_metrics()
    first = runner.last_loss
    for _ in range(20):
        runner.step()
    runner.read_metrics()
    assert runner.last_loss < first - 0.3, (first, runner.last_loss)


@pytest.mark.slow
def test_source_loop_trains(fashion_root):
    """The source tutorial's loop, as the bench times it (its DataLoader, its from-scratch
    BN function, its hand-written SGD): its loss falls too."""
    from bnexp import data
    dataset = data.load(fashion_root)
    runner = runners.SourceRunner(dataset.train.images[:2560], dataset.train.labels[:2560], 128,
                                  mx.cpu())
    assert runner.step() == 128
    runner.read_metrics()
    first = runner.last_loss
    for _ in range(15):
        runner.step()
    runner.read_metrics()
    assert math.isfinite(first) and runner.last_loss < first - 0.3, (first, runner.last_loss)


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", "batchnorm"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--threads", "zero"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--threads", "1,0"])
    for seconds in ("0", "nan", "61"):  # the bounds perf.probe_seconds has (bnexp/validate.py)
        with pytest.raises(SystemExit):
            bench.parse_args(["--probe-seconds", seconds])
    assert bench.parse_args(["--probe-seconds", "60"]).probe_seconds == 60
    assert bench.parse_args(["--threads", "2,1,2"]).threads == [1, 2]
    args = bench.parse_args(["--variants", "gluon", "none", "gluon"])
    assert args.variants == ["gluon", "none"]
    # comma lists, as in a bn=gluon,group sweep, mixed with spaces; a bad name is refused
    args = bench.parse_args(["--variants", "gluon,group,renorm", "ghost", "group"])
    assert args.variants == ["gluon", "group", "renorm", "ghost"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", "gluon,groupnorm"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", ","])


@pytest.mark.parametrize("override,said", [("trainer.max_stpes=3", "Did you mean trainer.max_steps?"),
                                           ("lr=abc", "lr takes a number")])
def test_a_bad_run_override_is_refused_before_anything_is_measured(override, said, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["--run-override", override])
    assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_summary_best_against_best_and_targets():
    Samples = compare.Samples
    samples = {"source": {"1/naive": Samples([100.0, 300.0, 200.0], [3.0, 1.0, 2.0]), "2/naive": Samples([150.0], [2.0])},
               "plain-gluon": {"1/naive": Samples([1000.0], [0.4]), "2/naive": Samples([800.0], [0.5])},
               "none": {"1/naive": Samples([400.0, 400.0, 800.0], [1.0, 1.0, 0.5]), "2/naive": Samples([600.0], [0.6])},
               "gluon": {"1/naive": Samples([700.0], [0.6]), "2/naive": Samples([900.0], [0.45])}}
    result = compare.summarize(samples, tuned={"none": "2/naive", "gluon": "2/naive"})
    source = result["source"]
    assert source["best"] == "1/naive" and source["median_images_per_sec"] == 200.0
    assert source["by_process"]["1/naive"]["min_images_per_sec"] == 100.0
    assert source["by_process"]["1/naive"]["max_images_per_sec"] == 300.0
    assert result["none"]["ratio_vs_source"] == pytest.approx(600 / 200)
    # gluon's best (900, 2 threads) against the textbook loop's best (1000, 1 thread)
    assert result["gluon"]["ratio_vs_reference"] == pytest.approx(0.9)
    assert result["none"]["reference"] is None  # plain-none was not measured
    assert result["none"]["tuned"] == {"process": "2/naive", "ratio_to_best": 1.0, "within_margin": True}
    assert "tuned" not in result["plain-gluon"]
    table = compare.format_table(result)
    assert table.splitlines()[0].split()[:5] == ["img/s", "at", "1", "thr", "naive"]
    assert len(table.splitlines()) == 6
    rows = {(t["variant"], t["base"]): t for t in compare.targets(result)}
    assert rows[("gluon", "plain-gluon")]["ratio"] == pytest.approx(0.9)
    assert not rows[("gluon", "plain-gluon")]["met"]            # 0.9 < 0.95
    assert rows[("gluon", "none")]["met"]                       # step time 600/900 <= 1.3
    assert rows[("none", "fastest setting")]["met"]
    assert "NOT met" in compare.format_targets(list(rows.values()))
    # the tuner's setting 5% or more slower than the best: not met
    slow = compare.summarize({"gluon": {"1/naive": Samples([100.0], [1.0]), "2/naive": Samples([94.0], [1.1])}},
                             tuned={"gluon": "2/naive"})
    assert slow["gluon"]["tuned"]["within_margin"] is False
    assert not compare.targets(slow)[0]["met"]
    # without a baseline the ratio is absent, not a crash; a setting not measured is "-"
    alone = compare.summarize({"gluon": {"1/naive": Samples([5.0], [1.0])}}, tuned={"gluon": "2/naive"})
    assert alone["gluon"]["ratio_vs_source"] is None
    assert alone["gluon"]["tuned"]["ratio_to_best"] is None
    assert "-" in compare.format_table(alone).splitlines()[-1]


def test_every_normalization_is_compared_with_gluon():
    """The family's whole training steps as ratios to gluon BN's best, from one run's samples;
    none keeps its textbook loop, and without gluon there is no ratio."""
    Samples = compare.Samples
    samples = {"gluon": {"1/naive": Samples([1000.0, 800.0, 900.0], [0.1, 0.1, 0.1]), "2/naive": Samples([700.0], [0.2])},
               "group": {"1/naive": Samples([450.0], [0.2])}, "renorm": {"1/naive": Samples([200.0], [0.5]), "2/naive": Samples([300.0], [0.3])},
               "scratch": {"1/naive": Samples([720.0], [0.1])}, "none": {"1/naive": Samples([2000.0], [0.05])}}
    result = compare.summarize(samples)
    for name, ratio in (("group", 0.5), ("renorm", 1 / 3), ("scratch", 0.8)):   # best against best
        assert result[name]["reference"] == "gluon"
        assert result[name]["ratio_vs_reference"] == pytest.approx(ratio)
    assert result["none"]["reference"] is None and result["gluon"]["reference"] is None
    rows = {line.split()[0]: line for line in compare.format_table(result).splitlines()[2:]}
    assert "0.50 (gluon)" in rows["group"] and "0.33 (gluon)" in rows["renorm"]
    assert compare.summarize({"group": {"1/naive": Samples([1.0], [1.0])}})["group"]["reference"] is None


def test_family_runners_train_their_own_layer(fashion_root):
    """`--variants group renorm ghost` time bnexp's step on a network built with that layer
    (not gluon's BN), and each takes real SGD steps: its parameters move."""
    from bnexp import data
    from bnexp.nn.norm.ghost import GhostBatchNorm
    from bnexp.nn.norm.group import GroupNorm
    from bnexp.nn.norm.renorm import BatchRenorm
    from bnexp.training.step import DeviceSplit
    dataset = data.load(fashion_root)
    split = DeviceSplit.from_numpy(dataset.train.images[:512], dataset.train.labels[:512], mx.cpu())
    for name, layer in (("group", GroupNorm), ("renorm", BatchRenorm), ("ghost", GhostBatchNorm)):
        runner = runners.BnexpRunner(name, split, 64, mx.cpu())
        net = runner.trainer.state.net
        blocks = []
        net.apply(lambda block: blocks.append(block))
        assert any(isinstance(b, layer) for b in blocks), name
        assert not any(isinstance(b, gluon.nn.BatchNorm) for b in blocks), name
        before = {k: v.data().asnumpy().copy() for k, v in net.collect_params(".*gamma").items()}
        for _ in range(3):
            assert runner.step() == 64
        runner.read_metrics()
        assert math.isfinite(runner.last_loss), name
        after = {k: v.data().asnumpy() for k, v in net.collect_params(".*gamma").items()}
        assert before and any(not np.array_equal(before[k], after[k]) for k in before), name


@pytest.mark.parametrize("shape", [(16, 7), (8, 3, 5, 6)], ids=["2d", "4d"])
def test_source_batch_norm_is_batch_normalization(shape):
    """The baseline's BN function computes what MXNet's BatchNorm computes in training,
    gradients included, and folds the batch statistics into the moving averages."""
    rng = np.random.default_rng(0)
    x = nd.array(rng.normal(2.0, 3.0, size=shape).astype("float32"))
    c = shape[1]
    gamma = nd.array(rng.uniform(0.5, 1.5, size=c).astype("float32"))
    beta = nd.array(rng.normal(size=c).astype("float32"))
    stat_shape = (c,) if len(shape) == 2 else (1, c, 1, 1)
    moving = {"bn_mean": nd.zeros(stat_shape), "bn_var": nd.ones(stat_shape)}
    x1, x2 = x.copy(), x.copy()
    for a in (x1, x2):
        a.attach_grad()
    head = nd.array(rng.normal(size=shape).astype("float32"))
    layer = gluon.nn.BatchNorm(momentum=0.9, epsilon=1e-5, in_channels=c)
    layer.initialize(ctx=mx.cpu())
    layer.gamma.set_data(gamma)
    layer.beta.set_data(beta)
    with autograd.record():
        ours = runners.source_batch_norm(x1, gamma, beta, moving, "bn", True, momentum=0.9, eps=1e-5)
        ref = layer(x2)
    ours.backward(head)
    ref.backward(head)
    np.testing.assert_allclose(ours.asnumpy(), ref.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x1.grad.asnumpy(), x2.grad.asnumpy(), rtol=1e-3, atol=1e-4)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    xn = x.asnumpy()
    np.testing.assert_allclose(moving["bn_mean"].asnumpy().ravel(), layer.running_mean.data().asnumpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(moving["bn_mean"].asnumpy().ravel(), 0.1 * xn.mean(axis=axes),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(moving["bn_var"].asnumpy().ravel(), 0.9 + 0.1 * xn.var(axis=axes),
                               rtol=1e-4, atol=1e-5)


def test_parsers():
    assert observe.parse_eval_line(
        "[2026-11-27 04:30:09,607][bnexp.training.progress][INFO] - step 351/2340 test_loss=0.41 test_acc=0.8512"
    ) == (351, 0.8512)
    assert observe.parse_eval_line("step 60/60 loss=0.758 acc=0.7035") is None
    assert observe.parse_time_v("\tMaximum resident set size (kbytes): 123456\n") == 123456
    assert observe.parse_time_v("nothing") is None


FAKE_RUN = """
import sys, time
for step, acc in ((117, 0.70), (234, 0.86), (351, 0.87)):
    print(f"[t][bnexp.training.progress][INFO] - step {step}/2340 test_loss=0.5 test_acc={acc}", flush=True)
    time.sleep(0.2)
time.sleep(60)
"""


def test_time_to_accuracy_stops_at_target():
    """The first evaluation at the target is timed and the run is stopped by SIGINT
    (a stand-in process here; the real CLI is covered below)."""
    result = observe.observe_run([], 0.85, True, False, echo=lambda s: None,
                               command=[sys.executable, "-c", FAKE_RUN])
    assert result["step_at_target"] == 234 and result["test_acc_at_target"] == 0.86
    assert result["stopped_at_target"] and result["returncode"] != 0
    assert 0 < result["wall_seconds_to_target"] < result["process_seconds"] < 30
    assert [e["step"] for e in result["eval_log"]] == [117, 234]


def test_a_child_run_that_never_ends_is_killed_at_the_timeout():
    """A hung child (here one that never prints an evaluation and never exits) does not hang
    the bench: it is killed with its process group and the result says so."""
    result = observe.observe_run([], 0.85, True, False, echo=lambda s: None, timeout=1.0,
                                 command=[sys.executable, "-c", "import time; time.sleep(120)"])
    assert result["timed_out"] and result["returncode"] == -9
    assert 1.0 <= result["process_seconds"] < 30
    assert result["wall_seconds_to_target"] is None


@pytest.mark.slow
def test_observe_real_run_with_memory():
    """Against the real CLI: its evaluation log lines are recognised, metrics.json is
    read, and a peak RSS is measured."""
    overrides = ["trainer.max_steps=20", "trainer.eval_every_steps=10", "data.test_subset=512",
                 # speed settings fixed: this is about observing a run, not the tuning probe
                 "perf.threads=2", "perf.pool=native", "perf.bn_impl=surrogate"]
    result = observe.observe_run(overrides, 0.0, False, True, echo=lambda s: None)
    assert result["returncode"] == 0, result.get("output_tail")
    assert [e["step"] for e in result["eval_log"]] == [10, 20]
    assert result["step_at_target"] == 10
    assert result["metrics_json"]["status"] == "completed"
    assert result["metrics_json"]["to_accuracy"] is None  # 0.00 is not a recorded milestone
    assert result["peak_rss_mb"] > 50
