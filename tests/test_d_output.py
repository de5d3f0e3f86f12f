"""A D that ends in nn.Sigmoid (returns probabilities) is explained and guided as correctly as one that returns logits.

References are independent of the code under test: captum or torch.autograd one sample at a time, hand-computed
selections and masks, and the same weights without the Sigmoid (the "logit twin").
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from captum.attr import DeepLift, DeepLiftShap, InputXGradient, IntegratedGradients, Saliency
from torch import nn

from tests.helpers_models import ResidualD, logit_twin, mlp_d, mlp_prob_d
from xaigan import explain, guidance
from xaigan.explain._base import ExplainedModel, protected
from xaigan.explain.deeplift import fast_plan

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOL = dict(atol=1e-10, rtol=1e-8)


def _batch(n=6, seed=1, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g, dtype=torch.float64) * 2 - 1


REFS = _batch(3, seed=7)


def _kwargs(method):
    """Settings per explainer; generators are fresh so two calls draw the same numbers."""
    return {
        "deeplift-shap": {"baselines": REFS},
        "integrated-gradients": {"n_steps": 8},
        "integrated-gradients-real": {"n_steps": 8, "baselines": REFS},
        "lime": {"segmentation": "grid", "n_samples": 30, "generator": torch.Generator().manual_seed(0)},
        "smoothgrad": {"nt_samples": 3, "stdevs": 0.3, "generator": torch.Generator().manual_seed(0)},
    }.get(method, {})


def _pair(seed=0):
    D = mlp_prob_d(seed=seed)
    return D, logit_twin(D)


class CustomProbD(nn.Module):
    """Not an nn.Sequential: its Sigmoid is the last registered module, applied last in forward."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.body(x))


def test_detect_and_resolve_output():
    prob, logit = _pair()
    assert explain.detect_output(prob) == "prob" and explain.detect_output(logit) == "logit"
    nested = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()))
    assert explain.detect_output(nested) == "prob"
    assert (
        explain.detect_output(nn.Sequential(nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()), nn.Linear(1, 1))) == "logit"
    )
    assert explain.detect_output(nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Tanh())) == "logit"
    assert explain.detect_output(CustomProbD(logit)) == "prob"
    assert explain.detect_output(nn.Sequential(nn.Identity(), CustomProbD(logit))) == "prob"
    assert explain.detect_output(ResidualD()) == "logit"  # a Sigmoid inside, but the last registered leaf is Linear
    assert explain.detect_output(nn.Sigmoid()) == "prob"
    assert explain.resolve_output(prob, "auto") == "prob" and explain.resolve_output(logit, "auto") == "logit"
    assert explain.resolve_output(prob, "logit") == "logit" and explain.resolve_output(logit, "prob") == "prob"
    with pytest.raises(ValueError, match="auto.*logit.*prob"):
        explain.resolve_output(prob, "probability")
    assert explain.OUTPUTS == ("logit", "prob")


@pytest.mark.parametrize("target", ["prob", "logit"])
@pytest.mark.parametrize("method", explain.available())
def test_prob_and_logit_targets_are_the_same_for_both_kinds_of_d(method, target):
    prob, logit = _pair()
    x = _batch()
    ours = explain.explain(method, prob, x, target=target, **_kwargs(method))
    twin = explain.explain(method, logit, x, target=target, **_kwargs(method))
    assert ours.shape == x.shape and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, twin, **TOL)
    assert isinstance(prob[-1], nn.Sigmoid) and len(prob) == len(logit) + 1, "D itself must not change"


CAPTUM = {
    "saliency": lambda D, xi: Saliency(D).attribute(xi, target=0),
    "input-x-gradient": lambda D, xi: InputXGradient(D).attribute(xi, target=0),
    "integrated-gradients": lambda D, xi: IntegratedGradients(D).attribute(xi, xi * 0, target=0, n_steps=8),
    "deeplift": lambda D, xi: DeepLift(D).attribute(xi, xi * 0, target=0),
    "deeplift-shap": lambda D, xi: DeepLiftShap(D).attribute(xi, REFS, target=0),
}


def _captum_per_sample(D, x, fn):
    D = copy.deepcopy(D).eval()
    return torch.cat([fn(D, x[i : i + 1]).detach() for i in range(x.shape[0])])


@pytest.mark.parametrize("kind", ["prob", "logit"])
@pytest.mark.parametrize("method", sorted(CAPTUM))
def test_output_target_equals_captum_on_d_itself(method, kind):
    D = dict(zip(("prob", "logit"), _pair()))[kind]
    x = _batch()
    ours = explain.explain(method, D, x, **_kwargs(method))  # default target: what D returns
    torch.testing.assert_close(ours, _captum_per_sample(D, x, CAPTUM[method]), atol=1e-8, rtol=1e-6)


