"""The paper's DCGAN nets (CIFAR-10), sized from the dataset's channels and image size."""

from __future__ import annotations

import math

from torch import nn

from xaigan.errors import InputError


def _levels(image_size: int) -> int:
    levels = math.log2(image_size / 4)
    if image_size < 8 or levels != int(levels):
        raise InputError(f"dcgan needs an image size of 4 * 2^k (8, 16, 32, 64, ...), got {image_size}")
    return int(levels)


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """noise -> 4x4x512 -> ... -> C x image_size^2 (ConvTranspose + BatchNorm + ReLU, Tanh out)."""

    def __init__(self, channels: int = 3, image_size: int = 32, noise_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        levels = _levels(image_size)
        ch = width * 2**levels  # 512 for 32x32
        layers: list[nn.Module] = [
            nn.Unflatten(1, (noise_dim, 1, 1)),
            nn.ConvTranspose2d(noise_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
        ]
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z):
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """C x image_size^2 -> 64 -> 128 -> 256 -> 1 logit (Conv + BatchNorm + LeakyReLU(0.2)); no BN on the first."""

    def __init__(self, channels: int = 3, image_size: int = 32, width: int = 64) -> None:
        super().__init__()
        levels = _levels(image_size)
        ch = width
        layers: list[nn.Module] = [nn.Conv2d(channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for _ in range(levels - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x):
        return self.net(x)
