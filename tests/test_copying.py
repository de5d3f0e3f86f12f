"""The data-copying test: its statistics against scipy and brute force, its verdicts on generators whose relation to
the training set is known by construction, and the run-level command on a tiny trained run."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import cdist

from tests.conftest import write_idx_dataset, write_image_folder
from xaigan import config as cfg_mod
from xaigan import data as data_mod
from xaigan.evaluate import copying_run
from xaigan.experiments import prepare_run
from xaigan.metrics.copying import copying_test, mann_whitney_z, nearest


@pytest.mark.parametrize("ties", [False, True])
def test_mann_whitney_z_matches_scipy(ties):
    rng = np.random.default_rng(0)
    held, gen = rng.normal(0, 1, 300), rng.normal(0.2, 1, 200)
    if ties:  # rounded distances: many ties, which the variance must correct for
        held, gen = np.round(held, 1), np.round(gen, 1)
    z = mann_whitney_z(held, gen)
    ref = stats.mannwhitneyu(gen, held, method="asymptotic", use_continuity=False)
    assert 2 * stats.norm.sf(abs(z)) == pytest.approx(ref.pvalue, rel=1e-9)
    assert np.sign(z) == np.sign(ref.statistic - len(gen) * len(held) / 2) == 1  # gen's distances are the larger


@pytest.mark.parametrize("seed", range(5))
def test_mann_whitney_z_is_a_rank_statistic(seed):
    """Swapping the samples flips the sign; any strictly increasing map of the distances leaves it unchanged."""
    rng = np.random.default_rng(seed)
    a, b = rng.exponential(1.0, rng.integers(5, 60)), rng.exponential(1.3, rng.integers(5, 60))
    z = mann_whitney_z(a, b)
    assert mann_whitney_z(b, a) == pytest.approx(-z, abs=1e-12)
    assert mann_whitney_z(np.log(a) * 3 + 7, np.log(b) * 3 + 7) == pytest.approx(z, abs=1e-12)


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(1)
    x, ref = rng.normal(size=(130, 6)), rng.normal(size=(70, 6))
    dist, index = nearest(x, ref, chunk_size=32)
    full = cdist(x, ref)
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(dist, full.min(1), rtol=1e-9)


def _mixture(rng, n, scale=1.0):
    centres = np.array([[8.0 * i, (-4.0) ** i % 9] + [0.0] * 6 for i in range(5)])
    return centres[rng.integers(0, 5, n)] + scale * rng.normal(size=(n, 8))


@pytest.mark.slow
def test_verdicts_on_generators_known_by_construction():
    """Fresh samples of the data's distribution read ~0, noisy copies of training points strongly negative, samples
    spread wider than the data (underfit) strongly positive."""
    rng = np.random.default_rng(2)
    train, held = _mixture(rng, 3000), _mixture(rng, 2000)
    fresh = copying_test(train, held, _mixture(rng, 2000), cells=10)
    copies = copying_test(train, held, train[rng.integers(0, 3000, 2000)] + 0.01 * rng.normal(size=(2000, 8)))
    wide = copying_test(train, held, _mixture(rng, 2000, scale=1.5), cells=10)
    assert abs(fresh["z_u"]) < 3 and abs(fresh["c_t"]) < 3 and fresh["near_copies"] < 0.03
    assert copies["z_u"] < -30 and copies["c_t"] < -10 and copies["near_copies"] > 0.9
    assert wide["z_u"] > 10 and wide["c_t"] > 3
    assert fresh["cells_tested"] == 10 and fresh["heldout_in_tested_cells"] == pytest.approx(1.0)
    assert (fresh["n_train"], fresh["n_heldout"], fresh["n_generated"]) == (3000, 2000, 2000)


def test_cells_without_enough_generated_samples_are_left_out():
    """A generator covering one of five modes: only the cells that mode falls in are tested, weighted by their
    share of the held-out images."""
    rng = np.random.default_rng(3)
    train, held = _mixture(rng, 2000), _mixture(rng, 1000)
    one_mode = np.array([0.0] * 8) + rng.normal(size=(500, 8))
    result = copying_test(train, held, one_mode, cells=5, min_count=20)
    assert 1 <= result["cells_tested"] < 5 and 0.1 < result["heldout_in_tested_cells"] < 0.5


def test_bad_arguments_fail_clearly():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="feature widths differ"):
        copying_test(x, np.zeros((5, 4)), x)
    with pytest.raises(ValueError, match="cells must be in"):
        copying_test(x, x, x, cells=11)


def test_heldout_images_are_exactly_those_a_fraction_leaves_out(tmp_path):
    write_image_folder(tmp_path / "imgs", n=50, size=16, mode="L")
    name = f"folder:{tmp_path / 'imgs'}"
    full = data_mod.load(name).images.flatten(1)
    kept = data_mod.load(name, fraction=0.3, seed=4).images.flatten(1)
    held = data_mod.load_heldout(name, fraction=0.3, seed=4).images.flatten(1)
    assert len(kept) + len(held) == len(full) == 50
    rows = {tuple(r.tolist()) for r in full}
    assert len(rows) == 50  # distinct images, so the check below is a real partition check
    assert {tuple(r.tolist()) for r in kept} | {tuple(r.tolist()) for r in held} == rows
    assert not {tuple(r.tolist()) for r in kept} & {tuple(r.tolist()) for r in held}
    with pytest.raises(ValueError, match="leaves no image out"):
        data_mod.load_heldout(name)


def test_a_run_on_all_of_the_train_split_is_held_out_against_the_test_split(tmp_path):
    written = write_idx_dataset(tmp_path, n_train=30, n_test=12)
    held = data_mod.load_heldout("fashion-mnist", data_dir=str(tmp_path), split="train")
    assert held.meta["split"] == "test" and len(held) == 12
    expected = data_mod.resize_uint8(written["t10k"][0][:, None], 32)
    np.testing.assert_array_equal(held.images.numpy(), expected)


@pytest.mark.slow
def test_copying_command_on_a_trained_run(tmp_path):
    """A run on half of a folder: ``xaigan copying`` writes copying.json with its training half against the other
    half; a run on all of it gets one error line, exit 2, and nothing written."""
    write_image_folder(tmp_path / "imgs32", n=120, size=32, mode="L")  # the domain extractor's size
    base = {"dataset": f"folder:{tmp_path / 'imgs32'}", "epochs": 1, "batch_size": 30, "progress": False}
    half = cfg_mod.resolve({**base, "tensorboard": False, "fraction": 0.5})
    prepare_run(half, tmp_path / "half").fit()
    prepare_run(half.replace(fraction=1.0), tmp_path / "all").fit()
    result = copying_run(tmp_path / "half", n=40, cells=3)
    assert json.loads((tmp_path / "half" / "copying.json").read_text()) == json.loads(json.dumps(result))
    assert (result["n_train"], result["n_heldout"], result["n_generated"]) == (60, 40, 40)
    assert result["heldout"]["n_total"] == 60 and result["extractor"]["id"].startswith("domain")
    cli = [sys.executable, "-m", "xaigan", "copying", str(tmp_path / "all"), "--n", "40"]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("xaigan: error: ") and "leaves no image out" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "all" / "copying.json").exists()
