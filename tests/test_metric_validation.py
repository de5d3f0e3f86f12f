"""The domain extractor passes the metric-validation protocol (``docs/metrics.md``) on real Fashion-MNIST, at a small
scale: real vs real near perfect, graded noise monotonic, dropped classes lower recall but not precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xaigan import data as data_mod
from xaigan import metrics
from xaigan.evaluate import PR_K
from xaigan.metrics.domain import DomainExtractor
from xaigan.metrics.domain_training import train_domain_classifier

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist"),
]
N = 2000


@pytest.fixture(scope="module")
def scored():
    train = data_mod.load("fashion-mnist", split="train", download=False)
    test = data_mod.load("fashion-mnist", split="test", download=False)
    g = np.random.default_rng(0)
    fit = g.choice(len(train), 15000, replace=False)
    model, accuracy = train_domain_classifier(
        train.images[fit], train.labels[fit], seed=0, epochs=3, augment=True, val_images=test.images[:2000],
        val_labels=test.labels[:2000],
    )  # fmt: skip
    extractor = DomainExtractor(model)
    rest = np.setdiff1d(np.arange(len(train)), fit)
    real = extractor(train.images[g.choice(rest, N, replace=False)])
    base = test.images[g.choice(len(test), N, replace=False)]
    x = base.float() / 127.5 - 1
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    sets = {"test": base}
    for std in (0.1, 0.2, 0.4):
        sets[f"noise {std}"] = ((x + std * noise).clamp(-1, 1) + 1).mul(127.5).round().to(torch.uint8)
    labels = test.labels.numpy()
    sets["5 classes"] = test.images[g.choice(np.flatnonzero(labels < 5), N, replace=False)]
    out = {"accuracy": accuracy}
    for name, images in sets.items():
        fake = extractor(images)
        p, r = metrics.precision_recall(real, fake, k=PR_K)
        out[name] = {"fid": metrics.fid(real, fake), "precision": p, "recall": r}
    return out


def test_real_vs_real_is_near_perfect(scored):
    assert scored["accuracy"] > 0.8
    t = scored["test"]
    assert t["precision"] >= 0.9 and t["recall"] >= 0.9
    assert t["fid"] < 0.05 * scored["noise 0.4"]["fid"]


def test_noise_raises_fid_and_lowers_recall_monotonically(scored):
    steps = ["test", "noise 0.1", "noise 0.2", "noise 0.4"]
    fids = [scored[s]["fid"] for s in steps]
    recalls = [scored[s]["recall"] for s in steps]
    assert fids == sorted(fids) and recalls == sorted(recalls, reverse=True), (fids, recalls)
    # v1 (trained on clean images) scored recall 0.43 here at std 0.2; v2 0.90 (docs/metrics.md)
    assert recalls[2] > 0.7, "recall must not collapse under moderate noise (the v1 extractor's failure)"


def test_dropping_classes_lowers_recall_not_precision(scored):
    half, full = scored["5 classes"], scored["test"]
    assert half["recall"] < full["recall"] - 0.25
    assert half["precision"] > full["precision"] - 0.05
