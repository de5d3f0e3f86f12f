"""Generator/discriminator pairs by name. Every D returns logits ``(B, 1)``; every G maps ``(B, noise_dim)`` noise
to images ``(B, C, H, W)`` in [-1, 1]. Activations are separate, unshared, non-inplace modules (DeepLift needs it)."""

from xaigan.models.catalog import REGISTRY, Builder, available, build, is_import_path, load_builder, source
from xaigan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from xaigan.models.mlp import MLPDiscriminator, MLPGenerator
from xaigan.models.sngan import SNGANDiscriminator, SNGANGenerator, is_normalised, spectral_norm

__all__ = [
    "REGISTRY",
    "Builder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "SNGANDiscriminator",
    "SNGANGenerator",
    "available",
    "build",
    "is_import_path",
    "is_normalised",
    "load_builder",
    "source",
    "spectral_norm",
]
