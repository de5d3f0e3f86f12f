"""What a grid found, in plain sentences: each cell against its baseline, with certainty and the design's power."""

from __future__ import annotations

import math
from typing import Any

from xaigan.experiments import paired_power
from xaigan.report.provenance import mixed_findings, unrecorded_finding

LEVEL = 0.05
PAPER_GAIN = 0.23  # the paper's headline: up to 23% lower FID than the standard GAN


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


def cell_finding(row: dict[str, Any]) -> str | None:
    """One or two sentences on a cell against its baseline (None for a baseline cell)."""
    base = row.get("baseline")
    if base is None:
        return None
    paired = row.get("paired")
    n = paired["n_pairs"] if paired else 0
    if n < 2 or not math.isfinite(paired["p"]):
        return f"{row['cell']} vs {base}: {_count(n, 'paired seed')} so far, too few to compare."
    pct, half = paired["diff_pct"], paired["diff_pct_ci95"]
    direction = "lower FID (better)" if pct < 0 else "higher FID (worse)"
    p_holm = paired.get("p_holm", paired["p"])
    text = (
        f"{row['cell']} vs {base}: mean FID {paired['base_mean'] + paired['mean_diff']:.1f} vs "
        f"{paired['base_mean']:.1f} over {n} paired seeds: {abs(pct):.1f}% {direction}; "
        f"95% CI {_pct(pct - half)} to {_pct(pct + half)}; paired t-test p = {paired['p']:.3g}, "
        f"Holm-adjusted {p_holm:.3g}; lower FID in {paired['lower_in']} of {n} seeds."
    )
    if p_holm < LEVEL:
        return text + f" The difference is significant at {LEVEL:g} after correction."
    power = paired_power(PAPER_GAIN * paired["base_mean"], paired["sd_diff"], n)
    if paired["p"] < LEVEL:  # the uncorrected CI excludes 0, but this is one of the grid's several comparisons
        text += f" Significant alone (p < {LEVEL:g}), not after correcting for the grid's comparisons."
    else:
        text += " Not significant: the difference is within seed noise."
    text += (
        " With this spread, the design detects a true "
        f"change of {paired['mde_pct']:.1f}% with 80% power, and the paper's {100 * PAPER_GAIN:.0f}% gain with "
        f"probability {power:.2f}."
    )
    if pct - half > -100 * PAPER_GAIN:
        text += f" A gain as large as the paper's {100 * PAPER_GAIN:.0f}% lies outside the 95% CI."
    return text


def headline(rows: list[dict[str, Any]]) -> str:
    """One sentence answering "did guidance help at this budget?" across the grid's compared cells."""
    compared = [r for r in rows if r.get("paired") and r["paired"]["n_pairs"] >= 2 and math.isfinite(r["paired"]["p"])]
    if not compared:
        return "Too few paired seeds yet to say whether any cell differs from its baseline."
    better = [r["cell"] for r in compared if r["paired"]["p_holm"] < LEVEL and r["paired"]["mean_diff"] < 0]
    worse = [r["cell"] for r in compared if r["paired"]["p_holm"] < LEVEL and r["paired"]["mean_diff"] > 0]
    parts = []
    if better:
        parts.append(f"significantly lower FID than the baseline for {', '.join(better)}")
    if worse:
        parts.append(f"significantly higher (worse) FID for {', '.join(worse)}")
    rest = [r["cell"] for r in compared if r["cell"] not in better + worse]
    if rest:
        parts.append(f"no significant difference for {', '.join(rest)}")
    return "At this budget: " + "; ".join(parts) + " (paired t-tests, Holm-corrected at 0.05)."


def control_finding(row: dict[str, Any]) -> str | None:
    """A cell against the control run beside it on the same seeds (grid ``controls``): does its effect need what
    the control takes away (the explanation's content)? None for a cell that is no control."""
    ctl = row.get("control")
    if not ctl:
        return None
    of, n = ctl["of"], ctl["n_pairs"]
    if n < 2 or not math.isfinite(ctl["p"]):
        return f"{of} vs its control {row['cell']}: {_count(n, 'paired seed')} so far, too few to compare."
    pct, half = ctl["diff_pct"], ctl["diff_pct_ci95"]
    p_holm = ctl.get("p_holm", ctl["p"])
    text = (
        f"{of} vs its control {row['cell']}: {abs(pct):.1f}% {'lower' if pct < 0 else 'higher'} FID over {n} "
        f"paired seeds; 95% CI {_pct(pct - half)} to {_pct(pct + half)}; paired t-test p = {ctl['p']:.3g}, "
        f"Holm-adjusted over the grid's controls {p_holm:.3g}; lower FID in {ctl['lower_in']} of {n} seeds."
    )
    if p_holm < LEVEL and pct < 0:
        return text + f" Significant: {of} does better than its control ({row['cell']})."
    if p_holm < LEVEL:
        return text + f" Significant: the control does better than {of}."
    return text + f" Not significant: {of} cannot be told apart from its control at this number of seeds."


