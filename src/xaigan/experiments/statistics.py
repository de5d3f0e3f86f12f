"""Statistics for comparing cells over seeds: confidence intervals, paired tests, Holm correction and power."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample std (ddof=1) and the half-width of the Student-t confidence interval (nan for n < 2).

    Args:
        values: the values (one per seed).
        level: the confidence level.

    Returns:
        ``(mean, std, half_width)``; the interval is ``mean +- half_width``.

    Example:
        >>> [round(v, 3) for v in mean_ci([1.0, 2.0, 3.0])]
        [2.0, 1.0, 2.484]
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    if arr.size < 2:
        return float(arr.mean()), math.nan, math.nan
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, arr.size - 1) * std / math.sqrt(arr.size))
    return float(arr.mean()), std, half


def paired_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test on ``n`` pairs whose differences have standard deviation ``sd``,
    when the true mean difference is ``effect`` (noncentral t; both tails).

    Args:
        effect: the true mean difference.
        sd: the standard deviation of the paired differences.
        n: the number of pairs.
        alpha: the test's level.

    Returns:
        The probability of a significant result (nan if n < 2 or sd is 0).

    Example:
        >>> round(paired_power(1.0, 1.0, 10), 3)
        0.803
    """
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / sd * math.sqrt(n)
    lower = stats.nct.cdf(-crit, df, nc)
    # scipy's nct.cdf returns nan deep in the far tail (nc >> crit), where the wrong-sign rejections are ~0
    return float(stats.nct.sf(crit, df, nc) + (lower if math.isfinite(lower) else 0.0))


