"""Distances between two sets of features: FID and KID (precision/recall and density/coverage: :mod:`.manifold`).

All functions accept ``(N, d)`` numpy arrays or torch tensors and compute in float64.

Fréchet distance
----------------
``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})``.

The only hard term is ``tr((S1 S2)^{1/2})``. We never form a matrix square root of the
non-symmetric product ``S1 S2`` (``scipy.linalg.sqrtm``'s Schur-based result and accuracy
have changed across scipy versions, it is slow for d=2048 and returns complex noise).
Instead, with ``R = S1^{1/2}`` (symmetric PSD, from ``eigh`` of ``S1``):

    S1 S2 = R (R S2 R) R^{-1}        (similarity, when S1 is invertible)

so ``S1 S2`` has the same eigenvalues as the *symmetric* PSD matrix ``M = R S2 R``; this also
holds when ``S1`` is singular because ``AB`` and ``BA`` share their non-zero eigenvalues
(take ``A = R``, ``B = R S2``). Hence ``tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(M))``.
``eigvalsh`` on a symmetric matrix is backward stable and returns real eigenvalues, so the only
clean-up needed is clipping the tiny negative round-off eigenvalues at 0. This costs one
``eigh`` + one ``eigvalsh`` + two matrix products, less than a plain non-symmetric
``eigvals(S1 @ S2)`` (which also yields complex round-off; timings in docs/benchmarks.md).

KID
---
Unbiased MMD^2 (Binkowski et al. 2018) with the polynomial kernel
``k(x, y) = (gamma x.y + coef0)^degree`` (defaults: degree 3, gamma 1/d, coef0 1), averaged
over ``num_subsets`` random subsets of size ``min(subset_size, N_a, N_b)`` drawn without
replacement (independently per subset) from a seeded generator. Returns ``(mean, std)``; std is
the population standard deviation over the subset estimates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_float64",
    "feature_statistics",
    "frechet_distance",
    "fid",
    "fid_from_features",
    "kid",
    "polynomial_mmd2_unbiased",
]


def as_float64(x: Any, name: str = "features") -> np.ndarray:
    """Convert a 2-D numpy array / torch tensor to a contiguous float64 numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().double().numpy()  # .double() first: bfloat16 has no numpy dtype
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ddof=1) covariance of ``(N, d)`` features, in float64.

    Args:
        features: ``(N, d)``, N at least 2.

    Returns:
        ``(mu, sigma)``: ``(d,)`` and ``(d, d)``.

    Example:
        >>> import numpy as np
        >>> mu, sigma = feature_statistics(np.random.default_rng(0).normal(size=(100, 8)))
        >>> mu.shape, sigma.shape
        ((8,), (8, 8))
    """
    x = as_float64(features)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {x.shape[0]}")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = (xc.T @ xc) / (x.shape[0] - 1)
    sigma = 0.5 * (sigma + sigma.T)  # exact symmetry (BLAS may differ in the last ulp)
    return mu, sigma


def _check_stats(mu: Any, sigma: Any, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1:
        raise ValueError(f"mu{which} must be 1-D, got shape {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"sigma{which} must have shape {(mu.shape[0],) * 2}, got {sigma.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"mu{which}/sigma{which} contain NaN or infinite values")
    return mu, 0.5 * (sigma + sigma.T)


def _clip_spectrum(w: np.ndarray) -> np.ndarray:
    """Zero eigenvalues that are round-off: negative ones, and those below ``d * eps * max|w|``.

    Eigenvalues of a rank-deficient PSD matrix come out as +-(eps * |w|_max) noise; their square
    roots (~1e-8 relative each) would otherwise add up over hundreds of null directions. The
    threshold is the usual numerical-rank tolerance (as in ``numpy.linalg.matrix_rank``).
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 0.0)
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(_clip_spectrum(w))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((sigma1 @ sigma2)^{1/2})`` for symmetric PSD matrices, via eigvalsh (see module doc)."""
    r = _psd_sqrt(sigma1)
    m = r @ sigma2 @ r
    m = 0.5 * (m + m.T)
    ev = np.linalg.eigvalsh(m)
    return float(np.sqrt(_clip_spectrum(ev)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Robust to singular (rank-deficient) covariances: no inverse and no regularising epsilon is
    needed. The result is clipped at 0 (it can only go negative by round-off).

    Args:
        mu1: mean ``(d,)`` of the first set.
        sigma1: covariance ``(d, d)`` of the first set.
        mu2: mean ``(d,)`` of the second set.
        sigma2: covariance ``(d, d)`` of the second set.

    Returns:
        The squared Fréchet distance (what FID reports).

    Raises:
        ValueError: mismatched or non-finite statistics.

    Example:
        >>> import numpy as np
        >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)), 6)
        2.0
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"dimension mismatch: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    value = float(diff @ diff) + float(np.trace(sigma1)) + float(np.trace(sigma2)) - 2.0 * tr_covmean
    return max(value, 0.0)


def fid(features_a: Any, features_b: Any) -> float:
    """FID between two feature sets ``(N_a, d)`` and ``(N_b, d)``: :func:`frechet_distance` of their
    :func:`feature_statistics`.

    Args:
        features_a: ``(N_a, d)`` features of one image set.
        features_b: ``(N_b, d)`` features of the other.

    Returns:
        The FID.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).normal(size=(500, 4))
        >>> round(fid(a, a), 6), round(fid(a, a + 1), 6)  # a shift of 1 in each of 4 dimensions
        (0.0, 4.0)
    """
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


fid_from_features = fid


def paired_features(
    a: Any, b: Any, names: tuple[str, str] = ("features_real", "features_fake")
) -> tuple[np.ndarray, np.ndarray]:
    """Two feature sets as float64 matrices of the same width (else one ValueError naming the mismatch)."""
    a, b = as_float64(a, names[0]), as_float64(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _poly_kernel(a: np.ndarray, b: np.ndarray, gamma: float, coef0: float, degree: int) -> np.ndarray:
    k = a @ b.T
    k *= gamma
    k += coef0
    if isinstance(degree, int | np.integer) and degree >= 1:
        out = k.copy() if degree > 1 else k
        for _ in range(degree - 1):
            out *= k  # repeated products: much faster than np.power for small integer degrees
        return out
    return k**degree


def polynomial_mmd2_unbiased(
    x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased MMD^2 estimate between samples ``x`` (m, d) and ``y`` (n, d), polynomial kernel.

    ``(sum_{i!=j} k(x_i,x_j))/(m(m-1)) + (sum_{i!=j} k(y_i,y_j))/(n(n-1)) - 2 mean k(x_i,y_j)``.
    """
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError("unbiased MMD needs at least 2 samples per set")
    g = 1.0 / x.shape[1] if gamma is None else float(gamma)
    kxx = _poly_kernel(x, x, g, coef0, degree)
    kyy = _poly_kernel(y, y, g, coef0, degree)
    kxy = _poly_kernel(x, y, g, coef0, degree)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    sxy = kxy.sum() / (m * n)
    return float(sxx + syy - 2.0 * sxy)


