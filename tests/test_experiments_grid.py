"""Sweep files: grid expansion, cell names, extra cells, and helpful errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from lnpt.config import RunConfig
from lnpt.errors import ConfigError
from lnpt.experiments.grid import cell_name, load_sweep, sweep_from_dict

SWEEP_TOML = """
seed = 0
[data]
dataset = "digits"
[train]
epochs = 2
lr = 0.1

[grid]
seed = [0, 1]
sparsity = [0.9, 0.95]
criterion = ["lnpt", "snip"]

[[extra]]
criterion = "random"
sparsity = 0.9
"""


def test_toml_grid_expands_to_cross_product_plus_extra(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP_TOML)
    spec = load_sweep(path)
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 2 + 1
    # File order drives iteration (last key fastest); names use the canonical order, seed last.
    assert cells[0].name == "criterion=lnpt,sparsity=0.9,seed=0"
    assert cells[1].name == "criterion=snip,sparsity=0.9,seed=0"
    assert cells[-1].name == "criterion=random,sparsity=0.9"
    assert len({c.name for c in cells}) == len(cells)
    c = next(c for c in cells if c.name == "criterion=snip,sparsity=0.95,seed=1")
    assert (c.config.prune.criterion, c.config.weights.sparsity, c.config.seed) == ("snip", 0.95, 1)
    assert c.config.data.dataset == "digits" and c.config.train.epochs == 2 and c.config.train.lr == 0.1


def test_yaml_sweep_is_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("train:\n  epochs: 1\ngrid:\n  loss: [lnpt, pseudo, supervised]\n  model: [lenet5]\n")
    cells = load_sweep(path).cells()
    assert [c.name for c in cells] == ["model=lenet5,loss=lnpt", "model=lenet5,loss=pseudo", "model=lenet5,loss=supervised"]
    assert cells[2].config.train.loss == "supervised" and cells[2].config.train.epochs == 1


def test_example_name_from_the_brief() -> None:
    name = cell_name({"seed": 0, "loss": "lnpt", "sparsity": 0.95, "criterion": "lnpt", "model": "lenet5"})
    assert name == "model=lenet5,criterion=lnpt,sparsity=0.95,loss=lnpt,seed=0"
    assert cell_name({}) == "base"
    assert cell_name({"teacher": "runs/t 1/best.pt"}) == "teacher=runs-t-1-best.pt"  # no path separators


def test_unknown_grid_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown grid key 'critrion'.*criterion"):
        sweep_from_dict({"grid": {"critrion": ["lnpt"]}})
    with pytest.raises(ConfigError, match=r"unknown extra key 'sparsty'"):
        sweep_from_dict({"extra": [{"sparsty": 0.5}]})


def test_bad_values_fail_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="scope"):
        sweep_from_dict({"grid": {"scope": ["global", "everywhere"]}})
    with pytest.raises(ConfigError, match="sparsity"):
        sweep_from_dict({"grid": {"sparsity": ["lots"]}})
    with pytest.raises(ConfigError, match="empty list"):
        sweep_from_dict({"grid": {"seed": []}})
    with pytest.raises(ConfigError, match="unknown config key"):
        sweep_from_dict({"prune": {"nope": 1}})


def test_extra_repeating_a_grid_cell_is_deduplicated_and_scalars_are_one_value_lists() -> None:
    spec = sweep_from_dict({"grid": {"criterion": ["lnpt", "snip"], "sparsity": 0.9},
                            "extra": [{"criterion": "snip", "sparsity": 0.9}]})
    assert [c.name for c in spec.cells()] == ["criterion=lnpt,sparsity=0.9", "criterion=snip,sparsity=0.9"]


def test_colliding_names_of_different_configs_are_an_error() -> None:
    with pytest.raises(ConfigError, match="same folder name|map to the folder name"):
        sweep_from_dict({"grid": {"teacher": ["a/b", "a b"]}})


def test_no_grid_is_one_base_cell() -> None:
    cells = sweep_from_dict({"seed": 3}).cells()
    assert [c.name for c in cells] == ["base"] and cells[0].config == RunConfig(seed=3)
