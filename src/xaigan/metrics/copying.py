"""The data-copying test (Meehan, Chaudhuri & Dasgupta 2020): does a generator reproduce its training images?

FID against a large reference cannot tell a generator that learned the distribution from one that memorised a small
training set: copies of real images score well. The test asks instead whether generated samples lie *closer to the
training images* than fresh images of the same distribution do. With ``T`` the training set, ``P`` held-out images and
``Q`` generated samples, each point's distance to its nearest image of ``T`` is computed, and the two sets of
distances are compared by a Mann-Whitney U test, Z-scored (``z_u``):

* ``z_u < 0``: ``Q`` lies closer to ``T`` than ``P`` does (copying),
* ``z_u > 0``: farther (underfitting: samples off the data),
* ``z_u ~ 0``: like fresh data.

Copying is often local (a few modes memorised while the rest is underfit), and a global test lets the two cancel, so
``c_t`` runs the test within each cell of a k-means partition of ``T`` and averages the cells' ``z_u`` weighted by
their share of ``P``, over the cells holding at least ``min_count`` generated samples (the paper's statistic).
``near_copies`` is the share of ``Q`` closer to ``T`` than the closest 1% of ``P`` (0.01 for fresh data).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from scipy.cluster.vq import kmeans2

from xaigan.errors import InputError

from .distances import as_float64
from .manifold import DEFAULT_CHUNK, sq_dist_block, sq_norms

NEAR_QUANTILE = 0.01


def nearest(x: Any, ref: Any, *, chunk_size: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from every row of ``x`` to its nearest row of ``ref``, and that row's index."""
    x, ref = as_float64(x, "x"), as_float64(ref, "ref")
    ref_sq = sq_norms(ref)
    dist, index = np.empty(len(x)), np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk_size):
        block = x[start : start + chunk_size]
        d = sq_dist_block(block, sq_norms(block), ref, ref_sq)
        index[start : start + len(block)] = d.argmin(axis=1)
        dist[start : start + len(block)] = d[np.arange(len(block)), index[start : start + len(block)]]
    return np.sqrt(dist), index


def mann_whitney_z(heldout: np.ndarray, generated: np.ndarray) -> float:
    """Z score of the Mann-Whitney U statistic counting the pairs in which the generated distance is the larger
    (ties count half), under the normal approximation with the tie-corrected variance; negative when ``generated``
    tends to be smaller."""
    n, m = len(heldout), len(generated)
    ranks = stats.rankdata(np.concatenate([heldout, generated]))
    u = ranks[n:].sum() - m * (m + 1) / 2.0
    _, counts = np.unique(ranks, return_counts=True)
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - (counts**3 - counts).sum() / (total * (total - 1)))
    return float((u - n * m / 2.0) / np.sqrt(variance)) if variance > 0 else 0.0


def copying_test(
    train: Any, heldout: Any, generated: Any, *, cells: int = 20, min_count: int = 20, seed: int = 0
) -> dict[str, Any]:
    """``z_u``, ``c_t`` and ``near_copies`` (see the module doc) of ``generated`` against ``train``, with ``heldout``
    as the fresh sample; features as ``(N, d)`` arrays. ``cells``: k-means cells of ``train`` (seeded by ``seed``);
    ``min_count``: generated samples a cell needs to be tested."""
    train, heldout, generated = as_float64(train, "train"), as_float64(heldout, "heldout"), as_float64(generated)
    if len({train.shape[1], heldout.shape[1], generated.shape[1]}) != 1:
        raise ValueError(f"feature widths differ: {train.shape[1]}, {heldout.shape[1]}, {generated.shape[1]}")
    if not 1 <= cells <= len(train):
        raise InputError(f"cells must be in [1, {len(train)}] (the training images), got {cells}")
    (d_held, _), (d_gen, _) = nearest(heldout, train), nearest(generated, train)
    centroids, _ = kmeans2(train, cells, minit="++", seed=np.random.default_rng(seed))
    cell_held, cell_gen = nearest(heldout, centroids)[1], nearest(generated, centroids)[1]
    weights, scores = [], []
    for c in range(cells):
        held_c, gen_c = d_held[cell_held == c], d_gen[cell_gen == c]
        if len(gen_c) >= min_count and len(held_c) > 0:
            weights.append(len(held_c) / len(heldout))
            scores.append(mann_whitney_z(held_c, gen_c))
    c_t = float(np.dot(weights, scores) / np.sum(weights)) if weights else float("nan")
    return {
        "c_t": c_t,
        "z_u": mann_whitney_z(d_held, d_gen),
        "near_copies": float((d_gen < np.quantile(d_held, NEAR_QUANTILE)).mean()),
        "cells": cells,
        "cells_tested": len(scores),
        "heldout_in_tested_cells": float(np.sum(weights)),
        "min_count": min_count,
        "median_distance_generated": float(np.median(d_gen)),
        "median_distance_heldout": float(np.median(d_held)),
        "n_train": len(train),
        "n_heldout": len(heldout),
        "n_generated": len(generated),
    }
