"""Checkpoints: everything needed to continue a run bit-for-bit, stored as tensors (``weights_only=True`` loads)."""

from __future__ import annotations

import os
import random
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaigan.errors import MissingFileError
from xaigan.io import UnreadableFileError, load_torch, save_torch


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and ints only (a ``weights_only`` checkpoint
    can hold them).

    Returns:
        The states, for :func:`set_rng_state`.

    Example:
        >>> import torch
        >>> state = rng_state()
        >>> a = torch.rand(2)
        >>> set_rng_state(state)
        >>> torch.equal(a, torch.rand(2))
        True
    """
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python_version": int(py_version),
        "python_internal": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the torch, numpy and python RNG states that :func:`rng_state` returned (CUDA's when present here).

    Args:
        state: what :func:`rng_state` returned (or a checkpoint's ``"rng"``).

    Example:
        >>> import random
        >>> state = rng_state()
        >>> a = random.random()
        >>> set_rng_state(state)
        >>> a == random.random()
        True
    """
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    internal = tuple(int(v) for v in state["python_internal"].tolist())
    random.setstate((state["python_version"], internal, state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """One seed fixes python, numpy and torch (all devices).

    Args:
        seed: any integer (numpy gets it modulo 2**32).

    Example:
        >>> import torch
        >>> seed_everything(0)
        >>> a = torch.rand(2)
        >>> seed_everything(0)
        >>> torch.equal(a, torch.rand(2))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, payload: dict[str, Any], previous: Path | None = None) -> None:
    """Write atomically (temp file, fsync, rename). With ``previous``, the file ``path`` held is kept there first
    (a hard link, so ``path`` itself is never missing)."""
    path = Path(path)
    if previous is not None and path.is_file():
        link = previous.with_name(f".{previous.name}.{os.getpid()}.link.tmp")
        link.unlink(missing_ok=True)
        try:
            os.link(path, link)
        except OSError:  # filesystems without hard links
            shutil.copyfile(path, link)
        os.replace(link, previous)
        link.unlink(missing_ok=True)  # rename() does nothing when both names are links to one file already
    save_torch(payload, path)


def snapshot(obj: Any) -> Any:
    """A deep copy of the tensors in a nested state (so training can go on while it is written)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class AsyncWriter:
    """Writes checkpoints on a background thread, one at a time; ``wait()`` blocks until the last is on disk.

    The payload is snapshotted before ``submit`` returns, so the file holds the state at that moment. Serialising
    and fsync-ing a checkpoint off the training thread mostly overlaps training (timing in docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: Path, payload: dict[str, Any], previous: Path | None = None) -> None:
        self.wait()
        state = snapshot(payload)

        def run() -> None:
            try:
                save(path, state, previous)
            except BaseException as exc:  # re-raised on the training thread by wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="xaigan-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's state; missing, unreadable or incomplete files are one clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    state = load_torch(path)
    keys = ("G", "D", "opt_g", "opt_d", "epoch", "position", "step", "rng")
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise UnreadableFileError(f"{path} is not an xaigan training checkpoint (missing {', '.join(missing)})")
    return state
