"""A trained run's nets and data, as the analysis scripts here need them (shared by ``explain_precision.py`` and
``saliency_focus.py``)."""

from __future__ import annotations

from typing import Any

import torch

from xaigan import data, models
from xaigan.rundir import RunDir
from xaigan.train import checkpoint


def load_trained(path: str) -> tuple[dict[str, Any], dict[str, Any], data.ImageData, torch.nn.Module, torch.nn.Module]:
    """``(config, last checkpoint, the run's training data, G in eval mode, D)`` of the run in ``path``."""
    run = RunDir(path)
    cfg = run.read_config()
    state = checkpoint.load(run.checkpoint())
    images = data.load(cfg["dataset"], fraction=cfg["fraction"], subset=cfg["subset"], seed=cfg["seed"])
    G, D = models.build(cfg["model"], images.channels, images.image_size, cfg["noise_dim"])
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    G.eval()
    return cfg, state, images, G, D
