"""Sweep configuration: a base RunConfig, a grid of flat settings, and extra cells.

A sweep file (TOML, YAML or JSON) holds the usual run sections (``[data]``, ``[model]``,
``[prune]``, ``[train]``, ``seed``) as the base, plus::

    [grid]                      # the cross product of these lists
    criterion = ["lnpt", "snip"]
    sparsity = [0.9, 0.95]
    seed = [0, 1, 2]

    [[extra]]                   # optional single cells added as they are (not crossed)
    criterion = "random"
    sparsity = 0.9

Grid keys are the flat setting names of the CLI (``lnpt.config.replace_flat``). Each cell gets
a readable folder name built from its settings in a fixed order (the order of the config
dataclasses, seed last) so the name does not depend on how the file is written, and an
existing sweep folder is found again after the file is edited.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    SETTING_ORDER,
    RunConfig,
    given_settings,
    read_settings_file,
    replace_flat,
    run_config_from_dict,
    saved_settings,
    to_dict,
)
from ..errors import ConfigError
from ..recipes.settings import unread_reason


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its folder name, the settings that make it a cell, its config."""

    name: str
    overrides: dict[str, Any]
    config: RunConfig


@dataclass(frozen=True)
class SweepSpec:
    base: RunConfig
    grid: dict[str, list[Any]] = field(default_factory=dict)
    extra: list[dict[str, Any]] = field(default_factory=list)
    given: frozenset[str] = frozenset()  # settings the base sets explicitly (file or flags)

    def cells(self) -> list[Cell]:
        return expand(self)

    def to_dict(self) -> dict:
        return {"base": saved_settings(self.base), "grid": self.grid, "extra": self.extra}


def _check_keys(keys: list[str], where: str) -> None:
    known = set(SETTING_ORDER)
    for key in keys:
        if key not in known:
            raise ConfigError(f"unknown {where} key {key!r}; known settings: {', '.join(sorted(known))}")


def sweep_from_dict(d: dict) -> SweepSpec:
    """Split a parsed sweep file into base config, grid and extra cells (validating all)."""
    if not isinstance(d, dict):
        raise ConfigError("a sweep file must hold a table/mapping at its top level")
    d = dict(d)
    grid = d.pop("grid", {}) or {}
    extra = d.pop("extra", []) or []
    if not isinstance(grid, dict):
        raise ConfigError("'grid' must be a table of setting = [values]")
    if not isinstance(extra, list) or not all(isinstance(e, dict) for e in extra):
        raise ConfigError("'extra' must be a list of tables ([[extra]] in TOML)")
    _check_keys(list(grid), "grid")
    for e in extra:
        _check_keys(list(e), "extra")
    lists = {}
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"grid key {key!r} has an empty list of values")
        lists[key] = values
    spec = SweepSpec(base=run_config_from_dict(d), grid=lists, extra=extra, given=frozenset(given_settings(d)))
    spec.cells()  # fail now, on a bad value, rather than halfway through the sweep
    return spec


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` sweep file."""
    return sweep_from_dict(read_settings_file(path, "sweep"))


def format_value(value: Any) -> str:
    """A setting value as it appears in a folder name: short, and safe on every filesystem."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = repr(value)
    elif value is None:
        text = "none"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+\-]+", "-", text).strip("-") or "-"


def cell_name(overrides: dict[str, Any]) -> str:
    """``model=lenet5,criterion=lnpt,sparsity=0.95,loss=lnpt,seed=0`` (canonical key order)."""
    if not overrides:
        return "base"
    keys = sorted(overrides, key=SETTING_ORDER.index)
    return ",".join(f"{k}={format_value(overrides[k])}" for k in keys)


def make_cell(base: RunConfig, overrides: dict[str, Any]) -> Cell:
    """Apply ``overrides`` and re-validate the whole config (types and choices)."""
    try:
        # The base seed is passed explicitly: replace_flat rebuilds RunConfig from its sections
        # and would otherwise reset a seed set in the file's base to the default.
        cfg = run_config_from_dict(to_dict(replace_flat(base, {"seed": base.seed, **overrides})))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid sweep cell {overrides}: {exc}") from None
    return Cell(cell_name(overrides), dict(overrides), cfg)


def expand(spec: SweepSpec) -> list[Cell]:
    """The grid's cross product (in file order, last key fastest), then the extra cells.

    Two cells with the same folder name must be the same run (an extra that repeats a grid
    cell is dropped); different configs under one name are an error.
    """
    keys = list(spec.grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))]
    cells: dict[str, Cell] = {}
    for overrides in combos + [dict(e) for e in spec.extra]:
        cell = make_cell(spec.base, overrides)
        seen = cells.get(cell.name)
        if seen is not None and seen.config != cell.config:
            raise ConfigError(f"two different sweep cells map to the folder name {cell.name!r}; "
                              "make their values differ in more than punctuation")
        cells.setdefault(cell.name, cell)
    check_read(spec, list(cells.values()))
    return list(cells.values())


def check_read(spec: SweepSpec, cells: list[Cell]) -> None:
    """Refuse a setting the sweep gives that its runs do not read (one line, as ``lnpt run``).

    A grid crosses settings on purpose (``loss`` x ``beta``), so a setting of the base or the
    grid must be read by at least one cell it reaches; an extra cell's own setting must be read
    by that cell. A cell may set a setting back to its default (undoing the base's value).
    """
    defaults = {k: v for sec in to_dict(RunConfig()).values() if isinstance(sec, dict) for k, v in sec.items()}
    # Settings added after the legacy layout (--device, --precision, ...) sort after it, by name.
    order = {k: i for i, k in enumerate(SETTING_ORDER)}
    for key in sorted(spec.given, key=lambda k: (order.get(k, len(order)), k)):
        reasons = [unread_reason(c.config, key) for c in cells if key not in c.overrides]
        if reasons and all(reasons):
            raise ConfigError(f"the sweep's base sets a setting no cell reads: {reasons[0]}")
    extra = {cell_name(e) for e in spec.extra} - {cell_name(dict(zip(spec.grid, v))) for v in
                                                   itertools.product(*spec.grid.values())}
    for key in spec.grid:
        reasons = [unread_reason(c.config, key) for c in cells
                   if c.name not in extra and c.overrides.get(key, defaults.get(key)) != defaults.get(key)]
        if reasons and all(reasons):
            raise ConfigError(f"grid key {key!r} is read by no cell: {reasons[0]}")
    for c in (c for c in cells if c.name in extra):
        for key, value in c.overrides.items():
            reason = value != defaults.get(key) and unread_reason(c.config, key)
            if reason:
                raise ConfigError(f"sweep cell {c.name}: {reason}")
