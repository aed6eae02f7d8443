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
(bnexp/run.py: cpu_temp_copies; bnexp/runtime/mxnet_import.py: SYNC_BN_TEMP_COPIES) and
runs the network op by op on several devices: then the copies
are drawn in the same order at every step, and distinct ones within a pass. (Hybridized,
with 64 copies, LeNet still deadlocked at its 7th step on cpu:0,cpu:1; with 1000 it did
not in 20 steps: measured, not understood, so not relied on.)
"""
from __future__ import annotations

from mxnet import gluon

from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


class SyncBatchNorm(gluon.contrib.nn.SyncBatchNorm):
    op_by_op_on_devices = True  # bnexp/nn/build.py: must_run_op_by_op


@NORMALIZATIONS.register("sync", summary="synchronized BN: MXNet's contrib SyncBatchNorm, statistics "
                         "of the batch over all devices", order=30)
def sync(spec: NormSpec, channels: int, layer: int) -> SyncBatchNorm:
    return SyncBatchNorm(in_channels=channels, num_devices=spec.devices,
                                          momentum=spec.momentum, epsilon=spec.eps,
                                          **spec.initializers())
