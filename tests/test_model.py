"""The source's LeNet: layers, BN placement, initialization, pooling."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, nd

from bnexp.nn.norm.scratch import ScratchBatchNorm
from bnexp.nn.lenet import lenet
from bnexp.nn.pooling import FoldedMaxPool2D
from bnexp.nn.build import build_net, norm_factory
from conftest import config


def norm(variant):
    """`norm(channels, layer)` of the option bn=<variant>, as build_net places it."""
    return norm_factory(config(f"bn={variant}"), 1, "reference")


@pytest.mark.parametrize("variant,bn_type,count", [
    ("none", None, 0), ("scratch", ScratchBatchNorm, 2), ("gluon", gluon.nn.BatchNorm, 2)])
def test_bn_sits_after_each_convolution_before_relu(variant, bn_type, count):
    net = lenet(norm(variant))
    layers = list(net)
    bns = [i for i, layer in enumerate(layers) if bn_type and isinstance(layer, bn_type)]
    assert len(bns) == count
    for i in bns:
        assert isinstance(layers[i - 1], gluon.nn.Conv2D)
        assert isinstance(layers[i + 1], gluon.nn.Activation)


def test_bn_on_dense_adds_a_third_layer():
    net = lenet(norm("gluon"), bn_on_dense=True)
    assert sum(isinstance(layer, gluon.nn.BatchNorm) for layer in net) == 3


@pytest.mark.parametrize("init", ["normal", "xavier", "kaiming"])
def test_initialization(init):
    cfg = config(f"model.init={init}")
    net = build_net(cfg, [mx.cpu()])
    params = {name.split("_", 1)[1]: p.data().asnumpy() for name, p in net.collect_params().items()}
    assert params["dense0_weight"].shape == (128, 1250)
    if init == "normal":
        assert params["dense0_weight"].std() == pytest.approx(0.01, rel=0.05)
    elif init == "xavier":  # uniform with scale sqrt(3 / mean(fan_in, fan_out))
        assert params["dense0_weight"].std() > 0.02
    else:  # Kaiming/He: normal with std sqrt(2 / fan_in)
        assert params["dense0_weight"].std() == pytest.approx((2 / 1250) ** 0.5, rel=0.05)
    np.testing.assert_array_equal(params["conv0_bias"], 0)
    np.testing.assert_array_equal(params["scratchbatchnorm0_gamma"], 1)
    np.testing.assert_array_equal(params["scratchbatchnorm0_beta"], 0)
    np.testing.assert_array_equal(params["scratchbatchnorm0_running_mean"], 0)
    np.testing.assert_array_equal(params["scratchbatchnorm0_running_var"], 1)


def test_output_shape():
    net = build_net(config(), [mx.cpu()])
    assert net(nd.zeros((128, 1, 28, 28))).shape == (128, 10)


@pytest.mark.parametrize("shape", [(8, 20, 24, 24), (3, 50, 10, 10)])
def test_max_pool_matches_gluon(shape):
    ours, reference = FoldedMaxPool2D(), gluon.nn.MaxPool2D(pool_size=2, strides=2)
    ours.hybridize()
    x = nd.random.normal(shape=shape)
    results = []
    for layer in (ours, reference):
        xi = x.copy()
        xi.attach_grad()
        with autograd.record():
            y = layer(xi)
        y.backward(nd.arange(y.size).reshape(y.shape))  # a distinct gradient per output
        results.append((y.asnumpy(), xi.grad.asnumpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
