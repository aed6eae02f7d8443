"""Synchronized BN (`bn=sync`, MXNet's SyncBatchNorm) on two CPU contexts normalizes with
the statistics of the whole batch: two devices take the SGD step that one device with
plain BN takes on the whole batch, up to float32 rounding (tests/fp32.py: the bound of
data parallelism, with the BN layers' sums added to the chain of roundings), while plain
BN on two devices -- each half normalized by itself -- does not.

MXNet's operator deadlocks on CPU contexts unless bnexp's workspace copies and op-by-op
execution are in place (bnexp/nn/norm/sync.py); each check runs in a child process (MXNet
imported with those copies) with a time limit, so a deadlock fails the test instead of
hanging the suite.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

CHILD = r'''
import json, sys
sys.path.insert(0, "tests")
from bnexp.runtime import mxnet_import
from bnexp.nn.norm.sync import CPU_TEMP_COPIES
# as bnexp.run imports it for bn=sync on several CPU contexts (bnexp/run.py: cpu_temp_copies)
mxnet_import.import_mxnet(None, CPU_TEMP_COPIES)
import conftest  # noqa: E402  (MXNet is imported: conftest keeps it)
import mxnet as mx, numpy as np
from mxnet import nd
import fp32
from bnexp import data
from bnexp.nn.build import build_net
from bnexp.training import step as train
from bnexp.training.optimizers import sgd
from bnexp.training.step import DeviceSplit, epoch_order, make_optimizer, train_step

ONE, TWO = [mx.cpu()], [mx.cpu(0), mx.cpu(1)]
two_variant, steps = sys.argv[1], int(sys.argv[2])
base = conftest.config("bn=gluon", "model.init=xavier", "seed=3")
dataset = data.load(None)
split = DeviceSplit.from_numpy(dataset.train.images, dataset.train.labels, mx.cpu())
order = epoch_order(base.seed, 0, len(split))
one = build_net(base, ONE)
two = build_net(conftest.config(f"bn={two_variant}", "model.init=xavier", "seed=3"), TWO)
opt_one, opt_two = make_optimizer(one, sgd(base.lr), ONE), make_optimizer(two, sgd(base.lr), TWO)
worst = {}
for k in range(steps):
    idx = nd.array(order[k * 128:(k + 1) * 128], dtype="int64")
    images, labels = nd.take(split.images, idx), nd.take(split.labels, idx)
    for p_one, p_two in zip(one.collect_params().values(), two.collect_params().values()):
        for data_two in p_two.list_data():
            p_one.data().copyto(data_two)
    bounds = fp32.update_bounds(one, images, labels, base.lr, train.LOSS)
    train_step(one, opt_one, images, labels, ONE)
    train_step(two, opt_two, images, labels, TWO)
    names_two = dict(zip(one.collect_params().keys(), two.collect_params().values()))
    for name, bound in bounds.items():
        a = one.collect_params()[name].data().asnumpy().astype(np.float64)
        b = names_two[name].data().asnumpy().astype(np.float64)
        worst[name] = max(worst.get(name, 0.0), float(np.linalg.norm(a - b) / np.linalg.norm(bound)))
print(json.dumps(worst))
'''


def worst_excess(variant_on_two_devices: str, steps: int = 3) -> dict[str, float]:
    """Per conv/dense parameter, over `steps` steps from shared weights: ||update on two
    devices - update on one with plain BN|| / ||float32 bound||."""
    result = subprocess.run([sys.executable, "-c", CHILD, variant_on_two_devices, str(steps)],
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sync_bn_on_two_devices_takes_the_step_of_bn_on_one_and_plain_bn_does_not():
    """Measured on a 2-core Xeon: sync at most 0.04 of the bound; plain BN 1.4 times it (its
    per-half statistics change every update systematically; the bound is loose with BN's
    long sums in the chain, hence the second, relative check)."""
    sync, plain = worst_excess("sync"), worst_excess("gluon")
    assert len(sync) == 8  # weight and bias of 2 conv + 2 dense layers
    assert max(sync.values()) <= 1.0, sync
    assert max(plain.values()) > 1.0, plain
    assert max(plain.values()) > 10 * max(sync.values()), (plain, sync)
