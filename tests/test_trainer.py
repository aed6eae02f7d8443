"""The Trainer and its event interface (bnexp/training/): the order of events, reads of the
device where they are due, a callback that ends the run, a stop request, and the
throughput check -- on a real network and real SGD steps (synthetic images, tiny batches)."""
from __future__ import annotations

import contextlib
import time

import mxnet as mx
import numpy as np
import pytest

from bnexp.nn.build import build_net
from bnexp.record import RunRecord
from bnexp.training.callback import Callback, TrainMetrics
from bnexp.training.optimizers import sgd
from bnexp.training.step import DeviceSplit, make_optimizer
from bnexp.training.stopping import StopAtTargets
from bnexp.training.throughput import MIN_STEPS, SLOWER, ThroughputCheck
from bnexp.training.trainer import Trainer
from conftest import config

BATCH = 8


def make(total_steps: int, callbacks: list, log_every: int = 4, stop=lambda: "") -> Trainer:
    cfg = config("bn=gluon", f"trainer.batch_size={BATCH}", "ctx=cpu")
    net = build_net(cfg, [mx.cpu()])
    rng = np.random.default_rng(0)
    train = DeviceSplit.from_numpy(rng.integers(0, 256, (10 * BATCH, 28, 28), dtype=np.uint8),
                                   rng.integers(0, 10, 10 * BATCH), mx.cpu())
    return Trainer(net, make_optimizer(net, sgd(0.1), [mx.cpu()]), [mx.cpu()], train, batch_size=BATCH,
                   total_steps=total_steps, seed=0, log_every=log_every, callbacks=callbacks,
                   stop_requested=stop)


class Journal(Callback):
    """Writes down every event it hears, with the step."""

    def __init__(self, log: list):
        self.log = log

    def on_fit_start(self, state):
        self.log.append(("fit_start", state.step))

    def on_step_start(self, state):
        self.log.append(("step_start", state.step))

    def on_step_end(self, state):
        self.log.append(("step_end", state.step))

    def on_train_metrics(self, state, metrics: TrainMetrics):
        self.log.append(("metrics", metrics.step, len(metrics.losses)))

    def on_fit_end(self, state):
        self.log.append(("fit_end", state.status))

    def on_teardown(self, state):
        self.log.append(("teardown", state.step))


def test_events_in_order_and_reads_where_due():
    log: list = []

    class ReadAtThree(Callback):
        def on_fit_start(self, state):
            state.read_at.add(3)  # as the evaluation asks for its steps

    state = make(6, [ReadAtThree(), Journal(log)]).fit()
    assert state.status == "completed" and state.step == 6
    assert log[0] == ("fit_start", 0) and log[-2:] == [("fit_end", "completed"), ("teardown", 6)]
    assert [e for e in log if e[0] == "step_start"] == [("step_start", s) for s in range(6)]
    # every 4 steps, and at step 3 as asked: the reads cover every step exactly once
    assert [e for e in log if e[0] == "metrics"] == [("metrics", 3, 3), ("metrics", 4, 1)]
    # a step's metrics are read before the callbacks hear that the step ended
    assert log.index(("metrics", 3, 3)) < log.index(("step_end", 3))
    assert state.accumulator.epoch["steps"] == 4  # steps 5 and 6 are not read yet


def test_a_callback_that_ends_the_run_is_the_last_to_hear_that_event():
    log: list = []

    class Guard(Callback):
        def on_train_metrics(self, state, metrics):
            state.end("diverged")

    state = make(20, [Guard(), Journal(log)]).fit()
    assert state.status == "diverged" and state.step == 4  # ended at the first read
    assert not [e for e in log if e[0] == "metrics"]  # the journal after the guard never heard it
    assert ("step_end", 4) not in log  # nor that the step ended
    assert log[-2:] == [("fit_end", "diverged"), ("teardown", 4)]


def test_a_stop_request_ends_the_run_after_the_step_with_a_read():
    log: list = []
    asked = iter(["", "", "SIGTERM"])
    state = make(20, [Journal(log)], log_every=10, stop=lambda: next(asked, "SIGTERM")).fit()
    assert (state.status, state.step, state.stop_requested) == ("interrupted", 3, "SIGTERM")
    assert ("metrics", 3, 3) in log and ("step_end", 3) in log  # read, and heard (a checkpoint)


def test_teardown_runs_after_an_exception():
    log: list = []

    class Broken(Callback):
        def on_step_end(self, state):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        make(5, [Journal(log), Broken()]).fit()
    assert log[-1] == ("teardown", 1) and ("fit_end", "running") not in log


