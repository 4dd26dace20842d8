"""``lnpt prune`` end to end, its help, and that a failure never leaves OUT half-written."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import fields

import pytest
import torch

from lnpt.checkpoint import load_checkpoint, save_checkpoint
from lnpt.cli import main
from lnpt.config import ChannelPruneConfig, PruneConfig, ScoreConfig, WeightPruneConfig
from lnpt.models import create_model
from lnpt.pruning import get_masks


def _args(teacher, out, *extra):
    return ["prune", "--teacher", str(teacher), "--model", "lenet5", "--dataset", "digits", "--criterion", "lnpt",
            "--sparsity", "0.9", "--batches", "2", "--score-batch-size", "64", "--out", str(out), *extra]


def _leftovers(parent, name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_prune_writes_student_and_report(digits_teacher_path, tmp_path, capsys):
    out = tmp_path / "pruned"
    assert main(_args(digits_teacher_path, out, "--seed", "3")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["prune_report.json", "prune_report.md", "student_init.pt"]
    ckpt = load_checkpoint(out / "student_init.pt")
    student = ckpt.build()
    masks = get_masks(student)
    assert ckpt.model_name == "lenet5" and ckpt.dataset.name == "digits"
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert kept == round(0.1 * total)
    report = json.loads((out / "prune_report.json").read_text())
    assert report["criterion"] == "lnpt" and report["kept_weights"] == kept
    assert report["config"]["seed"] == 3 and report["config"]["prune"]["batches"] == 2
    assert {"params_before", "params_after", "macs_before", "macs_after", "seconds", "layers"} <= set(report)
    assert "MACs" in (out / "prune_report.md").read_text()
    # The student holds its initial weights: the same seed rebuilds them wherever the mask keeps them.
    init = create_model("lenet5", ckpt.dataset.input_shape, 10, seed=3).state_dict()
    for name, mask in masks.items():
        assert torch.equal(student.state_dict()[name + "_orig"], init[name] * mask)
    assert _leftovers(tmp_path, "pruned") == []
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--sparsity", "1.0"], "sparsity must be in [0, 1)"),
    (["--criterion", "snp"], "unknown criterion 'snp'; known:"),
    (["--batches", "0"], "zero scoring batches"),
    (["--init-from", "no-such-run"], "--init-from: checkpoint no-such-run does not exist"),
])
def test_bad_input_is_one_line_and_leaves_nothing(digits_teacher_path, tmp_path, capsys, extra, message):
    out = tmp_path / "pruned"
    assert main(_args(digits_teacher_path, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("lnpt prune: error:")
    assert not out.exists() and _leftovers(tmp_path, "pruned") == []


def test_mismatched_teacher(digits, tmp_path, capsys):
    """A teacher trained for 5 classes cannot guide a 10-class digits student."""
    info5 = dataclasses.replace(digits.info, num_classes=5)
    teacher = tmp_path / "teacher5.pt"
    save_checkpoint(teacher, create_model("lenet5", info5.input_shape, 5, seed=0), "lenet5", 1.0, info5)
    out = tmp_path / "pruned"
    assert main(_args(teacher, out)) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and "5 classes vs the data's 10" in err
    assert not out.exists() and _leftovers(tmp_path, "pruned") == []


def test_failure_while_writing_leaves_nothing(digits_teacher_path, tmp_path, monkeypatch):
    import lnpt.cli.prune

    def broken(path, *a, **k):
        open(path, "w").write("partial")
        raise OSError("disk full")

    monkeypatch.setattr(lnpt.cli.prune, "save_checkpoint", broken)
    out = tmp_path / "pruned"
    with pytest.raises(OSError):
        main(_args(digits_teacher_path, out))
    assert not out.exists() and _leftovers(tmp_path, "pruned") == []


def test_existing_output_needs_overwrite(digits_teacher_path, tmp_path, capsys):
    out = tmp_path / "pruned"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(_args(digits_teacher_path, out)) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert main(_args(digits_teacher_path, out, "--overwrite", "--criterion", "magnitude")) == 0
    assert not (out / "keep.txt").exists() and (out / "student_init.pt").exists()
    assert _leftovers(tmp_path, "pruned") == []


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--help-all"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for cls in (PruneConfig, WeightPruneConfig, ChannelPruneConfig, ScoreConfig):
        for f in fields(cls):
            assert "--" + f.name.replace("_", "-") in text, f.name
    for flag in ("--teacher", "--model", "--dataset", "--out", "--seed", "--overwrite", "prune_report.json", "MACs"):
        assert flag in text, flag


def test_list_names_every_registry_including_channel_criteria(capsys):
    from lnpt.cli import main

    assert main(["list", "channel-criteria"]) == 0
    channel = capsys.readouterr().out.split()
    assert "lnpt-fm" in channel and "magnitude" in channel
    assert main(["list", "criteria"]) == 0
    weight = capsys.readouterr().out.split()
    assert "lnpt" in weight and "lnpt-fm" not in weight
    assert main(["list", "models"]) == 0
    assert "resnet20" in capsys.readouterr().out.split()


def test_python_dash_m_lnpt_is_the_same_command_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lnpt", "list", "channel-criteria"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "lnpt-fm" in done.stdout.split()
    bad = subprocess.run([sys.executable, "-m", "lnpt", "list", "no-such-registry"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0
