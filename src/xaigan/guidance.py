"""xAI guidance: reshape the generator's gradient at the generated image with an explanation of D's verdict.

``fake = guidance.apply(fake, mask, alpha)`` is the identity in the forward pass; in the backward pass it
multiplies the incoming gradient by ``1 + alpha * mask`` (xAI-GAN, Nagisetty et al., arXiv 2002.10438).

:class:`XAIGuidance` is what a trainer uses in the generator step::

    guide = XAIGuidance("saliency", alpha=0.2)
    fake = guide(G(z), D)                 # explains, selects, normalises, wraps with apply()
    loss = bce_with_logits(D(fake), real_labels); loss.backward()
    guide.last_stats, guide.last_mask     # for logging and heat-maps

Fidelity notes on the original code (explainable-gan/XAIGAN, ``utils/explanation_utils.py``): it filled a
batch-shaped tensor with 1.0, wrote the explanations of the samples D scored as fake (``sigmoid < 0.5``) into it,
min-max normalised that *whole* tensor (so the 1.0 fill takes part in the min and max) and turned NaN (constant
tensor) into 0. It skipped batches with fewer than two fake samples (then the mask is all 0: no change). Its hook
sat on the Tanh of G's output block and so scaled the gradient before the Tanh; the Tanh is element-wise, so this
is the same as scaling the gradient at the image, which is what we do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from xaigan import explain as _explain
from xaigan.explain._base import ExplainedModel, protected

SELECT = ("fake", "all")
NORMALIZE = ("batch-minmax", "selected-minmax", "sample-minmax")
PRIOR_MODES = ("multiply", "add", "replace")


class _Guide(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad * (1 + ctx.alpha * mask), None, None


def _broadcasts(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def apply(x: Tensor, mask: Tensor | float, alpha: float = 0.2) -> Tensor:
    """Identity forward; backward multiplies the incoming gradient by ``1 + alpha * mask``.

    ``mask`` is detached and must broadcast to ``x``'s shape (one map per sample, one map for all, a scalar...).
    ``alpha == 0`` returns ``x`` itself, so gradients stay bit-identical.
    """
    mask = torch.as_tensor(mask).detach().to(device=x.device, dtype=x.dtype)
    if not _broadcasts(mask.shape, x.shape):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(x.shape)}")
    if alpha == 0:
        return x
    return _Guide.apply(x, mask, float(alpha))


def minmax(t: Tensor) -> Tensor:
    """``(t - min) / (max - min)`` over the whole tensor; a constant tensor gives zeros."""
    lo, hi = t.min(), t.max()
    if not bool(hi > lo):
        return torch.zeros_like(t)
    return (t - lo) / (hi - lo)


def normalize(maps: Tensor, selected: Tensor, how: str = "batch-minmax") -> Tensor:
    """Masks for the whole batch from the maps of the selected samples.

    ``maps``: ``(n, ...)`` explanations of the ``n = selected.sum()`` selected samples, in batch order.

    * ``batch-minmax`` (the original code): unselected samples filled with 1.0, then one min-max over the whole
      ``(B, ...)`` tensor, fill included. If the maps lie in [0, 1) (small saliencies), the fill is the max and
      unselected samples keep mask 1; otherwise they get whatever 1.0 normalises to.
    * ``selected-minmax``: one min-max over the selected samples' maps only, unselected samples then set to 1.0.
    * ``sample-minmax``: each selected map min-max normalised on its own; unselected samples get 0 (no change).

    A constant tensor (or map) normalises to zeros, as the original's NaN -> 0.
    """
    B = selected.shape[0]
    shape = (B, *maps.shape[1:])
    if how == "batch-minmax":
        full = maps.new_ones(shape)
        full[selected] = maps
        return minmax(full)
    if how == "selected-minmax":
        full = maps.new_ones(shape)
        if maps.shape[0]:
            full[selected] = minmax(maps)
        return full
    if how == "sample-minmax":
        full = maps.new_zeros(shape)
        if maps.shape[0]:
            flat = maps.reshape(maps.shape[0], -1)
            lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
            span = hi - lo
            full[selected] = torch.where(
                span > 0, (flat - lo) / span.clamp(min=torch.finfo(flat.dtype).tiny), 0.0
            ).view_as(maps)
        return full
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {how!r}")


def load_prior(path: str | Path, size: tuple[int, int]) -> Tensor:
    """A grey ``(1, H, W)`` prior in [0, 1] from an image file, resized (bilinear) to ``size = (H, W)``."""
    from PIL import Image

    with Image.open(path) as img:
        grey = img.convert("L").resize((size[1], size[0]), Image.BILINEAR)
        data = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
    return data.view(1, size[0], size[1]).float() / 255.0


def combine_prior(mask: Tensor, prior: Tensor, mode: str = "multiply") -> Tensor:
    """Combine explanation masks ``(n, C, H, W)`` in [0, 1] with a prior broadcastable to one image.

    ``multiply``: ``mask * prior``; ``add``: ``(mask + prior) / 2`` (the sum rescaled to stay in [0, 1]);
    ``replace``: the prior alone.
    """
    if mode == "multiply":
        return mask * prior
    if mode == "add":
        return (mask + prior) / 2
    if mode == "replace":
        return prior.expand_as(mask).clone()
    raise ValueError(f"prior_mode must be one of {PRIOR_MODES}, got {mode!r}")


def _describe(value: object) -> object:
    if isinstance(value, Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return getattr(value, "__name__", type(value).__name__)


class XAIGuidance:
    """Explain D on the generated batch, turn the explanations into a mask and attach it with :func:`apply`.

    Settings (all recorded by :meth:`config`); the defaults follow the paper / original code:

    * ``method``: an explainer name (:func:`xaigan.explain.available`); ``explain_kwargs`` go to it (e.g.
      ``baselines=real_images`` for ``deeplift-shap``, ``n_samples``/``segmentation`` for ``lime``).
    * ``alpha`` (0.2): gradient at the image becomes ``grad * (1 + alpha * mask)``.
    * ``select`` (``"fake"``): explain only the samples D scores as fake, ``sigmoid(D(G(z))) < threshold``
      (0.5); ``"all"`` explains every sample. Unlike the original, one fake sample is explained too; no fake
      sample means no change. Scores come from ``logits`` when passed to ``__call__``, else from one extra
      no-grad forward pass of D in ``explain_mode``.
    * ``normalize`` (``"batch-minmax"``): see :func:`normalize`.
    * ``prior`` (``None``): a tensor broadcastable to one image ``(C, H, W)`` with values in [0, 1], or the path of
      an image file (read as grey, resized to the image size); combined with the selected samples' masks by
      ``prior_mode`` (``multiply``/``add``/``replace``, see :func:`combine_prior`). Unselected samples keep
      their mask. ``replace`` computes no explanation: selected samples get the prior, the others 0.
    * ``explain_mode`` (``"eval"``): D's mode while explaining; ``"train"`` is the original's (dropout on; BatchNorm
      buffers are restored afterwards). D's parameters, gradients, buffers and flags are never changed.
    * ``target`` (``"prob"``): explain ``sigmoid(D)`` or the ``"logit"``.
    * ``transform``: a callable applied before D (DiffAugment): the explanation is of ``D o T`` at ``G(z)``.

    After each call: ``last_mask`` ``(B, C, H, W)``, ``last_selected`` ``(B,)`` bool, ``last_maps`` (raw maps of
    the selected samples) and ``last_stats`` (``explained``: fraction of the batch explained, ``n_explained``,
    ``mask_mean``, ``seconds``: wall time of scoring, explaining and normalising).

    RNG: see :mod:`xaigan.explain` (lime/smoothgrad take ``generator`` in ``explain_kwargs``; train-mode dropout
    uses the global RNG). Selection draws none in eval mode, unless ``transform`` is random (DiffAugment draws from
    the global RNG in the selection pass and in every forward pass of the explanation).
    """

    def __init__(
        self,
        method: str = "saliency",
        alpha: float = 0.2,
        *,
        select: str = "fake",
        threshold: float = 0.5,
        normalize: str = "batch-minmax",
        prior: Tensor | str | Path | None = None,
        prior_mode: str = "multiply",
        explain_mode: str = "eval",
        target: str = "prob",
        transform: Callable[[Tensor], Tensor] | None = None,
        explain_kwargs: dict | None = None,
    ) -> None:
        if prior_mode != "replace":
            _explain.get(method)
        if select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {select!r}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if prior_mode not in PRIOR_MODES:
            raise ValueError(f"prior_mode must be one of {PRIOR_MODES}, got {prior_mode!r}")
        if prior_mode == "replace" and prior is None:
            raise ValueError("prior_mode='replace' needs a prior")
        self.method = method
        self.alpha = float(alpha)
        self.select = select
        self.threshold = float(threshold)
        self.normalize = normalize
        self.prior = prior
        self.prior_mode = prior_mode
        self.explain_mode = explain_mode
        self.target = target
        self.transform = transform
        self.explain_kwargs = dict(explain_kwargs or {})
        self._prior_cache: dict[tuple, Tensor] = {}
        self.last_mask: Tensor | None = None
        self.last_selected: Tensor | None = None
        self.last_maps: Tensor | None = None
        self.last_stats: dict = {}

    def config(self) -> dict:
        """The settings, JSON-friendly (tensors appear as their shapes)."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "select": self.select,
            "threshold": self.threshold,
            "normalize": self.normalize,
            "prior": _describe(self.prior),
            "prior_mode": self.prior_mode,
            "explain_mode": self.explain_mode,
            "target": self.target,
            "transform": _describe(self.transform),
            "explain_kwargs": _describe(self.explain_kwargs),
        }

    def _prior_for(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape[1:]), x.device, x.dtype)
        if key not in self._prior_cache:
            if isinstance(self.prior, (str, Path)):
                prior = load_prior(self.prior, tuple(x.shape[2:]))
            else:
                prior = torch.as_tensor(self.prior).detach()
            prior = prior.to(device=x.device, dtype=x.dtype)
            if not _broadcasts(prior.shape, x.shape[1:]):
                raise ValueError(
                    f"prior of shape {tuple(prior.shape)} does not broadcast to one image {tuple(x.shape[1:])}"
                )
            self._prior_cache[key] = prior
        return self._prior_cache[key]

    def selection(self, x: Tensor, D: nn.Module, logits: Tensor | None = None) -> Tensor:
        """Boolean ``(B,)``: which samples get explained."""
        if self.select == "all":
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        if logits is None:
            model = ExplainedModel(D, target="logit", transform=self.transform)
            with protected(model, self.explain_mode), torch.no_grad():
                logits = model(x)
        return torch.sigmoid(logits.detach().reshape(-1)) < self.threshold

    def masks(self, x: Tensor, D: nn.Module, logits: Tensor | None = None) -> Tensor:
        """The ``(B, ...)`` mask for the batch ``x`` (also stored with the stats, see the class docstring)."""
        start = time.perf_counter()
        x = x.detach()
        selected = self.selection(x, D, logits)
        n = int(selected.sum())
        if n == 0:
            maps = x.new_zeros((0, *x.shape[1:]))
            mask = x.new_zeros(x.shape)
        else:
            if self.prior_mode == "replace":
                maps = x.new_zeros((0, *x.shape[1:]))
                mask = x.new_zeros(x.shape)
                mask[selected] = self._prior_for(x)
            else:
                maps = _explain.explain(
                    self.method,
                    D,
                    x[selected],
                    target=self.target,
                    mode=self.explain_mode,
                    transform=self.transform,
                    **self.explain_kwargs,
                )
                mask = normalize(maps, selected, self.normalize)
                if self.prior is not None:
                    mask[selected] = combine_prior(mask[selected], self._prior_for(x), self.prior_mode)
        self.last_mask, self.last_selected, self.last_maps = mask, selected, maps
        self.last_stats = {
            "explained": n / max(x.shape[0], 1),
            "n_explained": n,
            "mask_mean": float(mask.mean()) if mask.numel() else 0.0,
            "seconds": time.perf_counter() - start,
        }
        return mask

    def __call__(self, fake: Tensor, D: nn.Module, logits: Tensor | None = None) -> Tensor:
        """``fake`` wrapped by :func:`apply` with this batch's mask (``fake`` itself when nothing is explained).

        ``logits``: D's logits for ``fake`` if already computed (e.g. by the training forward pass, as the
        original selected with them); only used for selection.
        """
        mask = self.masks(fake, D, logits)
        if self.last_stats["n_explained"] == 0:
            return fake
        return apply(fake, mask, self.alpha)
