"""What the batch-normalization family shares: gamma, beta and the moving statistics, their
initial values (`bn.init`), and the checks of momentum, eps and init.

bn.init=standard: gamma 1, beta 0, moving mean 0, moving variance 1 (gluon.nn.BatchNorm's).
bn.init=source: the source tutorial's defects, gamma and beta from N(0, 0.01) and the moving
variance at 0 (bnexp/nn/build.py draws the biases from N(0, model.init_sigma) then too).
"""
from __future__ import annotations

import math

from bnexp.config import fail

INITS = ("standard", "source")
SOURCE_SIGMA = 0.01  # the tutorial draws every parameter from N(0, 0.01)


def initializers(init: str, moving: bool = True) -> dict:
    """gluon.nn.BatchNorm's initializer arguments for `init`: {} for the standard values, the
    tutorial's for source (`moving`: also the moving variance's)."""
    if init != "source":
        return {}
    import mxnet as mx  # a layer is being built: MXNet is running
    out = {"gamma_initializer": mx.init.Normal(SOURCE_SIGMA),
           "beta_initializer": mx.init.Normal(SOURCE_SIGMA)}
    if moving:
        out["running_variance_initializer"] = "zeros"
    return out


def add_batch_norm_parameters(block, channels: int, init: str = "standard") -> None:
    """`block.gamma`, `.beta`, `.running_mean`, `.running_var` as gluon.nn.BatchNorm has them
    (same names, so checkpoints and monitors treat every BN-like layer alike); the running
    statistics get no gradient. Call inside the block's name scope."""
    given = initializers(init)
    shape = (channels,)
    block.gamma = block.params.get("gamma", shape=shape, init=given.get("gamma_initializer", "ones"))
    block.beta = block.params.get("beta", shape=shape, init=given.get("beta_initializer", "zeros"))
    block.running_mean = block.params.get("running_mean", shape=shape, grad_req="null",
                                          init="zeros", differentiable=False)
    block.running_var = block.params.get(
        "running_var", shape=shape, grad_req="null", differentiable=False,
        init=given.get("running_variance_initializer", "ones"))


def check_init(init: str) -> None:
    if init not in INITS:
        fail("bn.init", init, f"choose one of {', '.join(INITS)}.")


def check_eps(eps: float) -> None:
    if not (math.isfinite(eps) and eps > 0):
        fail("eps", eps, "the epsilon must be a finite number > 0, e.g. eps=1e-5.")


def check_batch_norm(momentum: float, eps: float, init: str) -> None:
    """momentum in [0, 1), eps > 0, init standard or source."""
    if not 0 <= momentum < 1:
        fail("momentum", momentum, "the BN momentum must be in [0, 1), e.g. momentum=0.9.")
    check_eps(eps)
    check_init(init)