def _autograd_per_sample(f, x):
    """``d f(x_i) / d x_i`` one sample at a time."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xi).sum(), xi)
        out.append(g)
    return torch.cat(out)


@pytest.mark.parametrize("kind", ["prob", "logit"])
def test_smoothgrad_output_target_equals_hand_reference(kind):
    D = dict(zip(("prob", "logit"), _pair()))[kind]
    x, n, std = _batch(4), 3, 0.3
    ours = explain.explain("smoothgrad", D, x, nt_samples=n, stdevs=std, generator=torch.Generator().manual_seed(4))
    noise = torch.randn((4 * n, 1, 8, 8), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    noisy = x.repeat_interleave(n, 0) + std * noise  # the documented draw: copies of sample i at rows i*n..i*n+n-1
    ref_d = copy.deepcopy(D).eval()
    ref = _autograd_per_sample(ref_d, noisy).abs().view(4, n, 1, 8, 8).mean(1)
    torch.testing.assert_close(ours, ref, **TOL)


def test_lime_output_target_fits_what_d_returns():
    prob, logit = _pair()
    x = _batch(3)
    maps, info = explain.explain("lime", prob, x, return_info=True, **_kwargs("lime"))
    twin, twin_info = explain.explain("lime", logit, x, target="prob", return_info=True, **_kwargs("lime"))
    torch.testing.assert_close(maps, twin, **TOL)
    with torch.no_grad():
        torch.testing.assert_close(info["y"][:, 0], copy.deepcopy(prob).eval()(x)[:, 0])  # z_0: the image itself
        _, logit_info = explain.explain("lime", logit, x, return_info=True, **_kwargs("lime"))
        torch.testing.assert_close(logit_info["y"][:, 0], copy.deepcopy(logit).eval()(x)[:, 0])


def test_issue_saliency_of_a_sigmoid_d_is_of_its_output():
    prob, logit = _pair()
    x = _batch()
    ours = explain.explain("saliency", prob, x)
    d_prob = _autograd_per_sample(copy.deepcopy(prob).eval(), x).abs()
    d_logit = _autograd_per_sample(copy.deepcopy(logit).eval(), x).abs()
    torch.testing.assert_close(ours, d_prob, **TOL)
    with torch.no_grad():
        p = copy.deepcopy(prob).eval()(x).view(-1, 1, 1, 1)
    torch.testing.assert_close(ours, p * (1 - p) * d_logit, **TOL)  # the sigmoid' factor
    assert not torch.allclose(ours, d_logit, atol=1e-6)
    torch.testing.assert_close(explain.explain("saliency", prob, x, target="logit"), d_logit, **TOL)


def test_logit_of_a_sigmoid_chain_drops_the_sigmoid_and_keeps_the_fast_path():
    prob, _ = _pair()
    model = ExplainedModel(prob, target="logit")
    with protected(model):
        steps = fast_plan(model)
    assert steps is not None and not any(isinstance(s.module, nn.Sigmoid) for s in steps)
    assert isinstance(prob[-1], nn.Sigmoid) and all(a is b for a, b in zip(model.body, list(prob)[:-1]))


@pytest.mark.parametrize("method", ["saliency", "integrated-gradients", "deeplift", "lime"])
def test_logit_of_a_custom_prob_d_equals_the_twin(method):
    _, logit = _pair()
    x = _batch()
    ours = explain.explain(method, CustomProbD(copy.deepcopy(logit)), x, target="logit", **_kwargs(method))
    twin = explain.explain(method, logit, x, target="logit", **_kwargs(method))
    torch.testing.assert_close(ours, twin, atol=1e-8, rtol=1e-6)
    with torch.no_grad():
        saturated = CustomProbD(nn.Sequential(nn.Flatten(), nn.Linear(64, 1).double()))
        saturated.body[1].bias.fill_(1e4)
        logits = ExplainedModel(saturated, target="logit")(x)
    assert torch.isfinite(logits).all() and (logits > 30).all(), "the clamped logit stays finite"


@pytest.mark.parametrize("method", explain.available())
def test_default_target_of_a_logit_d_is_its_logit(method):
    D, x = mlp_d(), _batch()
    default = explain.explain(method, D, x, **_kwargs(method))
    torch.testing.assert_close(default, explain.explain(method, D, x, target="logit", **_kwargs(method)), **TOL)


# --- guidance ---------------------------------------------------------------------------------------------------


def _mixed_batch():
    """A batch that the seed-5 twins reject in part: some samples scored fake, some real."""
    prob, logit = _pair(seed=5)
    x = _batch(16, seed=1)
    with torch.no_grad():
        rejected = copy.deepcopy(prob).eval()(x).view(-1) < 0.5
    assert 0 < int(rejected.sum()) < 16
    return prob, logit, x, rejected


def test_guidance_explains_exactly_what_either_kind_of_d_rejects():
    prob, logit, x, rejected = _mixed_batch()
    with torch.no_grad():
        assert torch.equal(torch.sigmoid(copy.deepcopy(logit).eval()(x)).view(-1) < 0.5, rejected)
    for D in (prob, logit):
        guide = guidance.XAIGuidance("saliency", alpha=0.2)
        guide(x, D)
        assert torch.equal(guide.last_selected, rejected) and guide.stats["n_explained"] == int(rejected.sum())
        with torch.no_grad():
            scores = copy.deepcopy(D).eval()(x)
        passed = guidance.XAIGuidance("saliency", alpha=0.2)
        passed(x, D, scores=scores)
        assert torch.equal(passed.last_selected, rejected)


def test_guided_gradient_at_the_image_is_the_same_for_the_twins_and_by_hand():
    prob, logit, x, rejected = _mixed_batch()
    ref_logit = copy.deepcopy(logit).eval()
    losses = {  # the same generator loss written for each kind of D
        "prob": lambda D, img: -torch.log(D(img)).sum(),
        "logit": lambda D, img: nn.functional.softplus(-D(img)).sum(),
    }
    grads, masks = {}, {}
    for kind, D in (("prob", prob), ("logit", logit)):
        D.eval()
        img = x.clone().requires_grad_(True)
        guide = guidance.XAIGuidance("saliency", alpha=0.2)
        losses[kind](D, guide(img, D)).backward()
        grads[kind], masks[kind] = img.grad, guide.last_mask
    sal = _autograd_per_sample(lambda t: torch.sigmoid(ref_logit(t)), x[rejected]).abs()
    full = torch.ones_like(x)
    full[rejected] = sal
    mask = (full - full.min()) / (full.max() - full.min())
    img = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(losses["logit"](ref_logit, img), img)
    for kind in ("prob", "logit"):
        torch.testing.assert_close(masks[kind], mask, **TOL)
        torch.testing.assert_close(grads[kind], plain * (1 + 0.2 * mask), **TOL)


def test_issue_scenario_sigmoid_mlp_on_uniform_noise():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(1024, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1), nn.Sigmoid()).eval()
    x = torch.rand(64, 1, 32, 32) * 2 - 1
    guide = guidance.XAIGuidance("saliency", alpha=0.2)
    guide(x.requires_grad_(), D)
    with torch.no_grad():
        rejected = D(x).view(-1) < 0.5
    assert guide.stats["n_explained"] == int(rejected.sum()) > 0
    assert torch.equal(guide.last_selected, rejected)
    torch.testing.assert_close(guide.last_maps, _autograd_per_sample(D, x.detach()[rejected]).abs())


def test_a_prob_d_with_outputs_outside_0_1_is_an_error():
    _, logit = _pair()
    x = _batch()
    with torch.no_grad():
        out = copy.deepcopy(logit).eval()(x)
    assert out.min() < 0 or out.max() > 1
    with pytest.raises(ValueError, match="d_output='logit'"):
        guidance.XAIGuidance("saliency", d_output="prob")(x, logit)


# --- health check -----------------------------------------------------------------------------------------------


def _accepting_d():
    D = mlp_d()
    with torch.no_grad():
        D[-1].bias.fill_(100.0)
    return D.eval()


def _health_events(caplog):
    return [r for r in caplog.records if r.name == "xaigan.guidance" and r.levelno == logging.WARNING]


def test_nothing_explained_is_said_once_after_patience_steps(caplog):
    D, x = _accepting_d(), _batch()
    with torch.no_grad():
        out = D(x)
    guide = guidance.XAIGuidance("saliency", patience=3)
    with caplog.at_level(logging.WARNING, logger="xaigan.guidance"):
        for step in range(1, 7):
            assert guide(x, D) is x
            assert len(_health_events(caplog)) == (step >= 3)
            if step == 3:
                (event,) = guide.drain_events()
    assert guide.drain_events() == [] and len(_health_events(caplog)) == 1
    assert event["event"] == "xai_health" and event["check"] == "nothing-explained" and event["steps"] == 3
    message = event["message"]
    assert message == _health_events(caplog)[0].getMessage()
    assert "3 consecutive steps" in message and "d_output='prob'" in message and "accepting every" in message
    assert f"{float(out.min()):.4g}" in message and f"{float(out.max()):.4g}" in message
    with pytest.raises(guidance.GuidanceHealthError, match="3 consecutive steps") as err:
        strict = guidance.XAIGuidance("saliency", patience=3, strict=True)
        for _ in range(3):
            strict(x, D)
    assert isinstance(err.value, RuntimeError)


def test_a_sigmoid_d_declared_logit_triggers_the_check():
    prob, _, x, _ = _mixed_batch()
    wrong = guidance.XAIGuidance("saliency", d_output="logit", patience=2)
    right = guidance.XAIGuidance("saliency", patience=2)
    for _ in range(2):
        wrong(x, prob)
        right(x, prob)
    (event,) = wrong.drain_events()
    assert event["check"] == "nothing-explained" and "read as logits" in event["message"]
    assert right.drain_events() == [] and right.stats["n_explained"] > 0


def test_only_consecutive_steps_count():
    accepting, x = _accepting_d(), _batch()
    prob, _, mixed, _ = _mixed_batch()
    guide = guidance.XAIGuidance("saliency", patience=3)
    for D, batch in [(accepting, x)] * 2 + [(prob, mixed)] + [(accepting, x)] * 2:
        guide(batch, D)
    assert guide.drain_events() == [] and guide.state_dict()["health"]["nothing-explained"]["steps"] == 2
    everything = guidance.XAIGuidance("saliency", select="all", target="logit", patience=1)
    everything(x, accepting)
    assert everything.drain_events() == []  # select="all" explains by design: nothing to say
    saturated = guidance.XAIGuidance("saliency", select="all", patience=1)
    saturated(x, accepting)  # sigmoid(>100) is 1.0 in float64: the probability's gradient is exactly 0
    (event,) = saturated.drain_events()
    assert event["check"] == "constant-mask" and "not scored" in event["message"]


def test_constant_mask_is_said_once(caplog):
    D = nn.Sequential(nn.Flatten(), nn.Linear(64, 1)).double().eval()
    with torch.no_grad():
        D[1].weight.zero_()
        D[1].bias.fill_(-3.0)  # rejects everything, and its input gradient is zero
    x = _batch()
    guide = guidance.XAIGuidance("saliency", patience=2)
    with caplog.at_level(logging.WARNING, logger="xaigan.guidance"):
        for _ in range(4):
            guide(x, D)
            assert guide.stats["n_explained"] == 6 and (guide.last_mask == guide.last_mask.flatten()[0]).all()
    (event,) = guide.drain_events()
    assert event["check"] == "constant-mask" and event["steps"] == 2 and len(_health_events(caplog)) == 1
    assert "constant over the batch" in event["message"] and "[-3, -3]" in event["message"]
    with pytest.raises(guidance.GuidanceHealthError, match="constant"):
        strict = guidance.XAIGuidance("saliency", patience=2, strict=True)
        for _ in range(2):
            strict(x, D)


def test_state_dict_round_trip_resumes_the_same():
    D, x = _accepting_d(), _batch()
    first = guidance.XAIGuidance("saliency", patience=3)
    for _ in range(2):
        first(x, D)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["health"]["nothing-explained"]["steps"] == 2 and state["health"]["nothing-explained"]["said"] is False
    resumed, fresh = guidance.XAIGuidance("saliency", patience=3), guidance.XAIGuidance("saliency", patience=3)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    for guide in (first, resumed, fresh):
        guide(x, D)
    assert len(first.drain_events()) == len(resumed.drain_events()) == 1 and fresh.drain_events() == []
    assert first.state_dict() == resumed.state_dict() and resumed.state_dict()["health"]["nothing-explained"]["said"]
    after = guidance.XAIGuidance("saliency", patience=1)
    after.load_state_dict(json.loads(json.dumps(resumed.state_dict())))
    for _ in range(3):
        after(x, D)
    assert after.drain_events() == [], "said once, also across a resume"
    with pytest.raises(ValueError):
        after.load_state_dict({"unknown": {}})


def test_explain_maps_explains_every_sample_with_the_guidance_settings():
    prob, logit, x, _ = _mixed_batch()
    for D in (prob, logit):
        guide = guidance.XAIGuidance("integrated-gradients", explain_kwargs={"n_steps": 8})
        maps = guide.explain_maps(x, D)
        ref = _captum_per_sample(nn.Sequential(logit, nn.Sigmoid()), x, CAPTUM["integrated-gradients"])
        torch.testing.assert_close(maps, ref, atol=1e-8, rtol=1e-6)
