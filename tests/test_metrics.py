"""FID / KID / precision-recall against independent references, and the real-statistics cache."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.spatial.distance import cdist

from xaigan import metrics
from xaigan.metrics import cache, distances, manifold

# ----------------------------------------------------------------------------------------- helpers


def random_spd(rng: np.random.Generator, d: int, n: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, n or 2 * d))
    return a @ a.T / a.shape[1]


def fid_reference_sqrtm(mu1, s1, mu2, s2) -> float:
    """Textbook formula with scipy's general matrix square root."""
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def mmd2_unbiased_loops(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 straight from the definition, with explicit Python loops."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2.0 * sxy


def precision_recall_bruteforce(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. by brute force: full distance matrices, sorted rows, explicit loops."""

    def radii(x):
        dist = cdist(x, x)
        return np.array([np.sort(np.delete(row, i))[k - 1] for i, row in enumerate(dist)])

    r_real, r_fake = radii(real), radii(fake)
    d_rf = cdist(real, fake)
    precision = np.mean([any(d_rf[i, j] <= r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d_rf[i, j] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    return float(precision), float(recall)


# ------------------------------------------------------------------------------------------- FID


@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_matches_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    ours = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(fid_reference_sqrtm(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_equal_covariances_is_mean_distance():
    rng = np.random.default_rng(1)
    d = 32
    s = random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert metrics.frechet_distance(mu1, s, mu2, s) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_frechet_symmetric_and_returns_python_float():
    rng = np.random.default_rng(2)
    d = 24
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    a = metrics.frechet_distance(mu1, s1, mu2, s2)
    b = metrics.frechet_distance(mu2, s2, mu1, s1)
    assert isinstance(a, float)
    assert a == pytest.approx(b, rel=1e-9)


def test_frechet_singular_covariances_match_nuclear_norm():
    """Rank-deficient covariances (N < d): tr sqrt(S1 S2) = nuclear norm of A1^T A2 when S = A A^T."""
    rng = np.random.default_rng(3)
    d, n = 256, 40
    x1 = rng.standard_normal((n, d))
    x2 = rng.standard_normal((n, d)) * 0.5 + 0.1
    mu1, s1 = metrics.feature_statistics(x1)
    mu2, s2 = metrics.feature_statistics(x2)
    a1 = (x1 - mu1).T / np.sqrt(n - 1)
    a2 = (x2 - mu2).T / np.sqrt(n - 1)
    tr_sqrt = np.linalg.svd(a1.T @ a2, compute_uv=False).sum()
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    ours = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours)
    assert ours == pytest.approx(expected, rel=1e-8)
    # Fully degenerate: zero covariances reduce to the squared mean distance.
    z = np.zeros((d, d))
    assert metrics.frechet_distance(mu1, z, mu2, z) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)))


def test_fid_of_identical_features_is_zero_and_accepts_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert metrics.fid(torch.from_numpy(x).float(), x) == pytest.approx(0.0, abs=1e-4)


def test_fid_matches_statistics_path_and_detects_shift():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((400, 8))
    b = rng.standard_normal((400, 8)) + 1.0
    mu_a, s_a = metrics.feature_statistics(a)
    mu_b, s_b = metrics.feature_statistics(b)
    np.testing.assert_allclose(s_a, np.cov(a, rowvar=False), rtol=1e-12)
    value = metrics.fid(a, b)
    assert value == pytest.approx(metrics.frechet_distance(mu_a, s_a, mu_b, s_b))
    assert value == pytest.approx(fid_reference_sqrtm(mu_a, s_a, mu_b, s_b), rel=1e-6)
    assert value > 6.0  # mean shift of 1 in 8 dims


def test_fid_input_validation():
    with pytest.raises(ValueError, match="dimension"):
        metrics.fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.fid(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="2-D"):
        metrics.fid(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        metrics.frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))


# ------------------------------------------------------------------------------------------- KID


def test_kid_single_subset_matches_explicit_loops():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((25, 5))
    y = rng.standard_normal((25, 5)) * 1.3 + 0.2
    # subset_size >= N: the single subset is a permutation of all samples; MMD is order-invariant.
    mean, std = metrics.kid(x, y, num_subsets=1, subset_size=1000)
    assert std == 0.0
    assert mean == pytest.approx(mmd2_unbiased_loops(x, y), rel=1e-10)
    assert distances.polynomial_mmd2_unbiased(x, y) == pytest.approx(mmd2_unbiased_loops(x, y), rel=1e-10)


def test_kid_unbiased_for_same_distribution():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3000, 16))
    b = rng.standard_normal((3000, 16))
    mean, std = metrics.kid(a, b, num_subsets=50, subset_size=500)
    assert std > 0
    assert abs(mean) <= 2 * std
    same_mean, _ = metrics.kid(a, a, num_subsets=20, subset_size=500)
    assert abs(same_mean) <= 2 * std


def test_kid_positive_for_different_distributions():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((2000, 16))
    b = rng.standard_normal((2000, 16)) * 1.5 + 0.5
    mean, std = metrics.kid(a, b, num_subsets=30, subset_size=500)
    assert mean > 10 * std > 0


def test_kid_seeded_and_subset_size_clamped():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((120, 4)), rng.standard_normal((90, 4)) + 0.3
    assert metrics.kid(a, b, num_subsets=5, seed=1) == metrics.kid(a, b, num_subsets=5, seed=1)
    assert metrics.kid(a, b, num_subsets=5, seed=1) != metrics.kid(a, b, num_subsets=5, seed=2)
    mean, _ = metrics.kid(a, b, num_subsets=3)  # subset size min(1000, 120, 90) = 90 works
    assert np.isfinite(mean)


# ------------------------------------------------------------------------------- precision/recall


def test_precision_recall_identical_sets():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((300, 10))
    assert metrics.precision_recall(x, x, k=3) == (1.0, 1.0)


def test_precision_recall_far_apart_clusters():
    rng = np.random.default_rng(11)
    real = rng.standard_normal((300, 10))
    fake = rng.standard_normal((300, 10)) + 50.0
    p, r = metrics.precision_recall(real, fake, k=3)
    assert p == 0.0 and r == 0.0


def test_precision_recall_partial_overlap_is_asymmetric():
    """Fake covers only half the real modes: precision high, recall about a half."""
    rng = np.random.default_rng(12)
    centers = np.eye(8) * 20
    real = np.concatenate([c + rng.standard_normal((100, 8)) for c in centers])
    fake = np.concatenate([c + rng.standard_normal((200, 8)) for c in centers[:4]])
    p, r = metrics.precision_recall(real, fake, k=3)
    assert p > 0.75  # k-NN balls miss some tail samples even for a perfect match
    assert 0.35 < r < 0.6


@pytest.mark.parametrize("k,seed", [(1, 0), (3, 1), (5, 2)])
def test_precision_recall_matches_bruteforce(k, seed):
    rng = np.random.default_rng(100 + seed)
    real = rng.standard_normal((70, 6))
    fake = rng.standard_normal((55, 6)) * 1.2 + 0.4
    expected = precision_recall_bruteforce(real, fake, k)
    assert metrics.precision_recall(real, fake, k=k) == pytest.approx(expected, abs=1e-12)
    # chunking must not change anything
    assert metrics.precision_recall(real, fake, k=k, chunk_size=7) == pytest.approx(expected, abs=1e-12)


def test_kth_nn_radii_match_bruteforce():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((50, 3))
    dist = cdist(x, x, "sqeuclidean")
    for k in (1, 2, 4):
        expected = np.array([np.sort(np.delete(row, i))[k - 1] for i, row in enumerate(dist)])
        np.testing.assert_allclose(manifold.kth_nn_radii(x, k, chunk_size=16), expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        manifold.kth_nn_radii(x, 50)


# ------------------------------------------------------------------------------------------ cache


class CountingExtractor:
    """Deterministic toy extractor: per-image channel means and a few pixel values."""

    def __init__(self, id: str = "toy-v1", weights_hash: str = "w0") -> None:
        self.id, self.weights_hash, self.dim, self.calls = id, weights_hash, 6, 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.calls += 1
        flat = images.reshape(images.shape[0], -1).double()
        return torch.cat([flat.mean(1, keepdim=True), flat[:, :5]], dim=1).numpy()


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g)


def test_content_hash_sensitive_to_bytes_shape_and_dtype(images):
    h = metrics.content_hash(images)
    assert h == metrics.content_hash(images.clone()) == metrics.content_hash(images.numpy())
    assert h == metrics.content_hash(images.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2))
    changed = images.clone()
    changed[3, 0, 2, 2] ^= 1
    assert metrics.content_hash(changed) != h
    assert metrics.content_hash(images.reshape(32, 2, 8, 8)) != h
    assert metrics.content_hash(images.view(torch.int8)) != h
    assert len(h) == 64


def test_real_statistics_cached_and_reused(tmp_path, images):
    ext = CountingExtractor()
    first = metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")
    assert ext.calls == 1 and first["cached"] is False
    second = metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")
    assert ext.calls == 1 and second["cached"] is True
    for key in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(first[key], second[key])
    feats = ext(images)
    mu, sigma = metrics.feature_statistics(feats)
    np.testing.assert_allclose(second["mu"], mu)
    np.testing.assert_allclose(second["sigma"], sigma)
    assert second["features"].shape == (64, 6) and second["features"].dtype == np.float64
    assert second["extractor_id"] == "toy-v1" and second["weights_hash"] == "w0"
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(first["path"])]  # no temp files left


def test_real_statistics_invalidation(tmp_path, images):
    ext = CountingExtractor()
    metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 0xFF
    res = metrics.real_statistics(ext, changed, cache_dir=tmp_path, data_key="toy")
    assert ext.calls == 2 and res["cached"] is False
    # same name, different weights or different extractor id -> recompute, never a name-only hit
    for other in (CountingExtractor(weights_hash="w1"), CountingExtractor(id="toy-v2")):
        res = metrics.real_statistics(other, images, cache_dir=tmp_path, data_key="toy")
        assert other.calls == 1 and res["cached"] is False
    # the original entry is still valid
    assert metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")["cached"] is True
    assert ext.calls == 2


def test_real_statistics_recovers_from_corrupt_file(tmp_path, images):
    ext = CountingExtractor()
    path = metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")["path"]
    with open(path, "wb") as f:
        f.write(b"not a zip file")
    res = metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")
    assert res["cached"] is False and ext.calls == 2
    assert metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")["cached"] is True


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "x.bin"

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        cache.atomic_write(target, boom)
    assert list(tmp_path.iterdir()) == []
    cache.atomic_write(target, lambda f: f.write(b"ok"))
    assert target.read_bytes() == b"ok"


def test_metrics_end_to_end_on_cached_stats(tmp_path, images):
    """FID from cached (mu, sigma) equals fid() on the raw features; KID/PR accept cached features."""
    ext = CountingExtractor()
    real = metrics.real_statistics(ext, images, cache_dir=tmp_path, data_key="toy")
    fake_feats = ext(torch.flip(images, dims=[3]))
    mu_f, s_f = metrics.feature_statistics(fake_feats)
    via_stats = metrics.frechet_distance(real["mu"], real["sigma"], mu_f, s_f)
    assert via_stats == pytest.approx(metrics.fid(ext(images), fake_feats), rel=1e-9)
    kid_mean, _ = metrics.kid(real["features"], fake_feats, num_subsets=5)
    assert np.isfinite(kid_mean)
    p, r = metrics.precision_recall(real["features"], fake_feats)
    assert 0.0 <= p <= 1.0 and 0.0 <= r <= 1.0


def test_public_names_exist():
    for name in ("frechet_distance", "fid", "kid", "precision_recall", "feature_statistics", "real_statistics"):
        assert callable(getattr(metrics, name))
    assert list(itertools.islice(metrics.features.available(), 2)) == ["domain", "inception"]


@pytest.mark.parametrize("k,seed", [(1, 0), (5, 1)])
def test_density_coverage_match_bruteforce(k, seed):
    """Against the definitions of Naeem et al. (2020), by brute force with scipy's distances."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(seed)
    real = rng.standard_normal((120, 6))
    fake = rng.standard_normal((90, 6)) * 1.3 + 0.4
    rr = cdist(real, real)
    radius = np.sort(rr, axis=1)[:, k]  # column 0 is the point itself
    inside = cdist(real, fake) <= radius[:, None]
    density = inside.sum() / (k * len(fake))
    coverage = inside.any(axis=1).mean()
    d, c = metrics.density_coverage(real, fake, k=k, chunk_size=17)
    assert d == pytest.approx(density, rel=1e-12) and c == pytest.approx(coverage, rel=1e-12)


def test_density_ignores_a_collapsed_cluster_that_precision_counts():
    """A fake set collapsed onto one outlying real point: precision counts it as fully real, density does not."""
    rng = np.random.default_rng(3)
    real = np.concatenate([rng.standard_normal((300, 4)), [[8.0, 8.0, 8.0, 8.0]]])
    fake = np.full((300, 4), 8.0) + 0.01 * rng.standard_normal((300, 4))
    precision, _ = metrics.precision_recall(real, fake, k=5)
    density, coverage = metrics.density_coverage(real, fake, k=5)
    assert precision == 1.0 and density < 0.25 and coverage < 0.02