def late_compared(row: dict[str, Any]) -> bool:
    """Whether a row's late FIDs were compared with its baseline's: a paired check needs two pairs (one tests
    nothing, as in the one-seed demo)."""
    late = row.get("late")
    return bool(late) and late["n_pairs"] >= 2


def late_finding(rows: list[dict[str, Any]]) -> str | None:
    """One sentence on the late-FID check (each run's last in-training evaluations averaged): each compared cell's
    paired change on it, and which differ after correction; and which cells it could not compare, because their
    late evaluations cover another part of training than their baseline's. None when no cell has either."""
    late = [r for r in rows if late_compared(r) and math.isfinite(r["late"]["p"])]
    apart = [r for r in rows if r.get("late_windows")]
    skipped = "; ".join(
        f"{r['cell']} ({_count(r['late_windows']['pairs'], 'pair')}: its last evaluations begin at "
        f"{r['late_windows']['cell']:.0%} of its training, {r['baseline']}'s at {r['late_windows']['baseline']:.0%})"
        for r in apart
    )
    skipped = f"Late FID left out where the windows differ: {skipped}." if apart else ""
    if not late:
        return skipped or None
    parts = ", ".join(
        f"{r['cell']} {_pct(r['late']['diff_pct'])} (p = {r['late']['p']:.2g}, lower in "
        f"{r['late']['lower_in']}/{r['late']['n_pairs']})"
        for r in late
    )
    significant = [r["cell"] for r in late if r["late"]["p_holm"] < LEVEL]
    verdict = ", ".join(significant) if significant else "none"
    return (
        f"Late FID (robustness check: the mean of each run's last in-training evaluations, paired against the "
        f"baseline): {parts}. Significant after Holm's correction: {verdict}." + (f" {skipped}" if skipped else "")
    )


def pairing_finding(rows: list[dict[str, Any]]) -> str | None:
    """One sentence on what pairing by seed bought: each compared cell's FID correlation with its baseline's across
    the paired seeds. None when no cell has three or more pairs."""
    paired = [r for r in rows if r.get("paired") and math.isfinite(r["paired"].get("r", math.nan))]
    if not paired:
        return None
    parts = ", ".join(f"{r['cell']} {r['paired']['r']:+.2f}" for r in paired)
    return (
        f"Pairing: across the paired seeds, each cell's final FID correlates with its baseline's at r = {parts}. "
        "The paired difference's spread is that of two independent runs times sqrt(1 - r) (for equal spreads): "
        "pairing by seed narrows the intervals only as far as r is above 0."
    )


def regime_finding(row: dict[str, Any]) -> str | None:
    """What the guidance did in a cell's guided steps: how many explained some, all or none of the batch."""
    reg = row.get("regimes")
    if not reg:
        return None
    total = reg["none"] + reg["partial"] + reg["all"]
    text = (
        f"{row['cell']}: of {total} guided steps, {reg['partial']} explained part of the batch, {reg['all']} all of "
        f"it, {reg['none']} none"
    )
    if reg["partial"] and math.isfinite(reg["partial_mask_mean_explained"]):
        text += (
            f"; in the partly explained steps the explained samples' mean mask was "
            f"{reg['partial_mask_mean_explained']:.3g} and the others' {reg['partial_mask_mean_others']:.3g}"
        )
    return text + "."


def selection_finding(sel: dict[str, Any]) -> str:
    """The screening rule's outcome (:func:`xaigan.experiments.selection.apply_rule`) in one or two sentences."""
    rule = sel["rule"]
    text = (
        f"Selection rule (fixed in the grid file): mean paired change at most {rule['max_change_pct']:+g}% and lower "
        f"FID in at least {rule['min_lower']} of {sel['n_seeds']} seeds; at most {rule['top']} go on"
    )
    if sel["pending"]:
        return text + f". Not applied yet: {', '.join(sel['pending'])} lack some of the {sel['n_seeds']} seeds."
    ranked = sel["ranking"][:5]
    best = ", ".join(f"{c['cell']} {c['change_pct']:+.1f}% ({c['lower_in']}/{c['n_pairs']})" for c in ranked)
    if sel["fallback"]:
        text += f". None qualifies; the {len(sel['selected'])} best go on anyway: {', '.join(sel['selected'])}"
    else:
        text += f". Go on: {', '.join(sel['selected'])}"
    text += f". Best changes: {best}."
    if sel["hurts"]:
        text += f" Hurt (at least {rule['hurt_pct']:+g}% and worse in every seed): {', '.join(sel['hurts'])}."
    return text


def findings(rows: list[dict[str, Any]], selection: dict[str, Any] | None = None) -> list[str]:
    """The headline, the screening selection (if the grid has a rule), where the runs did not train or score alike,
    one finding per compared cell, then what the guidance did, in the grid's order, and how many runs did not
    record their provenance."""
    out = [headline(rows)] + ([selection_finding(selection)] if selection else []) + mixed_findings(rows)
    out += [f for f in map(cell_finding, rows) if f] + [f for f in map(control_finding, rows) if f]
    out += [f for f in [late_finding(rows), pairing_finding(rows)] if f]
    return out + [f for f in [*map(regime_finding, rows), unrecorded_finding(rows)] if f]
