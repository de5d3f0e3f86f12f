"""Experiment grids: a YAML file of cells (config overrides) run over the same seeds, under a named budget."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xaigan import config as config_mod
from xaigan.config import Config
from xaigan.experiments.selection import SelectionRule

# What a grid's output folder holds beside its cells' folders: no cell may take these names.
RESERVED = frozenset(
    {
        *("grid.yaml", "grid.json", "report.md", "report.html", "report_files", "aggregate.json", "selection.json"),
        "reading.md",  # a person's reading of the study (xaigan.report.reading)
    }
)

GRID_KEYS = frozenset(
    {
        *("name", "description", "base", "cells", "budgets", "evaluation"),
        *("compare", "controls", "equivalence", "original", "seeds", "select"),
    }
)


_CONFIG_DEFAULTS = {f.name: f.default for f in fields(Config)}


@dataclass(frozen=True)
class EvalSettings:
    """How a grid scores each of its finished runs (the final evaluation): the grid's ``evaluation:`` section, each
    key left out taking the default of the config key that sets it for a single run (``eval_n``, ``eval_features``,
    ``eval_reference``).

    Args:
        n: generated samples scored.
        features: the feature extractor of FID/KID.
        reference: the real split the samples are compared with.

    Example:
        >>> EvalSettings.from_grid(load_grid("configs/study/fmnist35-powered.yaml")).n
        10000
    """

    n: int = _CONFIG_DEFAULTS["eval_n"]
    features: str = _CONFIG_DEFAULTS["eval_features"]
    reference: str = _CONFIG_DEFAULTS["eval_reference"]

    @classmethod
    def from_grid(cls, grid: Grid) -> EvalSettings:
        """The settings of ``grid``'s ``evaluation:`` section (its keys checked by :func:`load_grid`).

        Args:
            grid: the grid.

        Returns:
            The section's settings over the config's defaults.
        """
        return cls(**grid.evaluation)


EVAL_KEYS = tuple(f.name for f in fields(EvalSettings))


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: a cell under one seed, with its fully resolved config and run folder.

    Args:
        cell: the cell's name.
        seed: the run's seed.
        cfg: the cell's config under the chosen budget, with this seed.
        run_dir: the run folder, ``OUT/CELL/seed_SEED``.

    Example:
        >>> from pathlib import Path
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> spec = grid.runs(Path("runs/fmnist35-powered"), "paper", [0])[1]
        >>> spec.cell, spec.seed, spec.run_dir.as_posix(), spec.cfg.xai
        ('saliency', 0, 'runs/fmnist35-powered/saliency/seed_0', 'saliency')
    """

    cell: str
    seed: int
    cfg: Config
    run_dir: Path


