"""ScratchBatchNorm against MXNet's own gluon.nn.BatchNorm on CPU.

On CPU gluon updates its moving statistics with the biased batch variance, so
the two layers must agree everywhere: outputs, input/gamma/beta gradients,
moving statistics, in training and inference, hybridized or not.
"""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, nd

from hydra.errors import MissingConfigException

from bnexp import options
from bnexp.nn.norm import kernels
from bnexp.nn.norm.gluon_bn import gluon_bn
from bnexp.nn.norm.scratch import FORMULATIONS, ScratchBatchNorm, scratch
from bnexp.nn.lenet import lenet
from conftest import config

RTOL, ATOL = 1e-5, 1e-5
# The compiled formulation needs its C++ operator built for this CPU (`make install` does,
# with g++): where it cannot be, its tests say why they are skipped.
COMPILED_PROBLEM = kernels.unavailable_reason()
IMPLS = [pytest.param(impl, marks=pytest.mark.skipif(
    impl == "compiled" and COMPILED_PROBLEM is not None, reason=str(COMPILED_PROBLEM)))
    for impl in FORMULATIONS]
USABLE_IMPLS = [impl for impl in FORMULATIONS if impl != "compiled" or COMPILED_PROBLEM is None]


def close(a, b):
    np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=RTOL, atol=ATOL)


def pair(momentum, eps, hybridize, in_channels=0, impl="reference"):
    layers = (ScratchBatchNorm(momentum=momentum, epsilon=eps, in_channels=in_channels,
                               formulation=impl),
              gluon.nn.BatchNorm(momentum=momentum, epsilon=eps, in_channels=in_channels))
    for layer in layers:
        layer.initialize(ctx=mx.cpu())
        if hybridize:
            layer.hybridize(static_alloc=True, static_shape=True)
    return layers


@pytest.mark.parametrize("shape", [(16, 7), (8, 3, 5, 6)], ids=["2d", "4d"])
@pytest.mark.parametrize("momentum,eps", [(0.9, 1e-5), (0.5, 1e-3), (0.0, 1e-2), (0.99, 1e-5)])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_gluon(shape, momentum, eps, hybridize, impl):
    scratch, reference = pair(momentum, eps, hybridize, impl=impl)
    rng = np.random.default_rng(0)
    for step in range(4):
        # shifted and scaled so that mean and variance are far from 0 and 1
        x = nd.array(rng.normal(2.0, 3.0, size=shape).astype("float32"))
        head = nd.array(rng.normal(size=shape).astype("float32"))  # upstream gradient
        outs, grads = [], []
        for layer in (scratch, reference):
            xi = x.copy()
            xi.attach_grad()
            with autograd.record():
                y = layer(xi)
            y.backward(head)
            outs.append(y)
            grads.append((xi.grad, layer.params.get("gamma").grad(), layer.params.get("beta").grad()))
        close(*outs)
        for g_scratch, g_ref in zip(*grads):
            close(g_scratch, g_ref)
        for name in ("running_mean", "running_var"):
            close(scratch.params.get(name).data(), reference.params.get(name).data())
    # inference mode uses the moving statistics and leaves them alone
    before = scratch.params.get("running_var").data().copy()
    close(scratch(x), reference(x))
    close(scratch.params.get("running_var").data(), before)


