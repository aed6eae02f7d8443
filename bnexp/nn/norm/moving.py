"""Moving statistics of a normalization layer with MXNet's native operators only.

A hybridized graph is traced once, so a Python `if autograd.is_training()` would freeze
whichever mode was active at the first call, and a symbolic graph cannot assign to a
variable. MXNet hands the run-time mode, and the right to write into an input, only to
its stateful operators; a Python custom operator gets both, but each call costs a trip
through Python and a wait on the engine (about 3 ms per layer and step on this project's
machine, docs/speed.md). Two native operators do the same:

- `TrainingFlag`: MXNet's BatchNorm over a constant two-sample batch tells the mode.
- `moving_average`: MXNet's momentum-SGD update writes into its momentum input in place;
  with momentum 1 and learning rate 1 it is `moving <- moving - step`, an in-place
  subtraction, and the layer chooses the step.
"""
from __future__ import annotations

import ctypes

from bnexp.nn.lazy_block import LazyHybridBlock


class TrainingFlag(LazyHybridBlock):
    """1.0 in training mode, 0.0 in inference, read at run time inside a hybridized graph,
    with the shape of its input.

    A BatchNorm over the constant two-sample batch [0, 2] outputs about [-1, 1] when
    training (batch statistics) and about [0, 2] in inference (moving statistics 0 and 1);
    with momentum 1 its moving statistics never move."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.probe_mean = self.params.get("probe_mean", shape=(1,), init="zeros",
                                              grad_req="null", differentiable=False)
            self.probe_var = self.params.get("probe_var", shape=(1,), init="ones",
                                             grad_req="null", differentiable=False)

    def hybrid_forward(self, F, like, probe_mean, probe_var):
        one = F.ones_like(probe_mean)
        batch = F.reshape(F.concat(F.zeros_like(probe_mean), one * 2, dim=0), (2, 1))
        out = F.BatchNorm(batch, one, F.zeros_like(probe_mean), probe_mean, probe_var,
                          eps=1e-5, momentum=1.0, fix_gamma=False, use_global_stats=False)
        first = F.slice_axis(F.reshape(out, (-1,)), axis=0, begin=0, end=1)
        return F.BlockGrad(F.broadcast_like(first < -0.5, like))


def moving_average(F, moving, batch, momentum: float, training):
    """Fold this step's `batch` statistic into the `moving` one, in place, in training;
    leave it untouched in inference:

        training:  moving <- moving - (1 - momentum) * (moving - batch)
                          =  momentum * moving + (1 - momentum) * batch
        inference: moving <- moving - 0                      (exactly; NaN batches too)

    `moving` must be the layer's parameter itself (MXNet writes only into variables).
    Returns (before, after): copies of the moving statistic before and after this step,
    cut off from autograd. Read it only from these: in a graph the order of a read of
    `moving` and the write into it is otherwise not fixed, while `before` is computed on
    the way to the write and `after` comes out of it."""
    before = F.BlockGrad(F.identity(moving))
    zeros = F.zeros_like(batch)  # the inference step, and the "weight" the optimizer op would move
    step = F.where(training, (1 - momentum) * (before - F.BlockGrad(batch)), zeros)
    from mxnet import ndarray  # the layer is running: MXNet is imported
    if F is ndarray:
        after = ndarray.sgd_mom_update(zeros, step, moving, lr=1.0, momentum=1.0)
    else:
        after = _symbol("sgd_mom_update", zeros, step, moving, lr=1.0, momentum=1.0)
    return before, F.BlockGrad(after)


def _symbol(op: str, *inputs, **attrs):
    """`mx.sym.<op>(*inputs, **attrs)` composed by position. MXNet's generated symbol
    functions pass inputs by name, and the optimizer operators register no input names,
    so `mx.sym.sgd_mom_update(...)` fails ("Not enough argument to call operator")."""
    from mxnet._ctypes.symbol import _symbol_creator
    from mxnet.base import _LIB, OpHandle, c_str, check_call
    handle = OpHandle()
    check_call(_LIB.NNGetOpHandle(c_str(op), ctypes.byref(handle)))
    return _symbol_creator(handle.value, list(inputs), None, list(attrs),
                           list(attrs.values()), None, False)
