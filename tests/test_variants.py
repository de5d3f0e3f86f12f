"""Explanation-guided variants (issue 13): each use, schedule and normalisation against a hand computation, the
shared step against separate passes, and the real-baseline integrated gradients against captum."""

import contextlib
import copy
import math

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from tests.test_shared_step import NOISE, B, _cfg, _nets, _step
from xaigan import config as cfg_mod
from xaigan.config import ConfigError
from xaigan.explain import explain
from xaigan.guidance import XAIGuidance
from xaigan.guidance.masks import normalize, shuffle_pixels
from xaigan.guidance.uses import factor, scheduled_alpha, signed_unit


def test_factor_of_each_use_by_hand():
    mask = torch.tensor([[0.0, 0.5], [1.0, 0.25], [0.2, 0.2]]).view(3, 1, 1, 2)
    selected = torch.tensor([True, True, False])
    a = 0.4
    hand = {
        "amplify": [[1.0, 1.2], [1.4, 1.1], [1.08, 1.08]],  # the paper: every sample as its mask says
        "suppress": [[1.0, 0.8], [0.6, 0.9], [1.0, 1.0]],
        "replace": [[0.0, 0.5], [1.0, 0.25], [1.0, 1.0]],
        "weight": [[1.1, 1.1], [1.25, 1.25], [1.0, 1.0]],  # 1 + a * mean(mask of the sample)
        "signed": [[1.0, 1.2], [1.4, 1.1], [1.0, 1.0]],
    }
    for use, expected in hand.items():
        out = factor(use, mask, a, selected).view(3, 2)
        torch.testing.assert_close(out, torch.tensor(expected), msg=use)
    with pytest.raises(ValueError, match="xai_use"):
        factor("boost", mask, a, selected)


def test_signed_unit_scales_each_map_by_its_largest_magnitude():
    maps = torch.tensor([[-2.0, 1.0, 0.5], [0.0, 0.0, 0.0], [3.0, -1.5, 0.0]]).view(3, 1, 1, 3)
    expected = torch.tensor([[-1.0, 0.5, 0.25], [0.0, 0.0, 0.0], [1.0, -0.5, 0.0]])
    torch.testing.assert_close(signed_unit(maps).view(3, 3), expected)


def test_schedules_by_hand():
    # guided epochs 2..5 of 6 (n = 4)
    assert [scheduled_alpha(1.0, "constant", e, 2, 6) for e in range(2, 6)] == [1.0] * 4
    assert [scheduled_alpha(1.0, "ramp-up", e, 2, 6) for e in range(2, 6)] == [0.25, 0.5, 0.75, 1.0]
    assert [scheduled_alpha(1.0, "ramp-down", e, 2, 6) for e in range(2, 6)] == [1.0, 0.75, 0.5, 0.25]
    assert scheduled_alpha(2.0, "ramp-up", 0, 0, 1) == 2.0


def test_per_sample_normalisations_by_hand():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 1, 5, 5)) ** 3
    selected = torch.tensor([True, False, True, True])
    t = torch.tensor(maps)
    out = normalize(t, selected, "sample-percentile", clip=90.0)
    assert torch.all(out[1] == 0)
    for row, m in zip(out[selected], maps):
        lo, hi = m.min(), np.percentile(m, 90.0)
        np.testing.assert_allclose(row.numpy(), np.clip((m - lo) / (hi - lo), 0, 1), rtol=1e-12)
    out = normalize(t, selected, "softmax", temperature=0.5)
    assert torch.all(out[1] == 0)
    for row, m in zip(out[selected], maps):
        np.testing.assert_allclose(row.numpy(), np.exp((m / m.max() - 1) / 0.5), rtol=1e-12)
        assert row.max() == pytest.approx(1.0)
    # a map without a positive value (all zero, or signed and all negative) gives a zero mask, not NaN
    flat_maps = torch.stack([t[0], torch.zeros_like(t[1]), -t[2] - 0.1])
    out = normalize(flat_maps, selected, "softmax", temperature=0.5)
    assert torch.all(out[2] == 0) and torch.all(out[3] == 0) and torch.isfinite(out).all()
    np.testing.assert_allclose(out[0].numpy(), np.exp((maps[0] / maps[0].max() - 1) / 0.5), rtol=1e-12)


def _d(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 1)).double()


