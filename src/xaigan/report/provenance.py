"""Where and with what each cell's runs trained, and what scored them: the report's provenance table, and the
findings that say when the cells compared did not run alike (code, device, precision, extractor weights).

Each row's ``provenance`` (:func:`xaigan.experiments.aggregate.run_provenance`) holds, by seed, the run's
``summary.json`` record (None for runs trained before runs recorded it), the kind of device its summary names, and
its extractor's id and weights hash.
"""

from __future__ import annotations

from typing import Any

NOT_RECORDED = "not recorded"

PROVENANCE_COLUMNS = (
    "cell",
    "code (xaigan, source or commit)",
    "device",
    "precision",
    "torch (Python)",
    "threads",
    "FID extractor (weights)",
)
_KEYS = ("code", "device", "precision", "torch", "threads", "extractor")  # the columns after "cell"

PROVENANCE_NOTE = (
    "Where and with what each cell's runs trained (each run's summary.json) and which feature extractor scored "
    "them (its eval.json). A cell whose runs differ lists each value with its seeds; runs trained before runs "
    f'recorded this show "{NOT_RECORDED}".'
)

# What differs, and what that does to the comparison, for the findings' sentences
_DEVICES = (
    "Their arithmetic differs: a difference between these cells may come from the device, and their step times do "
    "not compare."
)
_MIXED = {
    "code": (
        "trained from different code versions",
        "A difference between these cells may come from the code, not only from their settings.",
    ),
    "device": ("trained on different devices", _DEVICES),
    "kind": ("trained on different kinds of device", _DEVICES),
    "precision": (
        "trained in different precisions",
        "A difference between these cells may come from the arithmetic, not only from their settings.",
    ),
    "extractor": (
        "were scored by different feature extractor weights",
        "FIDs from different weights are not on one scale: each seed is paired only with runs scored by the same "
        "weights, and a cell's mean FID averages over whatever scored its runs.",
    ),
}


def _code(p: dict[str, Any]) -> str:
    git = p.get("git")
    if not git:
        return f"{p.get('xaigan', '?')} (no git checkout)"
    dirty = ", uncommitted changes" if git.get("dirty") else ""
    if git.get("source"):  # the package's own source tree: commits that changed only docs or results do not count
        return f"{p.get('xaigan', '?')} source {str(git['source'])[:7]}{dirty}"
    return f"{p.get('xaigan', '?')} at {str(git.get('commit', '?'))[:7]}{dirty}"


def _device(entry: dict[str, Any]) -> str:
    p = entry["provenance"]
    if not p:
        kind = entry.get("device")
        return f"{kind} (model {NOT_RECORDED})" if kind else NOT_RECORDED
    d = p.get("device") or {}
    if d.get("type") == "cuda":
        return f"{d.get('name', 'cuda')} ({d.get('memory_gib', '?')} GiB)"
    if d.get("type") == "cpu":
        ext = d.get("extensions") or []
        return f"{d.get('model', 'cpu')}" + (f" ({', '.join(ext)})" if ext else "")
    return str(d.get("name") or d.get("type") or NOT_RECORDED)


def _kind(entry: dict[str, Any]) -> str | None:
    """The kind of device ("cpu", "cuda"), which older runs record too."""
    p = entry["provenance"]
    kind = (p.get("device") or {}).get("type") if p else entry.get("device")
    return str(kind) if kind else None


def run_labels(entry: dict[str, Any]) -> dict[str, str]:
    """One run's provenance (an entry of a row's ``provenance``) as the table's words, by column key."""
    p, ext = entry["provenance"], entry.get("extractor") or {}
    labels = {"device": _device(entry), "extractor": f"{ext.get('id', '?')} ({ext.get('weights_hash', '?')})"}
    if not p:
        return {key: labels.get(key, NOT_RECORDED) for key in _KEYS}
    labels["code"] = _code(p)
    labels["precision"] = str(p.get("precision", NOT_RECORDED))
    labels["torch"] = f"{p.get('torch', '?')} (Python {p.get('python', '?')})"
    labels["threads"] = str(p.get("threads", NOT_RECORDED))
    return {key: labels[key] for key in _KEYS}


