"""guidance.apply reshapes the gradient at the image; XAIGuidance selects, normalises and combines as documented."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.helpers_models import SignD, conv_bn_d, mlp_d
from xaigan import explain, guidance
from xaigan.guidance import XAIGuidance

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _generator(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8))).double()


def _grads(G):
    return [p.grad.clone() for p in G.parameters()]


def test_apply_matches_hand_computation():
    G, D = _generator(), mlp_d()
    D.eval()
    z = torch.randn(5, 4, dtype=torch.float64)
    mask = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    alpha = 0.7

    fake = G(z)
    loss = nn.functional.softplus(-D(guidance.apply(fake, mask, alpha))).mean()
    loss.backward()
    ours = _grads(G)

    G.zero_grad()
    fake = G(z)
    (dfake,) = torch.autograd.grad(nn.functional.softplus(-D(fake)).mean(), fake, retain_graph=True)
    torch.autograd.backward(fake, grad_tensors=dfake * (1 + alpha * mask))
    for a, b in zip(ours, _grads(G)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_apply_is_identity_forward_broadcasts_and_detaches_the_mask():
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    mask = torch.rand(1, 4, 4, requires_grad=True)
    y = guidance.apply(x, mask, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (1 + 0.5 * mask.detach()).expand(3, 1, 4, 4))
    assert mask.grad is None
    x.grad = None
    guidance.apply(x, 1.0, 0.25).sum().backward()  # a scalar mask
    torch.testing.assert_close(x.grad, torch.full_like(x, 1.25))
    with pytest.raises(ValueError):
        guidance.apply(x, torch.rand(2, 1, 4, 4), 0.2)
    assert guidance.apply(x, mask, 0.0) is x


def _batch_with_fakes(fake_rows, n=6, seed=0):
    """Images whose mean is negative (scored fake by SignD) exactly at ``fake_rows``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64) * 0.5 + 0.1
    for r in fake_rows:
        x[r] = -x[r]
    return x


@pytest.mark.parametrize("fake_rows", [[1, 4], [3], []])
def test_selection_only_fake_scored_samples(fake_rows):
    D = SignD()
    x = _batch_with_fakes(fake_rows)
    guide = guidance.XAIGuidance("saliency", alpha=0.2, normalize="sample-minmax")
    out = guide(x, D)
    assert guide.last_selected.nonzero().view(-1).tolist() == fake_rows
    assert guide.stats["n_explained"] == len(fake_rows)
    assert guide.stats["explained"] == pytest.approx(len(fake_rows) / 6)
    unselected = ~guide.last_selected
    assert (guide.last_mask[unselected] == 0).all()
    if not fake_rows:
        assert out is x
    else:
        assert (guide.last_mask[guide.last_selected].amax(dim=(1, 2, 3)) == 1).all()


def test_scores_passed_in_decide_the_selection():
    D = SignD()
    x = _batch_with_fakes([])
    scores = torch.tensor([1.0, -1.0, 1.0, 1.0, -2.0, 3.0]).view(6, 1)  # SignD returns logits
    guide = guidance.XAIGuidance("saliency")
    guide(x, D, scores=scores)
    assert guide.last_selected.tolist() == [False, True, False, False, True, False]


def _hand_minmax(t):
    return (t - t.min()) / (t.max() - t.min())


def test_normalisations_by_hand():
    D = SignD()
    x = _batch_with_fakes([0, 2, 5])
    sel = torch.tensor([True, False, True, False, False, True])
    maps = explain.explain("saliency", D, x[sel], target="prob")

    guide = guidance.XAIGuidance("saliency", normalize="batch-minmax")
    guide(x, D)
    full = torch.ones_like(x)
    full[sel] = maps
    torch.testing.assert_close(guide.last_mask, _hand_minmax(full))  # the 1.0 fill takes part in the min-max

    guide = guidance.XAIGuidance("saliency", normalize="selected-minmax")
    guide(x, D)
    full = torch.ones_like(x)
    full[sel] = _hand_minmax(maps)
    torch.testing.assert_close(guide.last_mask, full)

    guide = guidance.XAIGuidance("saliency", normalize="sample-minmax")
    guide(x, D)
    full = torch.zeros_like(x)
    full[sel] = torch.stack([_hand_minmax(m) for m in maps])
    torch.testing.assert_close(guide.last_mask, full)
    torch.testing.assert_close(guide.last_maps, maps)