@pytest.mark.parametrize("use", ["amplify", "suppress", "replace", "weight", "signed"])
def test_guided_gradient_of_each_use_matches_captum_by_hand(use):
    """G's gradient at the image under each use, from captum's saliency and the formulas written out."""
    D = _d()
    x = torch.randn(10, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        D[-1].bias -= D(x).median()  # about half the samples "fake"
    guide = XAIGuidance("saliency", alpha=0.6, use=use, normalize="sample-minmax", target="logit", d_output="logit")
    if use == "signed":
        guide.explain_kwargs["abs"] = False
    fake = x.clone().requires_grad_(True)
    out = D(guide(fake, D)).reshape(-1)
    weights = guide.loss_weights()
    assert (weights is not None) == (use == "weight")
    (out * weights if weights is not None else out).sum().backward()  # weight: G's loss is weighted per sample
    xx = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(D(xx).sum(), xx)
    selected = (torch.sigmoid(D(x)) < 0.5).reshape(-1)
    sal = Saliency(D).attribute(x.detach(), abs=use != "signed").detach()
    expected = plain.clone()
    for i in torch.nonzero(selected).reshape(-1):
        s = sal[i]
        m = (s - s.min()) / (s.max() - s.min())
        f = {
            "amplify": 1 + 0.6 * m,
            "suppress": 1 - 0.6 * m,
            "replace": m,
            "weight": 1 + 0.6 * m.mean(),
            "signed": 1 + 0.6 * s / s.abs().max(),
        }[use]
        expected[i] = plain[i] * f
    assert 0 < int(selected.sum()) < 10
    torch.testing.assert_close(fake.grad, expected, rtol=1e-10, atol=1e-12)


def test_signed_saliency_strengthens_exactly_the_steps_that_brighten_a_pixel():
    """Why the screen's ``signed`` runs drifted bright (docs/variants.md): with a gradient attribution, a pixel's
    signed saliency has the sign of G's own step there, so (1 + alpha*A) > 1 wherever G's step raises the pixel and
    < 1 wherever it lowers it. Every component of G's step raises D's score to first order, so "strengthen what raises
    D's score" degenerates into a bias towards brighter pixels."""
    D = _d(1)
    x = torch.randn(12, 1, 4, 4, dtype=torch.float64)
    guide = XAIGuidance("saliency", alpha=0.5, use="signed", select="all", target="prob", d_output="logit")
    guide.explain_kwargs["abs"] = False
    fake = x.clone().requires_grad_(True)
    D(guide(fake, D)).sum().backward()  # G raises D's logit: its step is +gradient
    xx = x.clone().requires_grad_(True)
    (step,) = torch.autograd.grad(D(xx).sum(), xx)
    f = fake.grad / step
    moving = step.abs() > 1e-12
    assert bool(moving.all())
    assert torch.equal(f[moving] > 1, step[moving] > 0)
    assert float(fake.grad.sum()) > float(step.sum())  # the reshaped step adds brightness


@pytest.mark.parametrize("use", ["suppress", "replace", "weight", "signed"])
@pytest.mark.parametrize("normalize_", ["sample-percentile", "softmax", "selected-minmax"])
def test_shared_step_equals_separate_passes_for_each_use(use, normalize_):
    G, D = _nets(prob=False)
    real = torch.rand(B, 1, 8, 8) * 2 - 1
    cfg = _cfg(d_output="logit")
    with torch.no_grad():
        D[4].bias -= D(G(torch.randn(B, NOISE))).median()
    kw = dict(alpha=0.7, use=use, normalize=normalize_, target="prob", d_output="auto")
    kw["explain_kwargs"] = {"abs": False} if use == "signed" else {}
    separate = XAIGuidance("saliency", explain_mode="train", **kw)
    shared = XAIGuidance("saliency", explain_mode="step", **kw)
    assert shared.shares_step(D)
    Ga, Gb = _step(G, D, real, cfg, separate), _step(G, D, real, cfg, shared)
    assert 0 < shared.stats["n_explained"] < B
    for a, b, g0 in zip(Ga.parameters(), Gb.parameters(), G.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
        assert not torch.equal(a, g0)


def test_integrated_gradients_from_real_images_matches_captum():
    D = _d(1)
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    real = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 2 - 1
    maps = explain("integrated-gradients-real", D, x, baselines=real, n_steps=32)
    refs = real[torch.arange(5) % 3]
    expected = IntegratedGradients(D).attribute(x, baselines=refs, n_steps=32, method="gausslegendre")
    torch.testing.assert_close(maps, expected, rtol=1e-6, atol=1e-9)
    # completeness: the attributions of each sample add up to D(x) - D(its real reference)
    torch.testing.assert_close(maps.flatten(1).sum(1), (D(x) - D(refs)).reshape(-1).detach(), rtol=1e-4, atol=1e-6)


def test_config_of_the_variants():
    guide = _built_guidance({"xai_use": "signed", "xai_schedule": "ramp-up", "epochs": 4})
    assert guide.explain_kwargs["abs"] is False and guide.use == "signed" and guide.end_epoch == 4
    guide.at_epoch(3)
    assert guide.alpha_now == pytest.approx(0.2)
    guide.at_epoch(2)
    assert guide.alpha_now == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="alpha <= 1"):
        cfg_mod.resolve({"xai": "saliency", "xai_use": "suppress", "alpha": 2.0})
    with pytest.raises(ConfigError):
        cfg_mod.resolve({"xai": "saliency", "xai_clip": 0})
    assert math.isclose(cfg_mod.resolve({}).xai_temperature, 0.25)


def test_shuffle_permutes_each_maps_pixels_alike_across_its_channels():
    maps = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    torch.manual_seed(0)
    out = shuffle_pixels(maps)
    flat, shuffled = maps.reshape(4, 3, 25), out.reshape(4, 3, 25)
    orders = []
    for i in range(4):
        # where each of channel 0's values went, found by value (they are distinct)
        order = [int(torch.nonzero(flat[i, 0] == v)[0]) for v in shuffled[i, 0]]
        assert sorted(order) == list(range(25)) and order != list(range(25))
        for c in range(3):
            torch.testing.assert_close(shuffled[i, c], flat[i, c, order], rtol=0, atol=0)
        orders.append(tuple(order))
    assert len(set(orders)) == 4  # one permutation per map, not one for the batch
    assert shuffle_pixels(maps[:0]).shape == (0, 3, 5, 5)


def _plain_and_control(use, **control):
    """A plain guidance and its control (same settings plus ``control``) on one batch where D rejects some but not
    all samples: both guidances, their masks and the (shared) selection."""
    D = _d(2)
    x = torch.randn(10, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        D[-1].bias -= D(x).median()
    kw = dict(alpha=0.6, use=use, normalize="sample-minmax", target="logit", d_output="logit")
    plain, other = XAIGuidance("saliency", **kw), XAIGuidance("saliency", **control, **kw)
    m0, m1 = plain.masks(x, D), other.masks(x, D)
    selected = plain.last_selected
    assert torch.equal(selected, other.last_selected) and 0 < int(selected.sum()) < 10
    return plain, other, m0, m1, selected


def _built_guidance(settings):
    """The guidance the trainer builds from a config with ``settings``."""
    from xaigan.train import build_guidance

    cfg = cfg_mod.resolve({"xai": "saliency", **settings})
    return build_guidance(cfg, torch.zeros(4, 1, 8, 8, dtype=torch.uint8), None, torch.device("cpu"))


@pytest.mark.parametrize("use", ["amplify", "weight"])
def test_shuffled_guidance_is_the_same_mask_values_in_other_places(use):
    """The placebo control keeps each explained sample's mask values and moves them; a use that only reads each
    mask's mean (weight) is unchanged by it."""
    plain, placebo, m0, m1, selected = _plain_and_control(use, shuffle=True)
    a, b = m0[selected].flatten(1), m1[selected].flatten(1)
    torch.testing.assert_close(a.sort(1).values, b.sort(1).values, rtol=0, atol=0)
    assert not torch.equal(a, b)
    if use == "weight":
        torch.testing.assert_close(plain.loss_weights(), placebo.loss_weights())
    assert _built_guidance({"xai_shuffle": True}).shuffle


def test_a_record_trained_before_the_variants_existed_is_the_same_run(tmp_path):
    """Settings added later (xai_use, ...) were at their defaults in a run whose config.yaml lacks them."""
    from xaigan.experiments import load_grid
    from xaigan.experiments.record import check_same_config
    from xaigan.rundir import RunDir

    path = tmp_path / "grid.yaml"
    path.write_text("name: g\nbase: {dataset: mnist}\nbudgets: {quick: {epochs: 2}}\ncells: {s: {xai: saliency}}\n")
    (spec,) = load_grid(path).runs(tmp_path / "out", "quick", [0])
    old = {k: v for k, v in spec.cfg.to_dict().items() if k not in ("xai_use", "xai_schedule", "xai_clip")}
    RunDir(spec.run_dir).write_config(old)
    check_same_config(spec)  # no error
    RunDir(spec.run_dir).write_config({**old, "xai_use": "suppress"})
    with pytest.raises(ConfigError, match="xai_use"):
        check_same_config(spec)


def _folder_cfg(tmp_path, **settings):
    """A tiny run's config on 32 random 32x32 images (batch 16, no progress bar or TensorBoard)."""
    from tests.conftest import write_image_folder

    write_image_folder(tmp_path / "imgs", n=32, size=32, mode="L")
    base = {"dataset": f"folder:{tmp_path / 'imgs'}", "batch_size": 16, "progress": False, "tensorboard": False}
    return cfg_mod.resolve({**base, **settings})


@pytest.mark.slow
@pytest.mark.parametrize(("schedule", "expected"), [("ramp-up", [0.15, 0.3]), ("ramp-down", [0.3, 0.15])])
def test_training_follows_the_schedule(tmp_path, schedule, expected):
    from xaigan.rundir import RunDir
    from xaigan.train import from_config

    cfg = _folder_cfg(tmp_path, epochs=4, xai="saliency", alpha=0.3, xai_select="all", xai_schedule=schedule)
    from_config(cfg, tmp_path / "run").fit()
    by_epoch = {}
    for r in RunDir(tmp_path / "run").read_metrics():
        if "xai_alpha" in r:
            by_epoch.setdefault(r["epoch"], set()).add(r["xai_alpha"])
    assert sorted(by_epoch) == [2, 3] and all(len(v) == 1 for v in by_epoch.values())
    assert [by_epoch[2].pop(), by_epoch[3].pop()] == pytest.approx(expected)


def test_explained_cutout_cuts_where_d_looks_most():
    """The square is the one with the largest summed saliency (brute force over every position, from captum)."""
    from xaigan.augment import ExplainedCutout

    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.rand(6, 1, 12, 12) * 2 - 1
    cut = ExplainedCutout(D, ratio=0.25)
    where = cut.where(x)
    sal = Saliency(nn.Sequential(D, nn.Sigmoid())).attribute(x.clone(), abs=True).detach()[:, 0]
    for i in range(6):
        sums = {(t, left): sal[i, t : t + 3, left : left + 3].sum().item() for t in range(10) for left in range(10)}
        t, left = max(sums, key=sums.get)
        expected = torch.zeros(12, 12, dtype=torch.bool)
        expected[t : t + 3, left : left + 3] = True
        assert torch.equal(where[i, 0], expected)
    xx = x.clone().requires_grad_(True)
    cut(xx).sum().backward()
    assert torch.equal(xx.grad, (~where).float())  # differentiable outside the square, zero inside
    before = {k: v.clone() for k, v in D.state_dict().items()}
    D.train()
    cut(x)
    assert D.training and all(torch.equal(v, before[k]) for k, v in D.state_dict().items())


def test_explained_cutout_in_a_training_run(tmp_path):
    from xaigan.augment import DiffAugment, ExplainedCutout
    from xaigan.train import from_config

    cfg = _folder_cfg(tmp_path, epochs=1, xai_cutout=0.25, diffaugment="translation")
    trainer = from_config(cfg, tmp_path / "run")
    assert isinstance(trainer.augment, ExplainedCutout) and isinstance(trainer.augment.then, DiffAugment)
    assert trainer.augment.D is trainer.D
    assert trainer.fit()["steps"] == 2


def test_weight_use_weights_each_samples_loss_with_a_batchnorm_d():
    """With BatchNorm in train mode the samples are coupled: G's step weights each sample's loss (not its gradient),
    checked against the weighted loss written out and differentiated by autograd."""
    import torch.nn.functional as F

    from tests.helpers_models import conv_bn_d
    from xaigan.train.step import GStep

    D = conv_bn_d(dtype=torch.float32)  # the G step explains and scores in float32
    D.features[5].p = 0.0  # no dropout: the reference replays the same function
    D.train()
    x = torch.randn(8, 1, 8, 8)
    guide = XAIGuidance("saliency", alpha=1.5, use="weight", normalize="sample-minmax", select="all", d_output="logit")
    cfg = cfg_mod.resolve({"g_clip": 0.0})
    fake = x.clone().requires_grad_(True)
    opt = torch.optim.SGD([fake], lr=0.0)
    state = copy.deepcopy(D.state_dict())
    GStep(D, cfg, "logit", lambda t: t, contextlib.nullcontext(), opt)(fake, guide)
    w = guide.loss_weights()
    assert w.shape == (8,) and torch.all(w > 1) and not torch.allclose(w, w[0])
    D.load_state_dict(state)  # the G step's forward moved the running statistics; replay from the same state
    ref = x.clone().requires_grad_(True)
    out = D(ref).reshape(-1)
    loss = (w * F.binary_cross_entropy_with_logits(out, torch.full_like(out, cfg.g_target), reduction="none")).mean()
    loss.backward()
    torch.testing.assert_close(fake.grad, ref.grad, rtol=1e-5, atol=1e-7)
    D.load_state_dict(state)
    plain = x.clone().requires_grad_(True)
    out = D(plain).reshape(-1)
    F.binary_cross_entropy_with_logits(out, torch.full_like(out, cfg.g_target)).backward()
    scaled = plain.grad * w.view(-1, 1, 1, 1)  # what scaling each sample's gradient would give: not the same here
    assert not torch.allclose(scaled, ref.grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("use", ["amplify", "weight"])
def test_flat_control_gives_every_explained_sample_the_mean_mask(use):
    """The content-free control: each explained sample's mask is the mean over all explained samples' masks (a
    hand computation from the plain guidance's masks); the others keep theirs; for weight every explained sample
    gets the same weight 1 + alpha * that mean."""
    _, flat, m0, m1, sel = _plain_and_control(use, flat=True)
    level = sum(float(m0[i].sum()) for i in range(10) if sel[i]) / (int(sel.sum()) * m0[0].numel())
    torch.testing.assert_close(m1[sel], torch.full_like(m1[sel], level))
    torch.testing.assert_close(m1[~sel], m0[~sel], rtol=0, atol=0)
    assert float(m0[sel].std()) > 0.1  # the plain masks did vary
    if use == "weight":
        w = flat.loss_weights()
        torch.testing.assert_close(w[sel], torch.full_like(w[sel], 1 + 0.6 * level))
        torch.testing.assert_close(w[~sel], torch.ones_like(w[~sel]))
    with pytest.raises(ValueError, match="at most one"):
        XAIGuidance("saliency", shuffle=True, flat=True)
    with pytest.raises(ConfigError, match="at most one"):
        cfg_mod.resolve({"xai": "saliency", "xai_shuffle": True, "xai_flat": True})
    assert _built_guidance({"xai_flat": True}).flat


@pytest.mark.parametrize("use", ["amplify", "weight"])
def test_flat_control_in_the_shared_step_equals_separate_passes(use):
    """The control takes the same path in G's shared saliency step as in a separate explanation pass."""
    G, D = _nets(prob=False)
    real = torch.rand(B, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        D[4].bias -= D(G(torch.randn(B, NOISE))).median()
    kw = dict(alpha=0.7, use=use, normalize="sample-minmax", target="prob", d_output="auto", flat=True)
    separate = XAIGuidance("saliency", explain_mode="train", **kw)
    shared = XAIGuidance("saliency", explain_mode="step", **kw)
    cfg = _cfg(d_output="logit")
    Ga, Gb = _step(G, D, real, cfg, separate), _step(G, D, real, cfg, shared)
    assert 0 < shared.stats["n_explained"] < B
    for a, b, g0 in zip(Ga.parameters(), Gb.parameters(), G.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
        assert not torch.equal(a, g0)


def test_explainers_that_drop_the_sign_by_default_declare_how_to_keep_it():
    """The signed use turns on what each explainer declares (no probing of signatures in the factory); an
    explainer that takes ``abs`` must declare ``signed={"abs": False}``, or the signed use would get |maps|."""
    import inspect

    from xaigan import explain

    for name in explain.available():
        info = explain.info(name)
        if "abs" in inspect.signature(info.fn).parameters:
            assert info.signed == {"abs": False}, name
        else:
            assert info.signed == {}, name
