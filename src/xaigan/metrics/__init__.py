"""Sample-quality metrics for GANs: FID, KID and improved precision/recall, with offline feature extractors.

Typical use::

    from xaigan import metrics
    model, info = metrics.load_or_train_domain(real_u8, labels, dataset_hash=None, cache_dir=cache)
    ext = metrics.features.get("domain", model=model)
    real = metrics.real_statistics(ext, real_u8, cache_dir=cache, data_key="fashion-mnist-train")
    fake = ext(fake_u8)
    metrics.frechet_distance(real["mu"], real["sigma"], *metrics.feature_statistics(fake))
    metrics.kid(real["features"], fake)
    metrics.precision_recall(real["features"], fake, k=3)
"""

from . import cache, copying, distances, domain, features, inception, manifold
from .cache import atomic_write, content_hash, real_statistics
from .distances import feature_statistics, fid, frechet_distance, kid
from .domain import DomainClassifier, load_domain_checkpoint
from .domain_training import load_or_train_domain, train_domain_classifier
from .features import FeatureExtractor, check_same_extractor
from .inception import MissingWeightsError, WeightsMismatchError, download_fid_weights
from .manifold import density_coverage, manifold_scores, precision_recall

__all__ = [
    "cache",
    "copying",
    "distances",
    "manifold",
    "domain",
    "features",
    "inception",
    "atomic_write",
    "content_hash",
    "real_statistics",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "kid",
    "precision_recall",
    "density_coverage",
    "manifold_scores",
    "DomainClassifier",
    "FeatureExtractor",
    "check_same_extractor",
    "load_domain_checkpoint",
    "load_or_train_domain",
    "train_domain_classifier",
    "MissingWeightsError",
    "WeightsMismatchError",
    "download_fid_weights",
]
