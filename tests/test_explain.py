"""Batched explainers equal captum's per-sample results, and explaining leaves D untouched."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from captum.attr import DeepLift, DeepLiftShap, InputXGradient, IntegratedGradients, Saliency
from torch import nn

from tests.helpers_models import ResidualD, conv_bn_d, convtranspose_d, mlp_d
from xaigan import explain
from xaigan.explain._base import ExplainedModel, protected
from xaigan.explain.deeplift import fast_plan
from xaigan.explain.gradients import smoothgrad_noise

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOL = dict(atol=1e-5, rtol=1e-5)


def _batch(n=5, c=1, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g, dtype=torch.float64) * 2 - 1


def _models():
    return {"mlp": mlp_d(), "convbn": conv_bn_d(), "residual": ResidualD()}


def _per_sample(D, x, fn, target="prob", mode="eval"):
    """The original's loop: one captum call per sample, D in eval mode. ``mode="batch"``: on a copy of D whose
    BatchNorm running statistics are set to those each layer's input has in a train-mode pass of the whole ``x``."""
    if mode == "batch":
        D = copy.deepcopy(D)
        seen = {}
        norms = [m for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        hooks = [m.register_forward_hook(lambda m, i, o: seen.__setitem__(m, i[0].detach())) for m in norms]
        D.train()
        with torch.no_grad():
            D(x)
        for h in hooks:
            h.remove()
        for m, inp in seen.items():
            flat = inp.transpose(0, 1).reshape(inp.shape[1], -1)
            m.running_mean.copy_(flat.mean(1))
            m.running_var.copy_(flat.var(1, unbiased=False))
    model = ExplainedModel(D, target=target)
    with protected(model, "eval"):
        return torch.cat([fn(model, x[i : i + 1]).detach() for i in range(x.shape[0])])


CAPTUM = {
    "saliency": (lambda m, xi: Saliency(m).attribute(xi, target=0), {}),
    "input-x-gradient": (lambda m, xi: InputXGradient(m).attribute(xi, target=0), {}),
    "integrated-gradients": (
        lambda m, xi: IntegratedGradients(m).attribute(xi, torch.zeros_like(xi), target=0, n_steps=16),
        {"n_steps": 16},
    ),
    "deeplift": (lambda m, xi: DeepLift(m).attribute(xi, torch.zeros_like(xi), target=0), {}),
}


def test_available_lists_all_methods():
    assert set(explain.available()) >= {
        "saliency",
        "integrated-gradients",
        "input-x-gradient",
        "smoothgrad",
        "deeplift",
        "deeplift-shap",
        "lime",
    }
    with pytest.raises(KeyError):
        explain.explain("nope", mlp_d(), _batch())


def test_registry_declares_each_explainers_settings():
    assert explain.available() == sorted(explain.available())
    assert explain.get("saliency") is explain.saliency and explain.info("lime").fn is explain.lime
    assert dict(explain.info("integrated-gradients").options) == {"n_steps": "xai_steps"}
    assert dict(explain.info("lime").options) == {
        "n_samples": "lime_samples",
        "segmentation": "lime_segmentation",
        "fill": "lime_fill",
    }
    assert explain.info("deeplift-shap").references == ("baselines", "xai_baselines")
    real_ig = explain.info("integrated-gradients-real")
    assert real_ig.references == ("baselines", "xai_baselines") and dict(real_ig.options) == {"n_steps": "xai_steps"}
    for name in explain.available():
        entry = explain.info(name)
        assert entry.name == name and entry.summary
        if name not in ("integrated-gradients", "integrated-gradients-real", "lime", "deeplift-shap"):
            assert not entry.options and entry.references is None
    settings = {
        "xai_steps": 7,
        "lime_samples": 30,
        "lime_segmentation": "grid",
        "lime_fill": "black",
        "xai_baselines": 3,
    }
    assert explain.info("integrated-gradients").kwargs(settings) == {"n_steps": 7}
    assert explain.info("lime").kwargs(settings) == {"n_samples": 30, "segmentation": "grid", "fill": "black"}
    assert explain.info("saliency").kwargs(settings) == {}
    asked = []
    refs = explain.info("deeplift-shap").kwargs(settings, lambda k: asked.append(k) or torch.zeros(k, 1, 8, 8))
    assert asked == [3] and refs["baselines"].shape == (3, 1, 8, 8) and set(refs) == {"baselines"}
    with pytest.raises(ValueError, match="reference"):
        explain.info("deeplift-shap").kwargs(settings)
    with pytest.raises(KeyError, match="xai_steps"):
        explain.info("integrated-gradients").kwargs({})


def test_register_rejects_duplicates_and_unknown_names_list_the_available_ones():
    with pytest.raises(ValueError, match="already registered"):
        explain.register("saliency", explain.saliency)
    assert explain.get("saliency") is explain.saliency
    with pytest.raises(KeyError) as err:
        explain.info("nope")
    assert all(name in str(err.value) for name in explain.available())
    try:
        entry = explain.register("double-saliency", lambda m, x: 2 * explain.saliency(m, x), summary="test only",
                                 options={"scale": "xai_scale"})  # fmt: skip
        assert entry.options == {"scale": "xai_scale"} and explain.info("double-saliency") is entry
        D, x = mlp_d(), _batch()
        torch.testing.assert_close(explain.explain("double-saliency", D, x), 2 * explain.explain("saliency", D, x))
    finally:
        explain.REGISTRY.unregister("double-saliency")
    assert "double-saliency" not in explain.available()


@pytest.mark.parametrize("method", sorted(CAPTUM))
@pytest.mark.parametrize("model", ["mlp", "convbn", "residual"])
@pytest.mark.parametrize("target", ["output", "prob", "logit"])
@pytest.mark.parametrize("mode", ["eval", "batch"])
def test_batched_equals_captum_per_sample(method, model, target, mode):
    D = _models()[model]
    x = _batch()
    fn, kwargs = CAPTUM[method]
    ours = explain.explain(method, D, x, target=target, mode=mode, **kwargs)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, _per_sample(D, x, fn, target, mode), **TOL)


