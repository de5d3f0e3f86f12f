"""Fewer, larger kernels (``adam: fused``, ``compile``) and deterministic algorithms (``deterministic``): what each
setting resolves to, that the fused and compiled steps compute the same update as the plain one (against a hand
computation of Adam and against eager PyTorch), and that a compiled or deterministic run resumes bit-identically."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from xaigan import models, train
from xaigan.config import Config, resolve
from xaigan.train import determinism, runtime
from xaigan.train.step import gan_step, make_optimizers, unwrapped


def _d() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))


def test_settings_resolve_per_device_and_precision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve({"compile": True}).compile == "true"  # YAML's boolean reads as the choice
    assert resolve({"compile": False}).compile == "false"
    auto = Config(compile="auto")
    assert train.resolve_runtime(auto, _d(), cpu).compile == "false"
    assert train.resolve_runtime(auto, _d(), cuda).compile == "true"
    assert train.resolve_runtime(auto, _d(), None).compile == "auto"  # not training here: left to the machine
    assert train.resolve_runtime(Config(), _d(), cpu).adam == "foreach"
    assert train.resolve_runtime(Config(precision="bf16"), _d(), cpu).adam == "fused"
    assert train.resolve_runtime(Config(adam="fused"), _d(), cpu).adam == "fused"
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: True)
    assert train.resolve_runtime(Config(precision="auto"), _d(), cpu).adam == "fused"
    assert train.resolve_runtime(Config(precision="auto"), _d(), None).adam == "auto"
    recorded = train.resolve_runtime(Config(compile="auto"), _d(), cuda).recorded(Config(compile="auto"))
    assert (recorded.compile, recorded.adam) == ("true", "foreach")


@pytest.mark.parametrize("adam", ["foreach", "fused"])
def test_both_adams_compute_adams_update_by_hand(adam):
    cfg = Config(adam=adam, lr_g=1e-2, beta1=0.5, beta2=0.99)
    G, D = nn.Linear(3, 2), nn.Linear(2, 1)
    opt_g, _ = make_optimizers(G, D, cfg)
    assert bool(opt_g.defaults["fused"]) is (adam == "fused") and bool(opt_g.defaults["foreach"]) is (adam == "foreach")
    torch.manual_seed(0)
    params = [p.detach().double().clone() for p in G.parameters()]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    b1, b2, lr, eps = 0.5, 0.99, 1e-2, 1e-8
    for t in range(1, 6):
        grads = [torch.randn_like(p) for p in params]
        for p, g in zip(G.parameters(), grads):
            p.grad = g.float()
        opt_g.step()
        for i, g in enumerate(grads):
            g = g.float().double()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] = params[i] - lr * (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps)
    for p, ref in zip(G.parameters(), params):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


def test_the_default_adam_is_bit_identical_to_the_per_parameter_loop():
    torch.manual_seed(0)
    G0, D0 = models.build("mlp")
    real = torch.rand(16, 1, 32, 32) * 2 - 1
    finals = []
    for loop in (False, True):
        G, D = models.build("mlp")
        G.load_state_dict(G0.state_dict())
        D.load_state_dict(D0.state_dict())
        opt_g, opt_d = make_optimizers(G, D, Config())
        if loop:
            betas = (Config().beta1, Config().beta2)
            opt_g = torch.optim.Adam(G.parameters(), lr=Config().lr_g, betas=betas, foreach=False)
            opt_d = torch.optim.Adam(D.parameters(), lr=Config().lr_d, betas=betas, foreach=False)
        torch.manual_seed(1)
        for _ in range(3):
            gan_step(G, D, opt_g, opt_d, real, Config())
        finals.append(torch.cat([p.detach().flatten() for p in G.parameters()]))
    assert torch.equal(finals[0], finals[1])


def test_unwrapped_finds_the_module_inside_a_compiled_one():
    D = _d()
    compiled = torch.compile(D)
    assert unwrapped(compiled) is D and unwrapped(D) is D
    assert list(unwrapped(compiled).state_dict()) == list(D.state_dict())  # no "_orig_mod." in checkpoints


def test_deterministic_switches_the_algorithms_on_for_the_block_only(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with determinism.deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice is kept
    with determinism.deterministic(True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    with determinism.deterministic(False):
        assert not torch.are_deterministic_algorithms_enabled()


def _weights(trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for net in (trainer.G, trainer.D) for p in net.parameters()])


def _run(tmp_path, name: str, stop: int | None = None, **changes):
    cfg = Config(dataset="mnist", fraction=0.05, epochs=2, batch_size=64, progress=False, tensorboard=False, **changes)
    trainer = train.from_config(cfg, tmp_path / name)
    out = trainer.fit(stop_at_step=stop)
    if stop is not None:
        assert out["interrupted"]
        trainer = train.resume(tmp_path / name)
        trainer.fit()
    return trainer


def test_a_deterministic_run_trains_deterministically_records_it_and_resumes_bit_identically(tmp_path):
    seen = []
    whole = _run(tmp_path, "whole", deterministic=True, xai="saliency")
    resumed = _run(tmp_path, "resumed", stop=3, deterministic=True, xai="saliency")
    assert torch.equal(_weights(whole), _weights(resumed))
    assert not torch.are_deterministic_algorithms_enabled()  # put back after fit()
    for trainer in (whole, resumed):
        summary = trainer.run.read_summary()
        seen.append(summary["provenance"]["deterministic"])
        assert trainer.run.read_config()["deterministic"] is True
    assert seen == [True, True]
    plain = _run(tmp_path, "plain", xai="saliency")
    assert plain.run.read_summary()["provenance"]["deterministic"] is False
    assert torch.equal(_weights(plain), _weights(whole))  # on a CPU our run was deterministic already


@pytest.mark.slow
def test_a_compiled_run_takes_eagers_steps_and_resumes_bit_identically(tmp_path, monkeypatch):
    # With inductor's own dropout RNG a compiled run draws other masks (another sample path of the same run);
    # drawing them from PyTorch's generator as eager does leaves only rounding between the two.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    eager = _run(tmp_path, "eager", xai="saliency", xai_start=0.0)
    compiled = _run(tmp_path, "compiled", xai="saliency", xai_start=0.0, compile="true")
    assert compiled.run.read_config()["compile"] == "true"
    assert isinstance(unwrapped(compiled._train_D), nn.Module) and compiled._train_D is not compiled.D
    diff = (_weights(compiled) - _weights(eager)).abs()
    assert 0 < diff.max() < 2 * Config().lr_g * compiled.step  # it did run compiled; Adam moves a weight ~lr a step
    # Rounding differences grow step by step (Adam normalises tiny gradients): the losses agree to ~1e-5 relative.
    losses = [[r["g_loss"] for r in t.run.read_metrics() if "g_loss" in r] for t in (eager, compiled)]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(torch._inductor.config, "fallback_random", False)
    whole = _run(tmp_path, "whole", compile="true", xai="deeplift-shap", xai_baselines=8, xai_start=0.0)
    resumed = _run(tmp_path, "resumed", stop=3, compile="true", xai="deeplift-shap", xai_baselines=8, xai_start=0.0)
    assert torch.equal(_weights(whole), _weights(resumed))
