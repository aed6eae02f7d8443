"""The normalization family beside BN against known answers (bnexp/nn/norm/).

- The from-scratch GroupNorm / LayerNorm / InstanceNorm equal MXNet's layers, forward and
  gradients, in training and inference, on conv (N, C, H, W) and dense (N, C) shapes, to a
  bound derived from float32 rounding (`normalization_bounds`); GroupNorm with one group is
  LayerNorm over (C, H, W), with C groups InstanceNorm.
- Batch Renorm with r_max = 1, d_max = 0 is BN; with room to correct, r and d are
  constants in backprop.
- Ghost BN with a virtual batch equal to the batch is BN; smaller, it is BN per chunk.
- The batch-independent layers keep no moving statistics and a sample's output does
  not depend on the rest of its batch.
"""
from __future__ import annotations

import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, nd

from fp32 import U, gamma
from bnexp import options
from bnexp.errors import ConfigError
from bnexp.nn.norm.ghost import GhostBatchNorm
from bnexp.nn.norm.group import GroupNorm
from bnexp.nn.norm.renorm import BatchRenorm, relaxed_limits
from bnexp.nn.norm.scratch import ScratchBatchNorm
from conftest import config

CONV, DENSE = (6, 20, 5, 4), (6, 20)
RNG = np.random.default_rng(0)


def make_norm(name: str, channels: int, *overrides: str):
    """The layer that bn=<name> (conf/bn/<name>.yaml, with `overrides`) builds for `channels`
    channels, as bnexp/nn/build.py builds it."""
    node = config(f"bn={name}", *overrides).bn
    return options.build("bn", node, channels=channels, layer=0, seed=0, devices=1,
                         formulation="reference")


def array(shape, loc=0.0, scale=1.0):
    return nd.array(RNG.normal(loc, scale, size=shape).astype(np.float32))


def run(layer, x, head, train: bool):
    """Output and gradients (input, then every differentiable parameter) of one pass."""
    x = x.copy()
    x.attach_grad()
    with autograd.record(train_mode=train):
        y = layer(x)
    y.backward(head)
    params = [p for p in layer.collect_params().values() if p.grad_req != "null"]
    return y.asnumpy(), [x.grad.asnumpy()] + [p.grad().asnumpy() for p in params]


