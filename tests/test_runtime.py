"""resolve_runtime: the one place where device, precision, d_output, explain_mode and progress become what runs."""

from __future__ import annotations

import torch
from torch import nn

from xaigan import train
from xaigan.config import Config
from xaigan.train import runtime


def _d(*tail: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), *tail, nn.Linear(8, 1))


def test_each_setting_resolves_against_d_and_device(monkeypatch):
    cpu = torch.device("cpu")
    plain = train.resolve_runtime(Config(), _d(nn.ReLU()), cpu)
    assert (plain.d_output, plain.explain_mode, plain.precision, plain.progress) == ("logit", "eval", "fp32", True)
    sigmoid = nn.Sequential(_d(nn.ReLU()), nn.Sigmoid())
    assert train.resolve_runtime(Config(), sigmoid, cpu).d_output == "prob"
    assert train.resolve_runtime(Config(), _d(nn.BatchNorm1d(8)), cpu).explain_mode == "batch"
    assert train.resolve_runtime(Config(explain_mode="train"), _d(nn.BatchNorm1d(8)), cpu).explain_mode == "train"
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: True)
    assert train.resolve_runtime(Config(precision="auto"), _d(), cpu).precision == "bf16"
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: False)
    assert train.resolve_runtime(Config(precision="auto"), _d(), cpu).precision == "fp32"
    assert train.resolve_runtime(Config(precision="auto"), _d(), None).precision == "auto"  # not training here
    assert train.resolve_runtime(Config(progress=True), _d(), cpu, progress=False).progress is False


def test_the_trainer_records_what_ran_and_leaves_progress_out_of_the_config(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: False)
    cfg = Config(dataset="mnist", epochs=1, precision="auto", progress=True)
    trainer = train.from_config(cfg, tmp_path / "run", progress=False)
    assert trainer.runtime.progress is False and trainer.cfg.progress is True
    recorded = trainer.run.read_config()
    assert (recorded["precision"], recorded["d_output"], recorded["explain_mode"]) == ("fp32", "logit", "eval")
    trainer.lock.release()
