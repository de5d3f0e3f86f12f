"""The xAI guidance inside the trainer, checked against hand computations."""

import copy

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import write_image_folder
from xaigan import config as cfg_mod
from xaigan.io import load_torch
from xaigan.train import from_config, gan_step


@pytest.fixture
def folder(tmp_path):
    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    return f"folder:{tmp_path / 'imgs'}"


def _cfg(dataset, **kw):
    base = {"dataset": dataset, "epochs": 2, "batch_size": 32, "progress": False, "seed": 3, "xai_start": 0.0}
    return cfg_mod.resolve({**base, **kw})


def test_alpha_zero_is_bit_identical_to_standard_gan(tmp_path, folder):
    from_config(_cfg(folder, xai="none"), tmp_path / "none").fit()
    summary = from_config(_cfg(folder, xai="saliency", alpha=0.0, xai_select="all"), tmp_path / "xai0").fit()
    assert summary["xai_regimes"] == {"none": 0, "partial": 0, "all": 2 * 64 // 32}  # every step, whole batch
    a = load_torch(tmp_path / "none" / "checkpoints" / "last.pt")
    b = load_torch(tmp_path / "xai0" / "checkpoints" / "last.pt")
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"
    assert sorted(p.name for p in (tmp_path / "xai0" / "explanations").iterdir()) == [
        "epoch_0000.png",
        "epoch_0001.png",
    ]


@pytest.mark.parametrize("g_clip", [0.0, 0.01])
def test_explained_step_matches_the_formula(tmp_path, folder, g_clip):
    """G's gradient is the masked one, then (``g_clip`` > 0) scaled to the clip norm, as torch's clip_grad_norm_
    documents: clipping comes after the guidance and rescales the whole masked gradient."""
    cfg = _cfg(folder, xai="saliency", alpha=0.2, xai_select="all", g_clip=g_clip)
    trainer = from_config(cfg, tmp_path / "run")
    real = next(trainer.loader.batches(0))
    G2, D2 = copy.deepcopy(trainer.G), copy.deepcopy(trainer.D)
    opt_d2 = torch.optim.Adam(D2.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    state = torch.get_rng_state()
    gan_step(trainer.G, trainer.D, trainer.opt_g, trainer.opt_d, real, trainer.cfg, None, trainer.guidance)
    torch.set_rng_state(state)

    # The same step by hand: D step, then G's gradient with the saliency mask applied at the image.
    fake1 = G2(torch.randn(len(real), 100)).detach()
    d_real, d_fake = D2(real), D2(fake1)
    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))
    loss_d = loss_d + F.binary_cross_entropy_with_logits(d_fake, torch.full_like(d_fake, 0.1))
    opt_d2.zero_grad()
    loss_d.backward()
    opt_d2.step()
    fake = G2(torch.randn(len(real), 100))
    D2.eval()
    x = fake.detach().requires_grad_()
    (sal,) = torch.autograd.grad(torch.sigmoid(D2(x)).sum(), x)
    D2.train()
    mask = sal.abs()
    mask = (mask - mask.min()) / (mask.max() - mask.min())  # batch-minmax, every sample selected
    f = fake.detach().requires_grad_()
    out = D2(f)
    (grad_fake,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(out, torch.full_like(out, 0.9)), f)
    G2.zero_grad()
    fake.backward(grad_fake * (1 + 0.2 * mask), retain_graph=True)
    with_mask = [p.grad.clone() for p in G2.parameters()]
    G2.zero_grad()
    fake.backward(grad_fake)
    without_mask = [p.grad.clone() for p in G2.parameters()]

    assert trainer.guidance.stats["explained"] == 1.0
    if g_clip:
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in with_mask)))
        assert norm > 2 * g_clip  # the clip binds
        with_mask = [g * (g_clip / (norm + 1e-6)) for g in with_mask]
    for (name, p_ours), ref, plain in zip(trainer.G.named_parameters(), with_mask, without_mask):
        assert torch.allclose(p_ours.grad, ref, rtol=1e-5, atol=1e-7), name
        assert not torch.allclose(p_ours.grad, plain, rtol=1e-3, atol=0), name  # the mask did change the update


