"""The optimizers (`optimizer=sgd|momentum|adam`, conf/optimizer/): MXNet's, as the option
configures them. bnexp supplies the learning rate (`lr`, scaled with the batch if asked);
weight decay adds wd * w to every parameter's gradient, as MXNet's optimizers do (BN's gamma
and beta and the biases included). The Trainer's loss is the batch mean: gluon.Trainer.step
divides the summed loss's gradient by the batch size."""
from __future__ import annotations

import math

from bnexp.config import fail


def sgd(learning_rate: float, momentum: float = 0.0, weight_decay: float = 0.0):
    """SGD; with momentum m: v = m v - lr (g + wd w), w += v (momentum 0: the source's plain SGD)."""
    import mxnet as mx
    return mx.optimizer.SGD(learning_rate=learning_rate, momentum=momentum, wd=weight_decay)


def adam(learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
         weight_decay: float = 0.0):
    """Adam (Kingma & Ba 2015) with bias correction; weight decay added to the gradient (not AdamW)."""
    import mxnet as mx
    return mx.optimizer.Adam(learning_rate=learning_rate, beta1=beta1, beta2=beta2,
                             epsilon=epsilon, wd=weight_decay)


def check(network, weight_decay: float, **rates: float) -> None:
    """momentum, beta1, beta2 in [0, 1); epsilon > 0; weight_decay >= 0."""
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        fail("optimizer.weight_decay", weight_decay, "must be a finite number >= 0, e.g. 5e-4.")
    for key in ("momentum", "beta1", "beta2"):
        if key in rates and not 0 <= rates[key] < 1:
            fail(f"optimizer.{key}", rates[key], "must be in [0, 1), e.g. 0.9.")
    if "epsilon" in rates and not (math.isfinite(rates["epsilon"]) and rates["epsilon"] > 0):
        fail("optimizer.epsilon", rates["epsilon"], "must be a finite number > 0, e.g. 1e-8.")
