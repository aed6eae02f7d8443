"""Float32 rounding bounds for two computations of the same training step.

Data-parallel training on two devices computes the same SGD update as one device,
but adds up the same float32 numbers in another order: each device sums the
gradient terms of its half batch (with kernels picked for that batch size, SIMD
width and thread count) and the halves are added at the end. Nothing else
differs, so the two updates may differ by rounding only, and rounding obeys a
bound that holds for every summation order, CPU and thread count:

- A sum of m float32 terms t_i, in any order, is within gamma(m) * sum|t_i| of
  the exact sum, gamma(m) = m u / (1 - m u), u = 2^-24 the unit roundoff
  (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., 2002,
  Lemma 3.1 and eq. 3.5). Two such sums differ by at most twice that.
- A weight gradient is such a sum: over the samples (and, for a convolution,
  the output positions) of delta * x, the gradient at the layer's output times
  the layer's input. Its terms carry the rounding of the forward and backward
  passes that produced delta and x; to first order that lengthens the chain of
  roundings from m to m + the reduction lengths of every layer, forward and
  backward (`chain_length`).

So, per gradient element, |g_one - g_two| <= 2 gamma(m + chain) A, where A is
the sum of |delta| |x| over the same terms (`magnitudes`: the gradient of the
layer's linear map applied to |x| with head gradient |delta|). The SGD update
w - lr g adds one rounding of w and of lr g per element. Maximum pooling and
ReLU can switch branches on near-ties that rounding decides; the bound is far
(>1000x on the machines measured) above the typical difference, which absorbs
those rare flips, while a wrong split or a wrong average changes every update
by order 1 -- far above the bound in the dense layers, where it is below 1% of
the update (`tests/test_multidevice.py` shows both).
"""
from __future__ import annotations

import numpy as np
from mxnet import autograd, gluon, nd

U = 2.0 ** -24  # float32 unit roundoff
SOFTMAX_CLASSES = 10


def gamma(m: int) -> float:
    """Higham's gamma_m: relative error bound of a float32 sum (or dot product) of m terms."""
    assert m * U < 1
    return m * U / (1 - m * U)


def linear_layers(net: gluon.HybridSequential) -> list[gluon.HybridBlock]:
    return [layer for layer in net if isinstance(layer, (gluon.nn.Conv2D, gluon.nn.Dense))]


def chain_length(net: gluon.HybridSequential) -> int:
    """Roundings feeding one gradient term: every layer's reduction forward (fan-in) and
    backward (fan-out), and the softmax over the classes."""
    total = SOFTMAX_CLASSES
    for layer in linear_layers(net):
        w = layer.weight.shape  # conv (out, in, kh, kw); dense (units, in_units)
        taps = int(np.prod(w[2:])) if len(w) == 4 else 1
        total += w[1] * taps + w[0] * taps
    return total


def weight_reduction_length(layer: gluon.HybridBlock, delta: nd.NDArray) -> int:
    """Terms in one weight-gradient element: samples x output positions."""
    return int(delta.shape[0] * (np.prod(delta.shape[2:]) if delta.ndim == 4 else 1))


def _linear(layer, x, weight):
    """The layer's map without bias and activation."""
    if isinstance(layer, gluon.nn.Conv2D):
        return nd.Convolution(x, weight, kernel=layer._kwargs["kernel"],
                              num_filter=layer._channels, no_bias=True)
    return nd.FullyConnected(x, weight, num_hidden=layer._units, no_bias=True, flatten=True)


def magnitudes(net: gluon.HybridSequential, x: nd.NDArray, y: nd.NDArray,
               loss: gluon.loss.Loss) -> dict[str, tuple[np.ndarray, int]]:
    """For each weight and bias of a BN-free network: (A, m), A the sum of the absolute
    values of the m terms whose sum is its gradient of the batch-mean loss."""
    stages, h = [], x
    for layer in net:  # layer by layer, each input a leaf, so that every delta is visible
        leaf = h.detach()
        leaf.attach_grad()
        with autograd.record():
            out = layer(leaf)
        stages.append((layer, leaf, out))
        h = out
    logits = h.detach()
    logits.attach_grad()
    with autograd.record():
        mean_loss = loss(logits, y).mean()
    mean_loss.backward()
    head, out_magnitudes = logits.grad, {}
    for layer, leaf, out in reversed(stages):
        if isinstance(layer, (gluon.nn.Conv2D, gluon.nn.Dense)):
            delta = head * (out > 0) if getattr(layer, "act", None) is not None else head
            weight = layer.weight.data().copy()
            weight.attach_grad()
            with autograd.record():
                total = (_linear(layer, nd.abs(leaf), weight) * nd.abs(delta)).sum()
            total.backward()
            m = weight_reduction_length(layer, delta)
            axes = (0, 2, 3) if delta.ndim == 4 else (0,)
            out_magnitudes[layer.weight.name] = (weight.grad.asnumpy().astype(np.float64), m)
            out_magnitudes[layer.bias.name] = (np.abs(delta.asnumpy()).astype(np.float64).sum(axis=axes), m)
        out.backward(head)
        head = leaf.grad
    return out_magnitudes


def normalization_chain_length(net: gluon.HybridSequential, x: nd.NDArray) -> int:
    """Roundings that batch normalization layers add to a gradient term's chain: each sums
    over its batch and positions (N * L terms) for the mean and the variance forward and
    for the two sums of its backward pass. (0 for a network without them.)"""
    total, h = 0, x
    for layer in net:
        if isinstance(layer, gluon.nn.BatchNorm):  # SyncBatchNorm is one too
            total += 4 * h.shape[0] * int(np.prod(h.shape[2:]))
        h = layer(h)
    return total


def update_bounds(net: gluon.HybridSequential, x: nd.NDArray, y: nd.NDArray, lr: float,
                  loss: gluon.loss.Loss) -> dict[str, np.ndarray]:
    """Per element: how far apart two float32 computations of the SGD update of `net` on
    (x, y) may land, whatever their summation orders. `net` holds the weights before it;
    its BN layers (if any) normalize over the whole batch x, and add their sums to the
    chain of roundings (`normalization_chain_length`). Bounds for the conv and dense
    weights and biases."""
    chain = chain_length(net) + normalization_chain_length(net, x)
    params = {p.name: p.data().asnumpy().astype(np.float64) for p in net.collect_params().values()}
    bounds = {}
    for name, (a, m) in magnitudes(net, x, y, loss).items():
        gradient_part = lr * 2 * gamma(m + chain) * a
        # each run rounds w - lr*g once more: half an ulp of the result, twice
        bounds[name] = gradient_part + 2 * U * (np.abs(params[name]) + lr * a)
    return bounds
