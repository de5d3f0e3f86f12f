"""Training: the paper's standard GAN loop, checkpoints with full RNG state, run logging."""

from xaigan.train.checkpoint import rng_state, seed_everything, set_rng_state
from xaigan.train.logging import RunLogger, read_metrics
from xaigan.train.trainer import RunExistsError, Trainer, gan_step, pick_device

__all__ = [
    "RunExistsError",
    "RunLogger",
    "Trainer",
    "gan_step",
    "pick_device",
    "read_metrics",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]