def test_internal_batch_size_chunks_give_the_same_maps():
    D, x = mlp_d(), _batch(7)
    for method in ("saliency", "input-x-gradient", "integrated-gradients", "deeplift"):
        full = explain.explain(method, D, x)
        torch.testing.assert_close(explain.explain(method, D, x, internal_batch_size=3), full, **TOL)


def test_smoothgrad_is_mean_saliency_over_the_same_noise():
    D, x = mlp_d(), _batch(3)
    ours = explain.explain(
        "smoothgrad", D, x, target="prob", nt_samples=4, stdevs=0.3, generator=torch.Generator().manual_seed(5)
    )
    noisy = smoothgrad_noise(x, 4, 0.3, torch.Generator().manual_seed(5))
    ref = _per_sample(D, noisy, lambda m, xi: Saliency(m).attribute(xi, target=0)).view(3, 4, *x.shape[1:]).mean(1)
    torch.testing.assert_close(ours, ref, **TOL)
    state = torch.random.get_rng_state()
    explain.explain("smoothgrad", D, x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state()), "a generator must keep the global RNG untouched"


@pytest.mark.parametrize("mode", ["eval", "batch"])
@pytest.mark.parametrize("model", ["mlp", "convbn", "convtranspose", "residual"])
def test_deeplift_shap_equals_captum_per_sample(model, mode):
    D = convtranspose_d() if model == "convtranspose" else _models()[model]
    x, refs = _batch(4, seed=2), _batch(6, seed=3)
    x[1] = refs[2]  # identical pair: every delta is 0, DeepLIFT falls back to the gradient there
    ours = explain.explain("deeplift-shap", D, x, target="prob", baselines=refs, mode=mode)
    ref = _per_sample(D, x, lambda m, xi: DeepLiftShap(m).attribute(xi, refs, target=0), mode=mode)
    torch.testing.assert_close(ours, ref, **TOL)
    model_ = ExplainedModel(D, target="prob")
    with protected(model_):
        assert (fast_plan(model_) is None) == (model == "residual"), "fast path coverage changed"


def test_deeplift_shap_chunking_and_single_reference():
    D, x, refs = mlp_d(), _batch(5), _batch(3, seed=9)
    full = explain.explain("deeplift-shap", D, x, baselines=refs)
    torch.testing.assert_close(explain.explain("deeplift-shap", D, x, baselines=refs, internal_batch_size=4), full)
    one = explain.explain("deeplift-shap", D, x, baselines=refs[:1])
    torch.testing.assert_close(one, explain.explain("deeplift", D, x, baselines=refs[:1]), **TOL)
    with pytest.raises(ValueError):
        explain.explain("deeplift-shap", D, x)


