"""Atomic file writes, hashing and image files: the small I/O pieces every module shares."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import itertools
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

from xaigan.errors import InputError, MissingFileError

FAILPOINT_ENV = "XAIGAN_FAILPOINT"
_write_count = itertools.count(1)


def _failpoint(path: Path, tmp: str) -> None:
    """Fault injection for the reliability suite (``tests/fault_injection.py``), off unless ``$XAIGAN_FAILPOINT``
    is set to ``KIND:N``: at the N-th atomic write of the process, ``kill`` truncates the temp file to half and
    SIGKILLs the process (a crash mid-write), ``enospc``/``erofs`` raise the OSError of a full disk or a
    read-only folder; ``trace:FILE`` appends every written path to FILE. ``KIND:N:COUNTER`` counts the writes of
    every process sharing the file COUNTER (a grid's worker processes and their parent), under a lock."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    kind, _, rest = spec.partition(":")
    if kind == "trace":  # list every write (to pick moments from)
        with open(rest, "a") as trace:
            fcntl.flock(trace, fcntl.LOCK_EX)
            trace.write(f"{path}\n")
        return
    n, _, counter = rest.partition(":")
    if counter:
        with open(counter, "ab") as shared:
            fcntl.flock(shared, fcntl.LOCK_EX)
            shared.write(b".")
            shared.flush()
            number = os.fstat(shared.fileno()).st_size
    else:
        number = next(_write_count)
    if number != int(n):
        return
    if kind == "kill":
        os.truncate(tmp, os.path.getsize(tmp) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    codes = {"enospc": errno.ENOSPC, "erofs": errno.EROFS}
    if kind in codes:
        raise OSError(codes[kind], os.strerror(codes[kind]), str(path))


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``os.umask`` can only set it, and setting
    it briefly would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write via a temp file in the same folder, fsync, then rename: readers never see a partial file.

    The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask), not ``mkstemp``'s 0600: a
    report copied to a web folder must stay readable.

    Args:
        path: the file to write (its folder is created if needed).
        write: ``write(handle)`` writes the content to a binary file handle.

    Returns:
        ``path``.

    Example:
        >>> atomic_write("/tmp/xaigan-example.txt", lambda handle: handle.write(b"hello")).read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            _failpoint(path, tmp)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (best effort: not every filesystem allows fsync on a folder)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = True) -> int:
    """Delete the temp files of :func:`atomic_write` left by processes that died mid-write (their pid is in the
    name, so a live writer's temp file is never touched). Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for tmp in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        parts = tmp.name[: -len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[1].isdigit() and not _alive(int(parts[1])) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(payload))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class UnreadableFileError(InputError):
    """A file that exists but cannot be read as what it should be (truncated, garbled or foreign)."""


def load_torch(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    A missing file is a :class:`~xaigan.errors.MissingFileError` (a ``FileNotFoundError``); a truncated, garbled
    or foreign file (or one carrying code, which ``weights_only`` refuses) is one :class:`UnreadableFileError`
    naming the file, not the zip reader's traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no file {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip reader, unpickler and weights_only refusals all land here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableFileError(f"{path} is truncated, corrupt or not a checkpoint ({first[:200]})") from exc


def content_hash(x: Any, chunk: int = 1 << 24) -> str:
    """sha256 of an array's dtype, shape and C-order bytes (torch tensor or numpy array): the key for anything
    cached from it.

    Args:
        x: a torch tensor or anything numpy turns into an array.
        chunk: bytes hashed per update (memory use, not the result).

    Returns:
        The hex digest.

    Example:
        >>> import numpy as np, torch
        >>> content_hash(torch.zeros(2, 2)) == content_hash(np.zeros((2, 2), dtype=np.float32))
        True
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().contiguous().numpy()
    arr = np.ascontiguousarray(x)
    digest = hashlib.sha256(f"dtype={arr.dtype.str};shape={tuple(arr.shape)};".encode())
    flat = arr.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, chunk):
        digest.update(memoryview(flat[start : start + chunk]))
    return digest.hexdigest()


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map images in [-1, 1] to uint8 the way a saved PNG would hold them (round to nearest)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 ``(N, C, H, W)`` images into one ``(H', W', C)`` array, row-major, ``nrow`` per row."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, c), pad_value, np.uint8)
    arr = images.cpu().numpy().transpose(0, 2, 3, 1)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def save_image_grid(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 1) -> None:
    """Save a batch of images in [-1, 1] (or uint8) as one PNG grid, atomically."""
    grid = make_grid(images, nrow=nrow)
    mode = "L" if grid.shape[2] == 1 else "RGB"
    picture = Image.fromarray(grid[:, :, 0] if mode == "L" else grid, mode)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_side_by_side(pictures: list[Path], labels: list[str], path: Path, scale: int = 2) -> None:
    """Save PNG pictures of equal height side by side, each with its label above it, as one PNG, atomically."""
    from PIL import ImageDraw

    images = [Image.open(p).convert("RGB") for p in pictures]
    images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    gap, band = 16, 24
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, band + max(im.height for im in images)), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for im, label in zip(images, labels):
        canvas.paste(im, (x, band))
        draw.text((x + 4, 6), label, fill="black")
        x += im.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
