import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from tests.conftest import needs_fashion, write_image_folder
from tests.test_metrics import precision_recall_bruteforce
from xaigan import cli, data, metrics
from xaigan import config as cfg_mod
from xaigan.evaluate import Evaluator, generate_uint8, load_generator
from xaigan.experiments import prepare_run
from xaigan.io import load_torch
from xaigan.train import from_config


@pytest.fixture
def trained(tmp_path):
    write_image_folder(tmp_path / "imgs", n=120, size=32, mode="L")
    cfg = cfg_mod.resolve(
        {"dataset": f"folder:{tmp_path / 'imgs'}", "epochs": 2, "batch_size": 40, "progress": False, "eval_n": 100}
    )
    return cfg, tmp_path


def test_generated_images_are_seeded_and_quantised_like_saved_pngs():
    G = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 3, 4)))
    a, b = generate_uint8(G, 10, 4, seed=1, batch_size=3), generate_uint8(G, 10, 4, seed=1)
    assert a.dtype == torch.uint8 and a.shape == (10, 1, 3, 4) and torch.equal(a, b)
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = np.rint((G(z).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)  # what PIL would store
    assert np.array_equal(a.numpy(), expected)


def test_a_share_of_the_samples_calls_g_only_for_its_rows():
    """A distributed rank's share (``rows``) is the same rows of the same draw, in as many batches as it needs."""
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 3, 4)))

        def forward(self, z):
            calls.append(len(z))
            return self.net(z)

    G = Counting()
    whole = generate_uint8(G, 10, 4, seed=1)
    calls.clear()
    share = generate_uint8(G, 10, 4, seed=1, batch_size=3, rows=slice(5, 10))
    assert torch.equal(share, whole[5:10]) and calls == [3, 2]


