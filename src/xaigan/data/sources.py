"""Where a dataset's raw files come from: explicit folder, user cache, system copy, download, offline subset.

Sources are tried in that order; the first that has every file wins and is recorded in the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from xaigan.errors import InputError
from xaigan.io import md5_file

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class RemoteFile:
    """One canonical file: its name, the md5 of the canonical download, and the sha256 of its content.

    ``content_sha256`` is of the decompressed payload, so a copy recompressed by a distribution (Debian's
    gzip differs byte-wise from the original) still verifies.
    """

    name: str
    md5: str
    content_sha256: str | None = None


@dataclass(frozen=True)
class Resolved:
    """Where a dataset was found."""

    source: str
    location: Path
    files: dict[str, Path]
    note: str = ""
    tried: list[str] = field(default_factory=list)


class DataUnavailableError(InputError):
    """No source could supply a dataset."""


def home() -> Path:
    """The user cache: ``$XAIGAN_HOME``, default ``~/.cache/xaigan``."""
    return Path(os.environ.get("XAIGAN_HOME", Path.home() / ".cache" / "xaigan")).expanduser()


def cache_dir(dataset: str) -> Path:
    return home() / "datasets" / dataset


def _candidates(folder: Path, stem: str, subdirs: tuple[str, ...]) -> list[Path]:
    """Paths a file may sit at: the folder and usual sub-folders, compressed or not."""
    names = [stem, stem[:-3]] if stem.endswith(".gz") else [stem, stem + ".gz"]
    return [folder / sub / name for sub in ("", *subdirs) for name in names]


def find_files(folder: Path, files: tuple[RemoteFile, ...], subdirs: tuple[str, ...] = ()) -> dict[str, Path] | None:
    """Map each file's canonical name to where it sits below ``folder``; ``None`` if any is missing."""
    if not folder.is_dir():
        return None
    found: dict[str, Path] = {}
    for remote in files:
        hit = next((p for p in _candidates(folder, remote.name, subdirs) if p.is_file()), None)
        if hit is None:
            return None
        found[remote.name] = hit
    return found


def offline_mode() -> bool:
    return os.environ.get("XAIGAN_OFFLINE", "").lower() in ("1", "true", "yes")


def download(remote: RemoteFile, mirrors: tuple[str, ...], dest_dir: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch ``remote`` from the first mirror that answers, verify its md5, and move it into ``dest_dir``.

    A partial or corrupt download never reaches ``dest_dir``. Raises ``OSError`` when no mirror works.
    """
    if offline_mode():
        raise OSError("downloads disabled (XAIGAN_OFFLINE is set)")
    errors = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + remote.name
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                shutil.copyfileobj(response, out)
            digest = md5_file(Path(tmp))
            if digest != remote.md5:
                raise OSError(f"checksum mismatch (md5 {digest}, expected {remote.md5})")
            final = dest_dir / remote.name
            os.replace(tmp, final)
            log.info("downloaded %s", url)
            return final
        except (TimeoutError, OSError, urllib.error.URLError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise OSError("; ".join(errors))


def fetch_all(files: tuple[RemoteFile, ...], mirrors: tuple[str, ...], dest_dir: Path) -> dict[str, Path]:
    """Download every missing file into ``dest_dir``; stop at the first file no mirror can supply."""
    found: dict[str, Path] = {}
    for remote in files:
        existing = dest_dir / remote.name
        found[remote.name] = existing if existing.is_file() else download(remote, mirrors, dest_dir)
    return found


def verify_file(path: Path, remote: RemoteFile) -> str:
    """``ok`` when the md5 of the canonical file or the sha256 of its content matches; else why not."""
    import hashlib

    from xaigan.data.formats import read_bytes

    if path.name == remote.name and md5_file(path) == remote.md5:
        return "ok (md5)"
    if remote.content_sha256 is None:
        return "unverified (no content checksum known for a recompressed or uncompressed copy)"
    digest = hashlib.sha256(read_bytes(path)).hexdigest()
    return "ok (content sha256)" if digest == remote.content_sha256 else f"MISMATCH (content sha256 {digest[:16]}...)"
