"""The registered generator/discriminator pairs, and :func:`build` by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from xaigan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from xaigan.models.mlp import SMALL_D, SMALL_G, MLPDiscriminator, MLPGenerator
from xaigan.registry import Registry

Builder = Callable[[int, int, int], tuple[nn.Module, nn.Module]]
"""``(channels, image_size, noise_dim) -> (G, D)``."""

REGISTRY: Registry[Builder] = Registry("model")
REGISTRY.register("mlp", lambda c, s, z: (MLPGenerator(c, s, z), MLPDiscriminator(c, s)))
REGISTRY.register(
    "mlp-small", lambda c, s, z: (MLPGenerator(c, s, z, widths=SMALL_G), MLPDiscriminator(c, s, widths=SMALL_D))
)
REGISTRY.register("dcgan", lambda c, s, z: (DCGANGenerator(c, s, z), DCGANDiscriminator(c, s)))


def available() -> list[str]:
    """The registered model names, sorted."""
    return REGISTRY.names()


def build(name: str, channels: int = 1, image_size: int = 32, noise_dim: int = 100) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` for a registered model name.

    Args:
        name: a registered model (:func:`available`); another name is an
            :class:`~xaigan.registry.UnknownNameError`.
        channels: image channels.
        image_size: image side in pixels (``dcgan`` needs 4 * 2^k; another size is an
            :class:`~xaigan.errors.InputError`).
        noise_dim: length of G's noise vector.

    Returns:
        The generator and the discriminator.
    """
    return REGISTRY.get(name)(channels, image_size, noise_dim)
