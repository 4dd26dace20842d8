"""Settings that belong to their component: sections per mode, settings declared by the criteria
and losses that read them, refusal of a setting the run does not read, grouped help, and
configs, fingerprints and run folders written before the change."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from lnpt.cli import build_parser, main
from lnpt.cli.demo import DEMO, QUICK
from lnpt.cli.run import config_from_args
from lnpt.config import (
    LEGACY_LAYOUT,
    SECTIONS,
    ComputeConfig,
    LossConfig,
    RunConfig,
    ScoreConfig,
    fingerprint_settings,
    legacy_settings,
    migrate_layout,
    replace_flat,
    run_config_from_dict,
    saved_settings,
)
from lnpt.errors import ConfigError
from lnpt.experiments.grid import load_sweep, sweep_from_dict
from lnpt.pruning.criteria import CRITERIA
from lnpt.pruning.structured.criteria import CHANNEL_CRITERIA
from lnpt.recipes.pipeline import default_run_name, fingerprint, run_pipeline
from lnpt.train import LOSSES

LEGACY_RUN = Path(__file__).parent / "data" / "legacy-run"
SWEEPS = Path(__file__).parents[1] / "sweeps"

# Fingerprints and default run names computed with the code of main before the change (3e2d4e3),
# from these flat settings: run folders and sweep cells written then must keep their names.
BEFORE = {
    "default": ({}, "lenet5-lnpt-s0.9-lnpt-seed0-1931e96e9b"),
    "weight-snip": ({"criterion": "snip", "sparsity": 0.95, "rounds": 3, "scope": "layer", "label_source": "true"},
                    "lenet5-snip-s0.95-lnpt-seed0-d5fd0e3716"),
    "structured": ({"structured": True, "criterion": "lnpt-fm", "channel_ratio": 0.3, "channel_scope": "global",
                    "channel_budget": "macs", "round_to": 8, "fm_saliency": "sum-abs", "score_tau": 2.0},
                   "lenet5-lnpt-fm-c0.3-lnpt-seed0-8b32806f3c"),
    "losses": ({"loss": "kd", "kd_tau": 2.0, "kd_alpha": 0.5, "epochs": 3, "lr": 0.1},
               "lenet5-lnpt-s0.9-kd-seed0-93ecf5d62f"),
    "early": ({"prune_after_epochs": 2, "early_schedule": "continue", "beta": 0.5, "tau": 2.0, "dataset": "digits",
               "model": "resnet20", "teacher": "t.pt", "seed": 3, "score_ce_weight": 0.1, "prune_classifier": True},
              "resnet20-lnpt-s0.9-lnpt-seed3-b31e1e377b"),
}
SWEEP_CELLS = {
    "structured-c50.yaml": {"criterion=lnpt,seed=0": "99d936c1f4", "criterion=lnpt-fm,seed=0": "d43b311543",
                            "model=vgg11,width=0.5,criterion=random,seed=2": "aaaea5972b"},
    "dense-vs-lnpt90.yaml": {"base": "1931e96e9b", "criterion=random,sparsity=0.0,loss=supervised": "9eeeae227d",
                             "criterion=lnpt,sparsity=0.9,loss=supervised": "2d336806d6"},
    "tuning/lr.toml": {"sparsity=0.95,loss=supervised,lr=0.1": "542b5e0ebc",
                       "sparsity=0.95,loss=lnpt,lr=0.1": "cc6c984db7"},
    "research/structured-c50-variants.yaml": {
        "base": "f465a3607a",
        "model=resnet20,criterion=lnpt,score_bn=frozen,fm_saliency=abs-sum,seed=0": "09af4da497"},
    "research/vgg11-rounds.yaml": {"base": "1bd7668c91", "sparsity=0.99,seed=0": "cb25045b73"},
}


@pytest.mark.parametrize("case", list(BEFORE))
def test_fingerprints_and_run_names_are_those_of_the_old_layout(case):
    flat, name = BEFORE[case]
    cfg = replace_flat(RunConfig(), flat)
    assert default_run_name(cfg) == name
    assert fingerprint(cfg) == name.rsplit("-", 1)[1]


def test_sweep_cells_and_the_demo_keep_their_names_and_fingerprints():
    for path, cells in SWEEP_CELLS.items():
        got = {c.name: fingerprint(c.config) for c in load_sweep(SWEEPS / path).cells()}
        assert {k: got.get(k) for k in cells} == cells, path
    demo = {loss: fingerprint(replace_flat(DEMO, {"loss": loss})) for loss in ("lnpt", "supervised")}
    quick = {loss: fingerprint(replace_flat(DEMO, {**QUICK, "loss": loss})) for loss in ("lnpt", "supervised")}
    assert demo == {"lnpt": "2a0d82513c", "supervised": "d222c8e6ac"}
    assert quick == {"lnpt": "437eb0cdeb", "supervised": "fabde7224d"}


def test_every_committed_sweep_file_still_loads():
    files = sorted(p for p in SWEEPS.rglob("*") if p.suffix in (".yaml", ".toml"))
    assert len(files) > 30
    for path in files:
        assert load_sweep(path).cells(), path


def test_the_legacy_layout_holds_every_setting_once():
    legacy = [k for keys in LEGACY_LAYOUT.values() for k in keys]
    added = {f.name for c in SECTIONS.values() for f in fields(c)} - set(legacy)  # settings added since
    assert len(legacy) == len(set(legacy))
    assert added == {"unlabeled", "on_bad_image", "loader_workers", "eval", "model_args", "teacher_weights",
                     "teacher_sidecar", "teacher_features", "teacher_trust_code",
                     *(f.name for f in fields(ComputeConfig))}
    cfg = replace_flat(RunConfig(), {"sparsity": 0.5, "kd_tau": 2.0, "seed": 4})
    nested = legacy_settings(cfg)
    assert (nested["prune"]["sparsity"], nested["train"]["kd_tau"], nested["seed"]) == (0.5, 2.0, 4)
    assert list(nested) == ["data", "model", "teacher", "prune", "train", "seed"]
    # a setting added since enters the fingerprint once it is set, under its own section
    wild = legacy_settings(replace_flat(RunConfig(), {"unlabeled": ("imgs",), "model_args": '{"c": 2}'}))
    assert (wild["data"]["unlabeled"], wild["model"]["model_args"]) == (("imgs",), '{"c": 2}')
    # ... unless it is operational, as compute's are (a run may move between devices and precisions)
    moved = replace_flat(cfg, {"precision": "bf16", "device": "cpu"})
    assert legacy_settings(moved)["compute"] == {"device": "cpu", "precision": "bf16"}
    assert fingerprint_settings(moved) == fingerprint_settings(cfg)


def test_old_layout_configs_load_into_the_new_sections():
    old = json.loads((LEGACY_RUN / "run" / "config.json").read_text())
    assert set(old) == {"data", "model", "teacher", "prune", "train", "seed"}
    cfg = run_config_from_dict(old)
    assert (cfg.weights.sparsity, cfg.score.score_tau, cfg.loss.tau, cfg.train.epochs) == (0.8, 2.0, 2.0, 5)
    assert (cfg.prune.batches, cfg.channels.channel_ratio, cfg.train.early_schedule) == (2, 0.5, "restart")
    # The new layout round-trips, and old and new spellings of a file give one config.
    assert run_config_from_dict(saved_settings(cfg)) == cfg
    assert run_config_from_dict({"prune": {"sparsity": 0.5}, "train": {"kd_tau": 2}}) == \
        run_config_from_dict({"weights": {"sparsity": 0.5}, "loss": {"kd_tau": 2}})
    with pytest.raises(ConfigError, match="'sparsity' is given twice: as 'prune.sparsity' and 'weights.sparsity'"):
        migrate_layout({"prune": {"sparsity": 0.5}, "weights": {"sparsity": 0.6}})
    with pytest.raises(ConfigError, match="unknown config key 'weights.channel_ratio'"):
        run_config_from_dict({"weights": {"channel_ratio": 0.5}})


def test_a_run_folder_written_before_the_change_resumes_with_the_same_numbers(tmp_path, monkeypatch):
    """Killed after pruning by the old code; resumed by today's, via `lnpt run --config` on its
    own config.json (the old layout): same fingerprint, same trained student."""
    shutil.copytree(LEGACY_RUN, tmp_path / "legacy")
    monkeypatch.chdir(tmp_path / "legacy")  # the saved teacher path is relative
    expected = json.loads(Path("expected.json").read_text())
    cfg = run_config_from_dict(json.loads(Path("run/config.json").read_text()))
    assert fingerprint(cfg) == expected["fingerprint"]
    assert main(["run", "--config", "run/config.json", "--out", "run", "--resume", "--no-progress"]) == 0
    summary = json.loads(Path("run/summary.json").read_text())
    assert summary["fingerprint"] == expected.pop("fingerprint")
    assert {k: summary[k] for k in expected} == pytest.approx(expected, rel=1e-6)
    # A finished run resumes as itself from the library too.
    assert run_pipeline(cfg, "run", resume=True, progress=False) == summary


@pytest.mark.parametrize("argv,message", [
    (["--structured", "--sparsity", "0.5"],
     "--sparsity is read by weight pruning; with --structured use --channel-ratio"),
    (["--structured", "--rounds", "3"],
     "--rounds is read by weight pruning; with --structured use the channel settings"),
    (["--channel-ratio", "0.3"], "--channel-ratio is read by channel pruning; add --structured"),
    (["--round-to", "8"], "--round-to is read by channel pruning"),
    (["--criterion", "snip", "--score-tau", "2"],
     "--score-tau is read by criteria lnpt, lnpt-dynamics, lnpt-fm; --criterion snip does not read it"),
    (["--structured", "--criterion", "lnpt", "--fm-saliency", "sum-abs"],
     "--fm-saliency is read by criteria lnpt-fm; --criterion lnpt does not read it"),
    (["--fm-saliency", "sum-abs"], "--fm-saliency is read by criteria lnpt-fm"),
    (["--loss", "supervised", "--beta", "2"], "--beta is read by losses lnpt; --loss supervised does not read it"),
    (["--kd-alpha", "0.5"], "--kd-alpha is read by losses kd; --loss lnpt does not read it"),
    (["--early-schedule", "continue"], "--early-schedule is read by early pruning (--prune-after-epochs N > 0)"),
])
def test_a_flag_the_run_does_not_read_is_refused_in_one_line(argv, message, tmp_path, capsys):
    assert main(["run", *argv, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_settings_the_run_reads_and_defaults_in_files_are_not_refused(tmp_path):
    def parse(*argv):
        return config_from_args(build_parser().parse_args(["run", *argv]))

    assert parse("--structured", "--channel-ratio", "0.3").channels.channel_ratio == 0.3
    assert parse("--criterion", "lnpt-fm", "--structured", "--fm-saliency", "sum-abs").score.fm_saliency == "sum-abs"
    assert parse("--loss", "kd", "--kd-tau", "2").loss.kd_tau == 2.0
    assert parse("--loss", "supervised", "--tau", "2").loss.tau == 2.0  # the learning-gap metric reads it
    assert parse("--prune-after-epochs", "1", "--early-schedule", "continue").train.early_schedule == "continue"
    # A saved config.json lists every setting: its defaults are not "given".
    path = tmp_path / "c.json"
    path.write_text(json.dumps(saved_settings(replace_flat(RunConfig(), {"structured": True, "channel_ratio": 0.3}))))
    assert parse("--config", str(path)).channels.channel_ratio == 0.3
    path.write_text(json.dumps({"prune": {"structured": True, "sparsity": 0.5}}))
    with pytest.raises(ConfigError, match="--sparsity is read by weight pruning"):
        parse("--config", str(path))


def test_a_sweep_base_setting_no_cell_reads_is_refused():
    base = {"prune": {"criterion": "snip", "score_tau": 2.0}}
    with pytest.raises(ConfigError, match="the sweep's base sets a setting no cell reads: --score-tau"):
        sweep_from_dict({**base, "grid": {"seed": [0, 1]}})
    # Read by some cells of the grid: a grid crosses settings on purpose.
    assert len(sweep_from_dict({**base, "grid": {"criterion": ["snip", "lnpt"]}}).cells()) == 2
    with pytest.raises(ConfigError, match="sweep cell criterion=snip,kd_tau=2.0: --kd-tau is read by losses kd"):
        sweep_from_dict({"extra": [{"criterion": "snip", "kd_tau": 2.0}]})


def _flags(text: str) -> set[str]:
    return set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", text, re.MULTILINE))


@pytest.mark.parametrize("command", ["run", "prune"])
def test_help_is_grouped_by_section_and_help_all_shows_everything(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    brief = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([command, "--help-all"])
    full = capsys.readouterr().out
    assert "--help-all" in brief and "more: --help-all" in brief and "more: --help-all" not in full
    for title in ("weight pruning (masks; read unless --structured)", "channel pruning (read with --structured)",
                  "criterion settings"):
        assert title in brief and title in full
    for cls in [SECTIONS[s] for s in ("prune", "weights", "channels", "score")]:
        for f in fields(cls):
            assert "--" + f.name.replace("_", "-") in _flags(full), f.name
    assert {"--sparsity", "--channel-ratio", "--criterion", "--structured"} <= _flags(brief)
    if command == "run":  # 66 flags before the change
        assert len(_flags(full)) >= 66 and len(_flags(brief)) <= 36
        assert "loss settings (each loss reads its own)" in brief and "--kd-alpha" not in _flags(brief)


def test_every_declared_setting_exists_in_its_section_and_list_shows_them(capsys):
    score, loss = {f.name for f in fields(ScoreConfig)}, {f.name for f in fields(LossConfig)}
    specs = [*map(CRITERIA.get, CRITERIA.names()), *map(CHANNEL_CRITERIA.get, CHANNEL_CRITERIA.names())]
    for spec in specs:
        assert spec.settings is None or {f.name for f in fields(spec.settings)} <= score, spec.name
    for name in LOSSES.names():
        settings = LOSSES.get(name).settings
        assert settings is None or {f.name for f in fields(settings)} <= loss, name
    # Every score and loss setting is read by some entry.
    assert score == {f.name for s in specs if s.settings for f in fields(s.settings)}
    assert loss == {f.name for n in LOSSES.names() if LOSSES.get(n).settings for f in fields(LOSSES.get(n).settings)}
    assert main(["list", "criteria"]) == 0
    lines = dict(line.split(None, 1) if " " in line else (line, "") for line in capsys.readouterr().out.splitlines())
    assert "score_tau" in lines["lnpt"] and "score_tau" not in lines["snip"]
    assert main(["list", "losses"]) == 0
    assert "kd_tau" in capsys.readouterr().out


def test_a_setting_added_later_changes_no_fingerprint_at_its_default():
    """A new setting defaults to the old behaviour, so at its default every existing run keeps
    its name and resumes; set to anything else, it is part of what decides the result."""
    import dataclasses

    from lnpt.config import RunConfig, TrainConfig
    from lnpt.recipes.pipeline import fingerprint

    @dataclasses.dataclass(frozen=True)
    class TrainWithKnob(TrainConfig):
        new_knob: int = 0

    before = fingerprint(RunConfig())
    assert fingerprint(RunConfig(train=TrainWithKnob())) == before
    assert fingerprint(RunConfig(train=TrainWithKnob(new_knob=3))) != before
