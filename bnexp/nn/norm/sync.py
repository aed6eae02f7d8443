"""Synchronized BN across devices, `bn=sync`: MXNet's `gluon.contrib.nn.SyncBatchNorm`.

With data parallelism each device sees 1/D of the batch; plain BN normalizes each part
with its own statistics, SyncBatchNorm with those of the whole batch (the devices exchange
their sums of x and x^2, and in the backward pass those of the gradient). On one device it
is plain BN.

On several CPU contexts MXNet's operator can deadlock (MXNet 1.9.1,
src/operator/contrib/sync_batch_norm-inl.h and src/resource.cc): its backward pass requests
a temporary workspace and then waits in a barrier for the other devices' backward passes.
All CPU contexts draw workspaces from one pool (MXNET_CPU_TEMP_COPY copies, default 4,
handed out round robin), and the engine lets one operator at a time hold a copy: when the
devices' SyncBatchNorm backward passes draw the same copy, the first waits in the barrier
for the second, which waits for the copy. (GPUs have a pool each.) So for bn=sync on
several CPU contexts bnexp imports MXNet with more copies than one backward pass draws
(bnexp/run.py: cpu_temp_copies reads CPU_TEMP_COPIES here) and
runs the network op by op on several devices: then the copies
are drawn in the same order at every step, and distinct ones within a pass. (Hybridized,
with 64 copies, LeNet still deadlocked at its 7th step on cpu:0,cpu:1; with 1000 it did
not in 20 steps: measured, not understood, so not relied on.)
"""
from __future__ import annotations

from bnexp.config import fail
from bnexp.nn.norm.parameters import check_batch_norm, initializers

# Temporary-workspace copies shared by all CPU contexts (MXNet's default is 4). With 4,
# bn=sync on cpu:0,cpu:1 deadlocks whenever both devices' SyncBatchNorm backward passes
# draw the same copy (above); copies are handed out round robin, so with more copies than a
# backward pass draws they never do. Only for bn=sync: with 64, a Python custom operator on
# cpu:0,cpu:1 with 2 threads deadlocked (bn=scratch had one then; measured), while with 4 it
# trained.
CPU_TEMP_COPIES = 64


def sync(channels: int, momentum: float = 0.9, eps: float = 1e-5, init: str = "standard",
         devices: int = 1):
    """bn=sync: MXNet's SyncBatchNorm over `devices` devices."""
    from mxnet import gluon
    layer = gluon.contrib.nn.SyncBatchNorm(in_channels=channels, num_devices=devices,
                                           momentum=momentum, epsilon=eps, **initializers(init))
    layer.op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op (its barrier)
    return layer


def check(network, momentum: float, eps: float, init: str) -> None:
    check_batch_norm(momentum, eps, init)
    if network.devices > 1 and "activations" in network.monitors:
        fail("monitor", "[activations]", "its probe runs the network on one device in training "
             "mode, where bn=sync waits for the other devices forever; use one device or drop it.")