def min_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference that the two-sided paired t-test on ``n`` pairs detects with probability
    ``power`` at level ``alpha``, for differences with standard deviation ``sd`` (nan if n < 2 or sd is 0).

    Args:
        sd: the standard deviation of the paired differences.
        n: the number of pairs.
        alpha: the test's level.
        power: the probability of detecting it.

    Returns:
        The minimal detectable effect, in the units of ``sd``'s values.

    Example:
        >>> round(min_detectable_effect(1.0, 10), 3)
        0.996
    """
    if n < 2 or not sd > 0:
        return math.nan
    hi = sd
    while paired_power(hi, sd, n, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: paired_power(e, sd, n, alpha) - power, 0.0, hi, xtol=1e-10 * sd))


def paired_test(a: dict[Any, float], b: dict[Any, float], level: float = 0.95) -> dict[str, Any]:
    """Compare ``a`` with ``b`` over the keys both have (seeds, or whatever else pairs two runs): mean difference
    ``a - b`` with its t confidence interval, the same relative to ``b``'s mean on those pairs, the paired t-test and
    Wilcoxon signed-rank test (two-sided), the effect size d_z, how many pairs ``a`` is lower in, the smallest
    difference the design detects with 80% power at the observed spread (``mde``), and the correlation ``r`` of
    ``a`` and ``b`` across the pairs (nan below three pairs; pairing narrows the interval only as far as r is above
    0).

    Args:
        a: value by pairing key (e.g. FID by seed) of one cell.
        b: the same for the cell it is compared with.
        level: the confidence level of the intervals.

    Returns:
        ``n_pairs``, ``lower_in``, ``mean_diff``, ``diff_ci95``, ``base_mean``, ``diff_pct``, ``diff_pct_ci95``,
        ``t``, ``p``, ``wilcoxon_p``, ``d_z``, ``sd_diff``, ``mde``, ``mde_pct`` and ``r`` (nan where undefined).

    Example:
        >>> result = paired_test({0: 10.0, 1: 12.0, 2: 11.0}, {0: 11.0, 1: 12.5, 2: 12.0})
        >>> result["n_pairs"], result["lower_in"], round(result["mean_diff"], 3)
        (3, 3, -0.833)
    """
    seeds = sorted(set(a) & set(b))
    xa = np.array([a[s] for s in seeds], dtype=np.float64)
    xb = np.array([b[s] for s in seeds], dtype=np.float64)
    diffs = xa - xb
    nan = math.nan
    out: dict[str, Any] = {"n_pairs": len(seeds), "lower_in": int((diffs < 0).sum()), "mean_diff": nan}
    out.update(diff_ci95=nan, base_mean=nan, diff_pct=nan, diff_pct_ci95=nan, t=nan, p=nan, wilcoxon_p=nan)
    out.update(d_z=nan, sd_diff=nan, mde=nan, mde_pct=nan, r=nan)
    if not seeds:
        return out
    base_mean = float(xb.mean())
    mean, sd, half = mean_ci(list(diffs), level)
    out.update(mean_diff=mean, base_mean=base_mean, diff_pct=100.0 * mean / base_mean, diff_ci95=half)
    out["diff_pct_ci95"] = 100.0 * half / base_mean
    if len(seeds) >= 2 and np.any(diffs != diffs[0]):
        result = stats.ttest_rel(xa, xb)
        out.update(t=float(result.statistic), p=float(result.pvalue), sd_diff=sd, d_z=mean / sd)
        if np.any(diffs != 0):
            out["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue)
        out["mde"] = min_detectable_effect(sd, len(seeds))
        out["mde_pct"] = 100.0 * out["mde"] / base_mean
    if len(seeds) >= 3 and xa.std() > 0 and xb.std() > 0:
        out["r"] = float(np.corrcoef(xa, xb)[0, 1])
    return out


def equivalence_test(
    a: dict[Any, float], b: dict[Any, float], margin_pct: float, alpha: float = ALPHA
) -> dict[str, Any]:
    """Paired two one-sided tests (TOST): is the mean difference ``a - b`` within ``+-margin_pct`` % of ``b``'s mean?

    H0: the true mean difference is at or beyond a margin (``<= -m`` or ``>= +m``, ``m`` = ``margin_pct`` % of
    ``b``'s mean over the pairs); rejecting both one-sided nulls at ``alpha`` ("equivalent within +-m%") is the
    same as the ``1 - 2 alpha`` (90%) confidence interval lying inside the margins. The margin must be fixed before
    the runs (a study's protocol states it); not rejecting says only what the interval allows.

    Args:
        a: value by pairing key (e.g. FID by seed) of one cell.
        b: the same for the cell it is compared with.
        margin_pct: the equivalence margin, in % of ``b``'s mean.
        alpha: the level of each one-sided test.

    Returns:
        ``n_pairs``, ``margin`` (absolute), ``margin_pct``, ``p`` (the larger one-sided p-value), ``p_lower``,
        ``p_upper``, ``ci90_pct`` (the 90% interval of the difference in %) and ``equivalent`` (``p < alpha``);
        p-values nan below two pairs or without spread.

    Example:
        >>> rule, control = {0: 100.0, 1: 101.0, 2: 99.5, 3: 100.2}, {0: 100.1, 1: 100.6, 2: 99.9, 3: 100.0}
        >>> result = equivalence_test(rule, control, 3)
        >>> result["equivalent"], round(result["p"], 4)
        (True, 0.0002)
    """
    seeds = sorted(set(a) & set(b))
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    base = float(np.mean([b[s] for s in seeds])) if seeds else math.nan
    margin = abs(margin_pct) / 100.0 * base
    out: dict[str, Any] = {"n_pairs": len(seeds), "margin": margin, "margin_pct": float(abs(margin_pct))}
    out.update(p=math.nan, p_lower=math.nan, p_upper=math.nan, ci90_pct=(math.nan, math.nan), equivalent=False)
    if len(seeds) < 2 or not np.any(diffs != diffs[0]):
        return out
    n, mean, sd = len(seeds), float(diffs.mean()), float(diffs.std(ddof=1))
    se, df = sd / math.sqrt(n), n - 1
    p_lower = float(stats.t.sf((mean + margin) / se, df))  # H0: diff <= -margin
    p_upper = float(stats.t.cdf((mean - margin) / se, df))  # H0: diff >= +margin
    half = float(stats.t.ppf(1 - alpha, df)) * se
    p = max(p_lower, p_upper)
    ci = (100.0 * (mean - half) / base, 100.0 * (mean + half) / base)
    out.update(p=p, p_lower=p_lower, p_upper=p_upper, ci90_pct=ci, equivalent=bool(p < alpha))
    return out


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (family-wise error) for a family of tests; nan p-values are left out of
    the family and stay nan.

    Args:
        pvalues: p-value by test name.

    Returns:
        The adjusted p-value by test name.

    Example:
        >>> {name: round(p, 3) for name, p in holm({"a": 0.01, "b": 0.04, "c": 0.03}).items()}
        {'a': 0.03, 'b': 0.06, 'c': 0.06}
    """
    finite = sorted((p, name) for name, p in pvalues.items() if math.isfinite(p))
    m = len(finite)
    out = {name: math.nan for name in pvalues}
    running = 0.0
    for i, (p, name) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out
