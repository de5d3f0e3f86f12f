"""``g_ema``: a moving average of G's weights, checked against a hand computation of the average from G's weights
after every step; training itself is unchanged, resume restores the average, and samples and evaluation use it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.conftest import write_image_folder
from xaigan import config as cfg_mod
from xaigan import metrics, train
from xaigan.config import ConfigError
from xaigan.evaluate import Evaluator, evaluate_run, generate_uint8, load_generator
from xaigan.experiments import prepare_run
from xaigan.io import load_torch
from xaigan.train import trainer as trainer_mod
from xaigan.train.ema import WeightAverage


def test_weight_average_by_hand():
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    avg = WeightAverage(net, decay=0.5)
    w0 = net[0].weight.detach().numpy().astype(np.float64).copy()
    expected = w0
    for t, value in enumerate((1.0, -2.0, 4.0), start=1):
        with torch.no_grad():
            net[0].weight.fill_(value)
            net[1].running_mean.fill_(10 * value)
        avg.update(net)
        d = min(0.5, (1 + t) / (10 + t))  # 2/11, 3/12, then 0.5
        expected = d * expected + (1 - d) * value
        np.testing.assert_allclose(avg.module[0].weight.numpy(), expected, rtol=1e-6)
        assert float(avg.module[1].running_mean) == 10 * value  # buffers are copied, not averaged
    assert avg.updates == 3 and not any(p.requires_grad for p in avg.module.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


def test_g_ema_must_be_below_one():
    with pytest.raises(ConfigError, match="g_ema"):
        cfg_mod.resolve({"g_ema": 1.0})


@pytest.fixture
def cfg(tmp_path):
    write_image_folder(tmp_path / "imgs", n=60, size=16, mode="L")
    base = {"dataset": f"folder:{tmp_path / 'imgs'}", "epochs": 2, "batch_size": 20, "progress": False}
    return cfg_mod.resolve({**base, "tensorboard": False, "seed": 3})


def test_training_is_unchanged_and_the_average_follows_every_step(tmp_path, cfg, monkeypatch):
    train.from_config(cfg, tmp_path / "plain").fit()
    after_step: list[list[np.ndarray]] = []
    real_step = trainer_mod.gan_step

    def recording_step(G, *args, **kwargs):
        stats = real_step(G, *args, **kwargs)
        after_step.append([p.detach().numpy().astype(np.float64).copy() for p in G.parameters()])
        return stats

    monkeypatch.setattr(trainer_mod, "gan_step", recording_step)
    tr = train.from_config(cfg.replace(g_ema=0.9), tmp_path / "ema")
    start = [p.detach().numpy().astype(np.float64).copy() for p in tr.G.parameters()]
    tr.fit()

    plain, ema = load_torch(tmp_path / "plain/checkpoints/last.pt"), load_torch(tmp_path / "ema/checkpoints/last.pt")
    for net in ("G", "D"):
        assert all(torch.equal(plain[net][k], ema[net][k]) for k in plain[net]), net
    expected = start
    for t, weights in enumerate(after_step, start=1):
        d = min(0.9, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    assert len(after_step) == 6
    averaged = [p.numpy() for p in tr.ema.module.parameters()]
    for got, want, last in zip(averaged, expected, after_step[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, last)  # it is an average, not G

    G, _ = load_generator(tmp_path / "ema")  # evaluation and `xaigan sample` read the average
    assert all(torch.equal(a, b) for a, b in zip(G.parameters(), tr.ema.module.parameters()))
    with torch.no_grad():
        averaged_image, g_image = (net.eval()(tr.fixed_noise)[0, 0] for net in (tr.ema.module, tr.G))
    tile = np.asarray(Image.open(tmp_path / "ema/samples/epoch_0001.png").convert("L"))[2:18, 2:18].astype(float)
    assert np.abs(tile - np.rint((averaged_image.clamp(-1, 1).numpy() + 1) * 127.5)).max() <= 1  # the first tile
    assert np.abs(tile - np.rint((g_image.clamp(-1, 1).numpy() + 1) * 127.5)).max() > 1


def test_resume_restores_the_average(tmp_path, cfg):
    cfg = cfg.replace(g_ema=0.8)
    train.from_config(cfg, tmp_path / "straight").fit()
    train.from_config(cfg, tmp_path / "resumed").fit(stop_at_step=4)
    train.resume(tmp_path / "resumed").fit()
    a, b = (load_torch(tmp_path / name / "checkpoints/last.pt")["G_ema"] for name in ("straight", "resumed"))
    assert a["updates"] == b["updates"] == 6
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


@pytest.mark.slow
def test_evaluation_scores_the_average_and_logs_g_beside_it(tmp_path):
    write_image_folder(tmp_path / "imgs32", n=120, size=32, mode="L")  # the domain extractor's size
    base = {"dataset": f"folder:{tmp_path / 'imgs32'}", "epochs": 2, "batch_size": 40, "progress": False}
    cfg = cfg_mod.resolve({**base, "tensorboard": False, "eval_every": 1, "eval_n": 60})
    prepare_run(cfg, tmp_path / "plain").fit()
    tr = prepare_run(cfg.replace(g_ema=0.9), tmp_path / "ema")
    tr.fit()
    plain, ema = (_evaluations(tmp_path / name) for name in ("plain", "ema"))
    assert [r["fid_raw"] for r in ema] == [r["fid"] for r in plain]  # G trained exactly as without the average
    ev = Evaluator(cfg.dataset)
    by_hand = metrics.fid(ev.real["features"], ev.extractor(generate_uint8(tr.ema.module, 60, cfg.noise_dim, seed=0)))
    assert ema[-1]["fid"] == pytest.approx(by_hand, rel=1e-4) and ema[-1]["fid"] != ema[-1]["fid_raw"]
    final = evaluate_run(tmp_path / "ema", n=60)
    assert final["fid"] == pytest.approx(by_hand, rel=1e-4)


def _evaluations(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"fid"' in line]
