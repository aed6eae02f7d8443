"""Speed settings chosen by measuring (bnexp/tuning/): the real probe, its cache, the
overrides, and that no choice changes what is computed. The thread policy is passed in, as
the entry points pass it: a user who left the count to bnexp is `ThreadPolicy.resolve(environ={})`."""
from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from bnexp.config import Config
from bnexp.nn.build import build_net
from bnexp.nn.norm.scratch import formulations
from bnexp.runtime.threads import BUDGET_VAR, SLURM_VAR, ThreadPolicy, available_cores
from bnexp.tuning import cache as tuning_cache
from bnexp.tuning import choice as tuning
from bnexp.tuning import machine, probe
from bnexp.training.optimizers import sgd
from bnexp.training.step import make_optimizer, train_step
from conftest import config

FREE = ThreadPolicy.resolve(environ={})  # nobody fixed the thread count

SMALL = "trainer.batch_size=16"  # a small batch keeps the real probe short
BRIEF = "perf.probe_seconds=0.05"  # where the probe itself is not what is tested
LONG = "trainer.epochs=50"   # a run long enough to earn a probe (its length is all that is read)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty tuning cache."""
    monkeypatch.setenv("BNEXP_CACHE_DIR", str(tmp_path))
    return tmp_path / tuning_cache.CACHE_FILE


def forbid_probe(monkeypatch):
    def fail(*args):
        raise AssertionError("the probe ran although the timings were cached")
    monkeypatch.setattr(tuning, "measure", fail)


@pytest.mark.slow
def test_probe_then_cache(cache, monkeypatch):
    """Every process (threads x engine) with the first layout; every formulation, then every
    pooling layout, in the fastest; the choice is the fastest option measured."""
    cfg = config("bn=scratch", SMALL, "ctx=cpu", BRIEF, LONG)
    first = tuning.choose(cfg, FREE)
    assert first.source == {"threads": "probe", "engine": "probe", "pool": "probe", "bn_impl": "probe"}
    measured = [probe.Option.from_key(key) for key in first.timings]
    formulation = formulations("cpu")
    assert {(o.threads, o.engine) for o in measured if o.layout == f"native/{formulation[0]}"} \
        >= {(t, e) for t in FREE.candidates() for e in ("naive", "threaded")}
    best = probe.decide(first.timings)
    assert (first.threads, first.engine, first.pool, first.bn_impl) == tuple(best)
    assert {o.formulation for o in measured} == set(formulation)
    assert {o.pool for o in measured} == {"native", "folded"}
    assert all(ms > 0 for ms in first.timings.values())
    entry, = json.loads(cache.read_text())["entries"].values()
    assert entry["setting"]["bn"] == cfg.bn and entry["setting"]["batch_per_device"] == 16
    assert entry["setting"]["bn"]["_target_"] == "bnexp.nn.norm.scratch.scratch"

    forbid_probe(monkeypatch)
    again = tuning.choose(cfg, FREE)
    assert again.source == {"threads": "cache", "engine": "cache", "pool": "cache", "bn_impl": "cache"}
    assert (again.threads, again.engine, again.pool, again.bn_impl) == tuple(best)
    # another batch size is another setting: not in the cache
    with pytest.raises(AssertionError, match="the probe ran"):
        tuning.choose(config("bn=scratch", "trainer.batch_size=32", "ctx=cpu", LONG), FREE)


def test_a_run_too_short_for_a_probe_takes_the_defaults_and_says_so(cache, monkeypatch, caplog):
    """The probe's least cost is known before it starts, and so is the run's length: a run
    that cannot give a probe SHARE of itself gets the defaults in one line."""
    forbid_probe(monkeypatch)
    with caplog.at_level("INFO"):
        choice = tuning.choose(config("bn=scratch", "ctx=cpu", "trainer.max_steps=20"), FREE)
    assert set(choice.source.values()) == {"default"}
    assert (choice.threads, choice.engine, choice.pool) == (FREE.budget, "naive", "native")
    assert choice.bn_impl == formulations("cpu")[0]
    said, = [r.message for r in caplog.records if "cannot earn a speed probe" in r.message]
    assert "a run of 20 steps (at least 0 s: nothing of this model and batch measured here" in said


def test_what_runs_sustained_sets_the_expected_length(cache, monkeypatch):
    """A run's first epoch reports its step time (ThroughputCheck -> cache.feedback): a
    later run of the same model and batch is judged by it, not by the prior."""
    cfg = config("bn=gluon", "ctx=cpu", "trainer.max_steps=1500")
    setting = machine.setting_of(cfg)
    forbid_probe(monkeypatch)
    assert tuning.too_short(setting, [(1, "naive"), (2, "naive")], [("native", "")], 0.3, 1500, 10)
    assert tuning_cache.feedback(setting, None, 200.0, too_slow=False) is False
    assert tuning_cache.fastest_step(setting) == 200.0   # 1500 steps of 200 ms: 300 s
    said = tuning.too_short(setting, [(1, "naive"), (2, "naive")], [("native", "")], 0.3, 15, 10)
    assert said.startswith("a run of 15 steps (about 3 s at the 200.0 ms per step measured here)")
    assert tuning.too_short(setting, [(1, "naive"), (2, "naive")], [("native", "")], 0.3, 1500, 10) is None


