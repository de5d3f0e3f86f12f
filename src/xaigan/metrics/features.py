"""Feature extractors for FID/KID/precision-recall, behind a small registry.

``get(name, **kw)`` returns an extractor with ``.id`` (name + architecture/version),
``.weights_hash`` (short SHA-256 of its state dict), ``.dim`` and ``__call__(images_uint8)``:
``(N, C, H, W)`` uint8 tensor -> ``(N, dim)`` float64 numpy array, batched, in eval mode under
``torch.no_grad()`` on the extractor's device.

Registered extractors:

* ``inception`` -- the standard FID Inception-v3 (pool3, 2048-d), weights from a local file only.
* ``domain`` -- a small CNN classifier trained on the dataset itself (penultimate layer, 128-d);
  for 32x32 datasets such as MNIST/Fashion-MNIST where ImageNet features are a poor fit and
  Inception weights may be unavailable offline. Train it with :func:`train_domain_classifier`
  or, cached, :func:`load_or_train_domain`.

Scores computed with different extractors (or different weights) are not comparable; record
``extractor.meta`` with every result and use :func:`check_same_extractor` before comparing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from xaigan.registry import Registry

__all__ = [
    "FeatureExtractor",
    "REGISTRY",
    "register",
    "get",
    "available",
    "state_dict_hash",
    "check_same_extractor",
]

# --------------------------------------------------------------------------------------------------
# Common machinery
# --------------------------------------------------------------------------------------------------


def state_dict_hash(module_or_state: nn.Module | Mapping[str, torch.Tensor], length: int = 16) -> str:
    """Short SHA-256 over a state dict: every key (sorted), its dtype, shape and raw bytes."""
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:length]


def as_uint8_nchw(images: Any) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in [0, 255], got dtype {images.dtype}")
    if images.ndim == 3:  # (N, H, W) greyscale
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    return images


class FeatureExtractor:
    """Base class: wraps a network, batches uint8 images through it, returns float64 numpy features.

    Subclasses implement :meth:`preprocess` (uint8 batch on device -> float network input) and
    :meth:`embed` (network input -> (B, dim) features).

    Args:
        net: the network (put in eval mode on ``device``).
        id: the extractor's name and architecture/version.
        dim: the feature dimension.
        batch_size: images per forward pass.
        device: where the network runs.

    Example:
        >>> import torch
        >>> from xaigan.metrics import DomainClassifier, features
        >>> ext = features.get("domain", model=DomainClassifier())  # a FeatureExtractor
        >>> ext(torch.zeros(4, 1, 32, 32, dtype=torch.uint8)).shape
        (4, 128)
        >>> sorted(ext.meta)
        ['dim', 'id', 'weights_hash']
    """

    name: str = "base"

    def __init__(self, net: nn.Module, *, id: str, dim: int, batch_size: int, device: str | torch.device):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()  # inference runs under torch.no_grad()
        self.id = id
        self.dim = int(dim)
        self.batch_size = int(batch_size)
        self.weights_hash = state_dict_hash(self.net)

    @property
    def meta(self) -> dict[str, Any]:
        """What a result must record to be comparable: ``{"id", "weights_hash", "dim"}``."""
        return {"id": self.id, "weights_hash": self.weights_hash, "dim": self.dim}

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def classify(self, features: Any) -> torch.Tensor | None:
        """The softmax over the dataset's classes, ``(N, classes)``, from features this extractor returned, if it is
        a classifier of them; None if it is not (the base class)."""
        return None

    def __call__(self, images_uint8: Any) -> np.ndarray:
        images = as_uint8_nchw(images_uint8)
        n = images.shape[0]
        out = np.empty((n, self.dim), dtype=np.float64)
        self.net.eval()
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                batch = images[start : start + self.batch_size].to(self.device, non_blocking=True)
                feats = self.embed(self.preprocess(batch))
                out[start : start + feats.shape[0]] = feats.to("cpu", torch.float64).numpy()
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, weights_hash={self.weights_hash!r}, dim={self.dim})"


REGISTRY: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")
"""Extractor factories by name; :mod:`xaigan.metrics.inception` and :mod:`xaigan.metrics.domain` register theirs."""


def register(name: str) -> Callable[[Callable[..., FeatureExtractor]], Callable[..., FeatureExtractor]]:
    """Decorator registering an extractor factory under ``name`` (a duplicate name is an error)."""
    return REGISTRY.decorator(name)


def available() -> list[str]:
    return REGISTRY.names()


def get(name: str, **kwargs: Any) -> FeatureExtractor:
    """Build the extractor registered under ``name`` (see :func:`available`)."""
    return REGISTRY.get(name)(**kwargs)


def _meta_fields(meta: Any) -> tuple[Any, Any]:
    if isinstance(meta, Mapping):
        ident = meta.get("id", meta.get("extractor_id"))
        return ident, meta.get("weights_hash")
    return getattr(meta, "id", None), getattr(meta, "weights_hash", None)


def check_same_extractor(a_meta: Any, b_meta: Any) -> None:
    """Raise ``ValueError`` unless both results used the same extractor id *and* weights.

    Args:
        a_meta: an extractor, or a result's dict with ``id`` (or ``extractor_id``) and ``weights_hash``.
        b_meta: the same for the other result.

    Raises:
        ValueError: the extractors differ, or a result does not record them.

    Example:
        >>> check_same_extractor({"id": "domain", "weights_hash": "ab12"}, {"id": "domain", "weights_hash": "ab12"})
        >>> check_same_extractor({"id": "domain", "weights_hash": "ab12"}, {"id": "domain", "weights_hash": "cd34"})
        Traceback (most recent call last):
        ...
        ValueError: results were computed with different feature extractors and are not comparable: ...
    """
    a_id, a_w = _meta_fields(a_meta)
    b_id, b_w = _meta_fields(b_meta)
    if a_id is None or b_id is None or a_w is None or b_w is None:
        raise ValueError(
            "cannot verify feature extractors: results must record 'id' and 'weights_hash' "
            f"(got {a_id!r}/{a_w!r} and {b_id!r}/{b_w!r})"
        )
    if a_id != b_id or a_w != b_w:
        raise ValueError(
            "results were computed with different feature extractors and are not comparable: "
            f"{a_id} (weights {a_w}) vs {b_id} (weights {b_w})"
        )
