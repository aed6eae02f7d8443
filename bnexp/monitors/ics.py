"""Santurkar et al. (2018), Fig. 3 and Definition 2.1: internal covariate shift as the
change of a layer's weight gradient when the layers before it are updated first.

For layer i with weights W_i, on the batch of step t:
    G_i  = grad of the loss w.r.t. W_i at (W_1, ..., W_k)
    G'_i = grad of the loss w.r.t. W_i at (W'_1, ..., W'_{i-1}, W_i, ..., W_k)
where W' = W - lr * grad is the SGD update every earlier layer takes on the same batch
("earlier" = every trainable parameter before layer i: weights, biases, BN's gamma and
beta). ICS_i is reported as ||G_i - G'_i||_2 and cos(G_i, G'_i). A layer with nothing
trainable before it has ICS 0 and cosine 1 by definition. The measurement is taken
before the step's real update, inside `preserved`: the run goes on as without it.
TensorBoard: `ics/<layer>/l2`, `ics/<layer>/cos`.
"""
from __future__ import annotations

import numpy as np

from bnexp.monitors.base import Monitor, check_every


def l2_and_cosine(g: np.ndarray, g_shifted: np.ndarray) -> tuple[float, float]:
    """||g - g'|| and cos(g, g') (cos of two zero vectors: 1, nothing changed)."""
    l2 = float(np.linalg.norm(g - g_shifted))
    norms = float(np.linalg.norm(g) * np.linalg.norm(g_shifted))
    cos = float(np.vdot(g, g_shifted) / norms) if norms > 0 else (1.0 if l2 == 0 else 0.0)
    return l2, cos


def internal_covariate_shift(net, images, labels, ctx, lr: float) -> dict[str, dict[str, float]]:
    """{layer: {"l2", "cos"}} for every convolution and dense layer of `net` (see above)."""
    from bnexp.monitors.network import (loss_and_gradients, set_values, trainable, values,
                                        weighted_layers)
    params = trainable(net)
    now = values(params)
    _, grads = loss_and_gradients(net, images, labels, ctx)
    updated = {name: now[name] - lr * grads[name] for name in now}
    out = {}
    for layer, earlier in weighted_layers(net):
        weight = f"{net.prefix}{layer}_weight"
        if not earlier:
            out[layer] = {"l2": 0.0, "cos": 1.0}
            continue
        set_values(params, {name: updated[name] for name in earlier})
        _, shifted = loss_and_gradients(net, images, labels, ctx)
        set_values(params, {name: now[name] for name in earlier})
        l2, cos = l2_and_cosine(grads[weight], shifted[weight])
        out[layer] = {"l2": l2, "cos": cos}
    return out


class ICSMonitor(Monitor):
    """`every` steps: the internal covariate shift of every weighted layer."""
    name = "ics"

    def on_step_start(self, state) -> None:
        if not self.due(state.step):
            return
        from bnexp.monitors.network import preserved
        with state.aside(), preserved(state.net):
            layers = internal_covariate_shift(state.net, state.images, state.labels, state.ctx,
                                              state.optimizer.learning_rate)
        for layer, m in layers.items():
            state.logger.scalars(state.step, {f"ics/{layer}/l2": m["l2"], f"ics/{layer}/cos": m["cos"]})
        self.keep(state, {"step": state.step, "layers": layers})


def check(network, every: int, at_loss: list[float], samples: int) -> None:
    check_every("ics", every, at_loss, samples)
