"""What D looks at: generated samples beside the heat-maps of their explanations."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xaigan.guidance import Guidance
from xaigan.io import save_image_grid
from xaigan.train.checkpoint import rng_state, set_rng_state


def heat_colours(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max of the channel-summed |map|, coloured black-red-yellow-white, in [-1, 1] RGB."""
    m = maps.abs().sum(1, keepdim=True)
    lo = m.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = m.flatten(1).max(1).values.view(-1, 1, 1, 1)
    t = torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(m))
    rgb = torch.cat([(3 * t).clamp(0, 1), (3 * t - 1).clamp(0, 1), (3 * t - 2).clamp(0, 1)], 1)
    return rgb * 2 - 1


@torch.no_grad()
def _samples(G: nn.Module, noise: torch.Tensor) -> torch.Tensor:
    was_training = G.training
    G.eval()
    images = G(noise)
    G.train(was_training)
    return images


def save_explanations(guide: Guidance, G: nn.Module, D: nn.Module, noise: torch.Tensor, path: Path) -> torch.Tensor:
    """Write a grid of generated samples (fixed noise) each beside the heat-map of its explanation.

    Every sample is explained (whatever the guidance selects in training), with the guidance's explainer and
    settings. Training's RNG state is restored afterwards, so drawing this figure never changes a run.
    """
    state = rng_state()
    try:
        images = _samples(G, noise)
        maps = guide.explain_maps(images, D)
    finally:
        set_rng_state(state)
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    pairs = torch.stack([rgb, heat_colours(maps)], 1).flatten(0, 1)
    save_image_grid(pairs, path, nrow=8, scale=2)
    return pairs
