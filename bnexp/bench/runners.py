"""The training loops the benchmark times, all with `step()` (one optimizer step, returns
the images it trained on) and `read_metrics()` (what the loop reads from the device):

  BnexpRunner   bnexp's own step (the Trainer's), per BN variant
  PlainRunner   a textbook hybridized Gluon loop: the floor bnexp must match
  SourceRunner  the source tutorial's loop, re-implemented faithfully
"""
from __future__ import annotations

from typing import Iterator

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon.data.vision import transforms

from bnexp import options
from bnexp.nn.build import build_net
from bnexp.training.callback import Callback, TrainMetrics
from bnexp.training.step import DeviceSplit, make_optimizer
from bnexp.training.trainer import Trainer
from bnexp.validate import compose


class BnexpRunner:
    """One bnexp BN variant trained exactly as a run trains it (single device, no
    callbacks): the Trainer's own `step`, which also reads the accumulated metrics every
    `trainer.log_every_steps` steps; pooling layout and BN formulation as bnexp's tuning
    chose them for this machine."""

    def __init__(self, variant: str, train: DeviceSplit, batch_size: int, ctx: mx.Context,
                 pool: str = "native", bn_impl: str = ""):
        cfg = compose([f"bn={variant}", f"trainer.batch_size={batch_size}"])
        net = build_net(cfg, [ctx], pool, bn_impl or "reference")
        optimizer = options.build("optimizer", cfg.optimizer, learning_rate=cfg.lr)
        self.trainer = Trainer(net, make_optimizer(net, optimizer, [ctx]), [ctx], train,
                               batch_size=batch_size, total_steps=2 ** 62, seed=cfg.seed,
                               log_every=cfg.trainer.log_every_steps,
                               callbacks=[LastLoss(self)])
        self.batch_size = batch_size
        self.last_loss = float("nan")

    def read_metrics(self) -> None:
        """What is left to read from the device (one host sync)."""
        self.trainer.read_metrics()

    def step(self) -> int:
        """One optimizer step; returns the number of images it trained on."""
        self.trainer.step()
        return self.batch_size


class LastLoss(Callback):
    """Keeps the runner's last training loss (a diverged loss warns the benchmark)."""

    def __init__(self, runner: BnexpRunner):
        self.runner = runner

    def on_train_metrics(self, state, metrics: TrainMetrics) -> None:
        self.runner.last_loss = metrics.loss


class PlainRunner:
    """The floor: what a competent user writes by hand. Its own hybridized Gluon LeNet
    (nn.MaxPool2D, gluon.nn.BatchNorm or none), contiguous slices of the in-memory
    training set, gluon.Trainer, no metrics read per step; nothing of bnexp's."""

    def __init__(self, bn: str, train: DeviceSplit, batch_size: int, ctx: mx.Context,
                 lr: float = 0.2, seed: int = 0):
        mx.random.seed(seed)
        net = gluon.nn.HybridSequential()
        for channels, kernel in ((20, 5), (50, 3)):
            net.add(gluon.nn.Conv2D(channels, kernel))
            if bn == "gluon":
                net.add(gluon.nn.BatchNorm())
            net.add(gluon.nn.Activation("relu"), gluon.nn.MaxPool2D(pool_size=2, strides=2))
        net.add(gluon.nn.Dense(128, activation="relu"), gluon.nn.Dense(10))
        net.initialize(mx.init.Normal(0.01), ctx=ctx)
        net.hybridize(static_alloc=True, static_shape=True)
        self.net, self.ctx, self.batch_size, self.train = net, ctx, batch_size, train
        self.trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        self.batches, self.batch = len(train) // batch_size, 0
        self.last_loss = float("nan")
        self._loss = None

    def step(self) -> int:
        bs, start = self.batch_size, (self.batch % self.batches) * self.batch_size
        x, y = self.train.images[start:start + bs], self.train.labels[start:start + bs]
        with autograd.record():
            loss = self.loss_fn(self.net(x), y)
        loss.backward()
        self.trainer.step(bs)
        self.batch += 1
        self._loss = loss
        return bs

    def read_metrics(self) -> None:
        if self._loss is not None:
            self.last_loss = float(self._loss.mean().asscalar())


# --------------------------------------------------------------------- the source's loop
def source_batch_norm(X: nd.NDArray, gamma: nd.NDArray, beta: nd.NDArray,
                      moving: dict[str, nd.NDArray], scope: str, is_training: bool,
                      momentum: float = 0.9, eps: float = 1e-5) -> nd.NDArray:
    """The tutorial's from-scratch BN function: imperative nd ops, moving averages
    updated in Python, the training flag passed by hand."""
    if X.ndim == 2:
        mean = nd.mean(X, axis=0)
        var = nd.mean((X - mean) ** 2, axis=0)
    else:
        mean = nd.mean(X, axis=(0, 2, 3), keepdims=True)
        var = nd.mean((X - mean) ** 2, axis=(0, 2, 3), keepdims=True)
    if is_training:
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # detach(): keep the moving averages out of the autograd graph (same cost,
        # no graph chained across steps)
        moving[scope + "_mean"] = momentum * moving[scope + "_mean"] + (1 - momentum) * mean.detach()
        moving[scope + "_var"] = momentum * moving[scope + "_var"] + (1 - momentum) * var.detach()
    else:
        X_hat = (X - moving[scope + "_mean"]) / nd.sqrt(moving[scope + "_var"] + eps)
    if X.ndim == 4:
        gamma = gamma.reshape((1, -1, 1, 1))
        beta = beta.reshape((1, -1, 1, 1))
    return gamma * X_hat + beta


