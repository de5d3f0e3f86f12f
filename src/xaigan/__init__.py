"""xaigan: GANs whose generator learns why the discriminator rejected its samples (xAI-GAN)."""

__version__ = "0.1.0"
