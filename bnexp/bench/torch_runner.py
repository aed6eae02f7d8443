"""The loop a PyTorch user would write instead (`--variants torch-none,torch-gluon`): eager
PyTorch on the CPU, the same LeNet (conv 20 5x5 -> [BN] -> ReLU -> maxpool -> conv 50 3x3 ->
[BN] -> ReLU -> maxpool -> dense 128 ReLU -> dense 10, BatchNorm2d with BN's momentum 0.9 in
MXNet's convention, PyTorch's 0.1), weights N(0, 0.01), plain SGD at lr 0.2 on the batch-mean
cross-entropy, contiguous slices of the in-memory training set, the same batch and thread
count (torch.set_num_threads), no metrics read per step. PyTorch is optional: bnexp does not
depend on it, and the benchmark offers these loops only where it is installed."""
from __future__ import annotations

import numpy as np


class TorchRunner:
    def __init__(self, bn: str, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 threads: int, lr: float = 0.2, seed: int = 0):
        import torch
        from torch import nn

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        layers: list = []
        for in_channels, channels, kernel in ((1, 20, 5), (20, 50, 3)):
            layers.append(nn.Conv2d(in_channels, channels, kernel))
            if bn == "gluon":
                layers.append(nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5))
            layers += [nn.ReLU(), nn.MaxPool2d(2, 2)]
        layers += [nn.Flatten(), nn.Linear(1250, 128), nn.ReLU(), nn.Linear(128, 10)]
        self.net = nn.Sequential(*layers)
        for module in self.net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)
        self.net.train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=lr)
        self.loss_fn = nn.CrossEntropyLoss()
        self.images = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.batch_size, self.batch = batch_size, 0
        self.batches = len(images) // batch_size
        self.last_loss = float("nan")
        self._loss = None

    def step(self) -> int:
        start = (self.batch % self.batches) * self.batch_size
        x = self.images[start:start + self.batch_size]
        y = self.labels[start:start + self.batch_size]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(x), y)
        loss.backward()
        self.optimizer.step()
        self.batch += 1
        self._loss = loss
        return self.batch_size

    def read_metrics(self) -> None:
        if self._loss is not None:
            self.last_loss = float(self._loss.detach())