def test_deeplift_shap_float32_paper_mlp_close_to_captum():
    torch.manual_seed(0)
    D = mlp_d(1, 32, (1296, 512, 256), dtype=torch.float32)
    x, refs = torch.rand(3, 1, 32, 32) * 2 - 1, torch.rand(8, 1, 32, 32) * 2 - 1
    ours = explain.explain("deeplift-shap", D, x, baselines=refs)
    captum = explain.explain("deeplift-shap", D, x, baselines=refs, use_captum=True)
    torch.testing.assert_close(ours, captum, atol=1e-6, rtol=1e-4)


def test_deeplift_says_when_it_falls_back_to_captum(recwarn):
    """With dropout on (explain mode train or step) or a D that is not a chain, DeepLIFT runs captum's slower path;
    it says so, naming the reason, and the maps stay captum's."""
    x, refs = _batch(4), _batch(6, seed=2)
    D = mlp_d()
    explain.explain("deeplift-shap", D, x, baselines=refs, mode="eval")
    explain.explain("deeplift", D, x, mode="eval")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    with pytest.warns(RuntimeWarning, match=r"deeplift-shap: D has dropout .* explain_mode eval keeps the fast path"):
        explain.explain("deeplift-shap", D, x, baselines=refs, mode="train")
    with pytest.warns(RuntimeWarning, match="deeplift: D is not a plain chain"):
        got = explain.explain("deeplift", ResidualD(), x, mode="eval")
    want = DeepLift(ResidualD()).attribute(x, torch.zeros_like(x), target=0)
    torch.testing.assert_close(got, want, **TOL)
    recwarn.clear()
    explain.explain("deeplift-shap", D, x, baselines=refs, mode="train", use_captum=True)  # asked for: no warning
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_integrated_gradients_fast_path_float32_close_to_captum():
    torch.manual_seed(0)
    D = mlp_d(1, 32, (1296, 512, 256), dtype=torch.float32)
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    for method in ("gausslegendre", "riemann_trapezoid"):
        ours = explain.explain("integrated-gradients", D, x, n_steps=8, method=method, internal_batch_size=20)
        captum = explain.explain("integrated-gradients", D, x, n_steps=8, method=method, use_captum=True)
        torch.testing.assert_close(ours, captum, atol=1e-6, rtol=1e-4)


def test_prob_target_is_chain_rule_of_logit_target():
    D, x = mlp_d(), _batch()
    logit_sal = explain.explain("saliency", D, x, target="logit", abs=False)
    prob_sal = explain.explain("saliency", D, x, target="prob", abs=False)
    D.eval()
    p = torch.sigmoid(D(x)).detach().view(-1, 1, 1, 1)
    torch.testing.assert_close(prob_sal, p * (1 - p) * logit_sal)


def test_transform_explains_d_of_t_at_the_untransformed_image():
    D, x = mlp_d(), _batch()
    flipped = explain.explain("saliency", D, x, transform=lambda t: t.flip(-1))
    torch.testing.assert_close(flipped, explain.explain("saliency", D, x.flip(-1)).flip(-1))

    class Flip(nn.Module):
        def forward(self, t):
            return t.flip(-1)

    refs = _batch(3, seed=4)
    dls = explain.explain("deeplift-shap", D, x, baselines=refs, transform=Flip())  # not a chain: captum path
    torch.testing.assert_close(dls, explain.explain("deeplift-shap", D, x.flip(-1), baselines=refs.flip(-1)).flip(-1))


ALL_KWARGS = {
    "deeplift-shap": {"baselines": _batch(3, seed=7)},
    "lime": {"segmentation": "grid", "n_samples": 20, "generator": torch.Generator().manual_seed(0)},
    "smoothgrad": {"nt_samples": 3, "generator": torch.Generator().manual_seed(0)},
    "integrated-gradients": {"n_steps": 4},
    "integrated-gradients-real": {"n_steps": 4, "baselines": _batch(3, seed=8)},
}


