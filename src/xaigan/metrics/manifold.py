"""Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) from k-NN balls.

Precision / recall
------------------
Kynkäänniemi et al. 2019: each sample of a set gets a radius = distance to its k-th nearest
neighbour within the same set (itself excluded); the manifold of a set is the union of these
balls. precision = fraction of fake samples inside the real manifold, recall = fraction of real
samples inside the fake manifold (boundary included, ``<=``). Pairwise squared distances are
computed in row chunks so 10k x 10k never materialises at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .distances import as_float64, paired_features

__all__ = ["density_coverage", "kth_nn_radii", "manifold_scores", "precision_recall"]

# Row-chunk size for pairwise distance computations: 1024 x 10k float64 = 80 MB per block.
DEFAULT_CHUNK = 1024


def sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def sq_dist_block(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = a @ b.T
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def kth_nn_radii(x: Any, k: int = 3, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Squared distance from every row of ``x`` to its k-th nearest neighbour in ``x`` (self excluded).

    Self is excluded by position: in each row's sorted distances the self-distance 0 sits at index
    0, so the k-th neighbour is at index ``k`` (exact duplicates of a point still count as
    neighbours at distance 0, as in the reference implementation).
    """
    x = as_float64(x)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    x_sq = sq_norms(x)
    radii = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        d = sq_dist_block(x[start:stop], x_sq[start:stop], x, x_sq)
        # Force the self-distance to exactly 0 (round-off in the expansion can leave ~1e-12).
        d[np.arange(stop - start), np.arange(start, stop)] = 0.0
        radii[start:stop] = np.partition(d, k, axis=1)[:, k]
    return radii


def _knn_scores(real: np.ndarray, fake: np.ndarray, k: int, chunk_size: int, recall: bool) -> dict[str, float]:
    """Precision, density and coverage (real k-NN balls) and, with ``recall``, recall (fake k-NN balls), from one
    pass over the real x fake distance matrix, row-chunked over the real set."""
    r_real = kth_nn_radii(real, k, chunk_size=chunk_size)
    r_fake = kth_nn_radii(fake, k, chunk_size=chunk_size) if recall else None
    real_sq, fake_sq = sq_norms(real), sq_norms(fake)
    balls_per_fake = np.zeros(fake.shape[0], dtype=np.int64)  # precision: > 0; density: the sum
    covered = np.zeros(real.shape[0], dtype=bool)  # coverage numerator
    real_in_fake = np.zeros(real.shape[0], dtype=bool)  # recall numerator
    for start in range(0, real.shape[0], chunk_size):
        stop = min(start + chunk_size, real.shape[0])
        d = sq_dist_block(real[start:stop], real_sq[start:stop], fake, fake_sq)  # (chunk, n_fake)
        inside = d <= r_real[start:stop, None]
        balls_per_fake += inside.sum(axis=0)
        covered[start:stop] = inside.any(axis=1)
        if r_fake is not None:
            real_in_fake[start:stop] = (d <= r_fake[None, :]).any(axis=1)
    scores = {
        "precision": float((balls_per_fake > 0).mean()),
        "density": float(balls_per_fake.sum() / (k * fake.shape[0])),
        "coverage": float(covered.mean()),
    }
    if recall:
        scores["recall"] = float(real_in_fake.mean())
    return scores


def manifold_scores(
    features_real: Any, features_fake: Any, k: int = 5, *, chunk_size: int = DEFAULT_CHUNK
) -> dict[str, float]:
    """``precision``, ``recall`` (:func:`precision_recall`), ``density`` and ``coverage`` (:func:`density_coverage`)
    from one pass over the distances.

    Args:
        features_real: ``(N_r, d)`` features of the real images.
        features_fake: ``(N_f, d)`` features of the generated images.
        k: the neighbour whose distance is each ball's radius.
        chunk_size: rows of the distance matrix computed at once (memory, not the result).

    Returns:
        The four scores by name.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).normal(size=(200, 4))
        >>> sorted(manifold_scores(a, a))
        ['coverage', 'density', 'precision', 'recall']
    """
    real, fake = paired_features(features_real, features_fake)
    return _knn_scores(real, fake, k, chunk_size, recall=True)


def precision_recall(
    features_real: Any,
    features_fake: Any,
    k: int = 3,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radii.

    Precision: the fraction of fakes inside some real sample's k-NN ball; recall: the fraction of reals inside some
    fake sample's k-NN ball.

    Args:
        features_real: ``(N_r, d)`` features of the real images.
        features_fake: ``(N_f, d)`` features of the generated images.
        k: the neighbour whose distance is each ball's radius.
        chunk_size: rows of the distance matrix computed at once (memory, not the result).

    Returns:
        ``(precision, recall)``.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).normal(size=(200, 4))
        >>> precision_recall(a, a)
        (1.0, 1.0)
    """
    scores = manifold_scores(features_real, features_fake, k, chunk_size=chunk_size)
    return scores["precision"], scores["recall"]


def density_coverage(
    features_real: Any,
    features_fake: Any,
    k: int = 5,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with the real set's k-NN radii only; ``(density, coverage)``.

    density: the mean number of real k-NN balls holding a fake sample, over ``k`` (about 1 when the two sets are
    alike, not bounded by 1); coverage: the fraction of real balls holding at least one fake sample. Unlike precision
    and recall they do not use the fake set's radii, so a few outlying or collapsed fakes cannot inflate them.

    Args:
        features_real: ``(N_r, d)`` features of the real images.
        features_fake: ``(N_f, d)`` features of the generated images.
        k: the neighbour whose distance is each real ball's radius.
        chunk_size: rows of the distance matrix computed at once (memory, not the result).

    Returns:
        ``(density, coverage)``.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).normal(size=(200, 4))
        >>> density_coverage(a, a)[1]
        1.0
    """
    real, fake = paired_features(features_real, features_fake)
    scores = _knn_scores(real, fake, k, chunk_size, recall=False)
    return scores["density"], scores["coverage"]
