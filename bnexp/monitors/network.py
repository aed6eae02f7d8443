"""What the monitors do to the network on the side: keep it exactly as it was, take
gradients of the batch-mean loss, set trial parameters, walk its layers in order."""
from __future__ import annotations

import contextlib
from typing import Iterator

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from bnexp.training.checkpoint import saved_params
from bnexp.training.step import LOSS, split


@contextlib.contextmanager
def preserved(net: gluon.Block) -> Iterator[None]:
    """Put back every parameter of `net` -- weights, BN moving statistics, noise values --
    on every device, bit for bit, when the block ends (the optimizer is never touched).
    Constants (bn=noisy's noise banks) cannot change and are not copied: the parameters a
    checkpoint saves are the ones that can."""
    params = saved_params(net)
    saved = {name: [data.copy() for data in param.list_data()] for name, param in params.items()}
    try:
        yield
    finally:
        for name, param in params.items():
            for data, copy in zip(param.list_data(), saved[name]):
                copy.copyto(data)


def trainable(net: gluon.Block) -> dict[str, gluon.Parameter]:
    """The parameters SGD updates, in network order."""
    return {name: p for name, p in net.collect_params().items() if p.grad_req != "null"}


def values(params: dict[str, gluon.Parameter]) -> dict[str, np.ndarray]:
    return {name: p.data().asnumpy().astype(np.float64) for name, p in params.items()}


def set_values(params: dict[str, gluon.Parameter], new: dict[str, np.ndarray]) -> None:
    """Write trial values into the parameters on every device, in place: Parameter.set_data
    would also reset a kvstore that updates on the devices' behalf (several devices), and
    with it the optimizer's state (momentum, Adam's moments)."""
    for name, value in new.items():
        for data in params[name].list_data():
            nd.array(value, dtype=params[name].dtype, ctx=data.context).copyto(data)


def loss_and_gradients(net: gluon.Block, images: nd.NDArray, labels: nd.NDArray,
                       ctx: list[mx.Context]) -> tuple[float, dict[str, np.ndarray]]:
    """The batch-mean cross-entropy and its gradient (float64), as the training step
    computes it: the batch split across the devices, BN in training mode."""
    params = trainable(net)
    xs, ys = split(images, ctx), split(labels, ctx)
    with autograd.record():
        losses = [LOSS(net(x), y) for x, y in zip(xs, ys)]
    autograd.backward(losses)
    n = images.shape[0]
    loss = sum(float(l.sum().asscalar()) for l in losses) / n
    grads = {name: sum(g.asnumpy().astype(np.float64) for g in p.list_grad()) / n
             for name, p in params.items()}
    return loss, grads


def weighted_layers(net: gluon.HybridSequential) -> list[tuple[str, list[str]]]:
    """(layer name, names of the trainable parameters of every block before it) for each
    convolution or dense layer, in order: 'conv0', 'dense1', ..."""
    out, before = [], []
    for block in net:
        if isinstance(block, (gluon.nn.Conv2D, gluon.nn.Dense)):
            out.append((short_name(block), list(before)))
        before += [name for name, p in block.collect_params().items() if p.grad_req != "null"]
    return out


def short_name(block: gluon.Block) -> str:
    """lenet_conv0 -> conv0"""
    return block.name.split("_", 1)[-1]


def activation_inputs(net: gluon.HybridSequential, x: nd.NDArray) -> dict[str, nd.NDArray]:
    """Run `net` block by block and keep the input of every standalone activation, named by
    the layer that feeds it (conv0, dense1, ...): after BN if there is one."""
    out, h, source = {}, x, None
    for block in net:
        if isinstance(block, (gluon.nn.Conv2D, gluon.nn.Dense)):
            source = short_name(block)
        if isinstance(block, gluon.nn.Activation) and source is not None:
            out[source] = h
        h = block(h)
    return out
