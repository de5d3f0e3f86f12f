"""Each run records where and with what it was trained; a slow precision choice is told."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from pathlib import Path

import torch

import xaigan
from tests.conftest import write_image_folder
from xaigan import config, process, train
from xaigan.train import factory, runtime
from xaigan.train.provenance import cpu_info


def _cfg(tmp_path: Path, **extra) -> config.Config:
    folder = tmp_path / "imgs"
    write_image_folder(folder, n=16)
    return config.Config(dataset=f"folder:{folder}", epochs=1, batch_size=8, tensorboard=False, progress=False, **extra)


def test_summary_records_versions_device_threads_and_precision(tmp_path):
    train.from_config(_cfg(tmp_path), tmp_path / "run").fit()
    got = json.loads((tmp_path / "run" / "summary.json").read_text())["provenance"]
    assert got["xaigan"] == xaigan.__version__ and got["torch"] == torch.__version__
    assert got["python"] == platform.python_version() and got["threads"] == torch.get_num_threads()
    assert got["precision"] == "fp32" and got["device"]["type"] == "cpu"
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    assert ("avx2" in got["device"]["extensions"]) == ("avx2" in flags)
    assert ("amx_tile" in got["device"]["extensions"]) == ("amx_tile" in flags)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:  # tests run from a checkout: the commit is this one
        assert got["git"]["commit"] == head.stdout.strip() and isinstance(got["git"]["dirty"], bool)
        tree = subprocess.run(
            ["git", "rev-parse", "HEAD:src/xaigan"], cwd=Path(__file__).parents[1], capture_output=True, text=True
        )
        assert got["git"]["source"] == tree.stdout.strip()  # the package's own source, not the whole commit


def test_cpu_info_reads_model_and_extensions(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse avx2 avx512f amx_tile\n")
    assert cpu_info(fake) == {"model": "Some CPU 9000", "extensions": ["avx2", "avx512f", "amx_tile"]}


def test_bf16_without_fast_bf16_warns_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: False)
    monkeypatch.setattr(process, "_said", set())
    with caplog.at_level(logging.WARNING, logger="xaigan"):
        for name in ("a", "b"):
            factory.build_parts(_cfg(tmp_path / name, precision="bf16"), tmp_path / name / "run")
    said = [r for r in caplog.records if "without fast bf16" in r.getMessage()]
    assert len(said) == 1
