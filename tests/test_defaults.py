"""The defaults must not move: G's and D's weights after 2 epochs of the default configuration (plain, saliency and
DeepLIFT-SHAP guidance) against fingerprints recorded from the code before the settings were declared once.

A fingerprint is, per tensor, its sum and its dot product with a fixed random vector (float64). Exact hashes of the
weights would differ between CPUs whose matrix kernels add in another order (AVX2, AVX-512, AMX); a changed default
(a learning rate, a label, a selection, a normalisation, the order of random draws) moves these numbers by far more
than the tolerance.
"""

from __future__ import annotations

import pytest
import torch

from xaigan import train
from xaigan.config import Config

RTOL, ATOL = 2e-4, 2e-5

# Recorded with tests/test_defaults.py's fingerprint() at commit 597e0ea (Config() defaults; the MNIST digits of the
# offline subset, fraction 0.1, 2 epochs; guidance from epoch 1).
REFERENCE: dict[str, list[float]] = {
    "none": [
        0.7539832887705415,
        -0.7704796060245465,
        8.8757192344965,
        6.924376122615356,
        0.1431536470190622,
        0.23050005140033664,
        113.17771500534582,
        -8.926478990079366,
        1.094258962359163,
        2.129369985014761,
        262.23766911025723,
        -21.29364946727214,
        -1.4499044494878035,
        0.32391752279538,
        -782.674863360978,
        0.31252707122219814,
        0.5870022981398506,
        0.36078487749532956,
        -85.72318536806006,
        -70.73894376749146,
        -0.01676727645099163,
        0.003585075536993415,
        -0.21422967748367228,
        0.4129364540677835,
        -0.22491166974941734,
        -0.4963484657990723,
        -5.367891981732782,
        -15.711666650509162,
        -0.3256007161689922,
        0.3494723421501251,
        -4.422723444457915,
        -3.9797547073934334,
    ],
    "saliency": [
        0.7539832887705415,
        -0.7704796060245465,
        8.8757192344965,
        6.924376122615356,
        0.1431536470190622,
        0.23050005140033664,
        113.17771500534582,
        -8.926478990079366,
        1.094258962359163,
        2.129369985014761,
        262.23766911025723,
        -21.29364946727214,
        -1.4499044494878035,
        0.32391752279538,
        -782.674863360978,
        0.31252707122219814,
        0.5870022981398506,
        0.36078487749532956,
        -85.72318536806006,
        -70.73894376749146,
        -0.01676727645099163,
        0.003585075536993415,
        -0.21422967748367228,
        0.4129364540677835,
        -0.22491166974941734,
        -0.4963484657990723,
        -5.367891981732782,
        -15.711666650509162,
        -0.3256007161689922,
        0.3494723421501251,
        -4.422723444457915,
        -3.9797547073934334,
    ],
    "deeplift-shap": [
        0.7539832887705415,
        -0.7704796060245465,
        8.8757192344965,
        6.924376122615356,
        0.1431536470190622,
        0.23050005140033664,
        113.17771500534582,
        -8.926478990079366,
        1.094258962359163,
        2.129369985014761,
        262.23766911025723,
        -21.29364946727214,
        -1.4499044494878035,
        0.32391752279538,
        -782.674863360978,
        0.31252707122219814,
        0.5870022981398506,
        0.36078487749532956,
        -85.72318536806006,
        -70.73894376749146,
        -0.01676727645099163,
        0.003585075536993415,
        -0.21422967748367228,
        0.4129364540677835,
        -0.22491166974941734,
        -0.4963484657990723,
        -5.367891981732782,
        -15.711666650509162,
        -0.3256007161689922,
        0.3494723421501251,
        -4.422723444457915,
        -3.9797547073934334,
    ],
}


def fingerprint(trainer: train.Trainer) -> list[float]:
    out: list[float] = []
    for net in (trainer.G, trainer.D):
        for name, tensor in sorted(net.state_dict().items()):
            t = tensor.detach().double().flatten()
            probe = torch.randn(t.numel(), generator=torch.Generator().manual_seed(len(name) + t.numel()))
            out += [float(t.sum()), float(t @ probe.double())]
    return out


def trained(xai: str, tmp_path) -> train.Trainer:
    cfg = Config(dataset="mnist", fraction=0.1, epochs=2, xai=xai, progress=False, tensorboard=False, sample_every=2)
    trainer = train.from_config(cfg, tmp_path / xai)
    trainer.fit()
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("xai", ["none", "saliency", "deeplift-shap"])
def test_default_training_is_unchanged(xai, tmp_path):
    got = fingerprint(trained(xai, tmp_path))
    assert REFERENCE[xai], "no reference recorded"
    torch.testing.assert_close(torch.tensor(got), torch.tensor(REFERENCE[xai]), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_the_fingerprint_sees_a_changed_default(tmp_path):
    """A guard that could not fail would guard nothing: one step of another learning rate moves the fingerprint."""
    cfg = Config(dataset="mnist", fraction=0.1, epochs=2, lr_g=2.2e-4, progress=False, tensorboard=False)
    trainer = train.from_config(cfg, tmp_path / "other")
    trainer.fit()
    with pytest.raises(AssertionError):
        torch.testing.assert_close(
            torch.tensor(fingerprint(trainer)), torch.tensor(REFERENCE["none"]), rtol=RTOL, atol=ATOL
        )