def test_guidance_explains_d_through_diffaugment(tmp_path, folder):
    trainer = from_config(_cfg(folder, xai="saliency", diffaugment="translation"), tmp_path / "run")
    assert trainer.guidance.transform is trainer.augment
    assert trainer.augment.policy == "translation"
    record = trainer.fit(stop_at_step=2)
    assert record["interrupted"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all('"xai_explained"' in line and '"xai_seconds"' in line for line in lines)


def test_xai_starts_at_the_configured_epoch(tmp_path, folder):
    trainer = from_config(_cfg(folder, xai="saliency", epochs=4, xai_start=0.5), tmp_path / "run")
    assert [trainer.guidance_active(e) for e in range(4)] == [False, False, True, True]


def test_a_sigmoid_discriminator_trains_like_its_logit_twin(tmp_path, folder):
    """The paper's own D ends in nn.Sigmoid: the loss, the selection and the explained target follow it."""
    from torch import nn

    from xaigan import data, models
    from xaigan.train import Trainer, build_guidance

    cfg = _cfg(folder, xai="saliency", alpha=0.5, g_clip=0.0, xai_select="fake", xai_threshold=0.5)
    images = data.load(cfg.dataset).images
    torch.manual_seed(0)
    G, D_logit = models.build("mlp", 1, 32, 100)
    G2, D_prob = copy.deepcopy(G), nn.Sequential(copy.deepcopy(D_logit), nn.Sigmoid())
    runs = []
    for g, d, name in ((G, D_logit, "logit"), (G2, D_prob, "prob")):
        tr = Trainer(g, d, data.ImageData(images, torch.zeros(len(images))), cfg, tmp_path / name)
        tr.guidance = build_guidance(tr.cfg, images, None, tr.device)
        runs.append(tr)
    assert [tr.cfg.d_output for tr in runs] == ["logit", "prob"]  # detected from D's last module
    real = next(runs[0].loader.batches(0))
    G_before = copy.deepcopy(G)
    for tr in runs:
        torch.manual_seed(11)
        tr.step_stats = gan_step(tr.G, tr.D, tr.opt_g, tr.opt_d, real, tr.cfg, None, tr.guidance)
    # How many generated samples D rejects, counted by hand: replay the step's noise, score with the logit D as
    # it stood after its D step (the G step leaves D's weights alone), in eval mode as the guidance selects.
    torch.manual_seed(11)
    torch.randn(len(real), 100)  # the D step's noise
    fake = G_before(torch.randn(len(real), 100))
    D_eval = copy.deepcopy(runs[0].D).eval()
    with torch.no_grad():
        rejected = int((torch.sigmoid(D_eval(fake)) < 0.5).sum())
    a, b = runs
    assert a.guidance.stats["n_explained"] == b.guidance.stats["n_explained"] == rejected > 0
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert a.step_stats[key] == pytest.approx(b.step_stats[key], rel=1e-5)
    for (name, p), q in zip(a.G.named_parameters(), b.G.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-7), name
    # D's gradients (its loss plus the G step's): Adam's first update is ~lr * sign(grad), too sharp to compare.
    for p, q in zip(a.D.parameters(), b.D[0].parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7)


def test_inert_guidance_is_reported_once_and_strict_stops(tmp_path, folder, capsys):
    """A threshold no early D score falls under selects nothing: the run says so once in metrics.jsonl; with
    xai_strict it stops, one line."""
    import json

    from xaigan import cli

    base = ["train", "--dataset", folder, "--epochs", "2", "--batch-size", "16", "--xai", "saliency", "--quiet"]
    base += ["--xai-start", "0", "--xai-threshold", "1e-9", "--xai-patience", "3", "--set", "tensorboard=false"]
    assert cli.main([*base, "--out", str(tmp_path / "warn")]) == 0
    records = [json.loads(x) for x in (tmp_path / "warn" / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "xai_health"]
    assert len(events) == 1 and events[0]["check"] == "nothing-explained" and events[0]["step"] == 3
    assert all(r["xai_explained"] == 0 for r in records if "xai_explained" in r)
    capsys.readouterr()
    assert cli.main([*base, "--xai-strict", "--out", str(tmp_path / "strict")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xaigan: error:") and "3" in err
