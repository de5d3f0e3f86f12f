"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every input of D.

A policy is a comma-separated list of op groups applied in order: ``color`` (brightness, saturation, contrast),
``translation`` (shift by up to 1/8 of the size, zero fill) and ``cutout`` (zero a square of half the size).
Every parameter is drawn per sample from torch's global RNG on the input's device; the empty policy is the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from xaigan.errors import InputError
from xaigan.registry import Registry

Op = Callable[[torch.Tensor], torch.Tensor]


def _uniform(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add a per-sample offset in [-0.5, 0.5)."""
    return x + (_uniform(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance to its channel mean by a factor in [0, 2) (no-op on one channel)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance to the image mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by integers in [-ratio*size, ratio*size] per axis; pixels shifted in are zero."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None] - dy + sy  # index into the padded image
    cols = torch.arange(w, device=x.device)[None] - dx + sx
    padded = torch.nn.functional.pad(x, (sx, sx, sy, sy))
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` x size per sample, centred uniformly at random (clipped at the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = (yy >= cy - ch // 2) & (yy < cy - ch // 2 + ch) & (xx >= cx - cw // 2) & (xx < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


REGISTRY: Registry[tuple[Op, ...]] = Registry("augmentation")
"""Policy names to the ops they apply, in order."""
REGISTRY.register("color", (brightness, saturation, contrast))
REGISTRY.register("translation", (translation,))
REGISTRY.register("cutout", (cutout,))


def parse_policy(policy: str) -> list[str]:
    """Split and check a policy string.

    Args:
        policy: comma-separated op groups, e.g. ``"color,translation"``.

    Returns:
        The op groups in order; an unknown one is an :class:`~xaigan.errors.InputError` (a ``ValueError``) naming
        it.
    """
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in REGISTRY:
            raise InputError(f"unknown op {name!r}; allowed: {', '.join(REGISTRY.names())} (comma-separated)")
    return names


class DiffAugment:
    """Callable ``T(x)`` applying a policy's ops in order; ``T`` is differentiable in ``x``."""

    def __init__(self, policy: str = "") -> None:
        names = parse_policy(policy)
        self.policy = ",".join(names)
        self.ops = [op for name in names for op in REGISTRY.get(name)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})"


class ExplainedCutout:
    """Explanation-guided augmentation of D's inputs: zero, in each image, the square of ``ratio`` x size where D
    looks most (the largest sum of its saliency over the square), so that D must use more of the image; then apply
    ``then`` (a :class:`DiffAugment`), if given. Differentiable in ``x`` outside the square, like DiffAugment's
    cutout; the square is chosen without gradients, from D as it stands (``xaigan.explain`` leaves D untouched).
    """

    def __init__(self, D: torch.nn.Module, ratio: float = 0.25, then: DiffAugment | None = None) -> None:
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.D, self.ratio, self.then = D, float(ratio), then

    def where(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B, 1, H, W)``: the square cut from each image."""
        from xaigan.explain import explain

        with torch.autocast(x.device.type, enabled=False):
            sal = explain("saliency", self.D, x.detach().float(), target="prob").abs().sum(1, keepdim=True)
        b, _, h, w = x.shape
        kh, kw = max(1, int(h * self.ratio + 0.5)), max(1, int(w * self.ratio + 0.5))
        pooled = torch.nn.functional.avg_pool2d(sal, (kh, kw), stride=1)
        best = pooled.flatten(1).argmax(1)
        top, left = best // pooled.shape[-1], best % pooled.shape[-1]
        yy = torch.arange(h, device=x.device)[None, :, None]
        xx = torch.arange(w, device=x.device)[None, None, :]
        top, left = top[:, None, None], left[:, None, None]
        return ((yy >= top) & (yy < top + kh) & (xx >= left) & (xx < left + kw)).unsqueeze(1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x * (~self.where(x)).to(x.dtype)
        return self.then(out) if self.then is not None else out

    def __repr__(self) -> str:
        return f"ExplainedCutout(ratio={self.ratio}, then={self.then!r})"
