"""FID Inception-v3 wiring, tested with randomly initialised weights (the real file is not available offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaigan.metrics import features, inception, inception_net
from xaigan.metrics.inception import FIDInceptionV3, MissingWeightsError, WeightsMismatchError


@pytest.fixture(scope="module")
def net() -> FIDInceptionV3:
    torch.manual_seed(0)
    return FIDInceptionV3().eval()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, net) -> str:
    path = tmp_path_factory.mktemp("inception") / inception.FID_WEIGHTS_FILENAME
    torch.save(net.state_dict(), path)
    return str(path)


def test_state_dict_layout_matches_fid_weights_file(net):
    sd = net.state_dict()
    # 94 BasicConv units x (conv.weight + 5 BN tensors) + fc.weight/bias = 566 entries, as in the
    # pytorch-fid layout (torchvision Inception3, aux_logits=False, num_classes=1008).
    assert len(sd) == 566
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    expected_shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_var": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch3x3dbl_3.conv.weight": (96, 96, 3, 3),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in sd)
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_fid_specific_pooling():
    # TF-style average pool ignores padding: a constant image stays constant up to the borders.
    x = torch.full((1, 2, 5, 5), 3.0)
    assert torch.allclose(inception_net._avg3_nopad(x), x)
    net = FIDInceptionV3()
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"


@pytest.mark.slow
def test_extractor_loads_strict_and_outputs_2048(weights_file):
    ext = features.get("inception", weights_path=weights_file, batch_size=2)
    assert ext.dim == 2048 and "inception" in ext.id
    g = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    out = ext(rgb)
    assert out.shape == (3, 2048) and out.dtype == np.float64 and np.all(np.isfinite(out))
    # batching does not change results
    np.testing.assert_allclose(out[2:], ext(rgb[2:]), rtol=1e-5, atol=1e-6)
    # greyscale == the same image repeated to RGB
    grey = rgb[:, :1]
    np.testing.assert_allclose(ext(grey), ext(grey.expand(-1, 3, -1, -1).contiguous()), rtol=1e-6, atol=1e-7)
    # any input size is resized to 299
    assert ext(torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8, generator=g)).shape == (1, 2048)
    assert ext(torch.randint(0, 256, (1, 3, 64, 48), dtype=torch.uint8, generator=g)).shape == (1, 2048)
    with pytest.raises(TypeError, match="uint8"):
        ext(rgb.float())


def test_weights_hash_tracks_weights(tmp_path, weights_file, net):
    a = features.get("inception", weights_path=weights_file)
    b = features.get("inception", weights_path=weights_file)
    assert a.weights_hash == b.weights_hash and len(a.weights_hash) == 16
    sd = net.state_dict()
    sd["fc.bias"] = sd["fc.bias"] + 1.0
    other = tmp_path / "other.pth"
    torch.save(sd, other)
    c = features.get("inception", weights_path=other)
    assert c.weights_hash != a.weights_hash
    assert c.id == a.id
    with pytest.raises(ValueError, match="different feature extractors"):
        features.check_same_extractor(a.meta, c.meta)
    features.check_same_extractor(a.meta, b)


def test_missing_or_renamed_key_is_rejected(tmp_path, net):
    sd = dict(net.state_dict())
    sd["Mixed_6c.branch7x7_1.conv.weight_renamed"] = sd.pop("Mixed_6c.branch7x7_1.conv.weight")
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(WeightsMismatchError) as err:
        features.get("inception", weights_path=bad)
    msg = str(err.value)
    assert "missing keys: Mixed_6c.branch7x7_1.conv.weight" in msg
    assert "unexpected keys: Mixed_6c.branch7x7_1.conv.weight_renamed" in msg

    sd = dict(net.state_dict())
    sd["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(sd, bad)
    with pytest.raises(WeightsMismatchError, match=r"fc.weight: file \(1000, 2048\)"):
        features.get("inception", weights_path=bad)

    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsMismatchError, match="could not read"):
        features.get("inception", weights_path=bad)


def test_missing_weights_error_names_paths_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_home" / "hub"))
    with pytest.raises(MissingWeightsError) as err:
        features.get("inception")
    msg = str(err.value)
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / inception.FID_WEIGHTS_FILENAME) in msg
    assert inception.FID_WEIGHTS_URL in msg and inception.FID_WEIGHTS_FILENAME in msg
    assert isinstance(err.value, ValueError)

    explicit = tmp_path / "nope.pth"
    with pytest.raises(MissingWeightsError, match="nope.pth"):
        features.get("inception", weights_path=explicit)


def test_hub_cache_and_env_var_are_found(tmp_path, monkeypatch, weights_file):
    import shutil

    hub = tmp_path / "th" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weights_file, hub / inception.FID_WEIGHTS_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    assert inception.resolve_weights_path() == hub / inception.FID_WEIGHTS_FILENAME
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, weights_file)
    assert str(inception.resolve_weights_path()) == weights_file


def test_download_fails_fast_without_network(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(inception.urllib.request, "urlopen", offline)
    with pytest.raises(MissingWeightsError, match="Offline"):
        inception.download_fid_weights(tmp_path)
    assert list(tmp_path.iterdir()) == []  # temp file cleaned up
