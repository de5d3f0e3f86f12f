"""Batched LIME: finds the region D looks at, equals per-image weighted least squares, fast path is exact."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from tests.helpers_models import RegionD, ResidualD, mlp_d
from xaigan import explain
from xaigan.explain import segmentation
from xaigan.explain._base import ExplainedModel
from xaigan.explain.lime import fit_surrogate, lime, perturbation_weights


def _batch(n=4, size=16, seed=0, c=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g, dtype=torch.float64) * 2 - 1


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("segmentation_", ["grid", "quickshift"])
def test_region_superpixels_get_the_largest_weights(segmentation_):
    D = RegionD(16, region=(0, 8, 0, 8), weight=4.0)
    x = _batch(3) * 0.4 + 0.6  # pixels in [0.2, 1]: switching any of them off (to 0) lowers D's score
    maps, info = explain.explain(
        "lime",
        D,
        x,
        target="prob",
        segmentation=segmentation_,
        n_samples=200,
        generator=_gen(),
        return_info=True,
        fill="grey",
    )
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[:8, :8] = True
    for b in range(3):
        m = maps[b, 0]
        if segmentation_ == "grid":  # cells are inside or outside the region: weights separate cleanly
            assert m[inside].min() > m[~inside].abs().max()
        else:  # quickshift superpixels may straddle the border: the strongest pixel is inside
            assert inside.view(-1)[m.abs().argmax()]
        assert m[inside].mean() > 0  # a brighter region makes D say "real" more


def _reference_fit(z, y, w, counts, ridge):
    """Independent per-image fit: scipy lstsq on sqrt-weighted rows (+ sqrt(ridge) rows for the penalty)."""
    coefs, intercepts = [], []
    for b in range(z.shape[0]):
        S = int(counts[b])
        X = np.hstack([np.ones((z.shape[1], 1)), z[b, :, :S].numpy()])
        sw = np.sqrt(w[b].numpy())[:, None]
        A, r = X * sw, y[b].numpy() * sw[:, 0]
        if ridge > 0:
            A = np.vstack([A, np.hstack([np.zeros((S, 1)), np.sqrt(ridge) * np.eye(S)])])
            r = np.concatenate([r, np.zeros(S)])
        sol = scipy.linalg.lstsq(A, r)[0]
        coefs.append(np.pad(sol[1:], (0, z.shape[2] - S)))
        intercepts.append(sol[0])
    return torch.tensor(np.array(coefs)), torch.tensor(intercepts)


@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_batched_surrogate_equals_per_image_least_squares(ridge):
    D = mlp_d(1, 16, (8,))
    x = _batch(4)
    labels = segmentation.grid(x, 4)[0].clone()
    labels[1] = labels[1] // 2  # 8 superpixels, image 3 keeps 16, image 0: 4 (variable counts -> padding)
    labels[0] = labels[0] // 4
    labels[2] = labels[2] % 5
    model = ExplainedModel(D, target="prob").eval()
    maps, info = lime(model, x, segments=labels, n_samples=60, ridge=ridge, generator=_gen(1), return_info=True)
    assert info["counts"].tolist() == [4, 8, 5, 16]
    coef, intercept = _reference_fit(info["z"], info["y"], info["weights"], info["counts"], ridge)
    torch.testing.assert_close(info["coef"], coef, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(info["intercept"], intercept, atol=1e-8, rtol=1e-6)
    for b in range(4):  # padded features are off in every perturbation and get weight 0
        assert not info["z"][b, :, int(info["counts"][b]) :].any()
    torch.testing.assert_close(maps[:, 0], coef.gather(1, info["labels"].view(4, -1)).view(4, 16, 16))


def test_lime_kernel_matches_the_lime_package():
    lime_image = pytest.importorskip("lime.lime_image")
    from sklearn.metrics import pairwise_distances

    z = torch.randint(0, 2, (1, 50, 12), generator=_gen(3)).double()
    z[0, 0] = 1
    ours = perturbation_weights(z, torch.tensor([12]), 0.25)[0].numpy()
    d = pairwise_distances(z[0].numpy(), z[0, :1].numpy(), metric="cosine").ravel()
    theirs = lime_image.LimeImageExplainer(kernel_width=0.25).base.kernel_fn(d)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert ours[0] == 1.0


@pytest.mark.parametrize("fill", [0.0, "mean", "segment-mean"])
@pytest.mark.parametrize("segmentation_", ["grid", "quickshift"])
def test_fast_first_layer_equals_direct_forward(fill, segmentation_):
    D = mlp_d(1, 16, (12, 6))
    x = _batch(3)
    kw = dict(segmentation=segmentation_, n_samples=40, fill=fill, return_info=True, perturbations_per_eval=50)
    kw["target"] = "prob"
    _, fast = explain.explain("lime", D, x, generator=_gen(2), **kw)
    _, slow = explain.explain("lime", D, x, generator=_gen(2), fast_first_layer=False, **kw)
    torch.testing.assert_close(fast["y"], slow["y"], atol=1e-10, rtol=1e-8)
    D.eval()
    torch.testing.assert_close(fast["y"][:, 0], torch.sigmoid(D(x)[:, 0]).detach())  # z_0 = all on = the image


def test_fill_replaces_switched_off_superpixels():
    D = RegionD(16, region=(0, 16, 0, 16), weight=1.0)  # logit = mean of the image: y is easy to predict
    x = _batch(2)
    _, info = explain.explain("lime", D, x, segmentation="grid", n_samples=10, fill=0.5, target="logit",
                              generator=_gen(4), return_info=True)  # fmt: skip
    on = info["z"].gather(2, info["labels"].view(2, 1, -1).expand(2, 10, 256))
    expected = (on * x.view(2, 1, 256) + (1 - on) * 0.5).mean(-1)
    torch.testing.assert_close(info["y"], expected)


@pytest.mark.parametrize("fill", ["segment-mean", "mean", "grey", "black"])
def test_named_fills_show_what_they_say(fill):
    """What D sees of a switched-off superpixel, by hand: its own mean (the default, as the lime package's
    hide_color=None), the image's mean, 0 or -1; D = the mean of the image, so y is that of the filled image."""
    D = RegionD(16, region=(0, 16, 0, 16), weight=1.0)
    x = _batch(2)
    kw = dict(segmentation="grid", n_samples=10, target="logit", generator=_gen(4), return_info=True)
    _, info = explain.explain("lime", D, x, **({} if fill == "segment-mean" else {"fill": fill}), **kw)
    labels = info["labels"].view(2, 256)
    segment_mean = torch.stack(
        [torch.stack([x[b].view(-1)[labels[b] == s].mean() for s in labels[b]]) for b in range(2)]
    )
    shown = {
        "segment-mean": segment_mean,
        "mean": x.view(2, 256).mean(1, keepdim=True).expand(2, 256),
        "grey": torch.zeros(2, 256, dtype=x.dtype),
        "black": -torch.ones(2, 256, dtype=x.dtype),
    }[fill]
    on = info["z"].gather(2, labels.view(2, 1, 256).expand(2, 10, 256))
    expected = (on * x.view(2, 1, 256) + (1 - on) * shown.view(2, 1, 256)).mean(-1)
    torch.testing.assert_close(info["y"], expected)
    with pytest.raises(ValueError, match="'segment-mean', 'mean', 'grey' or 'black'"):
        explain.explain("lime", D, x, fill="white", segmentation="grid", n_samples=4)


