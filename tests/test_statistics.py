"""Statistics for comparing cells: checked against statsmodels, scipy, Monte Carlo and hand computations."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from xaigan.experiments import holm, min_detectable_effect, paired_power, paired_test

statsmodels_power = pytest.importorskip("statsmodels.stats.power")
multitest = pytest.importorskip("statsmodels.stats.multitest")


@pytest.mark.parametrize("n", [3, 5, 10, 20])
@pytest.mark.parametrize("d", [0.2, 0.8, 1.5])
def test_paired_power_matches_statsmodels(n, d):
    sd = 3.7
    expected = statsmodels_power.TTestPower().power(effect_size=d, nobs=n, alpha=0.05, alternative="two-sided")
    assert paired_power(d * sd, sd, n) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_min_detectable_effect_matches_statsmodels(n):
    sd = 2.5
    d = statsmodels_power.TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert min_detectable_effect(sd, n) == pytest.approx(d * sd, rel=1e-4)


def test_min_detectable_effect_is_detected_80_percent_of_the_time():
    """Monte Carlo: paired experiments whose true difference is the MDE reject at 5% in ~80% of repeats."""
    rng = np.random.default_rng(0)
    n, sd = 10, 4.0
    mde = min_detectable_effect(sd, n)
    diffs = rng.normal(mde, sd, size=(40_000, n))
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(n))
    rejected = np.abs(t) > stats.t.ppf(0.975, n - 1)
    assert rejected.mean() == pytest.approx(0.8, abs=0.01)
    assert math.isnan(min_detectable_effect(sd, 1)) and math.isnan(min_detectable_effect(0.0, 10))


def test_holm_matches_statsmodels():
    pvalues = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5, "e": 0.002}
    _, expected, _, _ = multitest.multipletests(list(pvalues.values()), method="holm")
    out = holm({**pvalues, "nan": math.nan})
    assert [out[k] for k in pvalues] == pytest.approx(list(expected))
    assert math.isnan(out["nan"])


def _exact_wilcoxon(diffs: np.ndarray) -> float:
    """Two-sided exact signed-rank p by enumerating all 2^n sign flips (no ties, no zeros)."""
    ranks = stats.rankdata(np.abs(diffs))
    observed = abs((ranks * np.sign(diffs)).sum())
    sums = [abs((ranks * np.array(signs)).sum()) for signs in itertools.product([-1, 1], repeat=len(diffs))]
    return float(np.mean(np.array(sums) >= observed - 1e-12))


def test_paired_test_by_hand():
    a = {0: 10.0, 1: 12.0, 2: 9.0, 3: 15.0, 4: 20.0}
    b = {0: 11.0, 1: 12.4, 2: 11.3, 3: 14.0, 4: 23.5, 9: 1.0}  # seed 9 has no pair
    out = paired_test(a, b)
    d = np.array([-1.0, -0.4, -2.3, 1.0, -3.5])
    sd = d.std(ddof=1)
    t = d.mean() / (sd / math.sqrt(5))
    base = np.mean([11.0, 12.4, 11.3, 14.0, 23.5])
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert out["n_pairs"] == 5 and out["lower_in"] == 4
    assert out["t"] == pytest.approx(t) and out["p"] == pytest.approx(2 * stats.t.sf(abs(t), 4))
    assert out["mean_diff"] == pytest.approx(d.mean()) and out["diff_ci95"] == pytest.approx(half)
    assert out["diff_pct"] == pytest.approx(100 * d.mean() / base)
    assert out["diff_pct_ci95"] == pytest.approx(100 * half / base)
    assert out["d_z"] == pytest.approx(d.mean() / sd)
    assert out["wilcoxon_p"] == pytest.approx(_exact_wilcoxon(d))
    assert out["mde"] == pytest.approx(min_detectable_effect(sd, 5))


def test_paired_test_correlation_matches_scipy_and_the_spread_it_buys():
    rng = np.random.default_rng(3)
    shared = rng.normal(size=12)  # a seed effect both cells share
    a = dict(enumerate(50 + 4 * shared + rng.normal(size=12)))
    b = dict(enumerate(52 + 4 * shared + rng.normal(size=12)))
    out = paired_test(a, b)
    xa, xb = np.array(list(a.values())), np.array(list(b.values()))
    assert out["r"] == pytest.approx(stats.pearsonr(xa, xb).statistic)
    # Var(a - b) = Var(a) + Var(b) - 2 r sd(a) sd(b): a high r is what makes the paired spread small
    var = xa.var(ddof=1) + xb.var(ddof=1) - 2 * out["r"] * xa.std(ddof=1) * xb.std(ddof=1)
    assert out["r"] > 0.8 and out["sd_diff"] == pytest.approx(math.sqrt(var))
    shifted = paired_test({0: 1.0, 1: 3.0, 2: 2.0}, {0: 2.0, 1: 4.0, 2: 3.0})  # b = a + 1: r = 1, no t-test
    assert shifted["r"] == pytest.approx(1.0) and math.isnan(shifted["p"])


def test_paired_test_degenerate_inputs():
    assert paired_test({}, {0: 1.0})["n_pairs"] == 0
    one = paired_test({0: 1.0}, {0: 2.0})
    assert one["mean_diff"] == -1.0 and math.isnan(one["p"]) and math.isnan(one["mde"])
    same = paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same["mean_diff"] == 0.0 and math.isnan(same["p"]) and math.isnan(same["wilcoxon_p"])
    assert math.isnan(same["r"])  # two pairs: a correlation is always +-1, so none is given
    assert math.isnan(paired_test({0: 1.0, 1: 1.0, 2: 1.0}, {0: 1.0, 1: 2.0, 2: 4.0})["r"])  # one side constant


@pytest.mark.parametrize("n", [2, 3, 5])
def test_power_is_finite_and_monotonic_for_large_effects(n):
    """scipy's noncentral t cdf gives nan deep in the tail; power must stay finite and rise with the effect."""
    powers = [paired_power(e, 1.0, n) for e in np.linspace(0.0, 60.0, 601)]
    assert all(math.isfinite(p) for p in powers)
    assert np.all(np.diff(powers) >= -1e-12) and powers[0] == pytest.approx(0.05) and powers[-1] > 0.99
    assert math.isfinite(min_detectable_effect(1e-6, n))


