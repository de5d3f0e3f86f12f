"""The GAN losses a run can train with (``loss``), each for D's step and G's step, and what "rejected" means.

* ``bce-smoothed`` (the paper's, default): binary cross-entropy with targets ``label_real`` / ``label_fake`` for D
  and ``g_target`` for G (0.9 / 0.1 / 0.9: label smoothing);
* ``ns``: the non-saturating loss of Goodfellow et al. without smoothing: D's targets 1 and 0, G's loss
  ``-log D(G(z))`` (binary cross-entropy against 1);
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D's loss ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``,
  G's ``-mean(D(G(z)))``, on D's raw score (a D that returns probabilities cannot be trained with it).

A sample is *rejected* when D's probability of real is below the threshold (``xai_threshold``, 0.5): the probability
itself for a D that returns one, the sigmoid of its output otherwise. For a hinge score that is a score below
``logit(threshold)``: below 0 at the default 0.5, the hinge loss's own boundary.

Per-sample weights (guidance, top-k, acceptance weighting) multiply each sample's term of G's loss; the loss is then
the mean of the weighted terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xaigan.settings import LOSSES, ConfigError


def bce(out: torch.Tensor, target: float, d_output: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of D's outputs against a constant target, for a logit or a probability D; ``weight``:
    one weight per sample (the mean of the weighted losses).

    Example:
        >>> bce(torch.zeros(4, 1), 1.0, "logit")  # log 2
        tensor(0.6931)
    """
    labels = torch.full_like(out, target)
    if weight is not None:
        weight = _per_sample(weight, out)
    if d_output == "prob":
        return F.binary_cross_entropy(out, labels, weight=weight)
    return F.binary_cross_entropy_with_logits(out, labels, weight=weight)


def prob_real(out: torch.Tensor, d_output: str) -> torch.Tensor:
    """D's probability of "real" from its raw outputs (the sigmoid of a logit or a hinge score)."""
    return out if d_output == "prob" else torch.sigmoid(out)


def rejected(out: torch.Tensor, d_output: str, threshold: float) -> torch.Tensor:
    """Boolean ``(B,)``: the samples D rejects, whose probability of real is below ``threshold``."""
    return prob_real(out.detach().reshape(len(out), -1)[:, 0], d_output) < threshold


def check_loss(loss: str, d_output: str) -> None:
    """Refuse a loss that cannot be computed from what D returns."""
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if loss == "hinge" and d_output == "prob":
        raise ConfigError(
            "loss hinge needs D's raw score, but this D returns probabilities (it ends in a Sigmoid): remove the "
            "Sigmoid or use loss bce-smoothed or ns"
        )


def d_loss(loss: str, d_real: torch.Tensor, d_fake: torch.Tensor, labels: tuple[float, float], d_output: str):
    """D's loss on its outputs for real and generated images.

    Args:
        loss: one of :data:`LOSSES`.
        d_real: D's outputs on the real images, ``(B, 1)``.
        d_fake: D's outputs on the generated images, ``(B, 1)``.
        labels: ``(label_real, label_fake)``, the targets of ``bce-smoothed``.
        d_output: what D returns, ``"logit"`` or ``"prob"``.

    Returns:
        The scalar loss.

    Example:
        >>> d_loss("hinge", torch.tensor([[2.0], [0.5]]), torch.tensor([[-0.5], [1.0]]), (0.9, 0.1), "logit")
        tensor(1.5000)
    """
    if loss == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    real, fake = labels if loss == "bce-smoothed" else (1.0, 0.0)
    return bce(d_real, real, d_output) + bce(d_fake, fake, d_output)


def g_loss(
    loss: str, d_gen: torch.Tensor, g_target: float, d_output: str, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """G's loss on D's outputs for the generated images, each sample's term weighted by ``weight`` (None: 1).

    Args:
        loss: one of :data:`LOSSES`.
        d_gen: D's outputs on G's images, ``(B, 1)``.
        g_target: G's target under ``bce-smoothed`` (0.9).
        d_output: what D returns, ``"logit"`` or ``"prob"``.
        weight: ``(B,)`` weights, or None.

    Returns:
        The scalar loss: the mean of the (weighted) per-sample terms.

    Example:
        >>> g_loss("hinge", torch.tensor([[2.0], [-1.0]]), 0.9, "logit", torch.tensor([0.0, 2.0]))
        tensor(1.)
    """
    if loss == "hinge":
        terms = -d_gen
        return terms.mean() if weight is None else (terms * _per_sample(weight, terms)).mean()
    return bce(d_gen, g_target if loss == "bce-smoothed" else 1.0, d_output, weight)


def _per_sample(weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return weight.to(like.dtype).reshape(like.shape[0], *([1] * (like.dim() - 1))).expand_as(like)