def test_lime_is_reproducible_with_a_generator_and_works_without_a_chain():
    D = ResidualD(16)
    x = _batch(2)
    a = explain.explain("lime", D, x, segmentation="grid", n_samples=30, generator=_gen(7))
    b = explain.explain("lime", D, x, segmentation="grid", n_samples=30, generator=_gen(7))
    assert torch.equal(a, b) and a.shape == x.shape
    state = torch.random.get_rng_state()
    explain.explain("lime", D, x, segmentation="grid", n_samples=30, generator=_gen(8))
    assert torch.equal(state, torch.random.get_rng_state())


def test_segmentations_are_consecutive_and_sized_sensibly():
    x = _batch(3, size=32, c=3)
    for method in ("grid", "quickshift"):
        labels, counts = segmentation.segment(x, method)
        assert labels.shape == (3, 32, 32)
        for b in range(3):
            assert torch.equal(torch.unique(labels[b]), torch.arange(int(counts[b])))
    assert segmentation.grid(x, 4)[1].tolist() == [64, 64, 64]
    smooth = torch.nn.functional.avg_pool2d(_batch(4, size=34), 3, 1)  # blurred noise, 32x32 grey
    counts = segmentation.quickshift(smooth)[1]
    assert (counts >= 10).all() and (counts <= 100).all()


def test_grey_quickshift_on_lightness_equals_skimage_on_rgb():
    from skimage.segmentation import quickshift

    x = torch.nn.functional.avg_pool2d(_batch(4, size=34, seed=3), 3, 1).float()
    labels, counts = segmentation.quickshift(x)
    for b in range(4):
        rgb = np.repeat(((x[b, 0].numpy().astype(np.float64) + 1) / 2)[..., None], 3, axis=2)
        ref = quickshift(rgb, **segmentation.QUICKSHIFT_DEFAULTS)
        assert np.array_equal(np.unique(ref, return_inverse=True)[1].reshape(32, 32), labels[b].numpy())


def test_fit_surrogate_recovers_an_exact_linear_model():
    z = torch.randint(0, 2, (2, 40, 5), generator=_gen(5)).double()
    true = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0], [0.2, 0.1, -0.3, 0.0, 0.0]], dtype=torch.float64)
    y = (z * true.unsqueeze(1)).sum(-1) + torch.tensor([[0.7], [-0.1]], dtype=torch.float64)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    z = z * valid.unsqueeze(1)
    coef, intercept = fit_surrogate(z, y, torch.rand(2, 40, generator=_gen(6), dtype=torch.float64) + 0.1, valid, 0.0)
    torch.testing.assert_close(coef, true * valid)
    torch.testing.assert_close(intercept, torch.tensor([0.7, -0.1], dtype=torch.float64))
