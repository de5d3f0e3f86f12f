"""Generator/discriminator pairs by name. Every D returns logits ``(B, 1)``; every G maps ``(B, noise_dim)`` noise
to images ``(B, C, H, W)`` in [-1, 1]. Activations are separate, unshared, non-inplace modules (DeepLift needs it)."""

from xaigan.models.catalog import REGISTRY, Builder, available, build
from xaigan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from xaigan.models.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "REGISTRY",
    "Builder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "available",
    "build",
]
