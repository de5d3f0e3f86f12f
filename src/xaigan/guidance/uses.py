"""How a mask reshapes G's gradient at the image (``xai_use``), and how the strength changes over training
(``xai_schedule``).

Every use maps (gradient, mask, alpha, selected) to the reshaped gradient:

* ``amplify`` (the paper): ``grad * (1 + alpha * M)`` for every sample, as the mask gives it (with the paper's
  batch min-max the samples D accepts get ``M = 1``);
* ``suppress``: ``grad * (1 - alpha * M)`` for the explained samples (alpha <= 1 keeps the gradient's sign);
* ``replace``: ``grad * M`` for the explained samples;
* ``weight``: each explained sample's share of G's loss weighted by ``1 + alpha * mean(M_i)`` (the X-GAN idea; G's
  step weights the loss, see :meth:`xaigan.guidance.XAIGuidance.loss_weights`; where D's outputs depend on each
  sample alone this equals ``grad * (1 + alpha * mean(M_i))``, which the shared step computes);
* ``signed``: ``grad * (1 + alpha * A)``, ``A`` the signed attribution of each explained sample scaled by its largest
  magnitude into [-1, 1]: components whose attribution raises D's score of "real" are strengthened, the others damped
  (the mask normalisation is not used). With a gradient attribution (saliency) a pixel's A has the sign of G's own
  step there, so this strengthens every step that brightens a pixel and damps every step that darkens it: a bias in
  pixel value, not a choice by the explanation (tested; the screening's signed runs drifted bright, docs/variants.md).

Samples not explained keep their gradient, except under ``amplify``, which follows the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xaigan.settings import SCHEDULES, USES


def signed_unit(maps: Tensor) -> Tensor:
    """Each map divided by its largest absolute value (a zero map stays zero)."""
    flat = maps.reshape(maps.shape[0], -1)
    peak = flat.abs().max(1, keepdim=True).values
    return torch.where(peak > 0, flat / peak.clamp(min=torch.finfo(flat.dtype).tiny), 0.0).view_as(maps)


def factor(use: str, mask: Tensor, alpha: float, selected: Tensor) -> Tensor:
    """The multiplier of G's gradient, shaped like ``mask`` (``(B, C, H, W)``); ``selected`` ``(B,)`` marks the
    explained samples. For ``signed`` the mask is the signed attribution already scaled by :func:`signed_unit`."""
    if use == "amplify":
        return 1 + alpha * mask
    per_sample: dict[str, Callable[[Tensor], Tensor]] = {
        "suppress": lambda m: 1 - alpha * m,
        "replace": lambda m: m,
        "weight": lambda m: (1 + alpha * m.flatten(1).mean(1)).view(-1, *([1] * (m.dim() - 1))).expand_as(m),
        "signed": lambda m: 1 + alpha * m,
    }
    if use not in per_sample:
        raise ValueError(f"xai_use must be one of {USES}, got {use!r}")
    out = torch.ones_like(mask)
    if bool(selected.any()):
        out[selected] = per_sample[use](mask[selected])
    return out


def scheduled_alpha(alpha: float, schedule: str, epoch: int, start: int, epochs: int) -> float:
    """The strength in 0-based ``epoch`` of guidance that runs from ``start`` to the last of ``epochs``:
    ``constant``; ``ramp-up`` from ``alpha / n`` in the first guided epoch to ``alpha`` in the last (``n`` guided
    epochs); ``ramp-down`` from ``alpha`` to ``alpha / n``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"xai_schedule must be one of {SCHEDULES}, got {schedule!r}")
    n = max(epochs - start, 1)
    k = min(max(epoch - start, 0), n - 1) + 1  # 1..n
    if schedule == "ramp-up":
        return alpha * k / n
    if schedule == "ramp-down":
        return alpha * (n - k + 1) / n
    return alpha