@dataclass
class Grid:
    """A parsed grid file (:func:`load_grid`): a base config, cells of overrides, named budgets, and how the cells
    are compared.

    Args:
        name: the grid's name (the default output folder's).
        base: config keys every cell starts from.
        cells: cell name -> config overrides.
        budgets: budget name -> config overrides (e.g. ``{"paper": {"epochs": 50}}``).
        evaluation: ``n``, ``features`` and ``reference`` of the final evaluation (:class:`EvalSettings`).
        compare: cell -> the cell it is compared with, where not its xai-none baseline.
        controls: control cell -> the cell it controls (same seeds).
        equivalence: cell -> ``{"against": other cell, "margin_pct": m}``: a paired equivalence test (TOST) of the
            two cells' FIDs within +-m% of the other's mean, registered with the grid before its runs.
        original: cell -> the original authors' numbers, for the report.
        description: one line for the report.
        seeds: the seeds the grid was designed for, or None.
        select: a screening grid's selection rule, or None.
        path: the file it was read from.

    Example:
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> list(grid.cells), grid.baseline("saliency")
        (['normal', 'saliency', 'saliency-selected'], 'normal')
    """

    name: str
    base: dict[str, Any]
    cells: dict[str, dict[str, Any]]
    budgets: dict[str, dict[str, Any]]
    evaluation: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, str] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)  # control cell -> the cell it controls (same seeds)
    equivalence: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell -> {against, margin_pct}
    original: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    seeds: list[int] | None = None
    select: SelectionRule | None = None  # a screening grid's selection rule (experiments.selection)
    path: Path | None = None

    def cell_config(self, cell: str, budget: str, seed: int) -> Config:
        if budget not in self.budgets:
            raise config_mod.ConfigError(f"budget must be one of {', '.join(self.budgets)}; got {budget!r}")
        layers = [self.base, self.budgets[budget], self.cells[cell], {"seed": seed, "progress": False}]
        layers.append({"name": f"{self.name}-{cell}-s{seed}"})
        return config_mod.resolve(*layers)

    def baseline(self, cell: str) -> str | None:
        """The cell a cell is compared with: ``compare`` if given, else the xai-none cell with the same data and
        augmentation (``None`` for a baseline itself)."""
        if cell in self.compare:
            return self.compare[cell]
        budget = next(iter(self.budgets))  # the resolved settings, so that a default written out matches one left out

        def settings(c: str) -> tuple:
            cfg = self.cell_config(c, budget, 0)
            return cfg.xai, cfg.dataset, cfg.fraction, cfg.diffaugment, cfg.xai_cutout, cfg.model

        own = settings(cell)
        if own[0] == "none":
            return None
        return next((o for o in self.cells if (s := settings(o))[0] == "none" and s[1:] == own[1:]), None)

    def with_references(self, cells: list[str]) -> list[str]:
        """``cells`` and what they are compared with (baselines, the cells controls control), in the grid's order.
        An unknown name is a ConfigError naming the grid's cells."""
        unknown = [c for c in cells if c not in self.cells]
        if unknown:
            raise config_mod.ConfigError(
                f"no cell {', '.join(unknown)} in grid {self.name}; cells: {', '.join(self.cells)}"
            )
        wanted = set(cells) | {self.controls[c] for c in cells if c in self.controls}
        wanted |= {b for c in wanted if (b := self.baseline(c)) is not None}
        return [c for c in self.cells if c in wanted]

    def runs(self, out: Path, budget: str, seeds: list[int], cells: list[str] | None = None) -> list[RunSpec]:
        """Every (cell, seed) run (of ``cells`` only, if given), seed-major so an interrupted grid has all modes for
        its first seeds."""
        chosen = list(self.cells) if cells is None else [c for c in self.cells if c in cells]
        return [
            RunSpec(cell, seed, self.cell_config(cell, budget, seed), Path(out) / cell / f"seed_{seed}")
            for seed in seeds
            for cell in chosen
        ]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every cell must resolve to a valid config.

    Args:
        path: a YAML grid file (``configs/study/*.yaml``).

    Returns:
        The grid.

    Raises:
        xaigan.config.ConfigError: an unknown key, a malformed table, a reserved or invalid name, a cell that does
            not resolve to a valid config, or a comparison that names a missing cell.

    Example:
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> grid.name, grid.seeds
        ('fmnist35-powered', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    path = Path(path)
    raw = config_mod.load_yaml(path)
    unknown = sorted(set(raw) - GRID_KEYS)
    if unknown:
        raise config_mod.ConfigError(f"{path}: unknown grid key(s) {', '.join(unknown)}; allowed: {sorted(GRID_KEYS)}")
    if not raw.get("cells") or not isinstance(raw["cells"], dict):
        raise config_mod.ConfigError(f"{path}: a grid needs a non-empty 'cells' mapping")
    budgets = raw.get("budgets") or {"paper": {}}
    for key, value in (("base", raw.get("base")), ("budgets", budgets), ("evaluation", raw.get("evaluation"))):
        if value is not None and not isinstance(value, dict):
            raise config_mod.ConfigError(f"{path}: '{key}' must be a mapping, got {type(value).__name__}")
    for what, table in (("cell", raw["cells"]), ("budget", budgets)):
        for name, value in table.items():
            if value is not None and not isinstance(value, dict):
                raise config_mod.ConfigError(f"{path}: {what} {name!r} must be a mapping of config keys")
    grid = Grid(
        name=str(raw.get("name", path.stem)),
        base=raw.get("base") or {},
        cells={str(k): (v or {}) for k, v in raw["cells"].items()},
        budgets={str(k): (v or {}) for k, v in budgets.items()},
        evaluation=raw.get("evaluation") or {},
        compare=raw.get("compare") or {},
        controls=raw.get("controls") or {},
        equivalence=raw.get("equivalence") or {},
        original=raw.get("original") or {},
        description=raw.get("description", ""),
        seeds=raw.get("seeds"),
        select=SelectionRule.parse(raw["select"], str(path)) if "select" in raw else None,
        path=path,
    )
    config_mod.check_name(grid.name, f"{path}: grid name")
    for what, names in (("cell", grid.cells), ("budget", grid.budgets)):
        for name in names:
            config_mod.check_name(name, f"{path}: {what}")
            if name in RESERVED:
                raise config_mod.ConfigError(f"{path}: {what} {name!r} is a file of the grid's output folder")
    for cell in grid.cells:
        for budget in grid.budgets:
            grid.cell_config(cell, budget, 0)  # raises ConfigError naming the key
    for cell, other in grid.compare.items():
        if cell not in grid.cells or other not in grid.cells:
            raise config_mod.ConfigError(f"{path}: compare {cell} -> {other} names a cell that does not exist")
    for control, cell in grid.controls.items():
        if control not in grid.cells or cell not in grid.cells or control == cell:
            raise config_mod.ConfigError(f"{path}: controls {control} -> {cell} must name two different cells")
    for cell, test in grid.equivalence.items():
        ok = isinstance(test, dict) and set(test) == {"against", "margin_pct"} and test["against"] in grid.cells
        if (
            not ok
            or cell not in grid.cells
            or not (isinstance(test["margin_pct"], (int, float)) and test["margin_pct"] > 0)
        ):
            raise config_mod.ConfigError(
                f"{path}: equivalence {cell}: must be a cell with {{against: another cell, margin_pct: a number > 0}}"
            )
    bad_eval = set(grid.evaluation) - set(EVAL_KEYS)
    if bad_eval:
        raise config_mod.ConfigError(
            f"{path}: unknown evaluation key(s) {sorted(bad_eval)}; allowed: {', '.join(EVAL_KEYS)}"
        )
    try:  # the values too, before any run trains (as a single run's eval_* keys are checked)
        Config.from_dict({f"eval_{key}": value for key, value in grid.evaluation.items()})
    except config_mod.ConfigError as e:
        raise config_mod.ConfigError(f"{path}: evaluation: {e}") from None
    return grid