def _snapshot(D):
    return (
        {k: v.detach().clone() for k, v in D.state_dict().items()},
        {n: (p.grad, None if p.grad is None else p.grad.clone(), p.requires_grad) for n, p in D.named_parameters()},
        {n: m.training for n, m in D.named_modules()},
    )


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("method", sorted(explain.REGISTRY))
def test_explaining_leaves_d_untouched(method, mode):
    D = conv_bn_d()
    D.train()
    D.features[2].eval()  # a mixed state must come back exactly as it was
    for i, p in enumerate(D.parameters()):
        if i % 2 == 0:
            p.grad = torch.full_like(p, 0.5)
    before = _snapshot(D)
    maps = explain.explain(method, D, _batch(4), mode=mode, **ALL_KWARGS.get(method, {}))
    assert maps.shape == (4, 1, 8, 8) and torch.isfinite(maps).all()
    after = _snapshot(D)
    for key, value in before[0].items():
        assert torch.equal(value, after[0][key]), f"{key} changed"
    for name, (grad, saved, req) in before[1].items():
        grad2, copy2, req2 = after[1][name]
        assert grad2 is grad and req2 == req
        assert (saved is None and copy2 is None) or torch.equal(saved, copy2)
    assert before[2] == after[2]


@pytest.mark.parametrize(
    "method", ["saliency", "input-x-gradient", "integrated-gradients", "deeplift", "deeplift-shap"]
)
def test_deterministic_methods_draw_no_random_numbers(method):
    D = mlp_d()
    D.train()
    state = torch.random.get_rng_state()
    explain.explain(method, D, _batch(), **ALL_KWARGS.get(method, {}))
    assert torch.equal(state, torch.random.get_rng_state())


def test_train_mode_uses_dropout():
    D, x = mlp_d(), _batch()
    torch.manual_seed(0)
    a = explain.explain("saliency", D, x, mode="train")
    b = explain.explain("saliency", D, x, mode="train")
    assert not torch.equal(a, b), "dropout should be on in train mode"
    assert torch.equal(explain.explain("saliency", D, x), explain.explain("saliency", D, x))


def test_float32_paper_models_run_through_every_explainer():
    from xaigan.models import build

    _, D = build("dcgan", channels=3, image_size=16)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    for method in explain.available():
        kwargs = dict(ALL_KWARGS.get(method, {}))
        if method in ("deeplift-shap", "integrated-gradients-real"):
            kwargs["baselines"] = torch.rand(2, 3, 16, 16) * 2 - 1
        maps = explain.explain(method, D, x, **kwargs)
        assert maps.shape == x.shape and maps.dtype == x.dtype and torch.isfinite(maps).all()


def test_batch_mode_gives_each_sample_the_verdict_of_a_train_mode_pass_and_restores_d():
    """``mode="batch"``: D's outputs equal a train-mode forward of the whole batch (BatchNorm with its statistics),
    per sample (a sub-batch explained with the full batch's statistics gets the same verdicts), and D's running
    statistics, flags and gradients are untouched afterwards. ``auto`` picks it for BatchNorm nets only."""
    D, x = conv_bn_d(), _batch(6)
    with torch.no_grad():
        D(x * 0.3 + 0.5)  # running statistics unlike this batch's
    before = {k: v.clone() for k, v in D.state_dict().items()}
    twin = copy.deepcopy(D).train()
    for m in twin.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # batch mode turns dropout off
    with torch.no_grad():
        expected = twin(x)
    D.eval()
    with protected(D, "batch", batch=x), torch.no_grad():
        torch.testing.assert_close(D(x), expected, **TOL)
        torch.testing.assert_close(D(x[2:4]), expected[2:4], **TOL)
        eval_like = D(x)
    with torch.no_grad():
        assert not torch.allclose(D(x), eval_like, atol=1e-3)  # eval mode (running statistics) differs
    assert all(torch.equal(v, before[k]) for k, v in D.state_dict().items()) and not D.training
    assert explain.resolve_mode(D, "auto") == "batch" and explain.resolve_mode(mlp_d(), "auto") == "eval"
    with pytest.raises(ValueError, match="needs the batch"):
        with protected(D, "batch"):
            pass


