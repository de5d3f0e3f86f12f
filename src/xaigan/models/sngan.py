"""The "standard CNN" of SNGAN (Miyato, Kataoka, Koyama & Yoshida, ICLR 2018, Table 3), sized from the dataset's
channels and image size, and spectral normalisation of a discriminator's layers.

G: noise -> dense to ``M x M x 8w`` (``M = image_size / 8``) -> three 4x4 stride-2 transposed convolutions halving
the width (BatchNorm, ReLU) -> 3x3 convolution to the channels, Tanh. D: seven convolutions (3x3 stride 1 and 4x4
stride 2 in turn, widths w, w, 2w, 2w, 4w, 4w, 8w, LeakyReLU(0.1)) and a dense layer to one logit; every
convolution and the dense layer spectrally normalised (:func:`spectral_norm`). ``w = 64`` is the paper's width.
Every activation is its own module, used once and never in place, so that every explainer (DeepLIFT included) runs
on it.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _normalise

from xaigan.errors import InputError

NORMALISED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _side(image_size: int) -> int:
    if image_size < 8 or image_size % 8:
        raise InputError(f"sngan needs an image size divisible by 8 (8, 16, 32, ...), got {image_size}")
    return image_size // 8


class SNGANGenerator(nn.Module):
    """SNGAN's standard-CNN generator (BatchNorm, ReLU; Tanh out)."""

    def __init__(self, channels: int = 3, image_size: int = 32, noise_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        m, ch = _side(image_size), width * 8
        layers: list[nn.Module] = [
            nn.Linear(noise_dim, m * m * ch),
            nn.Unflatten(1, (ch, m, m)),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
        ]
        for _ in range(3):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.Conv2d(ch, channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class SNGANDiscriminator(nn.Module):
    """SNGAN's standard-CNN discriminator: one logit per image, spectrally normalised unless ``normalise=False``."""

    def __init__(self, channels: int = 3, image_size: int = 32, width: int = 64, normalise: bool = True) -> None:
        super().__init__()
        m = _side(image_size)
        widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        ch = channels
        for i, out in enumerate(widths):
            kernel, stride, pad = (3, 1, 1) if i % 2 == 0 else (4, 2, 1)
            layers += [nn.Conv2d(ch, out, kernel, stride, pad), nn.LeakyReLU(0.1)]
            ch = out
        layers += [nn.Flatten(), nn.Linear(m * m * ch, 1)]
        self.net = nn.Sequential(*layers)
        if normalise:
            spectral_norm(self)

    def forward(self, x):
        return self.net(x)


def spectral_norm(model: nn.Module) -> nn.Module:
    """Spectrally normalise every convolution and dense layer of ``model`` that is not already (in place).

    Uses ``torch.nn.utils.parametrizations.spectral_norm``: one power iteration per forward pass in training mode,
    none in eval mode (the explainers' default), its vectors being buffers (which the explainers restore).

    Args:
        model: a discriminator.

    Returns:
        ``model``.

    Example:
        >>> D = spectral_norm(nn.Sequential(nn.Flatten(), nn.Linear(16, 1)))
        >>> is_normalised(D)
        True
    """
    for module in list(model.modules()):
        if isinstance(module, NORMALISED) and not parametrize.is_parametrized(module, "weight"):
            _normalise(module)
    return model


def without_spectral_norm(model: nn.Module) -> nn.Module:
    """``model`` with every weight parametrisation removed, its layers keeping their un-normalised weights."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return model


def is_normalised(model: nn.Module) -> bool:
    """Whether every convolution and dense layer of ``model`` is spectrally normalised."""
    layers = [m for m in model.modules() if isinstance(m, NORMALISED)]
    return bool(layers) and all(parametrize.is_parametrized(m, "weight") for m in layers)