def kid(
    features_a: Any,
    features_b: Any,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: ``(mean, std)`` of unbiased polynomial-kernel MMD^2 over subsets.

    Subset size is ``min(subset_size, N_a, N_b)``; each subset draws indices without replacement
    from ``numpy.random.default_rng(seed)`` (first from ``a``, then from ``b``).

    Args:
        features_a: ``(N_a, d)`` features of one image set.
        features_b: ``(N_b, d)`` features of the other.
        num_subsets: how many subset pairs to average over.
        subset_size: samples per subset (at most the smaller set).
        degree: the polynomial kernel's degree.
        gamma: the kernel's scale (default ``1 / d``).
        coef0: the kernel's constant term.
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over the subsets.

    Raises:
        ValueError: mismatched dimensions, fewer than 2 samples, or ``num_subsets < 1``.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).normal(size=(500, 4))
        >>> mean, std = kid(a, a + 1, num_subsets=10, subset_size=100)
        >>> mean > 0
        True
    """
    a, b = paired_features(features_a, features_b, ("features_a", "features_b"))
    if num_subsets < 1:
        raise ValueError("num_subsets must be >= 1")
    m = min(int(subset_size), a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, dtype=np.float64)
    for s in range(num_subsets):
        xa = a[rng.choice(a.shape[0], m, replace=False)]
        xb = b[rng.choice(b.shape[0], m, replace=False)]
        values[s] = polynomial_mmd2_unbiased(xa, xb, degree=degree, gamma=gamma, coef0=coef0)
    return float(values.mean()), float(values.std())
