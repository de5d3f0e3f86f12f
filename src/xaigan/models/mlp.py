"""The paper's fully connected nets for MNIST and Fashion-MNIST (32x32 grey, 1024 pixels)."""

from __future__ import annotations

from torch import nn


class MLPGenerator(nn.Module):
    """noise -> 256 -> 512 -> 1296 -> C*H*W, LeakyReLU(0.2) between layers, Tanh out, reshaped to images."""

    def __init__(self, channels: int = 1, image_size: int = 32, noise_dim: int = 100) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        widths = [noise_dim, 256, 512, 1296]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(widths[-1], channels * image_size * image_size), nn.Tanh()]
        layers.append(nn.Unflatten(1, (channels, image_size, image_size)))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """C*H*W -> 1296 -> 512 -> 256 -> 1 logit; LeakyReLU(0.2) and Dropout(0.3) after each hidden layer.

    The paper ends in a Sigmoid; we return the logit and train with BCE-with-logits (same loss, stable).
    ``sigmoid(D(x))`` is the paper's D output.
    """

    def __init__(self, channels: int = 1, image_size: int = 32) -> None:
        super().__init__()
        widths = [channels * image_size * image_size, 1296, 512, 256]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2), nn.Dropout(0.3)]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
