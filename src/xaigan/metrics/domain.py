"""The ``domain`` feature extractor: a small CNN classifier trained on the dataset itself (penultimate layer).

For 32x32 datasets such as MNIST/Fashion-MNIST, where ImageNet features fit poorly and Inception weights may be
unavailable offline. Train it with :mod:`xaigan.metrics.domain_training` (cached by content: ``load_or_train_domain``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaigan.io import atomic_write

from .features import FeatureExtractor, register

__all__ = [
    "DOMAIN_ARCH_VERSION",
    "DomainClassifier",
    "DomainExtractor",
    "domain_arch_id",
    "domain_preprocess",
    "load_domain_checkpoint",
    "save_domain_checkpoint",
]


DOMAIN_ARCH_VERSION = "domain-cnn32-v2"  # v2: the evaluator trains it on corrupted images
DOMAIN_IMAGE_SIZE = 32


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def domain_arch_id(channels: int, num_classes: int, widths: tuple[int, ...], hidden: int) -> str:
    """Architecture id, e.g. ``domain-cnn32-v2-c1-w16.32.64-h128-k10`` (bump the version on any change)."""
    w = ".".join(str(int(x)) for x in widths)
    return f"{DOMAIN_ARCH_VERSION}-c{int(channels)}-w{w}-h{int(hidden)}-k{int(num_classes)}"


class DomainClassifier(nn.Module):
    """Small CNN for 32x32 images: 3x [conv3x3-BN-ReLU-maxpool2] -> fc(hidden)-ReLU -> fc(classes).

    ``features(x)`` returns the penultimate (post-ReLU ``hidden``-d) activations; ``forward`` the
    logits. Inputs are float images in [-1, 1] (see :func:`domain_preprocess`).

    Args:
        channels: image channels.
        num_classes: the dataset's classes.
        widths: the three convolution blocks' channels.
        hidden: the width of the penultimate layer (the feature dimension).

    Example:
        >>> import torch
        >>> model = DomainClassifier().eval()
        >>> model.features(torch.zeros(2, 1, 32, 32)).shape, model(torch.zeros(2, 1, 32, 32)).shape
        (torch.Size([2, 128]), torch.Size([2, 10]))
    """

    def __init__(
        self,
        channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        self.channels, self.num_classes = int(channels), int(num_classes)
        self.widths, self.hidden = tuple(int(w) for w in widths), int(hidden)
        w1, w2, w3 = self.widths
        self.body = nn.Sequential(
            *_conv_bn_relu(self.channels, w1),
            nn.MaxPool2d(2),  # 16
            *_conv_bn_relu(w1, w2),
            nn.MaxPool2d(2),  # 8
            *_conv_bn_relu(w2, w3),
            nn.MaxPool2d(2),  # 4
            nn.Flatten(),
            nn.Linear(w3 * 16, self.hidden),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(self.hidden, self.num_classes)

    @property
    def arch_id(self) -> str:
        return domain_arch_id(self.channels, self.num_classes, self.widths, self.hidden)

    def config(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "num_classes": self.num_classes,
            "widths": list(self.widths),
            "hidden": self.hidden,
        }

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (DOMAIN_IMAGE_SIZE, DOMAIN_IMAGE_SIZE):
            raise ValueError(f"domain classifier expects 32x32 images, got {tuple(x.shape[-2:])}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def domain_preprocess(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (``x / 127.5 - 1``), channels-last for faster CPU convs."""
    return (x_uint8.float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


class DomainExtractor(FeatureExtractor):
    """Penultimate-layer features of a trained :class:`DomainClassifier`."""

    name = "domain"

    def __init__(
        self,
        model: DomainClassifier | None = None,
        *,
        checkpoint: str | os.PathLike | None = None,
        batch_size: int = 1000,
        device: str | torch.device = "cpu",
    ) -> None:
        if (model is None) == (checkpoint is None):
            raise ValueError("domain extractor needs exactly one of model=... or checkpoint=...")
        if checkpoint is not None:
            model, meta = load_domain_checkpoint(checkpoint)
            self.checkpoint_meta: dict[str, Any] | None = meta
        else:
            self.checkpoint_meta = None
        if not isinstance(model, DomainClassifier):
            raise TypeError(f"model must be a DomainClassifier, got {type(model).__name__}")
        super().__init__(
            model.to(memory_format=torch.channels_last),
            id=model.arch_id,
            dim=model.hidden,
            batch_size=batch_size,
            device=device,
        )

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.net.channels:
            raise ValueError(f"domain extractor was built for {self.net.channels} channel(s), got {x.shape[1]}")
        return domain_preprocess(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    @torch.no_grad()
    def classify(self, features: Any) -> torch.Tensor:
        """The classifier's softmax over the dataset's classes, ``(N, classes)``, from features this extractor
        returned (its classification head on them: no second pass through the network)."""
        head = self.net.head
        feats = torch.as_tensor(np.asarray(features), dtype=head.weight.dtype, device=head.weight.device)
        return head(feats).float().softmax(1).cpu()


@register("domain")
def _make_domain(**kwargs: Any) -> DomainExtractor:
    return DomainExtractor(**kwargs)


CHECKPOINT_FORMAT = 1


def save_domain_checkpoint(path: str | os.PathLike, model: DomainClassifier, meta: Mapping[str, Any]) -> Path:
    """Atomically save ``{"state_dict", "meta"}`` (meta: plain JSON-like values only)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch_id,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": json.loads(json.dumps(dict(meta))),  # validates it is plain data
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_domain_checkpoint(path: str | os.PathLike) -> tuple[DomainClassifier, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_domain_checkpoint` (``weights_only=True``, strict).

    Args:
        path: the checkpoint file.

    Returns:
        ``(model in eval mode, meta)``.

    Raises:
        ValueError: not a domain-classifier checkpoint, or one of another architecture.

    Example:
        >>> from xaigan.metrics.domain import save_domain_checkpoint
        >>> path = save_domain_checkpoint("/tmp/xaigan-domain.pt", DomainClassifier(), {"accuracy": 0.9})
        >>> model, meta = load_domain_checkpoint(path)
        >>> meta["accuracy"], model.training
        (0.9, False)
    """
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a xaigan domain-classifier checkpoint (format {CHECKPOINT_FORMAT})")
    cfg = ckpt["config"]
    model = DomainClassifier(cfg["channels"], cfg["num_classes"], widths=tuple(cfg["widths"]), hidden=cfg["hidden"])
    if model.arch_id != ckpt["arch"]:
        raise ValueError(f"{path}: architecture {ckpt['arch']!r} does not match this code ({model.arch_id!r})")
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    meta = dict(ckpt["meta"])
    meta.setdefault("arch", ckpt["arch"])
    return model, meta
