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
    from_config(_cfg(folder, xai="saliency", alpha=0.0, xai_select="all"), tmp_path / "xai0").fit()
    a = load_torch(tmp_path / "none" / "checkpoints" / "last.pt")
    b = load_torch(tmp_path / "xai0" / "checkpoints" / "last.pt")
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"
    assert sorted(p.name for p in (tmp_path / "xai0" / "explanations").iterdir()) == [
        "epoch_0000.png",
        "epoch_0001.png",
    ]


def test_explained_step_matches_the_formula(tmp_path, folder):
    cfg = _cfg(folder, xai="saliency", alpha=0.2, xai_select="all", g_clip=0.0)
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
