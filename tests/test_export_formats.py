"""Deployment artefacts: ONNX parity in ONNX Runtime, TorchScript, dense and sparse safetensors,
and `lnpt export` on run folders of channel-pruned and unstructured-sparse students."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lnpt.checkpoint import save_checkpoint
from lnpt.cli import main
from lnpt.config import prune_settings
from lnpt.data import DataSplits
from lnpt.export import (
    export_onnx,
    export_run,
    export_torchscript,
    load_source,
    load_sparse,
    load_torchscript,
    onnx_parity,
    ort_session,
    read_header,
)
from lnpt.models import create_model
from lnpt.pruning import prune_at_init
from lnpt.pruning.structured import prune_channels, structured_extra


def structured_run(digits: DataSplits, folder: Path, name: str = "resnet20") -> Path:
    model = create_model(name, digits.info.input_shape, 10, 0.5, seed=0)
    cfg = prune_settings(criterion="magnitude", structured=True, channel_ratio=0.5, batches=1, score_batch_size=8)
    report = prune_channels(model, cfg, digits.train.unlabeled(), None)
    folder.mkdir()
    save_checkpoint(folder / "final.pt", model, name, 0.5, digits.info, extra=structured_extra(model, report.history))
    return folder


def sparse_run(digits: DataSplits, folder: Path) -> Path:
    model = create_model("lenet5", digits.info.input_shape, 10, 1.0, seed=0)
    prune_at_init(model, prune_settings(criterion="magnitude", sparsity=0.9), digits.train.unlabeled(), None)
    folder.mkdir()
    save_checkpoint(folder / "final.pt", model, "lenet5", 1.0, digits.info)
    return folder


def test_onnx_parity_structured_student(digits: DataSplits, tmp_path: Path) -> None:
    src = load_source(structured_run(digits, tmp_path / "r", "lenet5"))
    path = export_onnx(src.model, src.input_shape, tmp_path / "m.onnx")
    x = digits.test.inputs(torch.arange(7))
    assert onnx_parity(path, src.model, x) < 1e-4
    session = ort_session(path)
    (one,) = session.run(None, {"input": x[:1].numpy()})  # dynamic batch: 7 and 1 from one file
    assert one.shape == (1, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20", "resnet32", "vgg11", "lenet300100"])
def test_onnx_parity_zoo_models(digits: DataSplits, tmp_path: Path, name: str) -> None:
    src = load_source(structured_run(digits, tmp_path / "r", name))
    path = export_onnx(src.model, src.input_shape, tmp_path / "m.onnx")
    assert onnx_parity(path, src.model, digits.test.inputs(torch.arange(16))) < 1e-4


def test_torchscript_round_trip(digits: DataSplits, tmp_path: Path) -> None:
    src = load_source(structured_run(digits, tmp_path / "r", "vgg11"))
    path = export_torchscript(src.model, src.input_shape, tmp_path / "m.ts")
    x = digits.test.inputs(torch.arange(4))
    with torch.no_grad():
        torch.testing.assert_close(load_torchscript(path)(x), src.model(x))


def test_sparse_safetensors_is_exact_and_smaller(digits: DataSplits, tmp_path: Path) -> None:
    run = sparse_run(digits, tmp_path / "s")
    manifest = export_run(run, ["safetensors"])
    arts = manifest["artefacts"]
    sparse = arts["safetensors_sparse"]
    assert sparse["masked_weight_density"] == pytest.approx(0.1, abs=0.01)
    assert sparse["compression_vs_dense"] > 3.0 and sparse["bytes"] < arts["safetensors"]["bytes"]
    src = load_source(run)
    restored = load_sparse(run / "export" / sparse["file"])
    state = src.model.state_dict()
    assert restored.keys() == state.keys()
    assert all(torch.equal(restored[k], state[k]) for k in state)  # masks folded: zeros exactly where pruned
    assert read_header(run / "export" / "model.safetensors")["model"] == "lenet5"


@pytest.mark.slow
def test_cli_export_all_formats(digits: DataSplits, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = structured_run(digits, tmp_path / "r")
    code = main(["export", str(run), "--format", "onnx", "torchscript", "safetensors"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ONNX Runtime vs PyTorch" in out and "MACs" in out
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert set(manifest["artefacts"]) == {"onnx", "torchscript", "safetensors"}  # dense model: no sparse file
    assert manifest["structured"]["history"]
    assert manifest["artefacts"]["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    assert all((run / "export" / a["file"]).is_file() for a in manifest["artefacts"].values())


def test_cli_export_without_onnx(digits: DataSplits, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = sparse_run(digits, tmp_path / "s")
    assert main(["export", str(run), "--format", "torchscript", "safetensors", "--out", str(tmp_path / "e")]) == 0
    assert "smaller than dense" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert set(manifest["artefacts"]) == {"torchscript", "safetensors", "safetensors_sparse"}
    assert manifest["params_nonzero"] < 0.2 * manifest["params"]


def test_cli_export_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tmp_path / "none"), "--format", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
