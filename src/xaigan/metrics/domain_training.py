"""Training the domain classifier (:mod:`xaigan.metrics.domain`): seeded, optionally on corrupted images, and cached
by the content of its data and settings."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xaigan.io import content_hash
from xaigan.process import fixed_threads

from .domain import (
    DomainClassifier,
    domain_arch_id,
    domain_preprocess,
    load_domain_checkpoint,
    save_domain_checkpoint,
)
from .features import as_uint8_nchw

__all__ = ["corrupt", "evaluate_accuracy", "load_or_train_domain", "train_domain_classifier"]


def corrupt(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training-time corruption of a batch in [-1, 1]: per image a shift of up to 2 pixels, a blend with a blurred
    copy (weight uniform in [0, 1]) and Gaussian noise (std uniform in [0, 0.3]), so that the features vary smoothly
    with such defects instead of jumping (what generated images have)."""
    n = x.shape[0]
    dx, dy = (torch.randint(-2, 3, (2,), generator=generator)).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).to(x).view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
    w = torch.rand(n, 1, 1, 1, generator=generator).to(x)
    x = x + w * (blurred - x)
    std = 0.3 * torch.rand(n, 1, 1, 1, generator=generator).to(x)
    noise = torch.randn(x.shape, generator=generator).to(x)
    return (x + std * noise).clamp(-1, 1).contiguous(memory_format=torch.channels_last)


def _split_indices(n: int, val_fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be in (0, 1)")
    perm = torch.randperm(n, generator=generator)
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:], perm[:n_val]


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 images."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, images_uint8.shape[0], batch_size):
        x = domain_preprocess(images_uint8[start : start + batch_size].to(device))
        pred = model(x).argmax(dim=1).cpu()
        correct += int((pred == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, images_uint8.shape[0])


def train_domain_classifier(
    images_uint8: Any,
    labels: Any,
    *,
    seed: int = 0,
    epochs: int = 4,
    batch_size: int = 256,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.1,
    val_images: Any = None,
    val_labels: Any = None,
    num_classes: int | None = None,
    widths: tuple[int, int, int] = (16, 32, 64),
    hidden: int = 128,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
    augment: bool = False,
) -> tuple[DomainClassifier, float]:
    """Train a :class:`DomainClassifier`; returns ``(model in eval mode, held-out accuracy)``.

    Held-out data: ``val_images``/``val_labels`` if given, else a seeded ``val_fraction`` split of the
    inputs (not trained on). Adam with a one-cycle (warm-up + cosine) learning-rate schedule, batch
    256; ``augment``: each training image gets Gaussian noise (std uniform in [0, 0.3] per image), a blur of random
    strength and a shift of up to 2 pixels (:func:`corrupt`). Initialisation, split, shuffling and augmentation
    all derive from ``seed`` through local
    generators inside a forked RNG, so the global torch RNG is untouched and results are
    deterministic on CPU for a fixed thread count.

    Args:
        images_uint8: training images, uint8 ``(N, C, 32, 32)``.
        labels: their class labels ``(N,)``.
        seed: seed of initialisation, split, shuffling and augmentation.
        epochs: passes over the training images.
        batch_size: images per step.
        lr: Adam's peak learning rate.
        weight_decay: Adam's weight decay.
        val_fraction: the held-out share when no ``val_images`` are given.
        val_images: held-out images, or None.
        val_labels: their labels.
        num_classes: the number of classes (default: the largest label + 1).
        widths: the three convolution blocks' channels.
        hidden: the feature dimension.
        device: where to train.
        log: called with a progress line per epoch, or None.
        augment: train on corrupted images (see above).

    Returns:
        ``(model in eval mode, held-out accuracy)``.

    Raises:
        ValueError: as many labels as images are needed.

    Example:
        >>> from xaigan import data
        >>> mnist = data.load("mnist")
        >>> model, accuracy = train_domain_classifier(mnist.images, mnist.labels, epochs=1)
    """
    images = as_uint8_nchw(images_uint8)
    labels_t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    labels_t = labels_t.to(torch.int64).reshape(-1)
    if labels_t.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels_t.shape[0]} labels")
    if num_classes is None:
        num_classes = int(labels_t.max()) + 1
    gen = torch.Generator().manual_seed(int(seed))
    if val_images is None:
        train_idx, val_idx = _split_indices(images.shape[0], val_fraction, gen)
        x_tr, y_tr = images[train_idx], labels_t[train_idx]
        x_val, y_val = images[val_idx], labels_t[val_idx]
    else:
        x_tr, y_tr = images, labels_t
        x_val = as_uint8_nchw(val_images)
        y_val = torch.as_tensor(np.asarray(val_labels) if not isinstance(val_labels, torch.Tensor) else val_labels)
        y_val = y_val.to(torch.int64).reshape(-1)
    device = torch.device(device)
    n = x_tr.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = DomainClassifier(images.shape[1], num_classes, widths=widths, hidden=hidden)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(0.1 * total_steps))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return lr * 0.5 * (1.0 + math.cos(math.pi * t))

    step = 0
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        running = torch.zeros((), dtype=torch.float64)
        for b in range(steps_per_epoch):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            x = domain_preprocess(x_tr[idx].to(device))
            if augment:
                x = corrupt(x, gen)
            y = y_tr[idx].to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach().to(torch.float64).cpu()
            step += 1
        if log is not None:
            log(
                f"domain classifier epoch {epoch + 1}/{epochs}: loss {float(running) / steps_per_epoch:.4f} "
                f"({time.perf_counter() - t0:.1f}s)"
            )
    model.eval()
    acc = evaluate_accuracy(model, x_val, y_val)
    if log is not None:
        log(f"domain classifier held-out accuracy {acc:.4f} on {x_val.shape[0]} images")
    return model, acc


