"""``explain_mode="step"``: a saliency guidance read from G's own pass of D, against separate passes and a
per-sample hand computation."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers_models import conv_bn_d
from xaigan import config as cfg_mod
from xaigan.explain import resolve_mode
from xaigan.guidance import XAIGuidance
from xaigan.guidance.gradient import scale
from xaigan.train import gan_step

B, NOISE = 24, 6


def _nets(prob: bool, dropout: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(NOISE, 32), nn.LeakyReLU(0.2), nn.Linear(32, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
    layers = [nn.Flatten(), nn.Linear(64, 32), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(32, 1)]
    D = nn.Sequential(*layers, *([nn.Sigmoid()] if prob else []))
    return G, D


def _cfg(**kw):
    return cfg_mod.resolve({"noise_dim": NOISE, "g_clip": 0.0, **kw})


def _step(G, D, real, cfg, guide, seed=5):
    """One gan_step with SGD(lr=1) for G (the update is minus G's gradient) and a frozen D (lr 0)."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    D.train()
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=1.0), torch.optim.SGD(D.parameters(), lr=0.0)
    torch.manual_seed(seed)
    gan_step(G, D, opt_g, opt_d, real, cfg, None, guide)
    return G


@pytest.mark.parametrize("prob", [False, True])
@pytest.mark.parametrize("target", ["prob", "logit", "output"])
@pytest.mark.parametrize("normalize", ["batch-minmax", "selected-minmax", "sample-minmax"])
@pytest.mark.parametrize("select", ["fake", "all"])
def test_shared_step_equals_separate_passes(prob, target, normalize, select):
    G, D = _nets(prob)
    real = torch.rand(B, 1, 8, 8) * 2 - 1
    cfg = _cfg(d_output="prob" if prob else "logit")
    # D's bias shifted so that about half the fakes are "fake": a partially explained batch
    with torch.no_grad():
        fake = G(torch.randn(B, NOISE))
        raw = D[:5](fake) if prob else D(fake)
        D[4].bias -= raw.median()
    kw = dict(alpha=0.7, select=select, normalize=normalize, target=target, d_output="auto")
    separate = XAIGuidance("saliency", explain_mode="train", **kw)  # no dropout: the same function as "step"
    shared = XAIGuidance("saliency", explain_mode="step", **kw)
    assert not separate.shares_step(D) and shared.shares_step(D)
    Ga, Gb = _step(G, D, real, cfg, separate), _step(G, D, real, cfg, shared)
    assert 0 < shared.stats["n_explained"] <= B
    if select == "fake":
        assert shared.stats["n_explained"] < B
    assert shared.stats["n_explained"] == separate.stats["n_explained"]
    torch.testing.assert_close(shared.last_mask, separate.last_mask, atol=1e-6, rtol=1e-5)
    moved = False
    for (name, a), b, g0 in zip(Ga.named_parameters(), Gb.parameters(), G.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5, msg=name)
        moved |= not torch.equal(a, g0)
    assert moved


def test_shared_step_with_dropout_matches_a_per_sample_reference():
    """Dropout on: the shared step explains the very forward pass G's loss comes from. Reference: the same random
    draws replayed, each sample's saliency from its own backward pass, the paper's batch min-max, by hand."""
    G, D = _nets(prob=False, dropout=0.3)
    real = torch.rand(B, 1, 8, 8) * 2 - 1
    cfg, alpha = _cfg(), 0.5
    with torch.no_grad():
        D.eval()
        D[4].bias -= D(G(torch.randn(B, NOISE))).median()
    guide = XAIGuidance("saliency", alpha=alpha, explain_mode="step", threshold=0.5)
    got = _step(G, D, real, cfg, guide, seed=11)

    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    D2.train()
    torch.manual_seed(11)
    with torch.no_grad():  # D's step: the same draws (noise, then dropout on the real and the fake batch)
        fake_d = G2(torch.randn(B, NOISE))
        D2(real), D2(fake_d)
    fake = G2(torch.randn(B, NOISE))
    x = fake.detach().requires_grad_(True)
    for p in D2.parameters():
        p.requires_grad_(False)
    out = D2(x)
    prob = torch.sigmoid(out).view(-1)
    maps = torch.zeros_like(x)
    for i in range(B):
        (g,) = torch.autograd.grad(prob[i], x, retain_graph=True)
        maps[i] = g[i].abs()
    selected = prob < 0.5
    assert 0 < int(selected.sum()) < B
    full = torch.ones_like(x)
    full[selected] = maps[selected]
    mask = (full - full.min()) / (full.max() - full.min())
    loss = F.binary_cross_entropy_with_logits(out, torch.full_like(out, cfg.g_target))
    (grad,) = torch.autograd.grad(loss, x)
    fake.backward(grad * (1 + alpha * mask))
    torch.testing.assert_close(guide.last_mask, mask, atol=1e-6, rtol=1e-5)
    for a, p0, g0 in zip(got.parameters(), G2.parameters(), G.parameters()):
        torch.testing.assert_close(a, g0 - p0.grad, atol=1e-6, rtol=1e-5)


def test_step_mode_is_batch_for_a_batchnorm_discriminator():
    D = conv_bn_d(dtype=torch.float32)
    assert resolve_mode(D, "step") == "batch"
    assert not XAIGuidance("saliency", explain_mode="step").shares_step(D)
    assert not XAIGuidance("deeplift", explain_mode="step").shares_step(_nets(False)[1])
    assert resolve_mode(_nets(False)[1], "step") == "step"


def test_shared_step_needs_one_output_per_sample():
    G, _ = _nets(False)
    D = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(ValueError, match="one output per sample"):
        _step(G, D, torch.zeros(B, 1, 8, 8), _cfg(), XAIGuidance("saliency", explain_mode="step", select="all"))


def test_config_accepts_step_mode():
    assert _cfg(explain_mode="step").explain_mode == "step"


class _HalvingGuidance:
    """A user's own guidance with the core protocol only (no shared step, loss weights or schedule): it halves G's
    gradient at every generated image."""

    stats: dict = {}

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fake, D, scores=None):
        self.calls += 1
        return scale(fake, torch.tensor(0.5))

    def active(self, epoch: int) -> bool:
        return True

    def drain_events(self) -> list[dict]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def explain_maps(self, x, D, batch=None):
        return torch.zeros_like(x)


def test_a_guidance_with_the_core_protocol_only_drives_the_g_step():
    """A guidance of one's own implements the core protocol only: it is called through ``guide(fake, D)`` (never
    through XAIGuidance's shared step or loss weights), and G's update (SGD, lr 1) is exactly half the plain one's."""
    from xaigan.guidance import Guidance

    assert isinstance(XAIGuidance("saliency", explain_mode="step"), Guidance)
    halving = _HalvingGuidance()
    assert isinstance(halving, Guidance) and not isinstance(halving, XAIGuidance)

    G, D = _nets(prob=False)
    real = torch.rand(B, 1, 8, 8) * 2 - 1
    cfg = _cfg()
    before = [p.detach().clone() for p in G.parameters()]
    plain = [b - p for b, p in zip(before, _step(G, D, real, cfg, None).parameters())]
    halved = [b - p for b, p in zip(before, _step(G, D, real, cfg, halving).parameters())]
    assert halving.calls == 1
    for a, h in zip(plain, halved):
        torch.testing.assert_close(h, 0.5 * a, rtol=1e-5, atol=1e-7)
