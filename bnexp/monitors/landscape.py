"""Santurkar et al. (2018), Fig. 4: the loss landscape along the gradient.

At a measuring step, on that step's batch, with g the gradient at the weights w and
trial steps of sizes eta_k = f_k * lr (f_k = `factors`, default 0.5, 1, 2, 3):
    loss_range       max - min of L(w - eta g) over eta in {0, eta_1, ..., eta_K}
                     ("variation of the loss", Fig. 4a)
    grad_change      max_k ||grad L(w - eta_k g) - g||      ("gradient predictiveness", 4b)
    beta_smoothness  max_k ||grad L(w - eta_k g) - g|| / ||eta_k g||
                     (the largest gradient change per distance moved, 4c)
The step sizes follow the paper's rule (Santurkar et al. 2018, Appendix A.2.2): for VGG at lr
0.1 they take 1/2 to 4 times the lr, the largest "slightly smaller than the learning rate at
which the standard (no BatchNorm) network diverges" (Fig. 4 caps it at 0.4). LeNet without BN
still trains at lr 0.6 (0.73 after an epoch) and fails at 0.8 (`experiment=lr_robustness`), so
at lr 0.2 the rule gives 3x; the paper's 4x would be 0.8, where the plain network already fails.
Smaller means a smoother, more predictable landscape; the paper finds all three smaller
with BN. On a quadratic 1/2 h ||w||^2 the smoothness is exactly h and the loss range is
L(w) - min_k L(w - eta_k g) with the closed form tested in tests/test_monitors.py. The
trial steps run inside `preserved`: the run goes on as without them. TensorBoard:
`landscape/loss_range`, `landscape/grad_change`, `landscape/beta_smoothness`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bnexp.config import fail
from bnexp.monitors.base import Monitor, check_every

Weights = dict[str, np.ndarray]


def along_gradient(loss_and_grad: Callable[[Weights], tuple[float, Weights]], w: Weights,
                   lr: float, factors: list[float]) -> dict[str, float | list]:
    """The three measures for any objective given as w -> (loss, gradient)."""
    loss0, g = loss_and_grad(w)
    g_norm = np.sqrt(sum(float(np.vdot(v, v)) for v in g.values()))
    losses, changes, smoothness = [loss0], [], []
    for f in factors:
        eta = f * lr
        loss, g_k = loss_and_grad({name: w[name] - eta * g[name] for name in w})
        change = np.sqrt(sum(float(np.vdot(g_k[n] - g[n], g_k[n] - g[n])) for n in g))
        losses.append(loss)
        changes.append(change)
        smoothness.append(change / (eta * g_norm) if g_norm > 0 else 0.0)
    return {"loss_range": float(max(losses) - min(losses)), "grad_change": float(max(changes)),
            "beta_smoothness": float(max(smoothness)), "losses": [float(v) for v in losses],
            "factors": list(factors)}


class LandscapeMonitor(Monitor):
    """`every` steps: the loss and gradient along the gradient, at steps of `factors` x lr."""
    name = "landscape"

    def __init__(self, every: int = 25, factors: list[float] = (0.5, 1.0, 2.0, 3.0),
                 at_loss: list[float] = (), samples: int = 5):
        super().__init__(every, at_loss, samples)
        self.factors = list(factors)

    def on_step_start(self, state) -> None:
        if not self.due(state.step):
            return
        from bnexp.monitors.network import (loss_and_gradients, preserved, set_values,
                                            trainable, values)
        params = trainable(state.net)

        def loss_and_grad(w: Weights) -> tuple[float, Weights]:
            set_values(params, w)
            return loss_and_gradients(state.net, state.images, state.labels, state.ctx)

        with state.aside(), preserved(state.net):
            m = along_gradient(loss_and_grad, values(params), state.optimizer.learning_rate,
                               self.factors)
        state.logger.scalars(state.step, {f"landscape/{k}": m[k]
                                          for k in ("loss_range", "grad_change", "beta_smoothness")})
        self.keep(state, {"step": state.step, **m})


def check(network, every: int, factors: list[float], at_loss: list[float], samples: int) -> None:
    check_every("landscape", every, at_loss, samples)
    if not (factors and min(factors) > 0):
        fail("monitor.landscape.factors", list(factors),
             "a list of step sizes > 0, in units of the learning rate, e.g. [0.5,1,2,3].")