@pytest.mark.parametrize("shift", [-4.0, -1.0, 0.0, 0.5, 3.5])
@pytest.mark.parametrize("margin_pct", [3.0, 5.0])
def test_equivalence_test_matches_statsmodels_ttost_paired(shift, margin_pct):
    from statsmodels.stats.weightstats import ttost_paired

    from xaigan.experiments.statistics import equivalence_test

    rng = np.random.default_rng(7)
    b = 100 + rng.normal(0, 3, 10)
    a = b + shift + rng.normal(0, 1.5, 10)
    ours = equivalence_test(dict(enumerate(a)), dict(enumerate(b)), margin_pct)
    m = margin_pct / 100 * b.mean()
    p, lower, upper = ttost_paired(a, b, -m, m)
    assert ours["p"] == pytest.approx(p, rel=1e-10)
    assert ours["p_lower"] == pytest.approx(lower[1], rel=1e-10) and ours["p_upper"] == pytest.approx(
        upper[1], rel=1e-10
    )
    assert ours["equivalent"] == (p < 0.05)
    lo, hi = ours["ci90_pct"]  # equivalence at 5% <=> the 90% interval inside the margins
    assert ours["equivalent"] == (-margin_pct < lo and hi < margin_pct)


def test_equivalence_test_rejects_at_most_alpha_at_the_margin():
    """Size by Monte Carlo: with the true difference exactly at the margin, 'equivalent' comes out in at most 5% of
    10-seed studies (TOST is conservative: a little under 5%)."""
    from xaigan.experiments.statistics import equivalence_test

    rng = np.random.default_rng(11)
    hits, trials = 0, 4000
    for _ in range(trials):
        b = 100 + rng.normal(0, 3, 10)
        a = b + 3.0 + rng.normal(0, 2, 10)  # true difference +3 = the 3% margin of a mean of 100
        hits += equivalence_test(dict(enumerate(a)), dict(enumerate(b)), 3.0)["equivalent"]
    rate = hits / trials
    assert rate < 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
    power_hits = 0
    for _ in range(500):  # and it does find equivalence when the true difference is 0
        b = 100 + rng.normal(0, 3, 10)
        power_hits += equivalence_test(dict(enumerate(b + rng.normal(0, 2, 10))), dict(enumerate(b)), 3.0)["equivalent"]
    assert power_hits / 500 > 0.8
