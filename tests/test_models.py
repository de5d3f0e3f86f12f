import pytest
import torch
from torch import nn

from xaigan import models

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Dropout)


@pytest.mark.parametrize("name", ["mlp", "dcgan"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_ranges(name, channels):
    G, D = models.build(name, channels, 32)
    images = G(torch.randn(5, 100))
    assert images.shape == (5, channels, 32, 32)
    assert images.min() >= -1 and images.max() <= 1
    assert D(images).shape == (5, 1)


def test_paper_mlp_widths():
    G, D = models.build("mlp", 1, 32)
    g_linear = [(m.in_features, m.out_features) for m in G.modules() if isinstance(m, nn.Linear)]
    d_linear = [(m.in_features, m.out_features) for m in D.modules() if isinstance(m, nn.Linear)]
    assert g_linear == [(100, 256), (256, 512), (512, 1296), (1296, 1024)]
    assert d_linear == [(1024, 1296), (1296, 512), (512, 256), (256, 1)]
    assert [m.p for m in D.modules() if isinstance(m, nn.Dropout)] == [0.3] * 3
    assert all(m.negative_slope == 0.2 for m in G.modules() if isinstance(m, nn.LeakyReLU))


def test_dcgan_paper_channels_and_init():
    torch.manual_seed(0)
    G, D = models.build("dcgan", 3, 32)
    g_convs = [(m.in_channels, m.out_channels) for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [(m.in_channels, m.out_channels) for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert g_convs == [(100, 512), (512, 256), (256, 128), (128, 3)]
    assert d_convs == [(3, 64), (64, 128), (128, 256), (256, 1)]
    weights = torch.cat([m.weight.flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.002


@pytest.mark.parametrize("name", ["mlp", "dcgan"])
def test_activations_are_unshared_and_not_inplace(name):
    for net in models.build(name, 1, 32):
        acts = [m for m in net.modules() if isinstance(m, ACTIVATIONS)]
        assert acts and len({id(m) for m in acts}) == len(acts)
        assert not any(getattr(m, "inplace", False) for m in acts)
        # Each activation module is called exactly once per forward.
        calls: list[int] = []

        def record(mod, _inputs, _output, calls=calls):
            calls.append(id(mod))

        hooks = [m.register_forward_hook(record) for m in acts]
        x = torch.randn(2, 100) if any(isinstance(m, nn.Tanh) for m in acts) else torch.randn(2, 1, 32, 32)
        net(x)
        for h in hooks:
            h.remove()
        assert sorted(calls) == sorted(id(m) for m in acts)


def test_unknown_model():
    with pytest.raises(KeyError, match="available: dcgan, mlp"):
        models.build("resnet")
    with pytest.raises(ValueError, match="4 \\* 2\\^k"):
        models.build("dcgan", 1, 28)