def test_constant_maps_normalise_to_zero():
    sel = torch.tensor([True, True])
    maps = torch.full((2, 1, 2, 2), 3.0)
    assert (guidance.normalize(maps, sel, "batch-minmax") == 0).all()
    assert (guidance.normalize(maps, sel, "sample-minmax") == 0).all()
    assert (guidance.normalize(maps, sel, "selected-minmax") == 0).all()
    assert (guidance.normalize(maps[:0], torch.tensor([False, False]), "batch-minmax") == 0).all()


def test_prior_modes(tmp_path):
    D = SignD()
    x = _batch_with_fakes([1, 3])
    sel = torch.zeros(6, dtype=torch.bool)
    sel[[1, 3]] = True
    prior = torch.linspace(0, 1, 64, dtype=torch.float64).view(1, 8, 8)
    base = guidance.XAIGuidance("saliency", normalize="sample-minmax")
    base(x, D)
    m = base.last_mask

    mult = guidance.XAIGuidance("saliency", normalize="sample-minmax", prior=prior)
    mult(x, D)
    torch.testing.assert_close(mult.last_mask, m * prior * sel.view(6, 1, 1, 1))

    add = guidance.XAIGuidance("saliency", normalize="sample-minmax", prior=prior, prior_mode="add")
    add(x, D)
    torch.testing.assert_close(add.last_mask[sel], (m[sel] + prior) / 2)
    assert (add.last_mask[~sel] == 0).all()

    rep = guidance.XAIGuidance("no-such-method", prior=prior, prior_mode="replace")
    rep(x, D)
    torch.testing.assert_close(rep.last_mask[sel], prior.expand(2, 1, 8, 8))
    assert (rep.last_mask[~sel] == 0).all()

    from PIL import Image

    path = tmp_path / "prior.png"
    Image.fromarray((torch.linspace(0, 255, 16 * 16).view(16, 16)).to(torch.uint8).numpy()).save(path)
    from_file = guidance.XAIGuidance("saliency", normalize="sample-minmax", prior=str(path))
    from_file(x, D)
    loaded = guidance.load_prior(path, (8, 8))
    assert loaded.shape == (1, 8, 8) and 0 <= loaded.min() and loaded.max() <= 1 and loaded[0, 0, 0] < loaded[0, 7, 7]
    torch.testing.assert_close(from_file.last_mask, m * loaded.double() * sel.view(6, 1, 1, 1))
    assert json.dumps(from_file.config())


def test_alpha_zero_leaves_gradients_bit_identical():
    G, D = _generator(), mlp_d()
    D.eval()
    z = torch.randn(6, 4, dtype=torch.float64)
    nn.functional.softplus(-D(G(z))).mean().backward()
    plain = _grads(G)
    G.zero_grad()
    guide = guidance.XAIGuidance("saliency", alpha=0.0, select="all")
    nn.functional.softplus(-D(guide(G(z), D))).mean().backward()
    for a, b in zip(plain, _grads(G)):
        assert torch.equal(a, b)


