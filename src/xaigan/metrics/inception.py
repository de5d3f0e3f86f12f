"""The FID Inception-v3 network (TensorFlow ``inception-2015-12-05`` graph, as ported to PyTorch).

This is our own module definition of the network that the standard FID implementations use. The
attribute names reproduce the state-dict keys of the widely used ported weights file
``pt_inception-2015-12-05-6726825d.pth`` (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.
running_mean``, ..., ``fc.weight`` of shape (1008, 2048)) so that file loads with
``torch.load(path, weights_only=True)`` followed by a strict ``load_state_dict``.

How the FID variant differs from a stock (torchvision) Inception-v3:

* The average pools inside the A, C and first E blocks ignore the zero padding
  (``count_include_pad=False``), as TensorFlow's average pooling does.
* The last E block (``Mixed_7c``) pools its ``branch_pool`` input with a 3x3/stride-1 *max* pool
  instead of an average pool (a quirk of that TF graph).
* The classifier has 1008 outputs (the TF graph's label space); there is no auxiliary head.
* Input: images in [0, 1] are bilinearly resized to 299x299 (``align_corners=False``), then mapped
  to [-1, 1] with ``2x - 1``. Features are the 2048-d "pool3" activations: adaptive average pool of
  the last block, flattened.

All convolutions are bias-free and followed by BatchNorm with ``eps=1e-3`` and a ReLU.

Weights are never fetched implicitly: :func:`resolve_weights_path` only looks at local files and
raises :class:`MissingWeightsError` (naming every path tried and the download URL) if none exists.
:func:`download_fid_weights` is an explicit opt-in downloader with a SHA-256 check.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FID_WEIGHTS_URL",
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_SHA256_PREFIX",
    "WEIGHTS_ENV_VAR",
    "FIDInceptionV3",
    "MissingWeightsError",
    "WeightsMismatchError",
    "candidate_weights_paths",
    "resolve_weights_path",
    "load_fid_state_dict",
    "build_fid_inception",
    "download_fid_weights",
]

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILENAME}"
# torch.hub convention: the hex suffix of the file name is the prefix of the file's SHA-256.
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
# Optional override: an explicit path to the weights file.
WEIGHTS_ENV_VAR = "XAIGAN_INCEPTION_WEIGHTS"

FEATURE_DIM = 2048
NUM_CLASSES = 1008
INPUT_SIZE = 299


class MissingWeightsError(ValueError):
    """No FID Inception weights file could be found locally."""


class WeightsMismatchError(ValueError):
    """A weights file does not match the FID Inception architecture (missing/unexpected/mis-shaped keys)."""


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


class _ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; keys ``conv.weight`` and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3_nopad(x: torch.Tensor) -> torch.Tensor:
    # TF-style 3x3 average pool: padded positions do not count in the denominator.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _Mixed35(nn.Module):
    """35x35 block (Mixed_5b/5c/5d): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg3_nopad(x))
        return torch.cat([a, b, c, d], dim=1)


