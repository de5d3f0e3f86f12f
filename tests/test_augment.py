import pytest
import torch

from xaigan import augment
from xaigan.config import ConfigError, resolve


def _shift_reference(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift by hand with zero fill: out[i, j] = img[i - dy, j - dx]."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = img[:, i - dy, j - dx]
    return out


def test_empty_policy_is_identity():
    x = torch.randn(4, 3, 8, 8)
    state = torch.get_rng_state()
    assert torch.equal(augment.DiffAugment("")(x), x)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow
def test_translation_is_a_zero_filled_integer_shift_per_sample():
    torch.manual_seed(0)
    x = torch.randn(64, 2, 16, 16)
    y = augment.translation(x)
    shifts = set()
    for b in range(len(x)):
        hits = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(_shift_reference(x[b], dy, dx), y[b])
        ]
        assert len(hits) == 1, f"sample {b} is not a shift within 1/8 of the size"
        shifts.add(hits[0])
    assert len(shifts) > 10  # per-sample randomness: many different shifts in one batch


def test_cutout_zeroes_a_clipped_half_size_square():
    torch.manual_seed(1)
    y = augment.cutout(torch.ones(500, 1, 16, 16))
    zeroed = (y == 0).flatten(1).sum(1)
    assert zeroed.max() == 64 and zeroed.min() >= 16  # 8x8 square, at least a quarter of it inside
    for b in range(20):
        rows = (y[b, 0] == 0).any(1).nonzero().flatten()
        cols = (y[b, 0] == 0).any(0).nonzero().flatten()
        assert (y[b, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == 0).all()  # one rectangle
    assert 0.15 < (y == 0).float().mean() < 0.25


def test_color_ops_statistics():
    torch.manual_seed(2)
    x = torch.rand(2000, 3, 4, 4)
    offsets = (augment.brightness(x) - x).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-6)  # one offset per sample
    assert offsets.min() >= -0.5 and offsets.max() < 0.5 and abs(offsets.mean()) < 0.03
    c = augment.contrast(x)
    assert torch.allclose(c.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-6)
    ratio = (c - c.mean((1, 2, 3), keepdim=True)).flatten(1).norm(dim=1) / (
        x - x.mean((1, 2, 3), keepdim=True)
    ).flatten(1).norm(dim=1)
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() < 1.5 and abs(ratio.mean() - 1.0) < 0.03
    s = augment.saturation(x)
    assert torch.allclose(s.mean(1), x.mean(1), atol=1e-6)
    grey = torch.rand(5, 1, 4, 4)
    assert torch.allclose(augment.saturation(grey), grey)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_gradients_flow_and_shapes(policy):
    torch.manual_seed(3)
    x = torch.randn(8, 3, 32, 32, requires_grad=True)
    y = augment.DiffAugment(policy)(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_gradient_counts_kept_pixels():
    torch.manual_seed(4)
    x = torch.randn(16, 1, 16, 16, requires_grad=True)
    y = augment.translation(x)
    y.sum().backward()
    kept = (y != 0).flatten(1).sum(1).float()
    assert torch.equal(x.grad.flatten(1).sum(1), kept)


def test_unknown_op_is_rejected():
    with pytest.raises(ValueError, match="unknown op 'flip'"):
        augment.DiffAugment("translation,flip")
    with pytest.raises(ConfigError, match="diffaugment: unknown op 'flip'"):
        resolve({"diffaugment": "translation,flip"})
