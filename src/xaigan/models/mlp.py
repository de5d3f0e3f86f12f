"""The paper's fully connected nets for MNIST and Fashion-MNIST (32x32 grey, 1024 pixels)."""

from __future__ import annotations

from torch import nn

PAPER_G = (256, 512, 1296)
PAPER_D = (1296, 512, 256)
# A narrower pair for CPU demos: ~a quarter of the paper's multiplies per step. With Adam at 1e-3 it draws
# recognisable digits in ~5,000 steps where the paper's recipe at this width needs far more (docs/demo.md).
SMALL_G = (128, 256, 512)
SMALL_D = (512, 256, 128)


class MLPGenerator(nn.Module):
    """noise -> 256 -> 512 -> 1296 -> C*H*W (the paper's ``widths``), LeakyReLU(0.2) between layers, Tanh out,
    reshaped to images."""

    def __init__(
        self, channels: int = 1, image_size: int = 32, noise_dim: int = 100, widths: tuple[int, ...] = PAPER_G
    ) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        widths = [noise_dim, *widths]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(widths[-1], channels * image_size * image_size), nn.Tanh()]
        layers.append(nn.Unflatten(1, (channels, image_size, image_size)))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """C*H*W -> 1296 -> 512 -> 256 (the paper's ``widths``) -> 1 logit; LeakyReLU(0.2) and Dropout(0.3) after each
    hidden layer.

    The paper ends in a Sigmoid; we return the logit and train with BCE-with-logits (same loss, stable).
    ``sigmoid(D(x))`` is the paper's D output.
    """

    def __init__(self, channels: int = 1, image_size: int = 32, widths: tuple[int, ...] = PAPER_D) -> None:
        super().__init__()
        widths = [channels * image_size * image_size, *widths]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2), nn.Dropout(0.3)]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
