"""Feature-extractor registry, the domain classifier, its training and its checkpoint cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import needs_fashion
from xaigan.metrics import domain, domain_training, features


def synthetic_patterns(n_per_class: int, seed: int = 0, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """10 classes of distinct 32x32 patterns (stripes/blocks at class-specific positions) plus noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    protos = []
    for c in range(10):
        if c < 5:
            p = ((xx // (c + 2)) % 2).float()  # vertical stripes of different widths
        else:
            p = ((yy // (c - 3)) % 2).float()  # horizontal stripes
        protos.append(p * 200.0)
    protos_t = torch.stack(protos)  # (10, 32, 32)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    noise = torch.randn(labels.shape[0], channels, 32, 32, generator=g) * 40.0
    imgs = protos_t[labels].unsqueeze(1) + noise + 20.0
    return imgs.clamp(0, 255).to(torch.uint8), labels


@pytest.fixture(scope="module")
def small_data():
    return synthetic_patterns(60, seed=0)


@pytest.fixture(scope="module")
def trained(small_data):
    x, y = small_data
    return domain_training.train_domain_classifier(x, y, seed=0, epochs=3, batch_size=64, lr=3e-3)


def test_registry():
    assert {"inception", "domain"} <= set(features.available())
    with pytest.raises(ValueError, match="unknown feature extractor"):
        features.get("nope")
    with pytest.raises(ValueError, match="exactly one"):
        features.get("domain")


def test_domain_classifier_learns_synthetic_patterns(trained):
    model, acc = trained
    assert acc > 0.9
    assert not model.training


def test_domain_training_is_deterministic(small_data, trained):
    x, y = small_data
    model2, acc2 = domain_training.train_domain_classifier(x, y, seed=0, epochs=3, batch_size=64, lr=3e-3)
    assert acc2 == trained[1]
    assert features.state_dict_hash(model2) == features.state_dict_hash(trained[0])
    model3, _ = domain_training.train_domain_classifier(x, y, seed=1, epochs=1, batch_size=64)
    assert features.state_dict_hash(model3) != features.state_dict_hash(trained[0])


def test_domain_training_leaves_global_rng_alone(small_data):
    x, y = small_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    domain_training.train_domain_classifier(x[:100], y[:100], seed=5, epochs=1, batch_size=50)
    assert torch.equal(torch.rand(3), expected)


def test_domain_extractor(trained, small_data):
    model, _ = trained
    x, _ = small_data
    ext = features.get("domain", model=model, batch_size=17)
    assert ext.dim == 128 and ext.id.startswith("domain-cnn32-v2")
    out = ext(x[:40])
    assert out.shape == (40, 128) and out.dtype == np.float64
    np.testing.assert_allclose(out[:5], ext(x[:5]), rtol=1e-5, atol=1e-6)  # batch-size invariant
    # penultimate layer feeds the classifier head
    with torch.no_grad():
        logits = model.head(torch.from_numpy(out[:5]).float())
        ref = model(domain.domain_preprocess(x[:5]))
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="channel"):
        ext(x[:2].expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="32x32"):
        ext(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_domain_preprocess_range():
    x = torch.tensor([0, 255, 127], dtype=torch.uint8).reshape(1, 1, 1, 3)
    out = domain.domain_preprocess(x)
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, 127 / 127.5 - 1]))


@pytest.mark.slow
def test_load_or_train_domain_caches(tmp_path, small_data, monkeypatch):
    x, y = small_data
    kw = dict(epochs=2, batch_size=64)
    m1, info1 = domain_training.load_or_train_domain(x, y, dataset_hash=None, cache_dir=tmp_path, seed=0, **kw)
    assert info1["cached"] is False and 0.0 <= info1["accuracy"] <= 1.0
    assert info1["arch"] == m1.arch_id and info1["seed"] == 0

    calls = []
    real_train = domain_training.train_domain_classifier
    monkeypatch.setattr(
        domain_training, "train_domain_classifier", lambda *a, **k: calls.append(1) or real_train(*a, **k)
    )
    m2, info2 = domain_training.load_or_train_domain(x, y, dataset_hash=None, cache_dir=tmp_path, seed=0, **kw)
    assert calls == [] and info2["cached"] is True
    assert info2["accuracy"] == info1["accuracy"]
    assert features.state_dict_hash(m2) == features.state_dict_hash(m1)
    e1, e2 = features.get("domain", model=m1), features.get("domain", checkpoint=info2["path"])
    features.check_same_extractor(e1.meta, e2.meta)
    np.testing.assert_allclose(e1(x[:8]), e2(x[:8]))

    # other seed / other data / other labels -> retrain; none of them is served from the first entry
    domain_training.load_or_train_domain(x, y, dataset_hash=None, cache_dir=tmp_path, seed=1, **kw)
    x2 = x.clone()
    x2[0, 0, 0, 0] ^= 1
    domain_training.load_or_train_domain(x2, y, dataset_hash=None, cache_dir=tmp_path, seed=0, **kw)
    domain_training.load_or_train_domain(x, y.roll(1), dataset_hash=None, cache_dir=tmp_path, seed=0, **kw)
    assert len(calls) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers

    # corrupt checkpoint -> retrained, not crashed
    with open(info2["path"], "wb") as f:
        f.write(b"broken")
    _, info3 = domain_training.load_or_train_domain(x, y, dataset_hash=None, cache_dir=tmp_path, seed=0, **kw)
    assert info3["cached"] is False and len(calls) == 4


def test_domain_training_threads_do_not_follow_the_caller(tmp_path, small_data, monkeypatch):
    """The weights depend on the thread count, so training pins it: a caller's 1 or 3 threads train the same
    extractor, and the caller's own setting comes back afterwards."""
    x, y = small_data
    seen = []
    real_train = domain_training.train_domain_classifier
    monkeypatch.setattr(
        domain_training,
        "train_domain_classifier",
        lambda *a, **k: seen.append(torch.get_num_threads()) or real_train(*a, **k),
    )
    before = torch.get_num_threads()
    hashes = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            model, _ = domain_training.load_or_train_domain(
                x, y, dataset_hash=None, cache_dir=tmp_path / str(threads), seed=0, epochs=1, batch_size=64
            )
            assert torch.get_num_threads() == threads
            hashes.append(features.state_dict_hash(model))
    finally:
        torch.set_num_threads(before)
    assert seen == [domain_training.TRAIN_THREADS] * 2
    assert hashes[0] == hashes[1]


@needs_fashion
def test_studies_extractor_ships_with_the_package(tmp_path, monkeypatch):
    """Fashion-MNIST's extractor is not retrained on a new machine (another machine trains other weights): the
    shipped file is found by its content key, with the weights every study record since 2026-12-04 names."""
    monkeypatch.setenv("XAIGAN_HOME", str(tmp_path))
    monkeypatch.setattr(domain_training, "train_domain_classifier", lambda *a, **k: pytest.fail("retrained"))
    from xaigan.evaluate import ExtractorRequest, _provide_domain

    extractor, info = _provide_domain(ExtractorRequest("fashion-mnist", None, "cpu", 0, None))
    assert extractor.meta["weights_hash"] == "dc49c286ce8490e2" and info["accuracy"] == 0.8892
    assert not (tmp_path / "metrics" / "domain").exists() or not any((tmp_path / "metrics" / "domain").iterdir())


def test_checkpoint_loads_with_weights_only(tmp_path, trained):
    model, acc = trained
    path = domain.save_domain_checkpoint(tmp_path / "m.pt", model, {"accuracy": acc, "seed": 0})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["arch"] == model.arch_id and ckpt["meta"]["accuracy"] == acc
    loaded, meta = domain.load_domain_checkpoint(path)
    assert features.state_dict_hash(loaded) == features.state_dict_hash(model)


def test_check_same_extractor_messages():
    features.check_same_extractor({"id": "a", "weights_hash": "1"}, {"extractor_id": "a", "weights_hash": "1"})
    with pytest.raises(ValueError, match="a .*vs b"):
        features.check_same_extractor({"id": "a", "weights_hash": "1"}, {"id": "b", "weights_hash": "1"})
    with pytest.raises(ValueError, match="weights"):
        features.check_same_extractor({"id": "a", "weights_hash": "1"}, {"id": "a", "weights_hash": "2"})
    with pytest.raises(ValueError, match="must record"):
        features.check_same_extractor({"id": "a"}, {"id": "a", "weights_hash": "2"})