def test_guided_generator_gradient_uses_the_stored_mask():
    G, D = _generator(), mlp_d()
    D.eval()
    z = torch.randn(6, 4, dtype=torch.float64)
    guide = guidance.XAIGuidance("deeplift-shap", alpha=0.5, select="all",
                                 explain_kwargs={"baselines": torch.rand(3, 1, 8, 8, dtype=torch.float64)})  # fmt: skip
    nn.functional.softplus(-D(guide(G(z), D))).mean().backward()
    ours = _grads(G)
    G.zero_grad()
    fake = G(z)
    (dfake,) = torch.autograd.grad(nn.functional.softplus(-D(fake)).mean(), fake, retain_graph=True)
    torch.autograd.backward(fake, grad_tensors=dfake * (1 + 0.5 * guide.last_mask))
    for a, b in zip(ours, _grads(G)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert guide.stats["n_explained"] == len(z)
    # the batch min-max of the explained maps: its smallest value 0, its largest 1
    assert float(guide.last_mask.min()) == 0.0 and float(guide.last_mask.max()) == pytest.approx(1.0)


@pytest.mark.parametrize("explain_mode", ["eval", "train"])
def test_guidance_leaves_d_untouched(explain_mode):
    D = conv_bn_d()
    D.train()
    state = {k: v.clone() for k, v in D.state_dict().items()}
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 2 - 1
    guide = guidance.XAIGuidance("saliency", explain_mode=explain_mode)
    guide(x.requires_grad_(), D)
    assert D.training and all(m.training for m in D.modules())
    assert all(torch.equal(v, D.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in D.parameters())


def test_config_is_json_and_validates():
    guide = guidance.XAIGuidance(
        "lime", alpha=0.3, explain_kwargs={"n_samples": 50, "segmentation": "grid"}, transform=lambda t: t
    )
    cfg = json.loads(json.dumps(guide.config()))
    assert cfg["method"] == "lime" and cfg["alpha"] == 0.3 and cfg["normalize"] == "batch-minmax"
    assert cfg["select"] == "fake" and cfg["threshold"] == 0.5 and cfg["explain_kwargs"]["n_samples"] == 50
    assert cfg["target"] == "prob" and cfg["d_output"] == "auto" and cfg["start_epoch"] == 0
    assert cfg["patience"] == 50 and cfg["strict"] is False
    cfg = guidance.XAIGuidance("saliency", d_output="prob", start_epoch=3, patience=7, strict=True).config()
    assert (cfg["d_output"], cfg["start_epoch"], cfg["patience"], cfg["strict"]) == ("prob", 3, 7, True)
    bad_settings = (
        {"select": "some"},
        {"normalize": "l2"},
        {"prior_mode": "max"},
        {"prior_mode": "replace"},
        {"target": "sigmoid"},
        {"d_output": "probability"},
        {"explain_mode": "test"},
        {"patience": 0},
    )
    for bad in bad_settings:
        with pytest.raises(ValueError):
            guidance.XAIGuidance("saliency", **bad)
    with pytest.raises(KeyError):
        guidance.XAIGuidance("nope")


def test_active_from_start_epoch_and_protocol():
    guide = guidance.XAIGuidance("saliency", start_epoch=2)
    assert [guide.active(e) for e in range(4)] == [False, False, True, True]
    assert isinstance(guide, guidance.Guidance)
    assert not isinstance(object(), guidance.Guidance)


def test_regimes_count_none_partial_and_all_batches_and_survive_a_resume():
    """Steps that explain no sample, some or all; in the partial one the paper's batch-minmax gives the explained
    samples masks near 0 and the others exactly 1 (hand computation for a linear D)."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    x = torch.randn(6, 1, 4, 4)
    w = D[1].weight.detach().view(1, 4, 4)
    guide = XAIGuidance("saliency", d_output="logit")
    partial = torch.tensor([-2.0, 1.0, -0.5, 3.0, 0.2, -1.0])
    for scores in (torch.full((6,), 2.0), partial, torch.full((6,), -1.0), partial):
        guide.masks(x, D, scores=scores)
    selected = torch.sigmoid(partial) < 0.5  # selection from the scores passed; maps from D's own outputs
    p = torch.sigmoid(D(x).detach().view(-1))
    maps = (p * (1 - p)).view(6, 1, 1, 1) * w.abs()
    full = torch.ones_like(x)
    full[selected] = maps[selected]
    mask = (full - full.min()) / (full.max() - full.min())
    got = guide.regimes()
    assert {k: got[k] for k in ("none", "partial", "all")} == {"none": 1, "partial": 2, "all": 1}
    assert got["partial_mask_mean_explained"] == pytest.approx(float(mask[selected].mean()), rel=1e-5)
    assert got["partial_mask_mean_others"] == pytest.approx(1.0)
    assert got["partial_mask_mean_explained"] < 0.3

    resumed = XAIGuidance("saliency", d_output="logit")
    resumed.load_state_dict(json.loads(json.dumps(guide.state_dict())))
    assert resumed.regimes() == got
    old = XAIGuidance("saliency")
    old.load_state_dict(guide.state_dict()["health"])  # a checkpoint written before the counts
    assert old.regimes() == {"none": 0, "partial": 0, "all": 0}
