"""Datasets by name, resolved from offline-capable sources, preprocessed as the paper does, held in memory."""

from xaigan.data.datasets import REGISTRY, DatasetSpec, resolve
from xaigan.data.images import (
    FOLDER_PREFIX,
    ImageData,
    available,
    is_known,
    load,
    load_heldout,
    resize_uint8,
    select_fraction,
)
from xaigan.data.loader import Loader, epoch_permutation, to_float
from xaigan.data.sources import DataUnavailableError, Resolved, home
from xaigan.io import content_hash

__all__ = [
    "FOLDER_PREFIX",
    "REGISTRY",
    "DataUnavailableError",
    "DatasetSpec",
    "ImageData",
    "Loader",
    "Resolved",
    "available",
    "content_hash",
    "epoch_permutation",
    "home",
    "is_known",
    "load",
    "load_heldout",
    "resize_uint8",
    "resolve",
    "select_fraction",
    "to_float",
]
