"""Benchmark: FID + KID + precision/recall of 10k generated 32x32 samples against cached real statistics.

Uses the ``domain`` extractor. Real data: Fashion-MNIST train via ``xaigan.data`` when it is available
offline (the domain classifier is then trained once and cached), else synthetic images and a
randomly initialised (seeded) classifier -- timing does not depend on the weights. Fakes come from a
randomly initialised paper MLP generator (``xaigan.models.build("mlp")``), else random uint8 images.

Timed (target <= 30 s on 2 threads): feature extraction of the fakes + FID + KID + PR.
Not timed: loading data, training the classifier, the first (uncached) real-statistics pass.

    python bench/bench_metrics.py [--n 10000] [--threads 2] [--dataset fashion-mnist] [--synthetic]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="number of generated samples")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--synthetic", action="store_true", help="skip real data; synthetic reals + untrained net")
    p.add_argument("--cache-dir", default=None, help="default: $XAIGAN_HOME/metrics (~/.cache/xaigan/metrics)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--pr-k", type=int, default=3)
    return p.parse_args()


args = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before numpy/torch load their BLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from xaigan import metrics  # noqa: E402
from xaigan.metrics import domain, features  # noqa: E402


def _cache_dir() -> Path:
    if args.cache_dir:
        return Path(args.cache_dir)
    home = Path(os.environ.get("XAIGAN_HOME", Path.home() / ".cache" / "xaigan")).expanduser()
    return home / "metrics"


def _real_data() -> tuple[torch.Tensor, torch.Tensor | None, str]:
    if not args.synthetic:
        try:
            from xaigan import data

            d = data.load(args.dataset, split="train", download=False)
            return d.images, d.labels, f"{args.dataset}-train"
        except Exception as exc:  # data layer missing / dataset not available offline
            print(f"[bench] real data unavailable ({type(exc).__name__}: {exc}); using synthetic images")
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (10, 1, 32, 32), generator=g).float()
    labels = torch.randint(0, 10, (10_000,), generator=g)
    noise = torch.randn(10_000, 1, 32, 32, generator=g) * 30
    imgs = (base[labels] * 0.7 + noise).clamp(0, 255).to(torch.uint8)
    return imgs, None, "synthetic"


def _fakes(n: int) -> tuple[torch.Tensor, str]:
    g = torch.Generator().manual_seed(1)
    try:
        from xaigan import models

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            gen, _ = models.build("mlp", channels=1, image_size=32)
        gen.eval()
        noise_dim = int(getattr(gen, "noise_dim", 100))
        out = []
        with torch.no_grad():
            for start in range(0, n, 1000):
                z = torch.randn(min(1000, n - start), noise_dim, generator=g)
                out.append(((gen(z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        return torch.cat(out), "random-init MLP generator"
    except Exception as exc:
        print(f"[bench] generator unavailable ({type(exc).__name__}: {exc}); using random uint8 images")
        return torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8, generator=g), "random uint8"


def main() -> None:
    torch.set_num_threads(args.threads)
    cache_dir = _cache_dir()
    t = time.perf_counter()
    real, labels, data_key = _real_data()
    t_load = time.perf_counter() - t

    t = time.perf_counter()
    if labels is not None:
        model, info = metrics.load_or_train_domain(
            real, labels, dataset_hash=None, cache_dir=cache_dir / "domain", seed=0, log=print
        )
        domain_note = f"trained, held-out acc {info['accuracy']:.4f} ({'cached' if info['cached'] else 'new'})"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = domain.DomainClassifier(channels=1)
        domain_note = "random init (synthetic mode)"
    t_domain = time.perf_counter() - t
    ext = features.get("domain", model=model)

    with tempfile.TemporaryDirectory() as tmp:
        stats_dir = Path(tmp) if data_key == "synthetic" else cache_dir / "stats"
        t = time.perf_counter()
        first = metrics.real_statistics(ext, real, cache_dir=stats_dir, data_key=data_key)
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        real_stats = metrics.real_statistics(ext, real, cache_dir=stats_dir, data_key=data_key)
        t_cached = time.perf_counter() - t
        assert real_stats["cached"]

    fakes, fake_note = _fakes(args.n)

    rows: list[tuple[str, float, str]] = []
    t0 = time.perf_counter()
    fake_feats = ext(fakes)
    rows.append(("feature extraction", time.perf_counter() - t0, f"{args.n} fakes -> {fake_feats.shape[1]}-d"))

    t = time.perf_counter()
    mu_f, sigma_f = metrics.feature_statistics(fake_feats)
    fid = metrics.frechet_distance(real_stats["mu"], real_stats["sigma"], mu_f, sigma_f)
    rows.append(("FID", time.perf_counter() - t, f"{fid:.4f}"))

    t = time.perf_counter()
    kid_mean, kid_std = metrics.kid(
        real_stats["features"], fake_feats, num_subsets=args.kid_subsets, subset_size=args.kid_subset_size
    )
    rows.append(("KID", time.perf_counter() - t, f"{kid_mean:.3e} +- {kid_std:.1e}"))

    # PR on equal-size sets (subsample reals to n with a fixed seed, as is customary)
    t = time.perf_counter()
    real_feats = real_stats["features"]
    if real_feats.shape[0] > args.n:
        idx = np.random.default_rng(0).choice(real_feats.shape[0], args.n, replace=False)
        real_feats = real_feats[idx]
    precision, recall = metrics.precision_recall(real_feats, fake_feats, k=args.pr_k)
    rows.append(("precision/recall", time.perf_counter() - t, f"P={precision:.4f} R={recall:.4f}"))
    total = time.perf_counter() - t0

    print()
    print(f"threads={torch.get_num_threads()}  torch {torch.__version__}  numpy {np.__version__}")
    print(f"real: {data_key} ({real.shape[0]} images)  fakes: {fake_note}  extractor: {ext.id} [{ext.weights_hash}]")
    print(f"domain classifier: {domain_note}")
    print(
        f"untimed: data load {t_load:.1f}s, classifier {t_domain:.1f}s, "
        f"real stats first pass {t_first:.1f}s ({'hit' if first['cached'] else 'computed'}), "
        f"cached read {t_cached:.2f}s"
    )
    print()
    print(f"{'stage':<20}{'seconds':>9}  result")
    print("-" * 60)
    for name, sec, note in rows:
        print(f"{name:<20}{sec:>9.2f}  {note}")
    print("-" * 60)
    print(f"{'total':<20}{total:>9.2f}  (target <= 30 s)")


if __name__ == "__main__":
    main()