def test_evaluate_run_and_cached_reference(trained, capsys):
    cfg, tmp_path = trained
    from_config(cfg, tmp_path / "run").fit()
    assert cli.main(["evaluate", str(tmp_path / "run"), "--n", "100"]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert f"{result['fid']:.3f}" in out and result["n"] == 100 and result["checkpoint"] == "last.pt"
    assert result["extractor"]["id"].startswith("domain-") and len(result["extractor"]["weights_hash"]) == 16
    assert result["reference"]["n"] == 120
    # Independent checks from the same features: FID from the features' statistics; precision/recall and
    # density/coverage by brute force against 100 of the 120 real images (equal sets: a seeded draw, redone here).
    ev = Evaluator(cfg.dataset)
    assert ev.real["cached"] is True  # the second evaluator reuses the cached real statistics
    G = load_generator(tmp_path / "run")[0]
    feats = ev.extractor(generate_uint8(G, 100, 100, seed=0))
    assert result["fid"] == pytest.approx(metrics.fid(ev.real["features"], feats), rel=1e-4)
    real = ev.real["features"][np.sort(np.random.default_rng(0).choice(120, 100, replace=False))]
    precision, recall = precision_recall_bruteforce(real, feats, k=5)
    assert (result["precision"], result["recall"]) == pytest.approx((precision, recall), abs=1e-9)
    assert result["k"] == 5
    r_real = np.sort(cdist(real, real), axis=1)[:, 5]  # each real point's 5th neighbour (column 0: itself)
    inside = cdist(real, feats) <= r_real[:, None]
    assert result["density"] == pytest.approx(inside.sum() / (5 * 100), abs=1e-9)
    assert result["coverage"] == pytest.approx(inside.any(axis=1).mean(), abs=1e-9)


@pytest.mark.slow
def test_eval_during_training_keeps_the_run_identical_and_keeps_best(trained):
    cfg, tmp_path = trained
    from_config(cfg, tmp_path / "plain").fit()
    evaluated = prepare_run(cfg.replace(eval_every=1), tmp_path / "eval")
    evaluated.fit()
    a = load_torch(tmp_path / "plain" / "checkpoints" / "last.pt")["G"]
    b = load_torch(tmp_path / "eval" / "checkpoints" / "last.pt")["G"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()
    evals = [json.loads(x) for x in lines if '"fid"' in x]
    assert len(evals) == 2
    best = min(evals, key=lambda r: r["fid"])
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["best_fid"] == pytest.approx(best["fid"])
    # best.pt holds the best evaluation's generator: scored again as training scored it, it gives that FID.
    assert load_torch(tmp_path / "eval" / "checkpoints" / "best.pt")["step"] == best["step"]
    G = load_generator(tmp_path / "eval", checkpoint="best.pt")[0]
    evaluator = Evaluator(cfg.dataset)
    again = evaluator.score_generator(G, cfg.eval_n, cfg.noise_dim, seed=0)["fid"]
    assert again == pytest.approx(best["fid"], rel=1e-6)
    assert {r["extractor"] for r in evals} == {evaluator.extractor.weights_hash}  # what late FIDs pair by


def test_inception_without_weights_is_one_clear_error(trained, capsys, monkeypatch):
    cfg, tmp_path = trained
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    from_config(cfg, tmp_path / "run").fit(stop_at_step=1)
    code = cli.main(["evaluate", str(tmp_path / "run"), "--features", "inception", "--n", "10"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") >= 1 and "pt_inception-2015-12-05" in err
    assert not (tmp_path / "run" / "eval.json").exists()


def test_unlabelled_folder_needs_inception(tmp_path):
    from PIL import Image

    (tmp_path / "flat").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(tmp_path / "flat" / f"{i}.png")
    with pytest.raises(ValueError, match="use --features inception"):
        Evaluator(f"folder:{tmp_path / 'flat'}")


@pytest.mark.slow
@needs_fashion
def test_domain_extractor_accuracy_on_fashion_mnist():
    train = data.load("fashion-mnist", split="train")
    test = data.load("fashion-mnist", split="test")
    _, acc = metrics.train_domain_classifier(
        train.images, train.labels, seed=0, val_images=test.images, val_labels=test.labels
    )
    assert acc >= 0.90


def test_every_feature_extractor_has_a_provider_and_no_other():
    """The evaluator builds each extractor through the provider registered under its name (no per-name branches):
    the two registries name the same extractors, and an unknown name is one error listing them."""
    from xaigan.evaluate import PROVIDERS

    assert PROVIDERS.names() == metrics.features.available()
    with pytest.raises(ValueError, match="unknown feature extractor 'clip'; available: domain, inception"):
        Evaluator("no-such-dataset", features="clip")


def test_domain_classification_of_features_matches_the_whole_network():
    """``classify`` applies the classifier's head to features already extracted; its softmax must equal the whole
    network's on the images, and the evaluator's recognisability numbers must follow from it (counted by hand)."""
    from types import SimpleNamespace

    from xaigan.metrics.domain import DomainClassifier, DomainExtractor, domain_preprocess

    torch.manual_seed(0)
    net = DomainClassifier(channels=1, num_classes=10, widths=(4, 8, 8), hidden=16)
    with torch.no_grad():
        net.head.weight.mul_(20)  # a confident head, so that the threshold splits the samples
    ext = DomainExtractor(net, batch_size=7)
    images = torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        whole = net.eval()(domain_preprocess(images)).softmax(1)
    probs = ext.classify(ext(images))
    torch.testing.assert_close(probs, whole, atol=1e-5, rtol=1e-4)
    top = whole.max(1).values
    ranked = top.sort().values
    threshold = float(ranked[19] + ranked[20]) / 2  # half the samples above, none within float noise of it
    assert ranked[20] - ranked[19] > 1e-4
    got = Evaluator.classified(SimpleNamespace(extractor=ext), ext(images), confident=threshold)
    sure = top >= threshold
    assert got["confident"] == pytest.approx(float(sure.float().mean()))
    assert got["classes_covered"] == len(set(whole.argmax(1)[sure].tolist())) > 1


def test_a_run_with_a_weight_average_is_scored_through_it_and_through_g_itself(trained):
    cfg, tmp_path = trained
    from_config(cfg.replace(g_ema=0.9), tmp_path / "run").fit()
    assert cli.main(["evaluate", str(tmp_path / "run"), "--n", "100"]) == 0
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    ev = Evaluator(cfg.dataset)
    state = load_torch(tmp_path / "run" / "checkpoints" / "last.pt")
    from xaigan import models

    for weights, score in ((state["G_ema"]["weights"], result["fid"]), (state["G"], result["g_itself"]["fid"])):
        G, _ = models.build(cfg.model, 1, 32, cfg.noise_dim)
        G.load_state_dict(weights)
        feats = ev.extractor(generate_uint8(G, 100, cfg.noise_dim, seed=0))
        assert score == pytest.approx(metrics.fid(ev.real["features"], feats), rel=1e-4)
    assert result["g_itself"]["fid"] != result["fid"]
    assert set(result["g_itself"]) >= {"fid", "kid_mean", "precision", "recall"}
