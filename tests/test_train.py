import json
import math

import pytest
import torch
import yaml

from tests.conftest import FASHION_DIR, needs_fashion, write_image_folder
from xaigan import cli, train
from xaigan import config as cfg_mod
from xaigan.io import load_torch
from xaigan.train import RunExistsError


@pytest.fixture
def folder_cfg(tmp_path):
    write_image_folder(tmp_path / "imgs", n=150, size=32, mode="L")
    return cfg_mod.resolve(
        {"dataset": f"folder:{tmp_path / 'imgs'}", "epochs": 3, "batch_size": 32, "progress": False, "seed": 4}
    )


def _weights(run_dir):
    state = load_torch(run_dir / "checkpoints" / "last.pt")
    return state


OWN_NETS = """
from torch import nn


def build(channels, image_size, noise_dim):
    side = channels * image_size**2
    G = nn.Sequential(nn.Linear(noise_dim, side), nn.Tanh(), nn.Unflatten(1, (channels, image_size, image_size)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(side, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return G, D
"""

VARIANTS = {
    "paper": {},
    "sngan-hinge-topk": {
        **{"model": "sngan-small", "loss": "hinge", "g_topk": True, "g_topk_gamma": 0.7, "g_accept_weight": 0.5},
        **{"xai": "saliency", "xai_start": 0.34, "diffaugment": "translation"},
    },
    "own-nets": {"model": "own_nets_for_resume:build", "loss": "ns", "spectral_norm": "on"},
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_interrupt_and_resume_is_bit_identical(tmp_path, folder_cfg, variant, monkeypatch):
    (tmp_path / "own_nets_for_resume.py").write_text(OWN_NETS)
    monkeypatch.chdir(tmp_path)
    folder_cfg = folder_cfg.replace(**VARIANTS[variant])
    train.from_config(folder_cfg, tmp_path / "straight").fit()
    interrupted = train.from_config(folder_cfg, tmp_path / "resumed")
    result = interrupted.fit(stop_at_step=7)  # mid-epoch 1 (5 steps per epoch)
    assert result["interrupted"] and result["step"] == 7
    del interrupted
    torch.manual_seed(12345)  # any RNG use between the two processes must not matter
    train.resume(tmp_path / "resumed").fit()
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"
    assert a["step"] == b["step"] == 15
    lines_a = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    lines_b = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines_b] == list(range(1, 16))
    assert [r["g_loss"] for r in lines_a] == [r["g_loss"] for r in lines_b]


def test_refuses_existing_run(tmp_path, folder_cfg):
    train.from_config(folder_cfg, tmp_path / "run").fit(stop_at_step=1)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(RunExistsError, match="--resume"):
        train.from_config(folder_cfg, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before
    train.from_config(folder_cfg, tmp_path / "run", overwrite=True)


def test_checkpoint_contents_load_weights_only(tmp_path, folder_cfg):
    train.from_config(folder_cfg, tmp_path / "run").fit(stop_at_step=2)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert {"G", "D", "opt_g", "opt_d", "epoch", "position", "step", "rng"} <= set(state)
    assert state["position"] == 2 and state["opt_g"]["state"]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


@needs_fashion
def test_short_real_training_on_fashion_mnist(tmp_path, capsys):
    out = tmp_path / "fm"
    code = cli.main(
        ["train", "--dataset", "fashion-mnist", "--fraction", "0.03", "--epochs", "2", "--quiet", "--out", str(out)]
    )
    assert code == 0
    meta = json.loads((out / "data.json").read_text())
    assert meta["source"] == "system" and meta["location"] == str(FASHION_DIR) and meta["n"] == 2100
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 17
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records)
    assert all(0 <= r["d_real"] <= 1 and r["sec_per_step"] > 0 for r in records)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_0000.png", "epoch_0001.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 34 and summary["data"]["fraction"] == 0.03
    cfg = cfg_mod.load_yaml(out / "config.yaml")
    assert cfg["fraction"] == 0.03 and cfg["dataset"] == "fashion-mnist"
    # Sampling from the trained run writes a grid and refuses to overwrite it.
    grid = tmp_path / "grid.png"
    assert cli.main(["sample", str(out), "--n", "16", "--out", str(grid)]) == 0 and grid.is_file()
    assert cli.main(["sample", str(out), "--n", "16", "--out", str(grid)]) == 2
    assert cli.main(["sample", str(out), "--n", "16", "--out", str(grid), "--overwrite"]) == 0  # as train and demo
    # Resuming a finished run trains nothing more and keeps its samples.
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 34


def test_cli_data_list_and_verify(capsys):
    assert cli.main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert "cifar10" in listing and "fashion-mnist" in listing
    if (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        assert cli.main(["data", "verify", "fashion-mnist"]) == 0
        out = capsys.readouterr().out
        assert out.count("ok (content sha256)") == 4
    assert cli.main(["data", "verify", "imagenet"]) == 2


def test_loading_a_checkpoint_writes_nothing(tmp_path, folder_cfg):
    run = tmp_path / "run"
    train.from_config(folder_cfg, run).fit(stop_at_step=7)
    # A torn record after the checkpoint (as a crash leaves): loading must not touch it, training again trims it.
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 8, "g_loss": 1.0}\n')

    def files():  # the lock file records which process holds the run: bookkeeping, not the run's data
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    trainer = train.resume(run)
    assert trainer.step == 7 and trainer.position == 2
    after = files()
    assert after == before
    trainer.fit(stop_at_step=8)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9)) and "d_loss" in records[-1]  # the stale record is gone


def test_missing_data_dir_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    code = cli.main(["train", "--dataset", "mnist", "--data-dir", str(missing), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("amx", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_with_amx_and_the_run_records_it(tmp_path, folder_cfg, monkeypatch, amx, expected):
    """Without AMX, CPU bf16 runs through AVX-512 and is slower than fp32 (docs/benchmarks.md): auto picks fp32."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    trainer = train.from_config(folder_cfg.replace(precision="auto", device="cpu"), tmp_path / "run")
    assert trainer.cfg.precision == expected
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["precision"] == expected
    assert train.pick_precision("fp32", torch.device("cpu")) == "fp32"  # a named precision is kept as asked
    assert train.pick_precision("bf16", torch.device("cpu")) == "bf16"
