"""Datasets in memory: :func:`load` a named dataset (or an image folder) preprocessed as the paper does, and
:func:`load_heldout` the images a load leaves out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xaigan.data import formats
from xaigan.data.datasets import REGISTRY, resolve
from xaigan.errors import InputError
from xaigan.io import content_hash
from xaigan.process import log_once
from xaigan.registry import UnknownNameError

log = logging.getLogger(__name__)
FOLDER_PREFIX = "folder:"


@dataclass
class ImageData:
    """A dataset in memory: uint8 images ``(N, C, H, W)``, int64 labels (-1 if none) and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.images)


def available() -> list[str]:
    return REGISTRY.names()


def is_known(name: str) -> bool:
    return name in REGISTRY or (name.startswith(FOLDER_PREFIX) and len(name) > len(FOLDER_PREFIX))


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (align_corners=False) of uint8 ``(N, C, H, W)`` to ``size`` x ``size``, rounded back."""
    if images.shape[-2:] == (size, size):
        return images
    out = []
    for start in range(0, len(images), 8192):
        chunk = torch.from_numpy(images[start : start + 8192]).float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False)
        out.append(chunk.round_().clamp_(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


def select_fraction(n: int, fraction: float, subset: str, seed: int) -> np.ndarray:
    """Indices of the kept part: a seeded random subset, or the first N as the paper's code takes."""
    keep = max(1, int(round(n * fraction)))
    if subset == "first":
        return np.arange(keep)
    return np.sort(np.random.default_rng(seed).permutation(n)[:keep])


def _read(name: str, split: str, data_dir: str | None, download: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    if name.startswith(FOLDER_PREFIX):
        folder = Path(name[len(FOLDER_PREFIX) :]).expanduser()
        images, labels = formats.read_image_folder(folder)
        if split != "all":
            log.warning("%s has no train/test split; using all %d images", name, len(images))
        return images, labels, {"source": "folder", "location": str(folder), "split": "all"}
    spec = REGISTRY[name]
    found = resolve(spec, data_dir, download=download)
    meta: dict[str, Any] = {"source": found.source, "location": str(found.location), "split": split}
    if found.source == "offline-subset":
        assert spec.offline_subset is not None
        subset = spec.offline_subset()
        assert subset is not None
        _, images, labels = subset
        meta.update(note=found.note, split="all", subset_of=name)
        if split != "all":
            log_once(
                log, logging.WARNING, f"{name} offline subset has no train/test split; using all {len(images)} images"
            )
        log_once(log, logging.WARNING, found.note)
    else:
        images, labels = spec.reader(found.files, split)
    log_once(log, logging.INFO, f"{name} ({meta['split']}): {len(images)} images from {found.source} {found.location}")
    return images, labels, meta


def load(
    name: str,
    *,
    data_dir: str | None = None,
    split: str = "all",
    fraction: float = 1.0,
    subset: str = "random",
    seed: int = 0,
    image_size: int | None = None,
    download: bool = True,
) -> ImageData:
    """Load a dataset by name (or ``folder:PATH``): resolved, preprocessed to its image size, subset.

    Args:
        name: a registered dataset (:func:`available`) or ``folder:PATH``.
        data_dir: a folder holding the dataset's files (tried first; must exist).
        split: ``all``, ``train`` or ``test`` (a folder or the offline subset has only ``all``).
        fraction: the share of the images kept.
        subset: ``random`` (seeded) or ``first`` (the first N, as the paper's code takes).
        seed: the seed of a random subset.
        image_size: resize to this size (default: the dataset's own).
        download: whether a missing dataset may be downloaded.

    Returns:
        The images, labels and where they came from. An unknown name is an
        :class:`~xaigan.registry.UnknownNameError`; missing or unreadable files an
        :class:`~xaigan.errors.InputError` naming them.
    """
    if not is_known(name):
        raise UnknownNameError(f"unknown dataset {name!r}; available: {', '.join(available())} or folder:PATH")
    images, labels, meta = _read(name, split, data_dir, download)
    size = image_size or (REGISTRY[name].image_size if name in REGISTRY else images.shape[-1])
    images = resize_uint8(images, size)
    total = len(images)
    index = select_fraction(total, fraction, subset, seed)
    images, labels = images[index], labels[index]
    meta.update(
        dataset=name,
        n_total=total,
        n=len(images),
        fraction=fraction,
        subset=subset,
        subset_seed=seed if subset == "random" else None,
        image_shape=list(images.shape[1:]),
    )
    data = ImageData(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), meta)
    meta["content_sha256"] = content_hash(data.images)
    return data


def load_heldout(
    name: str,
    *,
    data_dir: str | None = None,
    split: str = "all",
    fraction: float = 1.0,
    subset: str = "random",
    seed: int = 0,
    download: bool = False,
) -> ImageData:
    """The images of ``name`` that :func:`load` with the same arguments leaves out: the rest of the split when it
    takes a fraction, the test split when it takes all of the train split.

    Args:
        name, data_dir, split, fraction, subset, seed, download: as :func:`load` was given them.

    Returns:
        The held-out images; an :class:`~xaigan.errors.InputError` when the load takes every image.
    """
    if fraction < 1.0:
        full = load(name, data_dir=data_dir, split=split, download=download)
        out = np.ones(len(full), dtype=bool)
        out[select_fraction(len(full), fraction, subset, seed)] = False
        if out.any():
            images, labels = full.images[torch.from_numpy(out)], full.labels[torch.from_numpy(out)]
            meta = {**full.meta, "n": int(out.sum()), "heldout_of": {"fraction": fraction, "subset": subset}}
            meta.update(subset_seed=seed if subset == "random" else None, content_sha256=content_hash(images))
            return ImageData(images, labels, meta)
    elif split == "train":
        test = load(name, data_dir=data_dir, split="test", download=download)
        if test.meta["split"] == "test":  # an offline subset or a folder has no test split: its "test" is all
            return test
    raise InputError(
        f"{name} ({split} split, fraction {fraction}) leaves no image out: nothing held out to compare with "
        "(train on a fraction, or on the train split, to keep fresh images)"
    )