@pytest.mark.slow
@pytest.mark.parametrize("content", ["{not json", '{"entries": [1, 2]}', '{"other": 1}', ""])
def test_corrupt_cache_is_ignored_and_rebuilt(cache, content, caplog):
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(content)
    # threads and engine given: the probe measures only the layouts, in this process (no child
    # processes), which is all a rebuilt cache needs
    cfg = config("bn=none", SMALL, "ctx=cpu", BRIEF, LONG, "perf.threads=1", "perf.engine=naive")
    choice = tuning.choose(cfg, ThreadPolicy.resolve(cfg.perf.threads, environ={}))
    assert choice.source["pool"] == "probe"
    assert len(json.loads(cache.read_text())["entries"]) == 1  # rebuilt, valid again


@pytest.mark.slow
def test_given_threads_and_engine_are_not_raced_alone(cache, monkeypatch):
    """With the process given, the probe goes straight to the layouts: a race of one option
    would decide nothing."""
    races = []
    race = probe.Probe.race
    monkeypatch.setattr(probe.Probe, "race", lambda self, options: races.append(options) or race(self, options))
    cfg = config("bn=scratch", SMALL, "ctx=cpu", BRIEF, LONG, "perf.threads=1", "perf.engine=naive")
    choice = tuning.choose(cfg, ThreadPolicy.resolve(cfg.perf.threads, environ={}))
    assert choice.source["bn_impl"] == "probe" and choice.source["pool"] == "probe"
    assert races and all(len(options) > 1 for options in races)
    assert {probe.Option.from_key(key).pool for key in choice.timings} == {"native", "folded"}


def test_outdated_entries_are_ignored(cache, monkeypatch):
    cfg = config("bn=none", SMALL, "ctx=cpu", LONG)
    setting = machine.setting_of(cfg)
    stale = {**setting, "probe_version": machine.PROBE_VERSION - 1}
    entry = {"setting": stale, "timings": {"1/naive/native/": 1.0, "1/naive/folded/": 2.0}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"entries": {machine.setting_key(setting): entry}}))
    assert tuning_cache.read_cache() == {}
    forbid_probe(monkeypatch)
    with pytest.raises(AssertionError, match="the probe ran"):
        tuning.choose(cfg, FREE)


def test_settings_given_are_not_measured(cache, monkeypatch):
    forbid_probe(monkeypatch)
    cfg = config("bn=scratch", "ctx=cpu", "perf.threads=1", "perf.pool=folded", "perf.bn_impl=surrogate",
                 "perf.engine=threaded", LONG)
    choice = tuning.choose(cfg, ThreadPolicy.resolve(cfg.perf.threads, environ={}))
    assert (choice.threads, choice.engine, choice.pool, choice.bn_impl) == (1, "threaded", "folded", "surrogate")
    assert set(choice.source.values()) == {"config"}
    assert not cache.exists()


def test_threads_and_engine_from_the_environment_count_as_given(cache, monkeypatch):
    forbid_probe(monkeypatch)
    monkeypatch.setenv("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice")
    policy = ThreadPolicy.resolve(environ={"OMP_NUM_THREADS": "1"})
    choice = tuning.choose(config("bn=gluon", "ctx=cpu", "perf.pool=native", LONG), policy)
    assert choice.threads == 1 and choice.source["threads"] == "environment"
    assert choice.engine == "threaded" and choice.source["engine"] == "environment"


def test_nothing_cpu_specific_is_measured_for_a_gpu(cache, monkeypatch):
    forbid_probe(monkeypatch)
    choice = tuning.choose(config("bn=scratch", "ctx=gpu", LONG), FREE)
    assert (choice.engine, choice.pool, choice.bn_impl) == ("threaded", "native", "centered")
    assert "probe" not in choice.source.values()


def test_several_cpu_devices_run_on_the_naive_engine(cache, monkeypatch):
    """(tests/test_multidevice.py: the threaded engine computed other BN moving statistics
    there.)"""
    forbid_probe(monkeypatch)
    choice = tuning.choose(config("bn=gluon", "ctx=[cpu:0,cpu:1]", "perf.threads=1",
                                  "perf.pool=native", LONG), ThreadPolicy.resolve("1", environ={}))
    assert (choice.engine, choice.source["engine"]) == ("naive", "default")


