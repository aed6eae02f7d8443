"""Checkpoints hold the optimizer state as arrays and are loaded without unpickling
(bnexp/training/checkpoint.py): a resumed optimizer continues bit for bit, and a crafted
or foreign checkpoint is refused in one line, its pickle never run."""
import os
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from bnexp.errors import UserError
from bnexp.training import checkpoint

OPTIMIZERS = {
    "sgd": lambda: mx.optimizer.SGD(learning_rate=0.1),
    "momentum": lambda: mx.optimizer.SGD(learning_rate=0.1, momentum=0.9),
    "adam": lambda: mx.optimizer.Adam(learning_rate=0.01),
}
DEVICES = {"one device": [mx.cpu(0)], "two devices": [mx.cpu(0), mx.cpu(1)]}
BATCH = 16


def build(ctx, optimizer: str):
    """A small net with BN (its moving statistics are saved too) and its gluon.Trainer,
    as bnexp builds one: kvstore="device" on several devices."""
    mx.random.seed(7)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(12, activation="relu"), gluon.nn.BatchNorm(), gluon.nn.Dense(3))
    net.initialize(mx.init.Normal(0.1), ctx=ctx)
    net(nd.zeros((2, 5), ctx=ctx[0]))  # shapes known: the parameters exist
    trainer = gluon.Trainer(net.collect_params(), OPTIMIZERS[optimizer](),
                            kvstore="device" if len(ctx) > 1 else None)
    return net, trainer


def batches(count: int, start: int):
    rng = np.random.default_rng(start)
    return [(rng.standard_normal((BATCH, 5)).astype(np.float32), rng.integers(0, 3, BATCH))
            for _ in range(count)]


def train(net, trainer, ctx, data) -> None:
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for x, y in data:
        xs = gluon.utils.split_and_load(nd.array(x), ctx)
        ys = gluon.utils.split_and_load(nd.array(y), ctx)
        with autograd.record():
            losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
        autograd.backward(losses)
        trainer.step(BATCH)


def weights(net) -> dict[str, np.ndarray]:
    return {name: p.data().asnumpy() for name, p in checkpoint.saved_params(net).items()}


@pytest.mark.parametrize("devices", DEVICES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_resumed_optimizer_continues_bit_for_bit(tmp_path, optimizer, devices):
    """Save after k steps, restore into a fresh net and trainer, take more steps: the
    parameters equal those of the uninterrupted run exactly (momentum and Adam's mean,
    variance and step count included)."""
    ctx = DEVICES[devices]
    first, then = batches(4, 0), batches(4, 1)
    net, trainer = build(ctx, optimizer)
    train(net, trainer, ctx, first)
    checkpoint.save(tmp_path, net, trainer, {"step": 4})
    train(net, trainer, ctx, then)
    straight = weights(net)

    fresh, fresh_trainer = build(ctx, optimizer)
    assert checkpoint.restore(tmp_path, fresh, fresh_trainer) == {"step": 4}
    train(fresh, fresh_trainer, ctx, then)
    assert bool(fresh_trainer._update_on_kvstore) == (len(ctx) > 1)  # the kvstore's updater
    resumed = weights(fresh)
    assert resumed.keys() == straight.keys()
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
    if optimizer != "sgd":  # the state mattered: without it the run goes elsewhere
        lost, lost_trainer = build(ctx, optimizer)
        for name, param in checkpoint.saved_params(lost).items():
            param.set_data(nd.load(str(tmp_path / checkpoint.CHECKPOINT_FILE))["param:" + name])
        train(lost, lost_trainer, ctx, then)
        assert any(not np.array_equal(weights(lost)[n], straight[n]) for n in straight)


class Payload:
    """Unpickling this creates the marker file: the code a planted checkpoint would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_a_checkpoint_is_never_unpickled(tmp_path):
    """A checkpoint whose optimizer entry is a pickle (what Trainer.save_states writes, and
    what bnexp wrote before) is refused in one line, and its payload never runs."""
    net, trainer = build([mx.cpu()], "momentum")
    train(net, trainer, [mx.cpu()], batches(1, 0))
    checkpoint.save(tmp_path, net, trainer, {"step": 1})
    path = tmp_path / checkpoint.CHECKPOINT_FILE
    arrays = nd.load(str(path))
    arrays.pop("__optimizer__", None)
    marker = tmp_path / "payload-ran"
    blob = pickle.dumps(({0: Payload(marker)}, Payload(marker)))
    arrays["__trainer__"] = nd.array(np.frombuffer(blob, dtype=np.uint8), dtype="uint8")
    nd.save(str(path), arrays)

    fresh, fresh_trainer = build([mx.cpu()], "momentum")
    with pytest.raises(UserError, match="a pickle, which is never loaded") as err:
        checkpoint.restore(tmp_path, fresh, fresh_trainer)
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("layout", ['{"slots": [[0, "nonsense"]]}', '{"slots": 5}', "[1,", ""])
def test_a_malformed_optimizer_state_is_one_line(tmp_path, layout):
    net, trainer = build([mx.cpu()], "adam")
    checkpoint.save(tmp_path, net, trainer, {"step": 0})
    path = tmp_path / checkpoint.CHECKPOINT_FILE
    arrays = nd.load(str(path))
    arrays["__optimizer__"] = nd.array(np.frombuffer(layout.encode(), dtype=np.uint8), dtype="uint8")
    nd.save(str(path), arrays)
    with pytest.raises(UserError) as err:
        checkpoint.restore(tmp_path, *build([mx.cpu()], "adam"))
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_checkpoint_others_can_write_is_refused(tmp_path):
    """Whoever else can write the file or its folder could have planted it: refused, one
    line naming which and what to do; read_state (the resume's first look) refuses too."""
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    net, trainer = build([mx.cpu()], "sgd")
    checkpoint.save(run, net, trainer, {"step": 0})
    assert checkpoint.read_state(run) == {"step": 0}
    run.chmod(0o775)  # a group-writable folder (umask 002 on a shared cluster)
    for load in (lambda: checkpoint.read_state(run), lambda: checkpoint.restore(run, net, trainer)):
        with pytest.raises(UserError, match="is writable by its group or by others") as err:
            load()
        assert "chmod go-w" in str(err.value) and "\n" not in str(err.value)
    run.chmod(0o755)
    if os.geteuid() == 0:  # root can give the file away: a checkpoint of another user
        os.chown(run / checkpoint.CHECKPOINT_FILE, 65534, 65534)
        with pytest.raises(UserError, match="belongs to uid 65534, not to this user"):
            checkpoint.read_state(run)