class ScriptedEvaluation(Callback):
    """Emits `on_evaluation` at the given steps with the given accuracies, as the real
    Evaluation does from its on_step_end."""

    def __init__(self, split: str, accuracies: dict[int, float]):
        self.split, self.accuracies = split, accuracies

    def on_step_end(self, state):
        if state.step in self.accuracies:
            state.emit("on_evaluation", self.split, {"acc": self.accuracies[state.step], "loss": 1.0})


@pytest.mark.parametrize("split, accuracies, ends_at", [
    ("val", {2: 0.75, 4: 0.84, 6: 0.86, 8: 0.9}, 6),   # every target reached at step 6
    ("val", {2: 0.75, 4: 0.84, 6: 0.849}, 10),           # the highest never reached: full length
    ("test", {2: 0.9}, 10),                               # not the watched split
])
def test_a_run_stops_once_the_watched_accuracy_reached_every_target(split, accuracies, ends_at):
    log: list = []
    record = RunRecord()
    stopper = StopAtTargets(record, [0.70, 0.80, 0.85], "val")
    state = make(10, [ScriptedEvaluation(split, accuracies), Journal(log), stopper]).fit()
    assert (state.status, state.step) == ("completed", ends_at)
    assert log[-2:] == [("fit_end", "completed"), ("teardown", ends_at)]
    if ends_at < 10:
        assert record.stopped_early.startswith("val accuracy 0.8600 reached every target (up to 0.85) at step 6")
    else:
        assert record.stopped_early is None


class FakeState:
    def __init__(self, step, steps_per_epoch=100, total_steps=1000):
        self.step, self.steps_per_epoch, self.total_steps = step, steps_per_epoch, total_steps

    def aside(self):
        return contextlib.nullcontext()


def metrics(steps: int, ms: float) -> TrainMetrics:
    return TrainMetrics(0, np.zeros(steps), np.zeros(steps), steps * ms / 1000, steps * BATCH)


@pytest.mark.parametrize("ms, stale", [(10.0, False), (10.0 * SLOWER * 1.2, True)])
def test_throughput_check_records_and_asks_for_a_new_measurement(ms, stale, caplog):
    asked: list = []
    record = RunRecord()
    check = ThroughputCheck(record, 10.0, lambda ms, slow: asked.append((round(ms, 6), slow)) or slow)
    check.on_fit_start(FakeState(0))
    for step in range(10, 101, 10):  # the first epoch, read every 10 steps
        check.on_train_metrics(FakeState(step), metrics(10, ms))
    assert record.perf["sustained_ms_per_step"] == pytest.approx(ms)
    assert record.perf["sustained_steps"] == 100
    assert asked == [(pytest.approx(ms), stale)]   # always the step time, and whether too slow
    assert ("slower than the 10.0 ms" in caplog.text) == stale
    check.on_train_metrics(FakeState(110), metrics(10, 1000.0))  # later epochs do not count
    assert record.perf["sustained_ms_per_step"] == pytest.approx(ms)


def test_throughput_check_says_nothing_on_too_few_steps():
    record = RunRecord()
    check = ThroughputCheck(record, 10.0, lambda ms, slow: pytest.fail("reported too few steps"))
    check.on_fit_start(FakeState(0, total_steps=MIN_STEPS - 10))
    check.on_train_metrics(FakeState(MIN_STEPS - 10), metrics(MIN_STEPS - 10, 100.0))
    check.on_fit_end(FakeState(MIN_STEPS - 10))
    assert "sustained_ms_per_step" not in record.perf


def test_asking_for_a_new_measurement_is_off_the_training_clock():
    """A real run far slower than promised asks the cache to re-measure; that request (here
    taking 2 s, as a busy file system might) is not counted as training time: the first
    epoch ends at step MIN_STEPS, and training goes on after it."""
    asked: list = []

    def slow_feedback(ms, too_slow):
        time.sleep(2.0)
        return asked.append(too_slow) or True

    cfg = config("bn=none", f"trainer.batch_size={BATCH}", "ctx=cpu")
    net = build_net(cfg, [mx.cpu()])
    rng = np.random.default_rng(0)
    train = DeviceSplit.from_numpy(rng.integers(0, 256, (MIN_STEPS * BATCH, 28, 28), dtype=np.uint8),
                                   rng.integers(0, 10, MIN_STEPS * BATCH), mx.cpu())
    check = ThroughputCheck(RunRecord(), 1e-6, slow_feedback)  # any speed is too slow
    trainer = Trainer(net, make_optimizer(net, sgd(0.1), [mx.cpu()]), [mx.cpu()], train,
                      batch_size=BATCH, total_steps=MIN_STEPS + 10, seed=0, log_every=10,
                      callbacks=[check])
    start = time.perf_counter()
    state = trainer.fit()
    wall = time.perf_counter() - start
    assert asked == [True]
    assert wall - state.clock.seconds >= 2.0  # the 2 s were kept off the clock