def relu(X: nd.NDArray) -> nd.NDArray:
    return nd.maximum(X, 0)


class SourceRunner:
    """The source tutorial's training loop (see the module docstring)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 ctx: mx.Context, lr: float = 0.2, seed: int = 0, num_workers: int = 0):
        self.ctx, self.lr, self.batch_size = ctx, lr, batch_size
        mx.random.seed(seed)
        scale = 0.01

        def normal(*shape):
            return nd.random.normal(0, scale, shape=shape, ctx=ctx)

        # conv(20, 5x5) -> BN -> relu -> maxpool -> conv(50, 3x3) -> BN -> relu -> maxpool
        # -> flatten (1250) -> dense 128 relu -> dense 10; weights from normal(0, 0.01).
        # gamma/beta start at 1/0 and the moving variance at 1 (the tutorial's init
        # defects do not change the cost of a step).
        self.W1, self.b1 = normal(20, 1, 5, 5), nd.zeros(20, ctx=ctx)
        self.gamma1, self.beta1 = nd.ones(20, ctx=ctx), nd.zeros(20, ctx=ctx)
        self.W2, self.b2 = normal(50, 20, 3, 3), nd.zeros(50, ctx=ctx)
        self.gamma2, self.beta2 = nd.ones(50, ctx=ctx), nd.zeros(50, ctx=ctx)
        self.W3, self.b3 = normal(1250, 128), nd.zeros(128, ctx=ctx)
        self.W4, self.b4 = normal(128, 10), nd.zeros(10, ctx=ctx)
        self.params = [self.W1, self.b1, self.gamma1, self.beta1, self.W2, self.b2,
                       self.gamma2, self.beta2, self.W3, self.b3, self.W4, self.b4]
        for param in self.params:
            param.attach_grad()
        self.moving = {f"bn{i}_{s}": (nd.zeros if s == "mean" else nd.ones)((1, c, 1, 1), ctx=ctx)
                       for i, c in ((1, 20), (2, 50)) for s in ("mean", "var")}
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

        # What gluon.data.vision.FashionMNIST holds: uint8 HWC images as an NDArray.
        dataset = gluon.data.ArrayDataset(nd.array(images[..., None], dtype="uint8"),
                                          labels.astype(np.float32))
        self.loader = gluon.data.DataLoader(dataset.transform_first(transforms.ToTensor()),
                                            batch_size=batch_size, shuffle=True,
                                            num_workers=num_workers)
        self.batches = self._batches()
        self.last_loss = float("nan")
        self.last_acc = float("nan")

    def _batches(self) -> Iterator[tuple[nd.NDArray, nd.NDArray]]:
        while True:  # one epoch after another, reshuffled each time
            yield from self.loader

    def net(self, X: nd.NDArray, is_training: bool = True) -> nd.NDArray:
        h1 = nd.Convolution(data=X, weight=self.W1, bias=self.b1, kernel=(5, 5), num_filter=20)
        h1 = relu(source_batch_norm(h1, self.gamma1, self.beta1, self.moving, "bn1", is_training))
        h1 = nd.Pooling(data=h1, pool_type="max", kernel=(2, 2), stride=(2, 2))
        h2 = nd.Convolution(data=h1, weight=self.W2, bias=self.b2, kernel=(3, 3), num_filter=50)
        h2 = relu(source_batch_norm(h2, self.gamma2, self.beta2, self.moving, "bn2", is_training))
        h2 = nd.Pooling(data=h2, pool_type="max", kernel=(2, 2), stride=(2, 2))
        h2 = nd.flatten(h2)
        h3 = relu(nd.dot(h2, self.W3) + self.b3)
        return nd.dot(h3, self.W4) + self.b4

    def step(self) -> int:
        data, label = next(self.batches)
        data = data.as_in_context(self.ctx)
        label = label.as_in_context(self.ctx)
        with autograd.record():
            output = self.net(data, is_training=True)
            loss = self.loss_fn(output, label)
        loss.backward()
        for param in self.params:
            param[:] = param - self.lr * param.grad / self.batch_size
        self.last_loss = nd.mean(loss).asscalar()
        self.last_acc = nd.mean(output.argmax(axis=1) == label).asscalar()
        return data.shape[0]

    def read_metrics(self) -> None:
        pass  # already read every batch
