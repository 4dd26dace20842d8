"""Channel-pruned students save and load through weights-only checkpoints (rebuilt by replaying
the recorded cuts), from the library, `lnpt prune --structured` and `lnpt run`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lnpt.checkpoint import load_checkpoint, save_checkpoint
from lnpt.cli import main
from lnpt.config import prune_settings
from lnpt.data import DataSplits
from lnpt.errors import CheckpointError
from lnpt.models import create_model, feature_dim
from lnpt.pruning.structured import channel_counts, prune_channels, structured_extra


def pruned(digits: DataSplits, name: str = "resnet20", ratio: float = 0.5):
    model = create_model(name, digits.info.input_shape, 10, 0.5, seed=0)
    cfg = prune_settings(criterion="magnitude", structured=True, channel_ratio=ratio, batches=1, score_batch_size=8)
    report = prune_channels(model, cfg, digits.train.unlabeled(), None)
    return model, report


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "lenet5"])
def test_round_trip_rebuilds_shapes_and_outputs(digits: DataSplits, tmp_path: Path, name: str) -> None:
    model, report = pruned(digits, name)
    path = tmp_path / "s.pt"
    save_checkpoint(path, model, name, 0.5, digits.info, extra=structured_extra(model, report.history))
    torch.load(path, map_location="cpu", weights_only=True)  # no pickled modules inside
    loaded = load_checkpoint(path).build()
    assert channel_counts(loaded) == channel_counts(model)
    x = digits.test.inputs(torch.arange(5))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_a_history_that_does_not_fit_is_a_checkpoint_error(digits: DataSplits, tmp_path: Path) -> None:
    model, report = pruned(digits)
    extra = structured_extra(model, report.history)
    extra["structured"]["channels"]["conv1"] = [1, 7]  # recorded shapes disagree with the history
    save_checkpoint(tmp_path / "bad.pt", model, "resnet20", 0.5, digits.info, extra=extra)
    with pytest.raises(CheckpointError, match="conv1"):
        load_checkpoint(tmp_path / "bad.pt").build()
    extra = structured_extra(model, [["no.such.layer", True, [0]]])
    save_checkpoint(tmp_path / "bad2.pt", model, "resnet20", 0.5, digits.info, extra=extra)
    with pytest.raises(CheckpointError, match="rebuild"):
        load_checkpoint(tmp_path / "bad2.pt").build()


def test_cli_prune_structured(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "p"
    code = main(["prune", "--structured", "--channel-ratio", "0.5", "--round-to", "4", "--criterion", "magnitude",
                 "--dataset", "digits", "--model", "resnet20", "--width", "0.5", "--batches", "1", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["structured"] and report["config"]["channels"]["round_to"] == 4
    layers = {x["name"]: x for x in report["layers"]}
    assert (layers["conv1"]["out_before"], layers["conv1"]["out_after"]) == (8, 4)
    assert report["params_after"] < report["params_before"] and report["macs_after"] < report["macs_before"]
    model = load_checkpoint(out / "student_init.pt").build()
    assert model.classifier.in_features == 16
    assert "MACs" in capsys.readouterr().out


def test_cli_prune_structured_refuses_bad_ratio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["prune", "--structured", "--channel-ratio", "1.5", "--criterion", "random", "--dataset", "digits",
                 "--out", str(tmp_path / "x")])
    assert code == 2 and "--channel-ratio" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_lnpt_run_structured_trains_label_free_and_rebuilds(digits_teacher_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["run", "--structured", "--channel-ratio", "0.5", "--criterion", "lnpt", "--dataset", "digits",
                 "--model", "resnet20", "--width", "0.5", "--teacher", str(digits_teacher_path), "--epochs", "2",
                 "--batches", "2", "--score-batch-size", "64", "--batch-size", "64", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["channel_ratio"] == 0.5 and summary["final_acc"] > 0.5  # learnt from the teacher alone
    assert summary["params"] < 0.35 * summary["params_dense"]
    for name in ("student_init.pt", "final.pt"):
        model = load_checkpoint(out / name).build()
        assert feature_dim(model) == 16  # 32 -> 16: the loss adapted to the teacher's 168 features
    final = load_checkpoint(out / "final.pt")
    assert final.metrics["test_acc"] == summary["final_acc"]