# ------------------------------------------------------------ float32 bounds
def normalization_bounds(x: np.ndarray, head: np.ndarray, weight: np.ndarray, groups: int,
                         eps: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """How far apart two float32 computations of a group normalization (per sample, `groups`
    groups, per-channel `weight`) may land: output, then gradients of input, gamma, beta.

    Each quantity is a chain of sums and products. A float32 sum of m terms, in any order,
    is within gamma(m) * sum|terms| of the exact sum (Higham, Lemma 3.1; tests/fp32.py);
    two implementations, each within that, differ by twice it. To first order:
      mean: m terms |x| / m;   var: m terms (x - mean)^2, or E[x^2] - mean^2 (MXNet's
      formula), both within gamma(m + 3) * mean((|x| + |mean|)^2);
      x_hat = (x - mean) / sigma errs by (|d mean| + u |x - mean|) / sigma + |x_hat| |d var| / (2 var);
      the input gradient gamma/sigma (g - mean(g) - x_hat mean(g x_hat)) sums 2m more terms
      and carries x_hat's error times mean|g|; gamma's and beta's gradients sum N*L terms.
    Measured: MXNet's layers land within 0.43 of this bound at most (median 0.005), while
    a variance divided by m - 1 lands far outside it.
    """
    n, c = x.shape[:2]
    xg = x.astype(np.float64).reshape(n, groups, -1)
    m = xg.shape[2]
    mean = xg.mean(axis=2, keepdims=True)
    sigma = np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    x_hat = (xg - mean) / sigma
    magnitude = (np.abs(xg) + np.abs(mean)) ** 2
    d_mean = gamma(m) * np.abs(xg).mean(axis=2, keepdims=True)
    d_var = gamma(m + 3) * magnitude.mean(axis=2, keepdims=True)
    d_hat = 2 * ((d_mean + U * np.abs(xg - mean)) / sigma + np.abs(x_hat) * d_var / (2 * sigma ** 2)
                 + 2 * U * np.abs(x_hat))
    w = np.abs(weight.astype(np.float64)).reshape(1, c, 1)
    g = head.astype(np.float64).reshape(n, c, -1) * weight.reshape(1, c, 1)   # gradient at x_hat
    g_groups, hat = np.abs(g).reshape(n, groups, -1), np.abs(x_hat)
    terms = (g_groups + np.abs(g_groups).mean(axis=2, keepdims=True)
             + hat * (g_groups * hat).mean(axis=2, keepdims=True)) / sigma
    d_input = 2 * gamma(2 * m + 8) * terms + d_hat * 2 * g_groups.mean(axis=2, keepdims=True) / sigma
    d_out = (w * d_hat.reshape(n, c, -1)).reshape(x.shape) + 2 * U * np.abs(head)  # |y| term ~ 1
    head64 = np.abs(head.astype(np.float64)).reshape(n, c, -1)
    count = n * head64.shape[2]
    hat_c = hat.reshape(n, c, -1)
    d_gamma = 2 * gamma(count) * (head64 * hat_c).sum(axis=(0, 2)) + \
        (head64 * d_hat.reshape(n, c, -1)).sum(axis=(0, 2))
    d_beta = 2 * gamma(count) * head64.sum(axis=(0, 2))
    return d_out, [d_input.reshape(x.shape), d_gamma, d_beta]


def assert_within(a: np.ndarray, b: np.ndarray, bound: np.ndarray, what: str) -> None:
    excess = np.abs(a.astype(np.float64) - b) / (bound + 1e-30)
    assert excess.max() <= 1.0, f"{what}: {excess.max():.3g} x the float32 bound"


def compare(ours, theirs, x, head, weight, groups, eps=1e-5, train=True):
    y1, g1 = run(ours, x, head, train)
    y2, g2 = run(theirs, x, head, train)
    d_out, d_grads = normalization_bounds(x.asnumpy(), head.asnumpy(), weight, groups, eps)
    assert_within(y1, y2, d_out, "output")
    for name, a, b, bound in zip(("input", "gamma", "beta"), g1, g2, d_grads):
        if a.shape != b.shape:  # MXNet's GroupNorm: gamma and beta per group
            a = a.reshape(groups, -1).sum(axis=1)
            bound = bound.reshape(groups, -1).sum(axis=1)
        assert_within(a, b, bound, name)


def set_affine(ours, theirs, gamma_c, beta_c, per_group: int | None = None):
    ours.gamma.set_data(nd.array(gamma_c))
    ours.beta.set_data(nd.array(beta_c))
    params = {k.rsplit("_", 1)[-1]: p for k, p in theirs.collect_params().items()}
    if per_group:
        params["gamma"].set_data(nd.array(gamma_c[::per_group]))
        params["beta"].set_data(nd.array(beta_c[::per_group]))
    else:
        params["gamma"].set_data(nd.array(gamma_c))
        params["beta"].set_data(nd.array(beta_c))


def initialized(*layers, hybridize=False):
    for layer in layers:
        layer.initialize(ctx=mx.cpu())
        if hybridize:
            layer.hybridize(static_alloc=True, static_shape=True)
    return layers


@pytest.mark.parametrize("shape", [CONV, DENSE], ids=["conv", "dense"])
@pytest.mark.parametrize("groups", [1, 5, 20])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_group_norm_matches_mxnet(shape, groups, train, hybridize):
    """MXNet's GroupNorm has gamma and beta per group: give ours the same per group."""
    c = shape[1]
    ours, theirs = initialized(GroupNorm(c, groups), gluon.nn.GroupNorm(num_groups=groups),
                               hybridize=hybridize)
    x, head = array(shape, 2.0, 3.0), array(shape)
    theirs(nd.zeros((1, c, 1)))  # deferred init; MXNet's operator wants >= 3 dimensions
    gamma_c = np.repeat(RNG.normal(1, 0.5, groups), c // groups).astype(np.float32)
    beta_c = np.repeat(RNG.normal(0, 0.5, groups), c // groups).astype(np.float32)
    set_affine(ours, theirs, gamma_c, beta_c, per_group=c // groups)
    compare(ours, Reshaped(theirs), x, head, gamma_c, groups, train=train)


class Reshaped(gluon.Block):
    """Runs `inner` on (N, C, -1) and gives the output the input's shape."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.reshape((0, 0, -1))).reshape(x.shape)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_instance_norm_is_group_norm_with_a_group_per_channel_and_matches_mxnet(train, hybridize):
    c = CONV[1]
    ours = make_norm("instance", c)
    theirs = make_norm("instance_gluon", c)
    assert isinstance(ours, GroupNorm) and ours.groups == c
    initialized(ours, theirs, hybridize=hybridize)
    gamma_c, beta_c = RNG.normal(1, 0.5, c).astype(np.float32), RNG.normal(0, 0.5, c).astype(np.float32)
    set_affine(ours, theirs, gamma_c, beta_c)
    compare(ours, theirs, array(CONV, 2.0, 3.0), array(CONV), gamma_c, c, train=train)


@pytest.mark.parametrize("shape", [CONV, DENSE], ids=["conv", "dense"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_layer_norm_is_group_norm_with_one_group_and_matches_mxnet_layer_norm(shape, train):
    """MXNet's LayerNorm normalizes one axis: over (C, H, W) flattened, with unit affine
    (its gamma would be per element, Wu & He's per channel: they agree at gamma 1, beta 0)."""
    c = shape[1]
    ours = make_norm("layer", c)
    assert isinstance(ours, GroupNorm) and ours.groups == 1
    flat = int(np.prod(shape[1:]))
    mxnet_ln = gluon.nn.LayerNorm(axis=-1, in_channels=flat)
    initialized(ours, mxnet_ln)

    class Flattened(gluon.Block):
        def __init__(self):
            super().__init__()
            self.ln = mxnet_ln

        def forward(self, x):
            return self.ln(x.reshape((0, -1))).reshape(x.shape)

    x, head = array(shape, 2.0, 3.0), array(shape)
    y1, g1 = run(ours, x, head, train)
    y2, g2 = run(Flattened(), x, head, train)
    d_out, d_grads = normalization_bounds(x.asnumpy(), head.asnumpy(), np.ones(c, np.float32), 1, 1e-5)
    assert_within(y1, y2, d_out, "output")
    assert_within(g1[0], g2[0], d_grads[0], "input")


def test_the_bound_catches_an_unbiased_variance():
    """A GroupNorm that divides by m - 1 (1/(2m) relative) is far outside the bound."""
    ours, theirs = initialized(GroupNorm(20, 5), GroupNorm(20, 5, epsilon=1e-5))
    x, head = array(CONV, 2.0, 3.0), array(CONV)
    m = 4 * 5 * 4

    class Unbiased(gluon.Block):
        def forward(self, x):
            return theirs(x) * np.sqrt((m - 1) / m)

    with pytest.raises(AssertionError, match="output"):
        compare(ours, Unbiased(), x, head, np.ones(20, np.float32), 5)


# ------------------------------------------------------------ batch independence
BATCH_FREE = ["group", "group_gluon", "layer", "instance", "instance_gluon"]
FIVE_GROUPS = {"group": ["bn.groups=5"], "group_gluon": ["bn.groups=5"]}  # for the 20 channels


@pytest.mark.parametrize("name", BATCH_FREE)
def test_batch_independent_layers_keep_no_moving_statistics(name):
    layer = make_norm(name, 20, *FIVE_GROUPS.get(name, []))
    layer.initialize()
    x = array(CONV, 2.0, 3.0)
    with autograd.record():
        layer(x)
    assert all(p.grad_req != "null" for p in layer.collect_params().values()), \
        [k for k, p in layer.collect_params().items() if p.grad_req == "null"]
    # and inference computes what training does
    with autograd.record(train_mode=True):
        train_out = layer(x)
    np.testing.assert_array_equal(layer(x).asnumpy(), train_out.asnumpy())


@pytest.mark.parametrize("name", BATCH_FREE + ["gluon"])
def test_a_sample_is_normalized_without_the_rest_of_its_batch(name):
    """Sample 0 alone and within a batch of others: the same output (bitwise: the
    per-sample reductions are the same sums). BN (gluon) must fail this."""
    layer = make_norm(name, 20, *FIVE_GROUPS.get(name, []))
    layer.initialize()
    x = array(CONV, 2.0, 3.0)
    with autograd.record():
        batch, alone = layer(x)[0].asnumpy(), layer(x[0:1])[0].asnumpy()
    if name == "gluon":
        assert np.abs(batch - alone).max() > 0.1
    else:
        np.testing.assert_allclose(batch, alone, rtol=0, atol=1e-6)


# ------------------------------------------------------------ Batch Renorm
def renorm_and_bn(momentum=0.9, hybridize=False, **renorm_kwargs):
    c = CONV[1]
    # bnexp's BN in the formulation whose operations Batch Renorm shares (batch_statistics)
    scratch = ScratchBatchNorm(momentum=momentum, in_channels=c, formulation="centered")
    return initialized(BatchRenorm(c, momentum, **renorm_kwargs), scratch,
                       gluon.nn.BatchNorm(momentum=momentum, in_channels=c), hybridize=hybridize)


@pytest.mark.parametrize("shape", [CONV, DENSE], ids=["conv", "dense"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_renorm_without_room_is_bn(shape, hybridize):
    """r_max = 1, d_max = 0 (the whole run: relax_begin = relax_end = 10**9): the same
    operations as bnexp's BN (its centered formulation), so bit for bit its outputs,
    gradients and moving statistics;
    and within test_bn.py's tolerance of MXNet's BatchNorm."""
    renorm, bn, gluon_bn = renorm_and_bn(hybridize=hybridize, r_max=3.0, d_max=5.0,
                                         relax_begin=10 ** 9, relax_end=10 ** 9)
    for step in range(4):
        renorm.set_step(step)
        x, head = array(shape, 2.0, 3.0), array(shape)
        (y1, g1), (y2, g2), (y3, g3) = (run(layer, x, head, True) for layer in (renorm, bn, gluon_bn))
        np.testing.assert_array_equal(y1, y2)
        for a, b, c in zip(g1, g2, g3):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
        for name in ("running_mean", "running_var"):
            np.testing.assert_array_equal(getattr(renorm, name).data().asnumpy(),
                                          getattr(bn, name).data().asnumpy())
    x = array(shape, 2.0, 3.0)
    np.testing.assert_array_equal(renorm(x).asnumpy(), bn(x).asnumpy())  # inference


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_renorm_corrections_are_constants_in_backprop(hybridize):
    """With moving statistics away from the batch's, y = gamma (x_hat_B r + d) + beta with
    r, d computed from them as they were before the step's update (hybridized too, where
    the graph orders the read and the in-place write); the input gradient is r times BN's
    (r, d constant), not what differentiating through r and d gives."""
    renorm, _, gluon_bn = renorm_and_bn(momentum=0.9, hybridize=hybridize, r_max=3.0, d_max=5.0,
                                        relax_begin=0, relax_end=0)
    renorm.set_step(0)
    c = CONV[1]
    x64 = RNG.normal(2.0, 3.0, size=CONV)
    x = nd.array(x64.astype(np.float32))
    head = array(CONV)
    mu_b, var_b = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    moving_mean, moving_var = mu_b + 0.4 * np.sqrt(var_b), 2.0 * var_b  # r ~ 0.7, d ~ -0.3
    renorm.running_mean.set_data(nd.array(moving_mean))
    renorm.running_var.set_data(nd.array(moving_var))
    sigma = np.sqrt(moving_var + 1e-5)
    r = np.clip(np.sqrt(var_b + 1e-5) / sigma, 1 / 3, 3)
    d = np.clip((mu_b - moving_mean) / sigma, -5, 5)
    assert 0.5 < r.min() and r.max() < 0.9 and np.abs(d).min() > 0.1  # inside the clips: r, d matter
    y, grads = run(renorm, x, head, True)
    y_bn, grads_bn = run(gluon_bn, x, head, True)
    shape = (1, c, 1, 1)
    np.testing.assert_allclose(y, y_bn * r.reshape(shape) + d.reshape(shape), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[0], grads_bn[0] * r.reshape(shape), rtol=1e-4, atol=1e-5)
    # what r and d as functions of the batch would give: another gradient
    xv = x.copy()
    xv.attach_grad()
    with autograd.record():
        mean, var = nd.mean(xv, axis=(0, 2, 3), keepdims=True), nd.mean(
            nd.square(xv - nd.mean(xv, axis=(0, 2, 3), keepdims=True)), axis=(0, 2, 3), keepdims=True)
        sig = nd.array(sigma.reshape(shape))
        r_live = nd.sqrt(var + 1e-5) / sig
        d_live = (mean - nd.array(moving_mean.reshape(shape))) / sig
        y_live = (xv - mean) / nd.sqrt(var + 1e-5) * r_live + d_live
    y_live.backward(head)
    assert np.abs(xv.grad.asnumpy() - grads[0]).max() > 100 * np.abs(grads[0] - grads_bn[0] * r.reshape(shape)).max()
    # and the moving averages moved as BN's do
    np.testing.assert_allclose(renorm.running_mean.data().asnumpy(), 0.9 * moving_mean + 0.1 * mu_b, rtol=1e-5)


def test_renorm_relaxes_its_limits_between_the_steps_given():
    assert relaxed_limits(0, 3.0, 5.0, 10, 30) == (1.0, 0.0)
    assert relaxed_limits(10, 3.0, 5.0, 10, 30) == (1.0, 0.0)
    assert relaxed_limits(20, 3.0, 5.0, 10, 30) == (2.0, 2.5)
    assert relaxed_limits(30, 3.0, 5.0, 10, 30) == (3.0, 5.0)
    assert relaxed_limits(99, 3.0, 5.0, 10, 10) == (3.0, 5.0)
    layer = BatchRenorm(4, r_max=3.0, d_max=5.0, relax_begin=10, relax_end=30)
    layer.initialize()
    layer.set_step(20)
    np.testing.assert_array_equal(layer.limits.data().asnumpy(), [2.0, 2.5])


# ------------------------------------------------------------ Ghost BN
@pytest.mark.parametrize("shape", [(8, 20, 5, 4), (8, 20)], ids=["conv", "dense"])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_ghost_bn_with_the_whole_batch_is_bn(shape, hybridize):
    c = shape[1]
    ghost, bn = initialized(GhostBatchNorm(c, virtual_batch=shape[0]), gluon.nn.BatchNorm(in_channels=c),
                            hybridize=hybridize)
    for step in range(3):
        x, head = array(shape, 2.0, 3.0), array(shape)
        (y1, g1), (y2, g2) = run(ghost, x, head, True), run(bn, x, head, True)
        np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(getattr(ghost, name).data().asnumpy(),
                                       bn.params.get(name).data().asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ghost(x).asnumpy(), bn(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_ghost_bn_normalizes_each_virtual_batch_as_bn_would_alone():
    shape, v = (8, 20, 5, 4), 2
    ghost, = initialized(GhostBatchNorm(20, virtual_batch=v))
    x, head = array(shape, 2.0, 3.0), array(shape)
    y, grads = run(ghost, x, head, True)
    chunk_means, chunk_vars = [], []
    for k in range(0, shape[0], v):
        bn, = initialized(gluon.nn.BatchNorm(in_channels=20))
        y_k, g_k = run(bn, x[k:k + v], head[k:k + v], True)
        np.testing.assert_allclose(y[k:k + v], y_k, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(grads[0][k:k + v], g_k[0], rtol=1e-5, atol=1e-5)
        chunk = x[k:k + v].asnumpy().astype(np.float64)
        chunk_means.append(chunk.mean(axis=(0, 2, 3)))
        chunk_vars.append(chunk.var(axis=(0, 2, 3)))
    np.testing.assert_allclose(ghost.running_mean.data().asnumpy(), 0.1 * np.mean(chunk_means, axis=0), rtol=1e-5)
    np.testing.assert_allclose(ghost.running_var.data().asnumpy(), 0.9 + 0.1 * np.mean(chunk_vars, axis=0),
                               rtol=1e-5)


# ------------------------------------------------------------ settings checked
@pytest.mark.parametrize("overrides,message", [
    (["bn=group", "bn.groups=3"], "bn.groups=3: must divide the channels of every normalized layer "
                                  "(20, 50 with model=lenet); choose one of 1, 2, 5, 10."),
    (["bn=group", "bn.groups=10", "model.bn_on_dense=true"], "bn.groups=10: must divide the channels of "
     "every normalized layer (20, 50, 128 with model=lenet model.bn_on_dense=true); choose one of 1, 2."),
    (["bn=group_gluon", "bn.groups=0"], "bn.groups=0: must divide"),
    (["bn=instance", "model=mlp"], "bn=instance: instance normalization averages over a channel's positions"),
    (["bn=ghost", "bn.virtual_batch=48"], "bn.virtual_batch=48: must divide the per-device batch (128 images), "
                                          "e.g. bn.virtual_batch=32."),
    (["bn=ghost", "bn.virtual_batch=32", "ctx=[cpu:0,cpu:1]", "trainer.batch_size=96"],
     "bn.virtual_batch=32: must divide the per-device batch (48 images), e.g. bn.virtual_batch=24."),
    (["bn=ghost_2", "trainer.batch_size=3"], "bn.virtual_batch=2: must divide the per-device batch (3 images)"),
    (["bn=renorm", "bn.r_max=0.5"], "bn.r_max=0.5: r is clipped to [1/r_max, r_max]: must be >= 1 (1 = BN)."),
    (["bn=renorm", "bn.d_max=-1.0"], "bn.d_max=-1.0: d is clipped to [-d_max, d_max]: must be >= 0 (0 = BN)."),
    (["bn=renorm", "bn.relax_begin=300", "bn.relax_end=100"], "bn.relax_end=100: the relaxation must end"),
], ids=lambda v: "-".join(v) if isinstance(v, list) else "")
def test_impossible_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        config("ctx=cpu", *overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("overrides", [
    ["bn=group", "bn.groups=10", "model=mlp"], ["bn=group", "bn.groups=2", "model.bn_on_dense=true"],
    ["bn=ghost", "bn.virtual_batch=2", "trainer.batch_size=2"], ["bn=renorm", "bn.r_max=1.0", "bn.d_max=0.0"],
    ["bn=layer", "model=mlp"], ["bn=instance"],
    # the activations monitor's probe batches have the training batch's size (bnexp/monitors/
    # activations.py), which the virtual batch divides: its probe size need not be a multiple
    ["bn=ghost", "bn.virtual_batch=8", "monitor=[activations]", "monitor.activations.images=100"],
], ids=lambda v: "-".join(v))
def test_possible_settings_pass(overrides):
    config("ctx=cpu", *overrides)


def test_each_bn_yaml_holds_its_targets_settings():
    """conf/bn/<name>.yaml sets exactly the settings its target takes (bnexp/options.py: the
    ones bnexp does not supply), the ones shown in the HParams and the report; an option that
    extends another (conf/bn/ghost_2.yaml) sets some of that one's."""
    from omegaconf import OmegaConf
    files = options.option_files("bn")
    assert {"gluon", "scratch", "none", "group", "ghost", "ghost_2", "renorm", "noisy"} <= set(files)
    for name, path in files.items():
        keys = set(OmegaConf.load(path)) - {"defaults", "_target_"}
        target = options.yaml_target(path)
        if target is None:
            parent = next(d for d in OmegaConf.load(path).defaults if d != "_self_")
            target = options.yaml_target(files[parent])
            assert keys <= set(options.settings_of(options.target(target), "bn")), name
        else:
            assert keys == set(options.settings_of(options.target(target), "bn")), name


def test_hparams_and_run_description_show_the_options_own_settings():
    from bnexp.config import flat
    from bnexp.experiment import hparams
    from bnexp.validate import label

    def keys(name):
        table = hparams(flat(config(f"bn={name}")), {"bn": name})
        assert table["bn"] == name and not any(k.endswith("_target_") for k in table), table
        return set(table)

    assert "bn.groups" in keys("group") and "bn.groups" not in keys("gluon")
    assert "bn.noise" in keys("noisy") and "bn.noise" not in keys("gluon")
    assert {"bn.r_max", "bn.d_max", "bn.relax_begin", "bn.relax_end"} <= keys("renorm")
    assert label("bn", config("bn=ghost", "bn.virtual_batch=4").bn) == \
        "ghost (virtual_batch=4, momentum=0.9, eps=1e-05, init=standard)"
    assert label("bn", config("bn=none").bn) == "no_norm"