class _Reduce35to17(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1->3x3->3x3/2 | maxpool 3x3/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        c = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([a, b, c], dim=1)


class _Mixed17(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_avg3_nopad(x))
        return torch.cat([a, b, c, d], dim=1)


class _Reduce17to8(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        c = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([a, b, c], dim=1)


class _Mixed8(nn.Module):
    """8x8 block with split 1x3/3x1 heads (Mixed_7b with TF-style avg pool, Mixed_7c with max pool)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], dim=1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], dim=1)
        if self.pool == "max":
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            p = _avg3_nopad(x)
        d = self.branch_pool(p)
        return torch.cat([a, b, c, d], dim=1)


class FIDInceptionV3(nn.Module):
    """FID Inception-v3. ``forward(x)`` maps images in [0, 1], shape (N, 3, H, W), to (N, 2048) pool3 features.

    Parameters
    ----------
    resize_input:
        Bilinearly resize to 299x299 (``align_corners=False``) first, as standard FID does.
    normalize_input:
        Map [0, 1] to [-1, 1].
    """

    def __init__(self, resize_input: bool = True, normalize_input: bool = True) -> None:
        super().__init__()
        self.resize_input = resize_input
        self.normalize_input = normalize_input
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _Mixed35(192, pool_features=32)
        self.Mixed_5c = _Mixed35(256, pool_features=64)
        self.Mixed_5d = _Mixed35(288, pool_features=64)
        self.Mixed_6a = _Reduce35to17(288)
        self.Mixed_6b = _Mixed17(768, c7=128)
        self.Mixed_6c = _Mixed17(768, c7=160)
        self.Mixed_6d = _Mixed17(768, c7=160)
        self.Mixed_6e = _Mixed17(768, c7=192)
        self.Mixed_7a = _Reduce17to8(768)
        self.Mixed_7b = _Mixed8(1280, pool="avg")
        self.Mixed_7c = _Mixed8(2048, pool="max")
        # Unused for features but part of the weights file (strict loading needs it).
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 2048)."""
        if self.resize_input:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        if self.normalize_input:
            x = 2.0 * x - 1.0
        x = self.Conv2d_1a_3x3(x)  # 149
        x = self.Conv2d_2a_3x3(x)  # 147
        x = self.Conv2d_2b_3x3(x)  # 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73
        x = self.Conv2d_3b_1x1(x)  # 73
        x = self.Conv2d_4a_3x3(x)  # 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = block(x)  # -> 17
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a):
            x = block(x)  # -> 8
        x = self.Mixed_7c(self.Mixed_7b(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool3(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """1008-way logits of the TF graph (no dropout at inference)."""
        return self.fc(self.pool3(x))


# --------------------------------------------------------------------------------------------------
# Weights: local lookup, strict loading, explicit download
# --------------------------------------------------------------------------------------------------


def _torch_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", str(default))).expanduser()


def hub_checkpoint_dir() -> Path:
    """Directory where torch.hub (and pytorch-fid) keep downloaded checkpoints."""
    return _torch_home() / "hub" / "checkpoints"


def candidate_weights_paths() -> list[Path]:
    """Local paths searched, in order, when no explicit ``weights_path`` is given."""
    paths: list[Path] = []
    env = os.environ.get(WEIGHTS_ENV_VAR)
    if env:
        paths.append(Path(env).expanduser())
    paths.append(hub_checkpoint_dir() / FID_WEIGHTS_FILENAME)
    try:  # honours torch.hub.set_dir() if the user changed it
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME
    except Exception:  # pragma: no cover - defensive, get_dir never fails in practice
        hub_dir = None
    if hub_dir is not None and hub_dir not in paths:
        paths.append(hub_dir)
    return paths


def _missing_message(tried: list[Path]) -> str:
    lines = "\n".join(f"  - {p}" for p in tried)
    return (
        "FID Inception-v3 weights not found. Paths tried:\n"
        f"{lines}\n"
        f"Expected file name: {FID_WEIGHTS_FILENAME}\n"
        f"Download it from {FID_WEIGHTS_URL}\n"
        f"and place it at {hub_checkpoint_dir() / FID_WEIGHTS_FILENAME} (or pass weights_path=..., "
        f"or set ${WEIGHTS_ENV_VAR}); with internet access, "
        "xaigan.metrics.inception.download_fid_weights() does this for you."
    )


def resolve_weights_path(weights_path: str | os.PathLike | None = None) -> Path:
    """Return the local weights file to use, or raise :class:`MissingWeightsError`.

    An explicit ``weights_path`` that does not exist is an error by itself (no silent fallback).
    """
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        if p.is_file():
            return p
        raise MissingWeightsError(_missing_message([p]))
    tried = candidate_weights_paths()
    for p in tried:
        if p.is_file():
            return p
    raise MissingWeightsError(_missing_message(tried))


def load_fid_state_dict(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a weights file into ``model`` with ``weights_only=True`` and strict key/shape checking.

    Raises :class:`WeightsMismatchError` listing missing, unexpected and mis-shaped keys.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling error, truncated file, not a torch file...
        raise WeightsMismatchError(f"could not read weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatchError(f"{path} does not contain a flat state dict of tensors")
    expected = model.state_dict()
    # BatchNorm fills in a missing ``num_batches_tracked`` for old-format files; it is not a weight.
    missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in expected)
    bad_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or bad_shape:

        def fmt(items: list[str]) -> str:
            shown = ", ".join(items[:8])
            return shown + (f", ... ({len(items)} total)" if len(items) > 8 else "")

        parts = [f"{path} is not a FID Inception-v3 state dict ({FID_WEIGHTS_FILENAME} layout)."]
        if missing:
            parts.append(f"missing keys: {fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {fmt(unexpected)}")
        if bad_shape:
            parts.append(f"shape mismatches: {fmt(bad_shape)}")
        raise WeightsMismatchError("\n".join(parts))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - pre-checks above catch the usual cases
        raise WeightsMismatchError(f"strict load of {path} failed: {exc}") from exc


def build_fid_inception(weights_path: str | os.PathLike | None = None) -> tuple[FIDInceptionV3, Path]:
    """Build the network and load local weights (strict). Returns ``(model_in_eval_mode, path)``."""
    path = resolve_weights_path(weights_path)
    model = FIDInceptionV3()
    load_fid_state_dict(model, path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, path


def download_fid_weights(
    dest_dir: str | os.PathLike | None = None,
    *,
    url: str = FID_WEIGHTS_URL,
    timeout: float = 15.0,
    overwrite: bool = False,
) -> Path:
    """Explicitly download the FID weights into ``dest_dir`` (default: the torch hub cache).

    Streams to a temporary file in the destination directory, checks the byte count against the
    server's Content-Length and the SHA-256 against the prefix encoded in the file name, then
    atomically renames. Never called implicitly. Network failures raise :class:`MissingWeightsError`
    quickly (socket ``timeout``).
    """
    dest = Path(dest_dir) if dest_dir is not None else hub_checkpoint_dir()
    final = dest / FID_WEIGHTS_FILENAME
    if final.is_file() and not overwrite:
        return final
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=".tmp-", suffix=".pth")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                expected = resp.headers.get("Content-Length")
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise MissingWeightsError(
                f"downloading {url} failed ({exc}). Offline? Fetch {FID_WEIGHTS_FILENAME} elsewhere and "
                f"copy it to {final}."
            ) from exc
        if expected is not None and int(expected) != size:
            raise MissingWeightsError(f"incomplete download of {url}: got {size} of {expected} bytes")
        hexdigest = digest.hexdigest()
        if not hexdigest.startswith(FID_WEIGHTS_SHA256_PREFIX):
            raise MissingWeightsError(
                f"SHA-256 mismatch for {url}: got {hexdigest}, expected prefix {FID_WEIGHTS_SHA256_PREFIX}"
            )
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final
