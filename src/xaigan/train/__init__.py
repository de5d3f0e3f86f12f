"""Training: the paper's standard GAN step, a trainer over built parts, factories from a config, checkpoints."""

from xaigan.train.checkpoint import rng_state, seed_everything, set_rng_state
from xaigan.train.factory import DataChangedError, RunExistsError, build_guidance, from_config, resume
from xaigan.train.logging import RunLogger
from xaigan.train.runtime import Runtime, pick_adam, pick_device, pick_precision, resolve_runtime
from xaigan.train.signals import StopRequested
from xaigan.train.step import gan_step
from xaigan.train.trainer import NonFiniteLossError, Trainer

__all__ = [
    "DataChangedError",
    "NonFiniteLossError",
    "RunExistsError",
    "StopRequested",
    "RunLogger",
    "Runtime",
    "Trainer",
    "build_guidance",
    "from_config",
    "gan_step",
    "pick_adam",
    "pick_device",
    "pick_precision",
    "resolve_runtime",
    "resume",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]