@pytest.mark.parametrize("budget,expected", [(1, [1]), (2, [1, 2]), (4, [1, 2, 3, 4]),
                                             (6, [1, 2, 4, 6]), (64, [1, 2, 4, 8, 16, 32, 64])])
def test_thread_candidates_stay_within_the_budget(budget, expected):
    assert ThreadPolicy(budget, "cores", None).candidates() == expected


@pytest.mark.slow
def test_joblib_budget_limits_the_choice(cache):
    policy = ThreadPolicy.resolve(environ={BUDGET_VAR: "1"})
    assert (policy.budget, policy.budget_from) == (1, "launcher")
    choice = tuning.choose(config("bn=none", SMALL, "ctx=cpu", BRIEF, LONG), policy)
    assert choice.threads == 1 and {probe.Option.from_key(k).threads for k in choice.timings} == {1}


def test_thread_policy_sources():
    """Where the budget and a fixed count come from, without touching this process."""
    cores = available_cores()
    assert ThreadPolicy.resolve(environ={}) == ThreadPolicy(cores, "cores", None)
    slurm = ThreadPolicy.resolve(environ={SLURM_VAR: "1"})
    assert (slurm.budget, slurm.budget_from) == (1, "slurm")
    assert ThreadPolicy.resolve(environ={SLURM_VAR: str(cores + 7)}).budget == cores
    user = ThreadPolicy.resolve(environ={"OMP_NUM_THREADS": "3"})
    assert (user.fixed, user.fixed_from, user.candidates()) == (3, "environment", [3])
    config = ThreadPolicy.resolve("2", environ={"OMP_NUM_THREADS": "3"})
    assert (config.fixed, config.fixed_from) == (2, "config")  # perf.threads wins
    for junk in ("0", "-1", "two", ""):  # not a count: as if unset
        assert ThreadPolicy.resolve(environ={"OMP_NUM_THREADS": junk}).fixed is None


def one_step(cfg: Config, images, labels, pool: str) -> dict[str, np.ndarray]:
    net = build_net(cfg, [mx.cpu()], pool=pool)
    train_step(net, make_optimizer(net, sgd(cfg.lr), [mx.cpu()]), images, labels, [mx.cpu()])
    return {name.split("_", 1)[1]: p.data().asnumpy() for name, p in net.collect_params().items()}


def test_pooling_layout_changes_nothing_computed():
    """Max pooling is exact: both layouts give the same step, bit for bit. (The two BN
    formulations agree with gluon's BatchNorm step for step: tests/test_bn.py.)"""
    rng = np.random.default_rng(0)
    images = nd.array(rng.random((32, 1, 28, 28), dtype=np.float32))
    labels = nd.array(rng.integers(0, 10, 32).astype(np.float32))
    cfg = config("bn=gluon", "trainer.batch_size=32")
    native, folded = (one_step(cfg, images, labels, pool) for pool in ("native", "folded"))
    assert native.keys() == folded.keys()
    for name in native:
        np.testing.assert_array_equal(native[name], folded[name], err_msg=name)


def test_more_threads_only_when_clearly_faster():
    """The margin: 2 threads must beat 1 by more than probe.MARGIN to be chosen."""
    from bnexp.tuning.probe import MARGIN, decide
    close = {"1/naive/native/centered": 100.0, "1/naive/folded/centered": 120.0,
             "2/naive/native/centered": 100.0 / (1 + MARGIN / 2), "2/naive/folded/centered": 130.0}
    assert decide(close).key == "1/naive/native/centered"
    clear = {"1/naive/native/centered": 100.0, "2/naive/native/centered": 100.0 / (1 + 2 * MARGIN)}
    assert decide(clear).key == "2/naive/native/centered"
    layout = {"1/naive/native/centered": 50.0, "1/naive/folded/centered": 40.0,
              "1/threaded/folded/centered": 45.0}
    assert decide(layout).key == "1/naive/folded/centered"  # the fastest, no margin


def test_rounds_go_on_until_the_choice_is_settled():
    from bnexp.tuning.probe import MIN_ROUNDS, Option, settled
    one, two = Option(1, "naive", "native", ""), Option(2, "naive", "native", "")
    steady = {one: [100.0, 101.0, 99.0], two: [80.0, 81.0, 80.5]}
    assert settled(steady)
    assert not settled({k: v[:MIN_ROUNDS - 1] for k, v in steady.items()})  # too few rounds
    # noisy, and 1 vs 2 threads flips with the summary taken: not settled
    flipping = {one: [100.0, 70.0, 130.0], two: [95.0, 90.0, 92.0]}
    assert not settled(flipping)
    # noisy, but 2 threads wins whichever block is taken: settled
    clear = {one: [100.0, 140.0, 120.0], two: [60.0, 80.0, 70.0]}
    assert settled(clear)