# The trained weights depend on the CPU thread count and on the machine (the order of float reductions): on one
# machine 1 and 2 threads trained two extractors, and neither matched the one another machine had trained, so FIDs
# scored on different machines were not comparable. Training pins the thread count, and the extractors our
# studies use ship with the package (SHIPPED, found by the same content key as the cache), so every machine scores
# with the same bytes.
TRAIN_THREADS = 1
SHIPPED = Path(__file__).with_name("extractors")


@contextmanager
def _fixed_threads(n: int, device: torch.device) -> Iterator[None]:
    if device.type != "cpu":
        yield
        return
    with fixed_threads(n):
        yield


def load_or_train_domain(
    images_uint8: Any,
    labels: Any,
    *,
    dataset_hash: str | None,
    cache_dir: str | os.PathLike,
    seed: int = 0,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    **train_kwargs: Any,
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Load the domain classifier for this dataset from ``cache_dir``, training (and caching) it if absent.

    The cache key combines ``dataset_hash`` (``content_hash`` of the images if ``None``), the
    labels' content hash, the architecture id, ``seed`` and all training hyper-parameters. Returns
    ``(model, meta)``; ``meta`` has ``accuracy``, ``arch``, ``seed``, ``path``, ``cached``,
    ``train_seconds`` and the training config. A corrupt or mismatching file is retrained.

    Args:
        images_uint8: training images, uint8 ``(N, C, 32, 32)``.
        labels: their class labels ``(N,)``.
        dataset_hash: :func:`content_hash` of the images, if known (else computed).
        cache_dir: the folder of the cached checkpoints.
        seed: the training seed (part of the key).
        force: train again even when a cached checkpoint matches.
        log: called with progress lines, or None.
        **train_kwargs: go to :func:`train_domain_classifier` (part of the key, except ``device`` and ``log``).

    Returns:
        ``(model in eval mode, meta)``.

    Example:
        >>> from xaigan import data
        >>> mnist = data.load("mnist")
        >>> model, meta = load_or_train_domain(mnist.images, mnist.labels, dataset_hash=None, cache_dir="runs/cache")
        >>> meta["cached"]  # trained (and saved) by the call above, read back from now on
        False
    """
    images = as_uint8_nchw(images_uint8)
    if dataset_hash is None:
        dataset_hash = content_hash(images)
    labels_hash = content_hash(torch.as_tensor(np.asarray(labels)).to(torch.int64))
    widths = tuple(train_kwargs.get("widths", (16, 32, 64)))
    hidden = int(train_kwargs.get("hidden", 128))
    num_classes = train_kwargs.get("num_classes")
    if num_classes is None:
        num_classes = int(np.asarray(labels).max()) + 1
    arch = domain_arch_id(images.shape[1], num_classes, widths, hidden)
    hp = {k: v for k, v in train_kwargs.items() if k not in ("device", "val_images", "val_labels", "log")}
    if train_kwargs.get("val_images") is not None:
        hp["val_hash"] = content_hash(as_uint8_nchw(train_kwargs["val_images"]))
    key_src = json.dumps(
        {"data": dataset_hash, "labels": labels_hash, "arch": arch, "seed": int(seed), "hp": hp},
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"{arch}_s{int(seed)}_{key}.pt"

    for found in () if force else (SHIPPED / path.name, path):
        if not found.is_file():
            continue
        try:
            model, meta = load_domain_checkpoint(found)
            if meta.get("key") == key and meta.get("arch") == arch:
                meta.update(path=str(found), cached=True)
                return model, meta
        except Exception as exc:  # corrupt/foreign file: retrain and overwrite
            if log is not None:
                log(f"ignoring unreadable domain checkpoint {found}: {exc}")

    train_kwargs = dict(train_kwargs, num_classes=num_classes)
    t0 = time.perf_counter()
    with _fixed_threads(TRAIN_THREADS, torch.device(train_kwargs.get("device", "cpu"))):
        model, acc = train_domain_classifier(images, labels, seed=seed, log=log, **train_kwargs)
    seconds = time.perf_counter() - t0
    meta = {
        "key": key,
        "arch": arch,
        "seed": int(seed),
        "accuracy": float(acc),
        "dataset_hash": dataset_hash,
        "labels_hash": labels_hash,
        "train_seconds": round(seconds, 2),
        "hparams": json.loads(json.dumps(hp, default=str)),
        "torch_version": torch.__version__,
    }
    save_domain_checkpoint(path, model, meta)
    meta.update(path=str(path), cached=False)
    return model, meta
