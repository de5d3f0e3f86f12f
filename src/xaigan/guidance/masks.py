"""From explanation maps to masks: the normalisations and priors of :class:`xaigan.guidance.XAIGuidance`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from xaigan.errors import InputError, MissingFileError
from xaigan.settings import NORMALIZE, PRIOR_MODES


def minmax(t: Tensor) -> Tensor:
    """``(t - min) / (max - min)`` over the whole tensor; a constant tensor gives zeros.

    Args:
        t: any tensor.

    Returns:
        ``t`` scaled into [0, 1], same shape.

    Example:
        >>> import torch
        >>> minmax(torch.tensor([1.0, 2.0, 3.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    lo, hi = t.min(), t.max()
    if not bool(hi > lo):
        return torch.zeros_like(t)
    return (t - lo) / (hi - lo)


def _per_sample(maps: Tensor, fn) -> Tensor:
    """``fn`` on each map flattened to a row (``(n, P) -> (n, P)``), shaped back."""
    return fn(maps.reshape(maps.shape[0], -1)).view_as(maps)


def _sample_minmax(flat: Tensor, hi: Tensor | None = None) -> Tensor:
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values if hi is None else hi
    span = hi - lo
    return torch.where(span > 0, ((flat - lo) / span.clamp(min=torch.finfo(flat.dtype).tiny)).clamp(0, 1), 0.0)


def _softmax(flat: Tensor, temperature: float) -> Tensor:
    """``exp((z - 1) / T)`` with ``z = map / max(map)``: 1 at the peak, ``exp(-1/T)`` where the map is 0 (a
    softmax over the pixels scaled to peak 1); a map without a positive value gives zeros."""
    peak = flat.max(1, keepdim=True).values
    z = flat / peak.clamp(min=torch.finfo(flat.dtype).tiny)
    return torch.where(peak > 0, torch.exp((z - 1) / temperature), 0.0)


def normalize(
    maps: Tensor, selected: Tensor, how: str = "batch-minmax", clip: float = 99.0, temperature: float = 0.25
) -> Tensor:
    """Masks for the whole batch from the maps of the selected samples.

    ``maps``: ``(n, ...)`` explanations of the ``n = selected.sum()`` selected samples, in batch order.

    * ``batch-minmax`` (the original code): unselected samples filled with 1.0, then one min-max over the whole
      ``(B, ...)`` tensor, fill included. If the maps lie in [0, 1) (small saliencies), the fill is the max and
      unselected samples keep mask 1; otherwise they get whatever 1.0 normalises to.
    * ``selected-minmax``: one min-max over the selected samples' maps only, unselected samples then set to 1.0.
    * ``sample-minmax``: each selected map min-max normalised on its own; unselected samples get 0 (no change).
    * ``sample-percentile``: as ``sample-minmax`` with each map's top clipped at its ``clip``-th percentile (a few
      extreme pixels no longer squash the rest towards 0).
    * ``softmax``: each selected map becomes ``exp((z - 1) / temperature)``, ``z`` the map over its maximum.

    A constant tensor (or map) normalises to zeros, as the original's NaN -> 0.

    Args:
        maps: ``(n, ...)`` explanations of the ``n = selected.sum()`` selected samples, in batch order.
        selected: ``(B,)`` bool, the samples that were explained.
        how: one of the normalisations above.
        clip: the percentile ``sample-percentile`` clips each map at.
        temperature: the temperature of ``softmax``.

    Returns:
        The masks ``(B, ...)`` of the whole batch.

    Raises:
        ValueError: an unknown ``how``.

    Example:
        >>> import torch
        >>> maps = torch.tensor([0.0, 0.5]).view(1, 1, 1, 2)  # the one selected sample's map
        >>> selected = torch.tensor([True, False])
        >>> normalize(maps, selected, "batch-minmax").flatten().tolist()
        [0.0, 0.5, 1.0, 1.0]
        >>> normalize(maps, selected, "sample-minmax").flatten().tolist()
        [0.0, 1.0, 0.0, 0.0]
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
    per_sample = {
        "sample-minmax": lambda f: _sample_minmax(f),
        "sample-percentile": lambda f: _sample_minmax(f, torch.quantile(f, clip / 100.0, dim=1, keepdim=True)),
        "softmax": lambda f: _softmax(f, temperature),
    }
    if how in per_sample:
        full = maps.new_zeros(shape)
        if maps.shape[0]:
            full[selected] = _per_sample(maps, per_sample[how])
        return full
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {how!r}")


def shuffle_pixels(maps: Tensor) -> Tensor:
    """Each map with its pixel positions permuted at random (one permutation per sample, shared by its channels;
    the global RNG): the same values, D's locations lost. The placebo control of a guidance (``xai_shuffle``)."""
    if maps.numel() == 0:
        return maps
    n, c = maps.shape[:2]
    flat = maps.reshape(n, c, -1)
    order = torch.argsort(torch.rand(n, flat.shape[2], device=maps.device), dim=1)
    return flat.gather(2, order.unsqueeze(1).expand_as(flat)).view_as(maps)


def flatten_explained(mask: Tensor, selected: Tensor) -> Tensor:
    """Every explained sample's mask replaced by one number, the mean of all explained samples' masks: the same
    average strength on the same samples, with which pixels and which samples D pointed at lost. The content-free
    control of a guidance (``xai_flat``); the samples not explained keep their mask."""
    if not bool(selected.any()):
        return mask
    out = mask.clone()
    out[selected] = mask[selected].mean()
    return out


def load_prior(path: str | Path, size: tuple[int, int]) -> Tensor:
    """A grey ``(1, H, W)`` prior in [0, 1] from an image file, resized (bilinear) to ``size = (H, W)``.

    Args:
        path: an image file PIL can read (converted to grey).
        size: ``(H, W)`` of the images the prior is for.

    Returns:
        The prior, float in [0, 1].

    Example:
        >>> from PIL import Image
        >>> Image.new("L", (64, 64), 255).save("/tmp/prior.png")
        >>> prior = load_prior("/tmp/prior.png", (32, 32))
        >>> prior.shape, float(prior.min())
        (torch.Size([1, 32, 32]), 1.0)
    """
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
    except FileNotFoundError as exc:
        raise MissingFileError(f"prior: no file {path}") from exc
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"prior: {path} is not a readable image file ({exc})") from exc
    with img:
        grey = img.convert("L").resize((size[1], size[0]), Image.BILINEAR)
        data = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
    return data.view(1, size[0], size[1]).float() / 255.0


def combine_prior(mask: Tensor, prior: Tensor, mode: str = "multiply") -> Tensor:
    """Combine explanation masks ``(n, C, H, W)`` in [0, 1] with a prior broadcastable to one image.

    Args:
        mask: the explanation masks ``(n, C, H, W)``, in [0, 1].
        prior: in [0, 1], broadcastable to one image.
        mode: ``multiply``: ``mask * prior``; ``add``: ``(mask + prior) / 2`` (the sum rescaled to stay in
            [0, 1]); ``replace``: the prior alone.

    Returns:
        The combined masks, shaped like ``mask``.

    Raises:
        ValueError: an unknown ``mode``.

    Example:
        >>> import torch
        >>> mask, prior = torch.full((1, 1, 1, 2), 0.5), torch.tensor([[[1.0, 0.0]]])
        >>> combine_prior(mask, prior, "multiply").flatten().tolist()
        [0.5, 0.0]
    """
    if mode == "multiply":
        return mask * prior
    if mode == "add":
        return (mask + prior) / 2
    if mode == "replace":
        return prior.expand_as(mask).clone()
    raise ValueError(f"prior_mode must be one of {PRIOR_MODES}, got {mode!r}")


__all__ = [
    "NORMALIZE",
    "PRIOR_MODES",
    "combine_prior",
    "flatten_explained",
    "load_prior",
    "minmax",
    "normalize",
    "shuffle_pixels",
]
