"""Content-free weights of G's per-sample loss terms, decided by D's verdict on each generated sample.

* **top-k** (``g_topk``; Sinha, Zhao, Goyal, Raffel & Odena, "Top-k Training of GANs", NeurIPS 2020): G's update
  keeps only the ``k`` samples D scores most realistic and zeroes the others' terms. ``k`` starts at the batch size
  and shrinks by ``g_topk_gamma`` every epoch, never below ``g_topk_min`` of the batch (the paper's 0.99 and 0.5). The
  loss is the mean over the kept samples (each kept term weighs ``B / k``). Under distributed training each process
  keeps ``k`` of its own batch.
* **acceptance weighting** (``g_accept_weight`` = a): the samples D accepts (not rejected, see
  :func:`xaigan.train.losses.rejected`) weigh ``1 + a`` in G's loss, the rejected ones 1. This is what the paper's
  amplify rule does to the samples D accepts (their batch-min-max mask is 1 everywhere), without the maps.

Both multiply with each other and with a guidance's own per-sample weights (``xai_use: weight``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaigan.config import Config
from xaigan.train.losses import rejected


def topk_rate(epoch: int, gamma: float, floor: float) -> float:
    """The fraction of the batch top-k keeps in 0-based ``epoch``: ``max(gamma ** epoch, floor)``.

    Example:
        >>> topk_rate(0, 0.99, 0.5), round(topk_rate(10, 0.99, 0.5), 4), topk_rate(100, 0.99, 0.5)
        (1.0, 0.9044, 0.5)
    """
    return max(gamma**epoch, floor)


@dataclass(frozen=True)
class SampleWeights:
    """The weights of one epoch's G steps, from D's raw outputs on the generated batch.

    Attributes:
        keep: the fraction of each batch top-k keeps (1: all; ``k = max(1, int(B * keep))``).
        accept: the acceptance weight ``a`` (0: off).
        d_output: what D returns, ``"logit"`` or ``"prob"``.
        threshold: D's probability of real below which a sample is rejected.
    """

    keep: float
    accept: float
    d_output: str
    threshold: float

    def __call__(self, scores: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` weights for the samples D scored ``scores`` (``(B, 1)``), or None when every weight is 1."""
        s = scores.detach().reshape(len(scores), -1)[:, 0].float()
        w = None
        if self.keep < 1:
            k = max(1, int(len(s) * self.keep))
            w = torch.zeros_like(s)
            w[torch.topk(s, k).indices] = len(s) / k
        if self.accept > 0:
            a = 1 + self.accept * (~rejected(scores, self.d_output, self.threshold)).to(s.dtype)
            w = a if w is None else w * a
        return w


def sample_weights(cfg: Config, d_output: str, epoch: int) -> SampleWeights | None:
    """The weights ``cfg`` asks for in ``epoch`` (None when neither top-k nor acceptance weighting is on).

    Example:
        >>> from xaigan.config import Config
        >>> sample_weights(Config(g_topk=True), "logit", 0).keep, sample_weights(Config(), "logit", 3)
        (1.0, None)
    """
    if not cfg.g_topk and cfg.g_accept_weight == 0:
        return None
    keep = topk_rate(epoch, cfg.g_topk_gamma, cfg.g_topk_min) if cfg.g_topk else 1.0
    return SampleWeights(keep, cfg.g_accept_weight, d_output, cfg.xai_threshold)
