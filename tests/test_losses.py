"""The GAN losses, top-k training and acceptance weighting against hand computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from xaigan import config as cfg_mod
from xaigan.guidance import XAIGuidance
from xaigan.settings import ConfigError
from xaigan.train import gan_step, losses
from xaigan.train.weights import SampleWeights, sample_weights, topk_rate

B, NOISE = 16, 5


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("loss", ["bce-smoothed", "ns", "hinge"])
def test_each_loss_matches_its_formula_by_hand(loss):
    real, fake = [2.0, -0.5, 0.3], [-1.5, 0.8, 0.0]
    t = lambda v: torch.tensor(v, dtype=torch.float64).view(-1, 1)  # noqa: E731
    got_d = float(losses.d_loss(loss, t(real), t(fake), (0.9, 0.1), "logit"))
    got_g = float(losses.g_loss(loss, t(fake), 0.9, "logit"))

    def bce(s, y):
        p = _sig(s)
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    if loss == "hinge":
        want_d = mean([max(0, 1 - s) for s in real]) + mean([max(0, 1 + s) for s in fake])
        want_g = -mean(fake)
    else:
        yr, yf, yg = (0.9, 0.1, 0.9) if loss == "bce-smoothed" else (1.0, 0.0, 1.0)
        want_d = mean([bce(s, yr) for s in real]) + mean([bce(s, yf) for s in fake])
        want_g = mean([bce(s, yg) for s in fake])
    assert got_d == pytest.approx(want_d, rel=1e-12) and got_g == pytest.approx(want_g, rel=1e-12)
    w = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)
    weighted = float(losses.g_loss(loss, t(fake), 0.9, "logit", w))
    per = [-s for s in fake] if loss == "hinge" else [bce(s, 0.9 if loss == "bce-smoothed" else 1.0) for s in fake]
    assert weighted == pytest.approx(mean([wi * li for wi, li in zip(w.tolist(), per)]), rel=1e-12)


def test_bce_losses_on_a_probability_d_equal_those_on_its_logit():
    s = torch.tensor([[1.2], [-0.3], [0.1]], dtype=torch.float64)
    for loss in ("bce-smoothed", "ns"):
        a = losses.d_loss(loss, s, -s, (0.9, 0.1), "logit"), losses.g_loss(loss, s, 0.9, "logit")
        b = losses.d_loss(loss, torch.sigmoid(s), torch.sigmoid(-s), (0.9, 0.1), "prob")
        torch.testing.assert_close(a[0], b)
        torch.testing.assert_close(a[1], losses.g_loss(loss, torch.sigmoid(s), 0.9, "prob"))


def test_hinge_refuses_a_probability_d(tmp_path):
    with pytest.raises(ConfigError, match="hinge needs D's raw score"):
        losses.check_loss("hinge", "prob")
    from xaigan import data, train
    from xaigan.train import Trainer

    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    G = nn.Sequential(nn.Linear(NOISE, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Sigmoid())
    with pytest.raises(ConfigError, match="hinge"):
        Trainer(G, D, data.ImageData(images, torch.full((32,), -1)), _cfg(loss="hinge"), tmp_path / "r")
    assert train  # the package the trainer comes from


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(NOISE, 32), nn.LeakyReLU(0.2), nn.Linear(32, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return G, D


def _cfg(**kw):
    return cfg_mod.resolve({"noise_dim": NOISE, "g_clip": 0.0, **kw})


def _noise(n: int) -> torch.Tensor:
    return torch.randn(n, NOISE)


def _g_update(G, D, cfg, guide=None, weights=None, seed=3):
    """G's update from one gan_step with SGD(lr=1) for G (minus G's gradient) and a frozen D; and the noise used."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=1.0), torch.optim.SGD(D.parameters(), lr=0.0)
    real = torch.rand(B, 1, 8, 8) * 2 - 1
    torch.manual_seed(seed)
    before = [p.detach().clone() for p in G.parameters()]
    gan_step(G, D, opt_g, opt_d, real, cfg, None, guide, _noise, weights)
    return [b - p.detach() for b, p in zip(before, G.parameters())]


