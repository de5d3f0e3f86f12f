"""Shared fixtures: an isolated user cache, synthetic datasets written in the real file formats."""

from __future__ import annotations

import gzip
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty XAIGAN_HOME and no network downloads unless it asks for them."""
    home = tmp_path_factory.mktemp("xaigan_home")
    monkeypatch.setenv("XAIGAN_HOME", str(home))
    monkeypatch.setenv("XAIGAN_OFFLINE", "1")
    return home


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in the IDX format by hand (magic 0,0,type,ndim; big-endian int32 dims; data)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + dims + array.tobytes()


def write_idx_dataset(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """A tiny MNIST-layout dataset (28x28 uint8) in IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[prefix] = (images, labels)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            payload = idx_bytes(arr)
            name = f"{prefix}-{kind}"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
    return arrays


def cifar_batch(n: int, rng: np.random.Generator) -> dict:
    return {
        b"batch_label": b"synthetic",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar(folder: Path, per_batch: int = 5, archive: bool = True, seed: int = 0) -> dict:
    """CIFAR-10 python batches (pickled dicts with bytes keys), as a tar.gz archive or an extracted folder."""
    rng = np.random.default_rng(seed)
    batches_dir = folder / "cifar-10-batches-py"
    batches_dir.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for name in names:
        batch = cifar_batch(per_batch, rng)
        written[name] = batch
        (batches_dir / name).write_bytes(pickle.dumps(batch, protocol=2))
    if archive:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(batches_dir, arcname="cifar-10-batches-py")
    return written


def write_image_folder(folder: Path, n: int = 40, size: int = 32, mode: str = "L", seed: int = 0) -> None:
    """``n`` random PNGs in two class sub-folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"class_{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        shape = (size, size) if mode == "L" else (size, size, 3)
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(sub / f"{i:03d}.png")


needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
