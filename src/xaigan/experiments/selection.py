"""A screening grid's selection rule, fixed in its grid file before any run: which cells go on to confirmation.

A cell qualifies when its mean paired FID change against its baseline is at most ``max_change_pct`` (% of the
baseline's mean) and its FID is lower in at least ``min_lower`` seeds. At most ``top`` qualified cells go on, the
largest improvements first; if none qualifies, the ``fallback`` cells with the largest improvement go on anyway (to
measure how close the best came). A cell *hurts* when its change is at least ``hurt_pct`` and its FID is higher in
every seed. The rule is applied only when every compared cell has all the grid's seeds; before that it is pending.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from xaigan.config import ConfigError


@dataclass(frozen=True)
class SelectionRule:
    max_change_pct: float = -5.0
    min_lower: int = 2
    top: int = 3
    fallback: int = 2
    hurt_pct: float = 5.0

    @classmethod
    def parse(cls, raw: Any, where: str) -> SelectionRule:
        """The rule from a grid file's ``select`` mapping (missing keys take the defaults)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: 'select' must be a mapping, got {type(raw).__name__}")
        known = {f.name: type(f.default) for f in fields(cls)}  # every field's default has the field's type
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown select key(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            want_int = known[key] is int
            ok = isinstance(value, int) if want_int else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok or not math.isfinite(value):
                raise ConfigError(f"{where}: select {key} must be {'an integer' if want_int else 'a number'}")
            values[key] = value
        rule = cls(**values)
        for key in ("min_lower", "top", "fallback"):
            if getattr(rule, key) < 0:
                raise ConfigError(f"{where}: select {key} must be >= 0, got {getattr(rule, key)}")
        return rule


def apply_rule(rows: list[dict[str, Any]], rule: SelectionRule, n_seeds: int) -> dict[str, Any]:
    """The rule applied to a grid's aggregate rows (cells with a baseline and paired results). Returns the rule,
    ``ranking`` (every compared cell by mean change, best first), ``pending`` (cells short of ``n_seeds`` pairs),
    ``qualified``, ``selected`` (empty while any cell is pending), ``fallback`` (True when none qualified) and
    ``hurts``."""
    compared = [r for r in rows if r.get("baseline") is not None and (r.get("paired") or {}).get("n_pairs")]
    ranking = []
    for r in compared:
        p = r["paired"]
        n, lower = p["n_pairs"], p["lower_in"]
        ranking.append(
            {
                "cell": r["cell"],
                "baseline": r["baseline"],
                "change_pct": p["diff_pct"],
                "lower_in": lower,
                "n_pairs": n,
                "qualifies": p["diff_pct"] <= rule.max_change_pct and lower >= rule.min_lower,
                "hurts": p["diff_pct"] >= rule.hurt_pct and lower == 0,
            }
        )
    ranking.sort(key=lambda c: c["change_pct"])
    # every cell with a baseline counts, also one with no finished pair yet (e.g. all of its runs failed)
    pairs = {r["cell"]: (r.get("paired") or {}).get("n_pairs") or 0 for r in rows if r.get("baseline") is not None}
    pending = [c["cell"] for c in ranking if c["n_pairs"] < n_seeds]
    pending += [cell for cell, n in pairs.items() if n == 0]
    qualified = [c["cell"] for c in ranking if c["qualifies"]]
    out: dict[str, Any] = {"rule": asdict(rule), "n_seeds": n_seeds, "ranking": ranking, "pending": pending}
    out.update(qualified=qualified, hurts=[c["cell"] for c in ranking if c["hurts"]], fallback=False, selected=[])
    if pending or not ranking:
        return out
    if qualified:
        out["selected"] = qualified[: rule.top]
    else:
        out["selected"] = [c["cell"] for c in ranking[: rule.fallback]]
        out["fallback"] = True
    return out