def test_far_slower_options_leave_the_race():
    """After OUT_AFTER counted rounds an option whose fastest block is more than OUT_OF_RACE
    times the best median is timed no more; a close one stays, and so does everything before."""
    from bnexp.tuning.probe import OUT_AFTER, OUT_OF_RACE, Option, still_racing
    slow = Option(2, "naive", "folded", "centered")
    samples = {Option(2, "naive", "native", "compiled"): [40.0, 42.0],
               Option(1, "naive", "native", "compiled"): [50.0, 44.0],
               Option(2, "naive", "native", "centered"): [80.0, 40.0 * OUT_OF_RACE + 1],  # one fast block: stays
               slow: [90.0, 85.0]}
    racing = set(samples)
    assert still_racing(samples, racing, OUT_AFTER - 1) == racing
    assert still_racing(samples, racing, OUT_AFTER) == racing - {slow}


CHATTY = """
import json, sys
for _ in range(1024):  # 1 MiB of log lines: 16 times what a pipe holds
    sys.stderr.write("x" * 1023 + "\\n")
sys.stderr.flush()
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()
sys.stderr.write("y" * 100000 + "\\n")
raise RuntimeError("the last line")
"""


def test_a_chatty_worker_does_not_block_and_its_last_error_is_reported(tmp_path, monkeypatch):
    """A worker that logs 1 MiB before answering answers at once (its stderr goes to a
    file, not a pipe nobody reads); when it dies, its last error line is the message."""
    import time

    from bnexp.runtime.worker import Worker
    (tmp_path / "chatty_worker.py").write_text(CHATTY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    worker = Worker("chatty_worker", [], 1)
    try:
        start = time.monotonic()
        assert worker.read(timeout=20) == {"ready": True}
        assert time.monotonic() - start < 10
        with pytest.raises(ValueError, match="^RuntimeError: the last line$"):
            worker.ask("go", timeout=20)
    finally:
        worker.close()


def test_a_failed_probe_is_remembered_for_a_while(cache, monkeypatch):
    """A probe that failed (measure returns nothing, as on a worker's error) is not run
    again by the next run: it takes the defaults at once, until FAILED_PROBE_SECONDS."""
    calls = []
    monkeypatch.setattr(tuning, "measure", lambda *args: calls.append(1) or {})
    cfg = config("bn=gluon", SMALL, "ctx=cpu", BRIEF, LONG)
    for _ in range(2):
        choice = tuning.choose(cfg, FREE)
        assert choice.source["pool"] == "default" and choice.pool == "native"
    assert len(calls) == 1
    data = json.loads(cache.read_text())
    key = machine.setting_key(machine.setting_of(cfg))
    assert data["entries"] == {} and key in data["failed"]
    data["failed"][key] -= tuning_cache.FAILED_PROBE_SECONDS + 1  # an hour and more ago
    cache.write_text(json.dumps(data))
    tuning.choose(cfg, FREE)
    assert len(calls) == 2


MARK_STALE = """
import sys, time
from bnexp.tuning import cache
start = time.monotonic()
print(cache.feedback({}, sys.argv[1], 100.0, too_slow=True), round(time.monotonic() - start, 1))
"""


def test_marking_stale_from_training_never_waits_for_the_lock(cache, tmp_path):
    """Another process holds the cache's lock (probing): the feedback of a run far slower
    than promised, given from inside the training loop, gives up at once instead of
    waiting for the lock."""
    import fcntl
    import subprocess
    import sys

    from conftest import REPO
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"entries": {"k": {"setting": {}, "timings": {}}}}))
    with open(cache.parent / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = subprocess.run([sys.executable, "-c", MARK_STALE, "k"], cwd=REPO, text=True,
                              capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer, seconds = done.stdout.split()
    assert answer == "False" and float(seconds) < 1.0
    assert "k" in json.loads(cache.read_text())["entries"]  # left for a later run to mark


def test_no_locks_on_the_file_system_means_no_lock_not_busy(cache, monkeypatch):
    """ENOLCK (an NFS mount without a lock daemon; injected here: no such mount on this
    machine): the cache is used without a lock at once, not waited for as if busy."""
    import errno
    import time

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(tuning_cache, "LOCK_TIMEOUT", 2.0)  # a busy lock would cost this long
    monkeypatch.setattr(tuning_cache.fcntl, "flock", no_locks)
    start = time.monotonic()
    with tuning_cache.cache_lock() as locked:
        assert locked is True
        tuning_cache.store("k", {"setting": {}, "timings": {}})  # what a probe then does
    assert time.monotonic() - start < 1.0
    assert list(json.loads(cache.read_text())["entries"]) == ["k"]
