import json

import numpy as np
import pytest
import torch

from tests.conftest import needs_fashion, write_image_folder
from xaigan import cli, data, metrics
from xaigan import config as cfg_mod
from xaigan.evaluate import Evaluator, evaluate_run, generate_uint8
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
    assert cli.main(["evaluate", str(tmp_path / "run"), "--n", "200"]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert f"{result['fid']:.3f}" in out and result["n"] == 200 and result["checkpoint"] == "last.pt"
    assert result["extractor"]["id"].startswith("domain-") and len(result["extractor"]["weights_hash"]) == 16
    assert 0 <= result["precision"] <= 1 and result["reference"]["n"] == 120
    # Independent check of the FID from the same features.
    ev = Evaluator(cfg.dataset)
    assert ev.real["cached"] is True  # the second evaluator reuses the cached real statistics
    G = evaluate_run.__globals__["load_generator"](tmp_path / "run")[0]
    feats = ev.extractor(generate_uint8(G, 200, 100, seed=0))
    assert result["fid"] == pytest.approx(metrics.fid(ev.real["features"], feats), rel=1e-4)


def test_eval_during_training_keeps_the_run_identical_and_keeps_best(trained):
    cfg, tmp_path = trained
    from_config(cfg, tmp_path / "plain").fit()
    evaluated = prepare_run(cfg.replace(eval_every=1), tmp_path / "eval")
    evaluated.fit()
    a = load_torch(tmp_path / "plain" / "checkpoints" / "last.pt")["G"]
    b = load_torch(tmp_path / "eval" / "checkpoints" / "last.pt")["G"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    fids = [
        json.loads(x)["fid"] for x in (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines() if '"fid"' in x
    ]
    assert len(fids) == 2 and (tmp_path / "eval" / "checkpoints" / "best.pt").is_file()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["best_fid"] == pytest.approx(min(fids))


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