def _rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    ("method", "max_err", "min_corr"), [("deeplift-shap", 0.02, 0.999), ("lime", 0.02, 0.999), ("saliency", 0.15, 0.98)]
)
def test_bf16_explanations_stay_close_to_fp32_references(method, max_err, min_corr):
    """``precision="bf16"`` (D's products under bf16 autocast) changes the maps, but only by bf16 rounding: measured
    0.6% (deeplift-shap, its forward records kept fp32) and 0.7% (lime) from the fp32 references (captum's
    per-sample maps; lime: the fp32 maps of the same perturbations), 7% for saliency (its backward runs through bf16
    products); each sample's map correlated > 0.999 (saliency: > 0.98) with the reference."""
    torch.manual_seed(0)
    D = mlp_d(1, 32, (1024, 512, 256), dtype=torch.float32)
    x, refs = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(16, 1, 32, 32) * 2 - 1

    def kwargs():  # lime: the same perturbations every call
        if method == "lime":
            return {"n_samples": 200, "segmentation": "grid", "generator": torch.Generator().manual_seed(3)}
        return {"baselines": refs} if method == "deeplift-shap" else {}

    fp32 = explain.explain(method, D, x, **kwargs())
    if method == "deeplift-shap":
        ref = _per_sample(D, x, lambda m, xi: DeepLiftShap(m).attribute(xi, refs, target=0), target="output")
    elif method == "saliency":
        ref = _per_sample(D, x, lambda m, xi: Saliency(m).attribute(xi, target=0), target="output")
    else:
        ref = fp32
    bf16 = explain.explain(method, D, x, precision="bf16", **kwargs())
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert _rel_err(bf16, ref) < max_err, _rel_err(bf16, ref)
    for a, b in zip(bf16.flatten(1), ref.flatten(1)):
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > min_corr


def test_bf16_precision_reaches_the_explainer_from_the_config_and_is_checked():
    from xaigan.config import Config
    from xaigan.guidance import XAIGuidance
    from xaigan.train.factory import build_guidance

    torch.manual_seed(0)
    D = mlp_d(1, 32, (64, 32), dtype=torch.float32)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    cfg = Config(xai="saliency", xai_precision="bf16")
    guidance = build_guidance(cfg, x, None, torch.device("cpu"))
    assert guidance.precision == "bf16" and guidance.config()["precision"] == "bf16"
    maps = guidance.explain_maps(x, D)
    assert torch.equal(maps, explain.explain("saliency", D, x, target="prob", precision="bf16"))
    assert not torch.equal(maps, explain.explain("saliency", D, x, target="prob"))
    with pytest.raises(ValueError, match="precision"):
        explain.explain("saliency", D, x, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        XAIGuidance("saliency", precision="half")


def test_the_captum_patch_is_one_place_and_still_fits_captum():
    """DeepLIFT through captum needs its rescale rule for our clamped-logit head, which captum only offers through a
    private table (``captum.attr._core.deep_lift.SUPPORTED_NON_LINEAR``). If a captum release renames or reshapes it,
    this test fails first, loudly, rather than the explanations changing quietly."""
    from captum.attr._core import deep_lift

    from xaigan.explain._base import Logit
    from xaigan.explain.deeplift import captum_deeplift

    table = getattr(deep_lift, "SUPPORTED_NON_LINEAR", None)
    assert isinstance(table, dict), "captum no longer has deep_lift.SUPPORTED_NON_LINEAR: update captum_deeplift()"
    assert table.get(nn.Sigmoid) is deep_lift.nonlinear, "captum's rescale rule moved: update captum_deeplift()"
    captum_deeplift()
    assert table[Logit] is deep_lift.nonlinear
    src = Path(explain.__file__).parent
    patched = [p.name for p in src.rglob("*.py") if "SUPPORTED_NON_LINEAR" in p.read_text()]
    assert patched == ["deeplift.py"]
    # Behaviour: with the rule, DeepLIFT of logit(sigmoid(z)) against a reference equals DeepLIFT of z (the two
    # multipliers cancel); a linear z makes that (x - ref) * w exactly.
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 1)).double()
    D = nn.Sequential(lin, nn.Sigmoid())
    x, ref = torch.randn(3, 1, 4, 4, dtype=torch.double), torch.zeros(1, 1, 4, 4, dtype=torch.double)
    maps = explain.explain("deeplift", D, x, target="logit", baselines=ref, use_captum=True)
    expected = (x - ref) * lin[1].weight.view(1, 1, 4, 4)
    torch.testing.assert_close(maps, expected)
