"""The mechanism diagnostics: each measurement against a case with a known answer, and
the guarantee that monitoring a run does not change it."""
from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bnexp import options
from bnexp.nn.norm.noisy import NoisyBatchNorm
from bnexp.monitors.activations import percentiles
from bnexp.monitors.ics import internal_covariate_shift, l2_and_cosine
from bnexp.monitors.landscape import along_gradient
from bnexp.monitors.network import preserved
from bnexp.nn.build import build_net, norm_factory, step_hooks
from bnexp.training import checkpoint
from bnexp.training.optimizers import sgd
from bnexp.training.step import make_optimizer, train_step
from conftest import config, run_cli


# ------------------------------------------------------------------ known answers
def test_percentiles_of_known_quantiles():
    assert percentiles(np.arange(101.0)) == {"p15": 15.0, "p50": 50.0, "p85": 85.0}
    normal = np.random.default_rng(0).standard_normal(1_000_000)
    got = percentiles(normal)  # N(0, 1): -1.0364, 0, 1.0364
    assert got["p15"] == pytest.approx(-1.0364, abs=0.01)
    assert got["p50"] == pytest.approx(0.0, abs=0.01)
    assert got["p85"] == pytest.approx(1.0364, abs=0.01)


def quadratic(h: np.ndarray):
    """L(w) = 1/2 sum h w^2 + 7 and its gradient h w."""
    def loss_and_grad(w):
        return 0.5 * float(np.sum(h * w["w"] ** 2)) + 7.0, {"w": h * w["w"]}
    return loss_and_grad


def test_landscape_on_an_isotropic_quadratic():
    """Curvature h in every direction: beta-smoothness is h, and the losses along the
    gradient are L(w) (1 - eta h)^2 above the constant."""
    h, lr, factors = 3.0, 0.1, [0.5, 1.0, 2.0, 4.0]
    w = {"w": np.array([1.0, -2.0, 0.5])}
    m = along_gradient(quadratic(np.full(3, h)), w, lr, factors)
    base = 0.5 * h * float(np.sum(w["w"] ** 2))
    expected = [base + 7.0] + [base * (1 - f * lr * h) ** 2 + 7.0 for f in factors]
    assert m["losses"] == pytest.approx(expected)
    assert m["loss_range"] == pytest.approx(max(expected) - min(expected))  # = 0.96 base here
    assert m["beta_smoothness"] == pytest.approx(h)
    # ||g(w - eta g) - g|| = eta h ||g||, largest for the largest step
    assert m["grad_change"] == pytest.approx(max(factors) * lr * h * h * np.linalg.norm(w["w"]))


def test_landscape_on_an_anisotropic_quadratic():
    """With curvatures diag(h), the gradient changes by eta H g: the smoothness is
    ||H g|| / ||g||, between the smallest and the largest curvature."""
    h = np.array([1.0, 10.0])
    w = {"w": np.array([1.0, 1.0])}
    m = along_gradient(quadratic(h), w, 0.01, [1.0, 2.0])
    g = h * w["w"]
    assert m["beta_smoothness"] == pytest.approx(np.linalg.norm(h * g) / np.linalg.norm(g))
    assert h.min() < m["beta_smoothness"] < h.max()


def test_l2_and_cosine():
    assert l2_and_cosine(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == (0.0, 1.0)
    l2, cos = l2_and_cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0]))
    assert l2 == pytest.approx(np.sqrt(5)) and cos == pytest.approx(0.0)
    assert l2_and_cosine(np.zeros(2), np.zeros(2)) == (0.0, 1.0)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = nd.array(rng.random((64, 1, 28, 28), dtype=np.float32))
    labels = nd.array(rng.integers(0, 10, 64).astype(np.float32))
    return images, labels


@pytest.mark.parametrize("variant", ["none", "gluon"])
def test_ics_of_the_first_layer_is_zero_and_of_no_update_is_zero(batch, variant):
    cfg = config(f"bn={variant}", "model.init=xavier", "trainer.batch_size=64")
    net = build_net(cfg, [mx.cpu()])
    with preserved(net):
        shifted = internal_covariate_shift(net, *batch, [mx.cpu()], lr=0.2)
        still = internal_covariate_shift(net, *batch, [mx.cpu()], lr=0.0)
    assert list(shifted) == ["conv0", "conv1", "dense0", "dense1"]
    assert shifted["conv0"] == {"l2": 0.0, "cos": 1.0}      # nothing trainable before it
    assert all(shifted[layer]["l2"] > 0 for layer in ("conv1", "dense0", "dense1"))
    assert all(-1.0 <= m["cos"] <= 1.0 + 1e-12 for m in shifted.values())
    for layer, m in still.items():                          # lr 0: the earlier layers stay put
        assert m["l2"] == 0.0 and m["cos"] == pytest.approx(1.0), layer