def _hand_gradient(G, D, cfg, per_sample_weight, seed=3):
    """G's gradient of the mean of weighted per-sample terms, the weights a function of D's scores (by hand)."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    torch.manual_seed(seed)
    _noise(B)  # the D step's noise
    z = _noise(B)
    scores = D(G(z))
    w = per_sample_weight(scores.detach().view(-1))
    if cfg.loss == "hinge":
        terms = -scores.view(-1)
    else:
        y = cfg.g_target if cfg.loss == "bce-smoothed" else 1.0
        terms = nn.functional.binary_cross_entropy_with_logits(scores.view(-1), torch.full((B,), y), reduction="none")
    (w * terms).mean().backward()
    return [p.grad for p in G.parameters()]


@pytest.mark.parametrize("loss", ["bce-smoothed", "ns", "hinge"])
def test_topk_keeps_the_k_samples_d_scores_highest(loss):
    G, D = _nets()
    cfg = _cfg(loss=loss, g_topk=True)
    weights = sample_weights(cfg, "logit", epoch=40)  # 0.99**40 = 0.669: k = int(16 * 0.669) = 10
    assert weights.keep == pytest.approx(0.99**40) and int(B * weights.keep) == 10

    def hand(s):
        w = torch.zeros_like(s)
        w[torch.argsort(s, descending=True)[:10]] = B / 10
        return w

    for got, want in zip(_g_update(G, D, cfg, weights=weights), _hand_gradient(G, D, cfg, hand)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["bce-smoothed", "ns", "hinge"])
def test_acceptance_weight_counts_the_accepted_samples_one_plus_a(loss):
    G, D = _nets(seed=1)
    with torch.no_grad():  # about half the fakes accepted
        D[3].bias -= D(G(torch.randn(64, NOISE))).median()
    cfg = _cfg(loss=loss, g_accept_weight=0.6)
    weights = sample_weights(cfg, "logit", epoch=0)
    got = _g_update(G, D, cfg, weights=weights)
    want = _hand_gradient(G, D, cfg, lambda s: 1 + 0.6 * (s >= 0).float())  # sigmoid(s) >= 0.5 <=> s >= 0
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_the_weights_multiply_with_each_other_and_with_the_guidance():
    s = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    both = SampleWeights(keep=0.5, accept=1.0, d_output="logit", threshold=0.5)(s)
    torch.testing.assert_close(both, torch.tensor([2.0 * 2, 0.0, 2.0 * 2, 0.0]))
    G, D = _nets(seed=2)
    cfg = _cfg(g_topk=True, xai="saliency", xai_use="weight", xai_select="all")
    guide = XAIGuidance("saliency", alpha=0.5, use="weight", select="all", d_output="logit")
    weights = SampleWeights(keep=0.5, accept=0.0, d_output="logit", threshold=0.5)
    _g_update(G, D, cfg, guide=guide, weights=weights)
    guided = guide.loss_weights()

    def hand(scores):
        w = torch.zeros_like(scores)
        w[torch.argsort(scores, descending=True)[: B // 2]] = 2.0
        return w * guided

    for got, want in zip(
        _g_update(G, D, cfg, guide=copy.deepcopy(guide), weights=weights), _hand_gradient(G, D, cfg, hand)
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_topk_in_the_shared_saliency_step_equals_the_separate_step():
    G, D = _nets(seed=4)
    cfg = _cfg(g_topk=True)
    weights = SampleWeights(keep=0.6, accept=0.3, d_output="logit", threshold=0.5)
    kw = dict(alpha=0.7, select="all", normalize="sample-minmax", d_output="logit")
    shared = _g_update(G, D, cfg, guide=XAIGuidance("saliency", explain_mode="step", **kw), weights=weights)
    separate = _g_update(G, D, cfg, guide=XAIGuidance("saliency", explain_mode="train", **kw), weights=weights)
    for a, b in zip(shared, separate):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_topk_schedule_follows_the_paper():
    assert [topk_rate(e, 0.99, 0.5) for e in (0, 1)] == [1.0, 0.99]
    assert topk_rate(68, 0.99, 0.5) == pytest.approx(0.99**68) and topk_rate(69, 0.99, 0.5) == 0.5
    assert (
        sample_weights(_cfg(), "logit", 5) is None
        and sample_weights(_cfg(g_topk=True), "logit", 0)(torch.zeros(4, 1)) is None
    )


@pytest.mark.parametrize("loss", ["bce-smoothed", "ns", "hinge"])
def test_guidance_selects_what_each_loss_calls_rejected(loss):
    """Rejected: probability of real below the threshold, i.e. a logit or hinge score below logit(threshold)."""
    G, D = _nets(seed=5)
    with torch.no_grad():
        D[3].bias -= D(G(torch.randn(64, NOISE))).median()
    torch.manual_seed(3)
    _noise(B)
    with torch.no_grad():
        scores = D(G(_noise(B))).view(-1)
    for threshold in (0.5, float(torch.sigmoid(scores.quantile(0.3)))):
        guide = XAIGuidance("saliency", threshold=threshold, d_output="logit")
        _g_update(G, D, _cfg(loss=loss), guide=guide)
        cut = math.log(threshold / (1 - threshold))
        assert torch.equal(guide.last_selected, scores < cut) and 0 < int(guide.last_selected.sum()) < B
        assert torch.equal(losses.rejected(scores.view(-1, 1), "logit", threshold), scores < cut)