@pytest.mark.parametrize("offset", [2.0, 100.0, 1000.0])
def test_more_accurate_than_gluon_against_float64(offset):
    """Every formulation stays closer to the exact result than MXNet's own layer, also
    when the mean is far from zero (where E[x^2] - mean^2 would lose digits)."""
    x = np.random.default_rng(1).normal(offset, 1.0, size=(32, 20, 12, 12)).astype(np.float32)
    exact = (x - x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)) / np.sqrt(
        x.astype(np.float64).var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    errors = {}
    for name, layer in [(impl, ScratchBatchNorm(in_channels=20, formulation=impl)) for impl in USABLE_IMPLS] + \
                       [("gluon", gluon.nn.BatchNorm(in_channels=20))]:
        layer.initialize(ctx=mx.cpu())
        with autograd.record():
            errors[name] = np.abs(layer(nd.array(x)).asnumpy() - exact).max()
    for impl in USABLE_IMPLS:
        assert errors[impl] <= errors["gluon"], errors


@pytest.mark.parametrize("impl", IMPLS)
def test_moving_statistics_move_only_in_training_and_get_no_gradient(impl):
    layer = ScratchBatchNorm(in_channels=3, formulation=impl)
    layer.initialize()
    np.testing.assert_array_equal(layer.gamma.data().asnumpy(), 1)
    np.testing.assert_array_equal(layer.beta.data().asnumpy(), 0)
    np.testing.assert_array_equal(layer.running_mean.data().asnumpy(), 0)
    np.testing.assert_array_equal(layer.running_var.data().asnumpy(), 1)
    assert layer.running_mean.grad_req == "null" and layer.running_var.grad_req == "null"
    x = nd.random.normal(5, 2, shape=(32, 3, 4, 4))
    layer(x)  # inference: no change
    np.testing.assert_array_equal(layer.running_mean.data().asnumpy(), 0)
    with autograd.record():
        y = layer(x)
    y.backward()
    batch_mean = x.asnumpy().mean(axis=(0, 2, 3))
    np.testing.assert_allclose(layer.running_mean.data().asnumpy(), 0.1 * batch_mean, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_training_output_is_normalized_per_channel(impl):
    layer = ScratchBatchNorm(epsilon=1e-8, formulation=impl)
    layer.initialize()
    x = nd.random.normal(-3, 4, shape=(64, 5, 6, 6))
    with autograd.record():
        y = layer(x).asnumpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)


@pytest.mark.parametrize("bn_on_dense", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_lenet_step_matches_gluon(bn_on_dense, impl):
    """A whole hybridized LeNet: same init, one SGD step, same loss and gradients.

    In float64: in float32 the two BNs round differently (3e-6 of the activations), and a
    ReLU or max-pooling input that rounding puts on the other side of its kink sends that
    element's gradient elsewhere -- 20 of 200 random inputs moved the first convolution's
    gradient by up to 1% of the gradients' scale, for the reference formulation. In float64
    the rounding is ~1e-16 and the gradients agreed within 3e-14 of their scale over 30
    inputs, every formulation; a change in the maths is far above the 1e-9 allowed (the
    unbiased variance: 1/N = 5e-5 at the first BN). The compiled operator is float32 only:
    its loss and logits are compared (the forward pass has no kink to amplify rounding);
    its gradients, layer by layer in test_matches_gluon."""
    dtype = "float32" if impl == "compiled" else "float64"
    norms = (lambda channels, layer: scratch(channels, formulation=impl),
             lambda channels, layer: gluon_bn(channels))
    nets = [lenet(norm, bn_on_dense=bn_on_dense) for norm in norms]
    mx.random.seed(0)
    x = nd.random.uniform(shape=(32, 1, 28, 28)).astype(dtype)
    y = nd.array(np.arange(32) % 10, dtype=dtype)
    for net in nets:
        mx.random.seed(3)
        net.initialize(mx.init.Normal(0.01))
        net.cast(dtype)
        net.hybridize(static_alloc=True, static_shape=True)
        net(x)  # initialization is deferred to the first call: draw the weights now
    logits, losses = [], []
    for net in nets:
        with autograd.record():
            logits.append(net(x))
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(logits[-1], y)
        loss.backward()
        losses.append(loss.mean())
    close(*losses)
    close(*logits)
    if dtype == "float32":
        return
    params = [{name.split("_", 1)[1]: p for name, p in net.collect_params().items()
               if p.grad_req != "null"} for net in nets]
    scale = max(np.abs(p.grad().asnumpy()).max() for p in params[1].values())
    for (name, a), (name_ref, b) in zip(params[0].items(), params[1].items()):
        np.testing.assert_allclose(a.grad().asnumpy(), b.grad().asnumpy(), rtol=0,
                                   atol=1e-9 * scale, err_msg=name)


def test_bn_options_build_their_layers():
    """bn=<name> chooses conf/bn/<name>.yaml, whose target builds the layer (bnexp/options.py);
    an unknown name is refused while composing, with the options there are."""
    def built(name):
        return options.build("bn", config(f"bn={name}").bn, channels=3, layer=0, seed=0,
                             devices=1, formulation="reference")
    assert built("none") is None
    assert isinstance(built("scratch"), ScratchBatchNorm)
    assert isinstance(built("gluon"), gluon.nn.BatchNorm)
    # the formulation (perf.bn_impl, chosen by bnexp/tuning/) reaches the layer bnexp builds
    surrogate = options.build("bn", config("bn=scratch").bn, channels=3, formulation="surrogate")
    assert "formulation=surrogate" in repr(surrogate)
    with pytest.raises(MissingConfigException, match="bn/foo") as err:
        config("bn=foo")
    assert all(name in str(err.value) for name in ("gluon", "none", "scratch"))


@pytest.mark.parametrize("impl", IMPLS)
def test_channels_last_matches_gluon(impl):
    """axis=3 (NHWC): every formulation swaps the channels to axis 1 and back."""
    layers = (ScratchBatchNorm(axis=3, in_channels=3, formulation=impl),
              gluon.nn.BatchNorm(axis=3, in_channels=3))
    x = nd.array(np.random.default_rng(2).normal(1.0, 2.0, size=(4, 5, 6, 3)).astype("float32"))
    outs = []
    for layer in layers:
        layer.initialize(ctx=mx.cpu())
        layer.hybridize()
        xi = x.copy()
        xi.attach_grad()
        with autograd.record():
            y = layer(xi)
        y.backward(nd.ones_like(y) * nd.arange(3).reshape((1, 1, 1, 3)))
        outs.append((y, xi.grad, layer.params.get("running_var").data()))
    for a, b in zip(*outs):
        close(a, b)