def seeds_text(seeds: list[int]) -> str:
    """``seed 3``, ``seeds 0–4`` (consecutive) or ``seeds 0, 2, 5``."""
    seeds = sorted(seeds)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}–{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def _entries(row: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(seed): entry for seed, entry in (row.get("provenance") or {}).items()}


def _by_value(row: dict[str, Any], key: str) -> dict[str, list[int]]:
    """A cell's seeds by their value in one column, in the order of their lowest seed."""
    out: dict[str, list[int]] = {}
    for seed, entry in sorted(_entries(row).items()):
        out.setdefault(run_labels(entry)[key], []).append(seed)
    return out


def provenance_table(rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The provenance table's columns and rows (cells whose rows hold no provenance left out)."""
    table = []
    for row in rows:
        if not _entries(row):
            continue
        cells = []
        for key in _KEYS:
            values = _by_value(row, key)
            only = len(values) == 1
            cells.append("; ".join(v if only else f"{v} ({seeds_text(s)})" for v, s in values.items()))
        table.append([row["cell"], *cells])
    return PROVENANCE_COLUMNS, table


def _where(rows: list[dict[str, Any]], found: dict[str, list[int]]) -> str:
    """``normal, saliency (seeds 3, 4)``: a cell named alone where the value holds for all its runs; ``seeds 3, 4 of
    every cell`` where it holds for the same seeds of each."""
    n_runs = {row["cell"]: len(_entries(row)) for row in rows if _entries(row)}
    seed_sets = {tuple(s) for s in found.values()}
    if len(found) > 1 and set(found) == set(n_runs) and len(seed_sets) == 1:
        return f"{seeds_text(list(seed_sets.pop()))} of every cell"
    return ", ".join(cell if len(s) == n_runs[cell] else f"{cell} ({seeds_text(s)})" for cell, s in found.items())


def _values(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, list[int]]]:
    """Across the grid's recorded runs, value -> cell -> seeds, for one column key (or ``kind``: the device's kind,
    which older runs record too)."""
    out: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        for seed, entry in sorted(_entries(row).items()):
            if key == "kind":
                value = _kind(entry)
            else:
                value = run_labels(entry)[key] if entry["provenance"] or key == "extractor" else None
            if value is not None:
                out.setdefault(value, {}).setdefault(row["cell"], []).append(seed)
    return out


def mixed_findings(rows: list[dict[str, Any]]) -> list[str]:
    """One sentence per way the grid's runs did not train or score alike (code version, device, precision, extractor
    weights), naming which cells and seeds had which value; none where every recorded run agrees."""
    out = []
    for key in ("code", "device", "kind", "precision", "extractor"):
        values = _values(rows, key)
        if len(values) < 2 or (key == "kind" and len(_values(rows, "device")) > 1):
            continue  # the device's kind only where the devices themselves are not known to differ
        what, consequence = _MIXED[key]
        found = "; ".join(f"{value} for {_where(rows, cells)}" for value, cells in values.items())
        out.append(f"Not like-for-like: the runs compared {what}: {found}. {consequence}")
    return out


def unrecorded_finding(rows: list[dict[str, Any]]) -> str | None:
    """How many runs did not record their provenance (trained before runs did); None when every run did."""
    missing = {row["cell"]: [s for s, e in sorted(_entries(row).items()) if not e["provenance"]] for row in rows}
    missing = {cell: seeds for cell, seeds in missing.items() if seeds}
    n, total = sum(map(len, missing.values())), sum(len(_entries(row)) for row in rows)
    if not n:
        return None
    which = "every run of this grid" if n == total else f"of {total}: {_where(rows, missing)}"
    return (
        f"Provenance {NOT_RECORDED} for {n} run{'s' if n != 1 else ''} ({which}): trained before runs recorded "
        "their code version, device and precision, so whether they ran alike cannot be checked."
    )
