"""The SNGAN standard CNN, spectral normalisation, and your own nets (``package.module:function``)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from captum.attr import DeepLiftShap
from torch import nn

from tests.test_explain import CAPTUM, TOL, _batch, _per_sample
from xaigan import explain, models
from xaigan.config import Config, ConfigError
from xaigan.errors import InputError


def _tiny_d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    D = models.SNGANDiscriminator(channels=1, image_size=8, width=2).double()
    D.train()
    with torch.no_grad():
        for _ in range(5):  # a few power iterations, as training does, so u and v are not at their start
            D(torch.randn(4, 1, 8, 8, dtype=torch.float64))
    return D.eval()


def test_shapes_sizes_and_every_activation_its_own_module():
    G, D = models.build("sngan-small", channels=3, image_size=32, noise_dim=20)
    assert tuple(G(torch.randn(2, 20)).shape) == (2, 3, 32, 32) and tuple(D(torch.randn(2, 3, 32, 32)).shape) == (2, 1)
    acts = [m for m in D.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 7 and len({id(m) for m in acts}) == 7 and not any(m.inplace for m in acts)
    with pytest.raises(InputError, match="divisible by 8"):
        models.build("sngan", 1, 28)


def test_spectral_norm_makes_each_layer_s_largest_singular_value_one():
    D = _tiny_d()
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 8 and models.is_normalised(D)
    for layer in layers:
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        sigma = torch.linalg.matrix_norm(w, ord=2)  # the reference: an SVD, not the power iteration
        assert float(sigma) == pytest.approx(1.0, rel=0.05)


def test_the_spectral_norm_setting_adds_or_removes_it():
    _, plain = models.build("mlp", 1, 32)
    assert not models.is_normalised(plain)
    assert models.is_normalised(models.build("mlp", 1, 32, spectral="on")[1])
    assert models.is_normalised(models.build("dcgan", 1, 32, spectral="on")[1])
    assert not any(
        isinstance(m, nn.utils.parametrize.ParametrizationList)
        for m in models.build("sngan", 1, 32, spectral="off")[1].modules()
    )
    with pytest.raises(ConfigError, match="spectral_norm must be one of"):
        Config(spectral_norm="yes")


@pytest.mark.parametrize("method", sorted(CAPTUM))
@pytest.mark.parametrize("target", ["output", "prob"])
def test_every_explainer_on_the_sngan_d_equals_captum_per_sample(method, target):
    D, x = _tiny_d(), _batch(4)
    u_before = [b.clone() for b in D.buffers()]
    fn, kwargs = CAPTUM[method]
    ours = explain.explain(method, D, x, target=target, **kwargs)
    torch.testing.assert_close(ours, _per_sample(D, x, fn, target), **TOL)
    assert all(torch.equal(a, b) for a, b in zip(u_before, D.buffers()))  # power-iteration vectors untouched


def test_deeplift_shap_on_the_sngan_d_equals_captum_and_train_mode_restores_the_vectors():
    D, x = _tiny_d(), _batch(3)
    refs = _batch(4, seed=9)
    ours = explain.explain("deeplift-shap", D, x, target="prob", baselines=refs)
    ref = _per_sample(D, x, lambda m, xi: DeepLiftShap(m).attribute(xi, refs, target=0), "prob")
    torch.testing.assert_close(ours, ref, **TOL)
    before = [b.clone() for b in D.buffers()]
    explain.explain("saliency", D, x, mode="train")  # train mode runs power iterations; they must be undone
    assert all(torch.equal(a, b) for a, b in zip(before, D.buffers()))


NETS = """
from torch import nn


def build(channels, image_size, noise_dim):
    G = nn.Sequential(nn.Linear(noise_dim, channels * image_size**2), nn.Tanh(),
                      nn.Unflatten(1, (channels, image_size, image_size)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size**2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    return G, D


def broken(channels, image_size, noise_dim):
    return "not nets"
"""


@pytest.fixture
def own_nets(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    sys.modules.pop("mynets", None)


def test_your_own_nets_by_import_path(own_nets):
    G, D = models.build("mynets:build", 1, 8, 4)  # found in the current folder, as python -m would
    assert tuple(D(G(torch.randn(3, 4))).shape) == (3, 1)
    assert Config(model="mynets:build").model == "mynets:build"
    src = models.source("mynets:build")
    import hashlib

    assert src["sha256"] == hashlib.sha256((own_nets / "mynets.py").read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="cannot import nonexistent"):
        Config(model="nonexistent.nets:build")
    with pytest.raises(ConfigError, match="no callable 'nope'"):
        Config(model="mynets:nope")
    with pytest.raises(ConfigError, match="must be one of dcgan, mlp, .* or package.module:function"):
        Config(model="not a path")
    with pytest.raises(InputError, match=r"must return \(G, D\)"):
        models.build("mynets:broken", 1, 8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sngan-small", "mynets:build"])
def test_the_command_line_trains_evaluates_and_samples_a_modern_or_own_gan(own_nets, model, capsys):
    import json

    from tests.conftest import write_image_folder
    from xaigan import cli

    write_image_folder(own_nets / "imgs", n=64, size=32, mode="L")
    run = own_nets / "run"
    argv = ["train", "--dataset", f"folder:{own_nets / 'imgs'}", "--model", model, "--loss", "hinge"]
    argv += ["--set", "g_topk=true", "--epochs", "2", "--batch-size", "32", "--out", str(run), "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4
    if ":" in model:
        assert summary["provenance"]["model"]["import"] == model
    assert cli.main(["evaluate", str(run), "--n", "100"]) == 0
    assert cli.main(["sample", str(run), "--n", "16", "--out", str(own_nets / "grid.png")]) == 0
    assert (own_nets / "grid.png").is_file()
    bad = ["train", "--dataset", f"folder:{own_nets / 'imgs'}", "--model", "mynets:missing", "--out", str(run) + "2"]
    assert cli.main(bad) == 2
    assert "no callable 'missing'" in capsys.readouterr().err


def test_the_worked_example_in_the_docs_builds_and_is_explainable(tmp_path, monkeypatch):
    from pathlib import Path

    from tests.test_readme import blocks

    page = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    (tmp_path / "docs_nets.py").write_text(blocks(page, "python")[0])
    monkeypatch.chdir(tmp_path)
    try:
        G, D = models.build("docs_nets:build", 1, 32, 100)
        x = G(torch.randn(3, 100))
        assert tuple(x.shape) == (3, 1, 32, 32) and tuple(D(x).shape) == (3, 1)
        for method in ("saliency", "deeplift"):
            assert explain.explain(method, D, x.detach()).shape == x.shape
    finally:
        sys.modules.pop("docs_nets", None)
