"""Content-keyed, atomically written caches for real-data feature statistics.

Cache entries are keyed by *what was computed*: the SHA-256 of the image bytes (plus shape and
dtype), the extractor's ``id`` and its ``weights_hash``. A name (``data_key``) only makes file
names readable; it never decides a hit. Files are written to a temporary file in the same
directory, fsync'ed and ``os.replace``'d into place, so a crash never leaves a half-written entry
and concurrent writers cannot corrupt each other (last one wins, both are valid).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from xaigan.io import atomic_write, content_hash

from .distances import as_float64, feature_statistics

__all__ = ["content_hash", "atomic_write", "stats_cache_key", "real_statistics", "STATS_FORMAT"]

STATS_FORMAT = 1
_CHUNK = 1 << 24  # hash 16 MiB at a time


def stats_cache_key(data_hash: str, extractor_id: str, weights_hash: str) -> str:
    payload = json.dumps(
        {"format": STATS_FORMAT, "data": data_hash, "extractor": extractor_id, "weights": weights_hash},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.")[:64] or "data"


def _read_entry(path: Path, expect: dict[str, str]) -> dict[str, Any] | None:
    """Load a cache file; ``None`` if absent, unreadable or not matching the expected key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = {k: str(z[k][()]) for k in ("data_hash", "extractor_id", "weights_hash", "data_key")}
            if int(z["format"][()]) != STATS_FORMAT or any(meta[k] != v for k, v in expect.items()):
                return None
            out: dict[str, Any] = {
                "mu": z["mu"].astype(np.float64),
                "sigma": z["sigma"].astype(np.float64),
                "features": z["features"].astype(np.float64) if "features" in z.files else None,
                "n": int(z["n"][()]),
            }
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # corrupt / foreign file: recompute and overwrite
    out.update(meta)
    return out


def real_statistics(
    extractor: Any,
    images_uint8: Any,
    *,
    cache_dir: str | os.PathLike,
    data_key: str = "data",
    store_features: bool = True,
    features_dtype: str = "float32",
    data_hash: str | None = None,
) -> dict[str, Any]:
    """Feature statistics of a (real) image set, cached on disk.

    Returns a dict with ``mu`` (d,), ``sigma`` (d, d) (float64), ``features`` (N, d) float64 or
    ``None`` when ``store_features=False``, ``n``, ``data_hash``, ``extractor_id``, ``weights_hash``,
    ``data_key``, ``path`` and ``cached`` (True when read from disk).

    ``mu``/``sigma`` are computed from the float64 features; features are stored (and, for a
    consistent result between the first and later calls, also returned) rounded to
    ``features_dtype`` (float32 halves the file size; irrelevant for KID/precision/recall).
    ``data_hash`` may be passed if the caller already has :func:`content_hash` of ``images_uint8``.

    Args:
        extractor: a feature extractor (:class:`FeatureExtractor`).
        images_uint8: the real images, uint8 ``(N, C, H, W)``.
        cache_dir: the folder of the cache files.
        data_key: a readable name for the file name (the key itself is the content and extractor hashes).
        store_features: also store (and return) the features themselves (KID, precision/recall need them).
        features_dtype: the dtype the features are stored in.
        data_hash: :func:`content_hash` of ``images_uint8``, if already known.

    Returns:
        The statistics and their provenance (see above).

    Example:
        >>> import torch
        >>> from xaigan.metrics import DomainClassifier, features
        >>> ext = features.get("domain", model=DomainClassifier())
        >>> real = torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)
        >>> stats = real_statistics(ext, real, cache_dir="/tmp/xaigan-stats", data_key="example")
        >>> stats["mu"].shape, stats["sigma"].shape
        ((128,), (128, 128))
        >>> real_statistics(ext, real, cache_dir="/tmp/xaigan-stats", data_key="example")["cached"]
        True
    """
    extractor_id = str(extractor.id)
    weights_hash = str(extractor.weights_hash)
    if data_hash is None:
        data_hash = content_hash(images_uint8)
    key = stats_cache_key(data_hash, extractor_id, weights_hash)
    path = Path(cache_dir) / f"stats_{_safe_name(data_key)}_{key[:32]}.npz"
    expect = {"data_hash": data_hash, "extractor_id": extractor_id, "weights_hash": weights_hash}

    entry = _read_entry(path, expect)
    if entry is not None and (entry["features"] is not None or not store_features):
        entry["path"] = str(path)
        entry["cached"] = True
        return entry

    feats = as_float64(extractor(images_uint8), "extracted features")
    mu, sigma = feature_statistics(feats)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(STATS_FORMAT),
        "mu": mu,
        "sigma": sigma,
        "n": np.array(feats.shape[0]),
        "data_hash": np.array(data_hash),
        "extractor_id": np.array(extractor_id),
        "weights_hash": np.array(weights_hash),
        "data_key": np.array(data_key),
    }
    stored_feats = None
    if store_features:
        arrays["features"] = feats.astype(features_dtype)
        stored_feats = arrays["features"].astype(np.float64)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return {
        "mu": mu,
        "sigma": sigma,
        "features": stored_feats,
        "n": int(feats.shape[0]),
        "data_hash": data_hash,
        "extractor_id": extractor_id,
        "weights_hash": weights_hash,
        "data_key": data_key,
        "path": str(path),
        "cached": False,
    }