def test_preserved_puts_everything_back_bit_for_bit(batch):
    cfg = config("bn=scratch", "trainer.batch_size=64")
    net = build_net(cfg, [mx.cpu()])
    before = {name: p.data().asnumpy().copy() for name, p in net.collect_params().items()}
    with preserved(net):
        with autograd.record():  # a training pass: BN moving statistics move
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(batch[0]), batch[1])
        loss.backward()
        for p in net.collect_params().values():
            p.set_data(p.data() + 1)
    after = {name: p.data().asnumpy() for name, p in net.collect_params().items()}
    assert any("running_mean" in name for name in before)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


# ------------------------------------------------------------------------ noisy BN
def test_noisy_bn_with_zero_noise_is_gluon_bn_step_for_step(batch):
    nets, trainers = {}, {}
    for variant, extra in (("gluon", ()), ("noisy", ("bn.noise=0.0",))):
        cfg = config(f"bn={variant}", *extra, "trainer.batch_size=64")
        nets[variant] = build_net(cfg, [mx.cpu()])
        trainers[variant] = make_optimizer(nets[variant], sgd(cfg.lr), [mx.cpu()])
    losses = {v: [] for v in nets}
    for step in range(5):
        for v, net in nets.items():
            for block in [b for b in net if isinstance(b, NoisyBatchNorm)]:
                block.set_step(step)
            loss, _ = train_step(net, trainers[v], *batch, [mx.cpu()])
            losses[v].append(float(loss.asscalar()))
    assert losses["noisy"] == losses["gluon"]  # the same numbers, not merely close
    weights = {v: [p.data().asnumpy() for n, p in net.collect_params().items()
                   if n.endswith(("weight", "bias"))] for v, net in nets.items()}
    for a, b in zip(weights["noisy"], weights["gluon"]):
        np.testing.assert_array_equal(a, b)


def noisy_layer(channels: int = 4, strength: float = 1.0, seed: int = 3) -> NoisyBatchNorm:
    layer = NoisyBatchNorm(in_channels=channels, strength=strength, seed=seed)
    layer.initialize()
    layer.hybridize()
    return layer


def noise_of(layer: NoisyBatchNorm, step: int, shape=(64, 4, 8, 8)) -> tuple[np.ndarray, np.ndarray]:
    """The shift m and scale s the layer adds to each activation at `step`, read off two
    training passes with the same noise: a constant input (BN outputs exactly 0, so the
    output is m) and an input of +-1 per channel (BN outputs +-1/sqrt(1 + eps))."""
    layer.set_step(step)
    constant = nd.full(shape, 3.0)
    signs = nd.array(np.where(np.arange(np.prod(shape)).reshape(shape) % 2, 1.0, -1.0))
    with autograd.record():
        m = layer(constant).asnumpy()
        out, y = layer(signs).asnumpy(), layer.bn(signs).asnumpy()
    return m, (out - m) / y


def test_noisy_bn_noise_has_the_papers_distribution():
    """Santurkar et al., Algorithm 1: per channel mu ~ U(-0.5, 0.5), sigma ~ U(1, 1.25) each
    step; per activation m ~ U(mu -+ 0.1), s ~ N(sigma, 0.1^2), i.i.d. over samples and positions."""
    layer = noisy_layer()
    m, s = noise_of(layer, step=7)
    mu, sigma, _ = layer.noise_at(7)
    n = m.shape[0] * m.shape[2] * m.shape[3]  # 4096 activations per channel
    for j in range(4):
        mj, sj = m[:, j].ravel(), s[:, j].ravel()
        # uniform on [mu - 0.1, mu + 0.1] (float32 rounding of values below 1: 1e-6)
        assert mj.min() >= mu[j] - 0.1 - 1e-6 and mj.max() <= mu[j] + 0.1 + 1e-6
        # its mean within 5 standard errors (0.1 / sqrt(3 n)), its variance 0.1^2 / 3 within 10%
        # (the sample variance of a uniform has relative sd sqrt(0.8 / n) = 1.4%)
        assert abs(mj.mean() - mu[j]) < 5 * 0.1 / np.sqrt(3 * n)
        assert mj.var() == pytest.approx(0.01 / 3, rel=0.1)
        # normal around sigma with sd 0.1: mean within 5 standard errors, sd within 8%
        # (relative sd of a sample sd: 1 / sqrt(2 n) = 1.1%), tails as a normal's
        assert abs(sj.mean() - sigma[j]) < 5 * 0.1 / np.sqrt(n)
        assert sj.std() == pytest.approx(0.1, rel=0.08)
        assert np.mean(np.abs(sj - sigma[j]) > 0.196) == pytest.approx(0.05, abs=0.02)
    # independent across samples: neighbouring samples' shifts uncorrelated (|r| < 5 / sqrt(n))
    a, b = m[0::2] - mu[None, :, None, None], m[1::2] - mu[None, :, None, None]
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 5 / np.sqrt(a.size)
    # and the shift independent of the scale
    assert abs(np.corrcoef((m - mu[None, :, None, None]).ravel(), s.ravel())[0, 1]) < 5 / np.sqrt(m.size)


