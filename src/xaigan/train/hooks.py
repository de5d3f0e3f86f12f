"""Build the trainer's extension points from a config: DiffAugment on D's inputs and the xAI guidance on G's fakes;
render what D looks at (samples beside their explanation heat-maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaigan.data import to_float
from xaigan.io import save_image_grid
from xaigan.train.checkpoint import rng_state, set_rng_state


def build_augment(cfg: dict[str, Any]):
    if not cfg["diffaugment"]:
        return None
    from xaigan.augment import DiffAugment

    return DiffAugment(cfg["diffaugment"])


def baseline_batch(images: torch.Tensor, k: int, seed: int, device: torch.device) -> torch.Tensor:
    """``k`` real images drawn once with a seeded generator: DeepLIFT-SHAP's fixed references (the paper: one batch)."""
    generator = torch.Generator().manual_seed(seed + 31337)
    index = torch.randperm(len(images), generator=generator)[: min(k, len(images))]
    return to_float(images[index.to(images.device)]).to(device)


def build_guidance(cfg: dict[str, Any], images: torch.Tensor, augment: Any, device: torch.device):
    """The :class:`xaigan.guidance.XAIGuidance` the config asks for, or ``None`` for ``xai: none``."""
    if cfg["xai"] == "none":
        return None
    from xaigan.guidance import XAIGuidance

    kwargs: dict[str, Any] = {}
    if cfg["xai"] == "deeplift-shap":
        kwargs["baselines"] = baseline_batch(images, cfg["xai_baselines"], cfg["seed"], device)
    elif cfg["xai"] == "integrated-gradients":
        kwargs["n_steps"] = cfg["xai_steps"]
    elif cfg["xai"] == "lime":
        kwargs.update(n_samples=cfg["lime_samples"], segmentation=cfg["lime_segmentation"])
    return XAIGuidance(
        cfg["xai"],
        alpha=cfg["alpha"],
        select=cfg["xai_select"],
        threshold=cfg["xai_threshold"],
        normalize=cfg["xai_normalize"],
        prior=cfg["prior"],
        prior_mode=cfg["prior_mode"],
        explain_mode=cfg["explain_mode"],
        target=cfg["xai_target"],
        transform=augment,
        explain_kwargs=kwargs,
    )


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


def save_explanations(guide: Any, G: nn.Module, D: nn.Module, noise: torch.Tensor, path: Path) -> torch.Tensor:
    """Write a grid of generated samples (fixed noise) each beside the heat-map of its explanation.

    Every sample is explained (whatever the guidance selects in training), with the guidance's explainer and
    settings. Training's RNG state is restored afterwards, so drawing this figure never changes a run.
    """
    from xaigan import explain

    state = rng_state()
    try:
        images = _samples(G, noise)
        maps = explain.explain(
            guide.method,
            D,
            images,
            target=guide.target,
            mode=guide.explain_mode,
            transform=guide.transform,
            **guide.explain_kwargs,
        )
    finally:
        set_rng_state(state)
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    pairs = torch.stack([rgb, heat_colours(maps)], 1).flatten(0, 1)
    save_image_grid(pairs, path, nrow=8, scale=2)
    return pairs
