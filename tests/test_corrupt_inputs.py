"""Every corrupt or hostile input a user can hand the CLI: one clear error line (no traceback without -v), a
non-zero exit, and every file that existed before the command unchanged."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import write_cifar, write_idx_dataset, write_image_folder
from xaigan import cli, train
from xaigan import config as cfg_mod
from xaigan.rundir import RunDir


def _idx(tmp, damage):
    write_idx_dataset(tmp / "m", gz=damage != "truncated-raw")
    if damage == "truncated-raw":
        path = tmp / "m" / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbled-gzip":
        path = tmp / "m" / "train-images-idx3-ubyte.gz"
        payload = path.read_bytes()
        path.write_bytes(payload[:40] + bytes(60) + payload[100:])
    elif damage == "bad-magic":
        path = tmp / "m" / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + bytes(100)))
    elif damage == "labels-count":
        path = tmp / "m" / "train-labels-idx1-ubyte.gz"
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[:-7]))
    return ["train", "--dataset", "mnist", "--data-dir", str(tmp / "m")]


def _cifar(tmp, damage):
    write_cifar(tmp / "c", archive=damage == "truncated-tar")
    if damage == "truncated-tar":
        shutil.rmtree(tmp / "c" / "cifar-10-batches-py")
        tar = tmp / "c" / "cifar-10-python.tar.gz"
        tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    else:
        batch = tmp / "c" / "cifar-10-batches-py" / "data_batch_1"
        if damage == "truncated-batch":
            batch.write_bytes(batch.read_bytes()[:200])
        elif damage == "code-in-pickle":
            batch.write_bytes(pickle.dumps({b"data": _Code(str(tmp / "ran")), b"labels": [0]}, protocol=2))
        elif damage == "wrong-shape":
            batch.write_bytes(pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, protocol=2))
    return ["train", "--dataset", "cifar10", "--data-dir", str(tmp / "c")]


class _Code:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (shutil.os.mkdir, (self.target,))


def _folder(tmp, damage):
    folder = tmp / "imgs"
    if damage == "empty":
        folder.mkdir()
    else:
        write_image_folder(folder, n=12, size=16, mode="L")
    if damage == "truncated-png":
        png = next(folder.rglob("*.png"))
        png.write_bytes(png.read_bytes()[:60])
    elif damage == "not-an-image":
        (folder / "class_0" / "notes.png").write_text("not a png")
    elif damage == "mixed-sizes":
        Image.fromarray(np.zeros((20, 20), np.uint8), "L").save(folder / "class_0" / "big.png")
    elif damage == "mixed-modes":
        Image.fromarray(np.zeros((16, 16, 3), np.uint8), "RGB").save(folder / "class_1" / "colour.png")
    return ["train", "--dataset", f"folder:{folder}"]


def _config(tmp, damage):
    path = tmp / "c.yaml"
    path.write_text({"list": "- a\n- b\n", "scalar": "just text\n", "unknown-key": "epoch: 3\n",
                     "bad-value": "lr_d: fast\n", "broken-yaml": "a: [1, 2\n"}[damage])  # fmt: skip
    return ["train", "--config", str(path)]


def _grid(tmp, damage):
    spec = {"name": "g", "cells": {"normal": {"xai": "none"}}}
    if damage == "unknown-key":
        spec["cels"] = spec.pop("cells")
    elif damage == "cells-list":
        spec["cells"] = ["normal"]
    elif damage == "bad-cell-value":
        spec["cells"] = {"normal": {"xai": "nonsense"}}
    elif damage == "evaluation-key":
        spec["evaluation"] = {"nn": 5}
    (tmp / "grid.yaml").write_text(yaml.safe_dump(spec))
    return ["reproduce", str(tmp / "grid.yaml"), "--out", str(tmp / "out")]


def _checkpoint(tmp, damage):
    write_image_folder(tmp / "imgs", n=40, size=16, mode="L")
    cfg = cfg_mod.resolve({"dataset": f"folder:{tmp / 'imgs'}", "epochs": 2, "batch_size": 20, "progress": False})
    run = RunDir(tmp / "run")
    train.from_config(cfg, run).fit(stop_at_step=1)
    ckpt = run.checkpoint()
    payload = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(payload[: len(payload) // 3])
    elif damage == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    elif damage == "code":
        ckpt.write_bytes(pickle.dumps(_Code(str(tmp / "ran"))))
    return ["train", "--resume", str(run.path)]


CASES = {
    **{f"idx-{d}": (_idx, d) for d in ("truncated-raw", "garbled-gzip", "bad-magic", "labels-count")},
    **{f"cifar-{d}": (_cifar, d) for d in ("truncated-tar", "truncated-batch", "code-in-pickle", "wrong-shape")},
    **{f"folder-{d}": (_folder, d) for d in ("empty", "truncated-png", "not-an-image", "mixed-sizes", "mixed-modes")},
    **{f"config-{d}": (_config, d) for d in ("list", "scalar", "unknown-key", "bad-value", "broken-yaml")},
    **{f"grid-{d}": (_grid, d) for d in ("unknown-key", "cells-list", "bad-cell-value", "evaluation-key")},
    **{f"checkpoint-{d}": (_checkpoint, d) for d in ("truncated", "foreign", "code")},
}


def _snapshot(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_input_is_one_error_line_and_changes_nothing(tmp_path, case, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output folder (runs/...) would land here, not in the repository
    make, damage = CASES[case]
    args = make(tmp_path, damage)
    before = _snapshot(tmp_path)
    code = cli.main([*args, "--quiet"] if args[0] in ("train", "reproduce") else args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) >= 1 and lines[-1].startswith("xaigan: error: ") and "Traceback" not in err, err
    assert all(not line.startswith("xaigan: error") for line in lines[:-1])
    after = _snapshot(tmp_path)
    assert {p: h for p, h in after.items() if p in before} == before  # nothing that existed changed
    assert not (tmp_path / "runs").exists()  # and no run was started
    assert not (tmp_path / "ran").exists()  # no pickled code ran


def test_verbose_shows_the_traceback_too(tmp_path, capsys):
    args = _config(tmp_path, "bad-value")
    assert cli.main(["-v", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("xaigan: error: ")
