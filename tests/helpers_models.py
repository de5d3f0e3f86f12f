"""Tiny deterministic discriminators for the explainer and guidance tests (float64 by default)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def mlp_d(channels: int = 1, size: int = 8, hidden: tuple[int, ...] = (16, 8), seed: int = 0, dtype=torch.float64):
    """The paper's D in miniature: Flatten, [Linear, LeakyReLU(0.2), Dropout(0.3)]*, Linear -> 1 logit."""
    torch.manual_seed(seed)
    widths = [channels * size * size, *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2), nn.Dropout(0.3)]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers).to(dtype)


def mlp_prob_d(channels: int = 1, size: int = 8, hidden: tuple[int, ...] = (16, 8), seed: int = 0, dtype=torch.float64):
    """The paper's D as published, in miniature: :func:`mlp_d` followed by ``nn.Sigmoid`` (returns probabilities)."""
    return nn.Sequential(*mlp_d(channels, size, hidden, seed, dtype), nn.Sigmoid())


def logit_twin(d: nn.Sequential) -> nn.Sequential:
    """The same D without its final ``nn.Sigmoid``: a copy with the same weights that returns logits."""
    assert isinstance(d[-1], nn.Sigmoid)
    return copy.deepcopy(nn.Sequential(*list(d)[:-1]))


class ConvBND(nn.Module):
    """A custom-class DCGAN-like D: Conv, LeakyReLU, Conv, BatchNorm2d, LeakyReLU, Dropout, Flatten, Linear."""

    def __init__(self, channels: int = 1, size: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 4, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4, 6, 3, 1, 1),
            nn.BatchNorm2d(6),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.2),
        )
        self.head = nn.Linear(6 * (size // 2) ** 2, 1)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def conv_bn_d(channels: int = 1, size: int = 8, seed: int = 0, dtype=torch.float64) -> ConvBND:
    """:class:`ConvBND` with BatchNorm running statistics warmed up on random data (left in train mode)."""
    torch.manual_seed(seed)
    d = ConvBND(channels, size).to(dtype)
    with torch.no_grad():
        for _ in range(3):
            d(torch.randn(8, channels, size, size, dtype=dtype))
    return d


def convtranspose_d(seed: int = 0, dtype=torch.float64) -> nn.Module:
    """A chain with ConvTranspose2d, ReLU, BatchNorm2d (eval), Conv2d, Tanh, ELU, Softplus for DeepLIFT coverage."""
    torch.manual_seed(seed)
    d = nn.Sequential(
        nn.ConvTranspose2d(1, 3, 4, 2, 1),
        nn.ReLU(),
        nn.BatchNorm2d(3),
        nn.Conv2d(3, 2, 3, 2, 1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(2 * 8 * 8, 5),
        nn.ELU(),
        nn.Linear(5, 4),
        nn.Softplus(),
        nn.Linear(4, 1),
    ).to(dtype)
    with torch.no_grad():
        d.train()
        d(torch.randn(6, 1, 8, 8, dtype=dtype))
    return d.eval()


class ResidualD(nn.Module):
    """Not a chain (a skip connection): the explainers must fall back to captum / plain forward passes."""

    def __init__(self, size: int = 8, seed: int = 0, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(size * size, 6).to(dtype)
        self.act = nn.Tanh()
        self.mid = nn.Linear(6, 6).to(dtype)
        self.act2 = nn.Sigmoid()
        self.out = nn.Linear(6, 1).to(dtype)

    def forward(self, x):
        h = self.act(self.inp(x.flatten(1)))
        return self.out(h + self.act2(self.mid(h)))


class RegionD(nn.Module):
    """``logit = weight * mean(x[..., top:top+h, left:left+w])``: depends on one known region only."""

    def __init__(self, size: int = 16, region: tuple[int, int, int, int] = (0, 8, 0, 8), weight: float = 4.0):
        super().__init__()
        mask = torch.zeros(size, size, dtype=torch.float64)
        top, h, left, w = region
        mask[top : top + h, left : left + w] = 1.0
        self.flat = nn.Flatten()
        self.lin = nn.Linear(size * size, 1).double()
        with torch.no_grad():
            self.lin.weight.copy_(weight * mask.view(1, -1) / mask.sum())
            self.lin.bias.zero_()

    def forward(self, x):
        return self.lin(self.flat(x))


class SignD(nn.Module):
    """``logit = scale * mean(x)``: samples with a negative mean are scored fake (controls guidance selection)."""

    def __init__(self, scale: float = 50.0):
        super().__init__()
        self.flat = nn.Flatten()
        self.lin = nn.Linear(1, 1).double()
        self.hidden = nn.Linear(64, 3).double()
        self.act = nn.Tanh()
        with torch.no_grad():
            self.lin.weight.fill_(1.0)
            self.lin.bias.zero_()
        self.scale = scale

    def forward(self, x):
        flat = self.flat(x)
        return self.lin(self.scale * flat.mean(1, keepdim=True)) + 0.01 * self.act(self.hidden(flat)).sum(
            1, keepdim=True
        )