def test_noisy_bn_distribution_changes_every_step():
    layer = noisy_layer()
    draws = [layer.noise_at(step) for step in range(200)]
    mus = np.array([d[0] for d in draws])
    sigmas = np.array([d[1] for d in draws])
    # mu ~ U(-0.5, 0.5): mean 0 and sd 0.289; sigma ~ U(1, 1.25): mean 1.125, sd 0.072 (800 draws)
    assert mus.min() >= -0.5 and mus.max() <= 0.5 and abs(mus.mean()) < 5 * 0.289 / np.sqrt(800)
    assert sigmas.min() >= 1 and sigmas.max() <= 1.25
    assert abs(sigmas.mean() - 1.125) < 5 * 0.072 / np.sqrt(800)
    assert len({d[2] for d in draws}) == 200  # a new offset into the banks every step
    m7, _ = noise_of(layer, 7)
    m8, _ = noise_of(layer, 8)
    assert not np.allclose(m7.mean(axis=(0, 2, 3)), m8.mean(axis=(0, 2, 3)), atol=0.01)


def test_noisy_bn_same_step_same_noise_and_none_in_inference():
    layer, again = noisy_layer(), noisy_layer()  # `again`: a resumed run's fresh layer
    x = nd.random.normal(2, 3, shape=(16, 4, 5, 5))
    layer.set_step(11)
    with autograd.record():
        first, second = layer(x).asnumpy(), layer(x).asnumpy()  # a monitor's extra pass
    again.set_step(11)
    with autograd.record():
        resumed = again(x).asnumpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, resumed)
    with autograd.record():
        clean = layer.bn(x).asnumpy()
    assert np.abs(first - clean).mean() > 0.1
    np.testing.assert_array_equal(layer(x).asnumpy(), layer.bn(x).asnumpy())  # inference: no noise
    zero = noisy_layer(strength=0.0)
    zero.set_step(11)
    with autograd.record():
        np.testing.assert_array_equal(zero(x).asnumpy(), zero.bn(x).asnumpy())


def test_noisy_bn_resumes_from_a_checkpoint_bit_for_bit(batch, tmp_path):
    """The noise banks are left out of the checkpoint (Constants, rebuilt from the seed);
    a network restored at step 3 trains on exactly as the uninterrupted one."""
    cfg = config("bn=noisy", "trainer.batch_size=64")

    def steps(net, trainer, begin, end):
        for step in range(begin, end):
            for hook in step_hooks(net):
                hook(step)
            loss, _ = train_step(net, trainer, *batch, [mx.cpu()])
        return float(loss.asscalar())

    net = build_net(cfg, [mx.cpu()])
    trainer = make_optimizer(net, sgd(cfg.lr), [mx.cpu()])
    steps(net, trainer, 0, 3)
    checkpoint.save(tmp_path, net, trainer, {"step": 3})
    assert not any("jitter" in name for name in nd.load(str(tmp_path / checkpoint.CHECKPOINT_FILE)))
    resumed = build_net(cfg, [mx.cpu()])
    resumed_trainer = make_optimizer(resumed, sgd(cfg.lr), [mx.cpu()])
    checkpoint.restore(tmp_path, resumed, resumed_trainer)
    assert steps(net, trainer, 3, 5) == steps(resumed, resumed_trainer, 3, 5)


# ------------------------------------------------------------------------------ mlp
def model_of(*overrides):
    """The model option of `overrides`, built around their bn option (not initialized)."""
    cfg = config(*overrides)
    return options.build("model", cfg.model, norm=norm_factory(cfg, 1, "reference"),
                         pool="native", bias_initializer="zeros")


