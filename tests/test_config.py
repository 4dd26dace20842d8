"""Config files and flags: unknown keys and wrong types are named."""
import pytest

from lnpt.config import RunConfig, load_config_file, replace_flat, run_config_from_dict
from lnpt.errors import ConfigError


def test_toml_and_yaml_round_trip(tmp_path):
    (tmp_path / "a.toml").write_text('seed = 3\n[prune]\nsparsity = 0.95\ncriterion = "snip"\n[train]\nepochs = 2\n')
    (tmp_path / "a.yaml").write_text("seed: 3\nprune:\n  sparsity: 0.95\n  criterion: snip\ntrain:\n  epochs: 2\n")
    a, b = load_config_file(tmp_path / "a.toml"), load_config_file(tmp_path / "a.yaml")
    assert a == b
    assert (a.seed, a.weights.sparsity, a.prune.criterion, a.train.epochs) == (3, 0.95, "snip", 2)
    assert a.train.lr == RunConfig().train.lr  # untouched settings keep defaults


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'prune.sparsty'"):
        run_config_from_dict({"prune": {"sparsty": 0.9}})
    with pytest.raises(ConfigError, match="'pruning'"):
        run_config_from_dict({"pruning": {}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="'train.epochs' must be int"):
        run_config_from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match="'data.augment' must be bool"):
        run_config_from_dict({"data": {"augment": 1}})
    assert run_config_from_dict({"train": {"lr": 1}}).train.lr == 1.0  # ints are fine for floats


def test_choices_are_checked():
    with pytest.raises(ConfigError, match="'scope' must be one of global, layer"):
        run_config_from_dict({"prune": {"scope": "everywhere"}})


def test_flat_overrides_go_to_their_section():
    cfg = replace_flat(RunConfig(), {"sparsity": 0.5, "epochs": 7, "seed": 2, "model": "resnet20"})
    assert (cfg.weights.sparsity, cfg.train.epochs, cfg.seed, cfg.model.model) == (0.5, 7, 2, "resnet20")
    kept = replace_flat(run_config_from_dict({"seed": 5}), {"epochs": 1})
    assert kept.seed == 5  # a seed from a file survives overrides of other settings
    with pytest.raises(ConfigError, match="unknown setting 'sparsty'"):
        replace_flat(RunConfig(), {"sparsty": 0.5})


def test_bad_file_is_refused(tmp_path):
    (tmp_path / "bad.toml").write_text("[prune\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")
