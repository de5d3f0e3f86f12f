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
from typing import Any

import torch
from torch import nn

from xaigan.errors import InputError

from .features import REGISTRY, FeatureExtractor
from .inception_net import FEATURE_DIM, INPUT_SIZE, NUM_CLASSES, FIDInceptionV3

__all__ = [
    "FID_WEIGHTS_URL",
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_SHA256_PREFIX",
    "WEIGHTS_ENV_VAR",
    "FEATURE_DIM",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "FIDInceptionV3",
    "InceptionExtractor",
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


class MissingWeightsError(InputError):
    """No FID Inception weights file could be found locally.

    Example:
        >>> from xaigan.metrics import features
        >>> try:
        ...     ext = features.get("inception")
        ... except MissingWeightsError as exc:
        ...     print(exc)  # where it looked, and how to get the file (download_fid_weights)
    """


class WeightsMismatchError(InputError):
    """A weights file does not match the FID Inception architecture (missing/unexpected/mis-shaped keys).

    Example:
        >>> from xaigan.metrics import features
        >>> try:
        ...     ext = features.get("inception", weights_path="other-model.pth")
        ... except WeightsMismatchError as exc:
        ...     print(exc)  # the keys that are missing, unexpected or mis-shaped
    """


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

    Args:
        dest_dir: the folder to download into (default: the torch hub cache, where lookups search).
        url: where to download from.
        timeout: the socket timeout, in seconds.
        overwrite: download even if the file is already there.

    Returns:
        The path of the weights file.

    Raises:
        MissingWeightsError: the download failed, was incomplete or does not match its SHA-256.

    Example:
        >>> path = download_fid_weights()  # needs the network; offline, copy the file to the path it names
        >>> path.name
        'pt_inception-2015-12-05-6726825d.pth'
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


class InceptionExtractor(FeatureExtractor):
    """FID Inception-v3 pool3 features (2048-d). Greyscale inputs are repeated to 3 channels."""

    name = "inception"

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        *,
        batch_size: int = 50,
        device: str | torch.device = "cpu",
    ) -> None:
        net, path = build_fid_inception(weights_path)
        self.weights_path = path
        super().__init__(
            net,
            id="inception-v3-fid/pt_inception-2015-12-05/pool3",
            dim=FEATURE_DIM,
            batch_size=batch_size,
            device=device,
        )

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"inception extractor needs 1 or 3 channels, got {x.shape[1]}")
        return x.float() / 255.0  # [0, 1]; the network resizes to 299 and maps to [-1, 1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@REGISTRY.decorator("inception")
def _make_inception(**kwargs: Any) -> InceptionExtractor:
    return InceptionExtractor(**kwargs)