def test_mlp_is_ioffes_network():
    net = model_of("model=mlp", "bn=gluon")
    kinds = [type(b).__name__ for b in net]
    assert kinds == ["Dense", "BatchNorm", "Activation"] * 3 + ["Dense"]
    assert [b._units for b in net if isinstance(b, gluon.nn.Dense)] == [100, 100, 100, 10]
    assert all(b._act_type == "sigmoid" for b in net if isinstance(b, gluon.nn.Activation))
    assert [type(b).__name__ for b in model_of("model=mlp", "bn=none")] == ["Dense", "Activation"] * 3 + ["Dense"]
    # model=mlp_relu: the same network with ReLU
    relu = model_of("model=mlp_relu", "bn=gluon")
    assert [type(b).__name__ for b in relu] == kinds
    assert all(b._act_type == "relu" for b in relu if isinstance(b, gluon.nn.Activation))


def test_source_init_reproduces_the_tutorials_defects():
    net = build_net(config("bn=gluon", "bn.init=source"), [mx.cpu()])
    params = {name.split("_", 1)[1]: p.data().asnumpy() for name, p in net.collect_params().items()}
    assert params["batchnorm0_running_var"].max() == 0.0
    for name in ("batchnorm0_gamma", "batchnorm0_beta", "conv0_bias", "dense1_bias"):
        assert 0.002 < params[name].std() < 0.03 and abs(params[name].mean()) < 0.02, name
    standard = build_net(config("bn=gluon"), [mx.cpu()])
    ps = {name.split("_", 1)[1]: p.data().asnumpy() for name, p in standard.collect_params().items()}
    assert (ps["batchnorm0_gamma"] == 1).all() and (ps["batchnorm0_running_var"] == 1).all()
    assert (ps["conv0_bias"] == 0).all()


# --------------------------------------------------------- through the real CLI
MONITORED = ["trainer.max_steps=12", "trainer.eval_every_steps=6", "data.test_subset=256",
             "trainer.log_every_steps=3", "trainer.progress=log", "bn=gluon"]
ALL = ["monitor=[activations,ics,landscape]", "monitor.activations.every=5",
       "monitor.ics.every=5", "monitor.landscape.every=5", "monitor.activations.images=256"]


@pytest.mark.slow
def test_monitors_do_not_change_the_run(tmp_path):
    plain, watched = tmp_path / "plain", tmp_path / "watched"
    for run_dir, extra in ((plain, []), (watched, ALL)):
        proc = run_cli(*MONITORED, *extra, f"hydra.run.dir={run_dir}")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (plain, watched))
    strip = lambda curve: [{k: v for k, v in p.items() if "seconds" not in k} for p in curve]
    assert strip(a["eval_curve"]) == strip(b["eval_curve"])
    assert a["train_curve"] == b["train_curve"]
    assert {k: v for k, v in a["final"].items()} == b["final"]

    monitors = b["monitors"]
    assert [m["step"] for m in monitors["activations"]] == [0, 5, 10]
    assert [m["step"] for m in monitors["ics"]] == [0, 5, 10]
    assert [m["step"] for m in monitors["landscape"]] == [0, 5, 10]
    layers = monitors["activations"][-1]["layers"]
    assert set(layers) == {"conv0", "conv1"} and len(layers["conv0"]) == 8
    for units in layers.values():
        for p in units.values():
            assert p["p15"] <= p["p50"] <= p["p85"]
    assert monitors["ics"][0]["layers"]["conv0"] == {"l2": 0.0, "cos": 1.0}
    assert monitors["landscape"][-1]["beta_smoothness"] > 0

    acc = EventAccumulator(str(watched), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"act/conv0/p15", "act/conv1/p85", "ics/conv1/l2", "ics/dense1/cos",
            "landscape/loss_range", "landscape/grad_change", "landscape/beta_smoothness"} <= tags
    assert [e.step for e in acc.Scalars("landscape/beta_smoothness")] == [0, 5, 10]
    assert "act/conv1" in acc.Tags()["histograms"]


@pytest.mark.slow
def test_mlp_with_noisy_bn_trains_through_the_cli(tmp_path):
    proc = run_cli("model=mlp", "bn=noisy", "trainer.batch_size=60", "trainer.max_steps=60",
                   "trainer.eval_every_steps=30", "data.test_subset=600", "lr=0.5",
                   "trainer.progress=log", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["choices"]["model"] == "mlp" and m["choices"]["bn"] == "noisy"
    assert m["config"]["model._target_"] == "bnexp.nn.mlp.mlp"
    assert m["config"]["bn._target_"] == "bnexp.nn.norm.noisy.noisy"
    assert m["final"]["test_acc"] > 0.3  # it learns (chance is 0.1)
