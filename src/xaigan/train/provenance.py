"""Where and with what a run was trained: code version, library versions, device, threads, precision.

A study's cells trained on different machines or code versions are not comparable without saying so; each run's
``summary.json`` carries this record so that reports can tell.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import xaigan
from xaigan import models

CPU_EXTENSIONS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what decides our CPU step's speed


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_EXTENSIONS` it has (empty where ``cpuinfo`` is unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "extensions": []}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name", platform.machine()),
        "extensions": [x for x in CPU_EXTENSIONS if x in flags],
    }


def device_info(device: torch.device) -> dict[str, Any]:
    """The device a run trained on: a GPU's name and memory, or the CPU's model and vector extensions."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return {"type": device.type, **cpu_info()}


def git_state(folder: str | Path | None = None) -> dict[str, Any] | None:
    """The commit of the git checkout holding ``folder`` (default: this package's source), the git tree hash of
    ``folder`` itself at that commit (``source``: what the code was, whatever else the commit changed, e.g. docs) and
    whether ``folder`` had uncommitted changes; ``None`` outside a checkout (an installed wheel) or without git."""
    where = Path(folder) if folder is not None else Path(xaigan.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        source = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD:./"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "source": source, "dirty": bool(status.strip())}


def provenance(device: torch.device, precision: str, model: str = "") -> dict[str, Any]:
    """Everything :mod:`xaigan.train.provenance` records for a run trained on ``device`` in ``precision``; for your
    own ``model`` (``package.module:function``) also its import path, file and the file's sha256."""
    own = {"model": models.source(model)} if models.is_import_path(model) else {}
    return {
        "xaigan": xaigan.__version__,
        "git": git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device_info(device),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "deterministic": torch.are_deterministic_algorithms_enabled(),  # while it trained (deterministic: true)
        **own,
    }
