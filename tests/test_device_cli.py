"""Devices and precision through the commands: a device the machine lacks stops each computing
command in one line before anything is written, and a bf16 / fp16 run trains with its masks
exactly zero (the CPU twin of the GPU path: autocast and the gradient scaler run here too)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lnpt.checkpoint import load_checkpoint
from lnpt.cli import main
from lnpt.config import (ComputeConfig, DataConfig, ModelConfig, PruneConfig, RunConfig, TeacherConfig, TrainConfig,
                         WeightPruneConfig)
from lnpt.recipes.pipeline import fingerprint, run_pipeline

no_cuda = not torch.cuda.is_available()


@pytest.mark.skipif(not no_cuda, reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("argv", [
    ["run", "--dataset", "digits", "--device", "cuda"],
    ["teacher", "train", "--dataset", "digits", "--device", "cuda:1"],
    ["teacher", "eval", "--device", "cuda"],
    ["prune", "--dataset", "digits", "--device", "cuda"],
    ["demo", "--quick", "--device", "cuda"],
    ["teacher", "serve", "--no-auth", "--device", "cuda"],
])
def test_a_missing_gpu_is_one_line_and_nothing_is_written(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ["--out", str(tmp_path / "out")] if argv[0] != "teacher" or argv[1] == "train" else []
    if argv[:2] == ["teacher", "serve"]:
        pytest.importorskip("fastapi")
    assert main([*argv, *out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available here" in err and "--device cpu" in err
    assert list(tmp_path.iterdir()) == []


def _cfg(teacher_path, precision: str) -> RunConfig:
    return RunConfig(data=DataConfig(dataset="digits", batch_size=64), model=ModelConfig("lenet5"),
                     teacher=TeacherConfig(teacher=str(teacher_path)),
                     prune=PruneConfig(criterion="snip", batches=1, score_batch_size=64),
                     weights=WeightPruneConfig(sparsity=0.8),
                     train=TrainConfig(loss="lnpt", epochs=4, lr=0.1), compute=ComputeConfig(precision=precision))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_run_keeps_masks_zero_and_its_fingerprint(precision, digits_teacher_path, tmp_path):
    cfg = _cfg(digits_teacher_path, precision)
    assert fingerprint(cfg) == fingerprint(dataclasses.replace(cfg, compute=ComputeConfig()))
    summary = run_pipeline(cfg, tmp_path / "run", progress=False)
    assert summary["final_acc"] > 0.25  # learning (chance is 0.1; fp32 reaches 0.36 here)
    model = load_checkpoint(tmp_path / "run" / "final.pt").build()
    masked = [m for m in model.modules() if hasattr(m, "weight_mask")]
    assert masked and all((m.weight[m.weight_mask == 0] == 0).all() for m in masked)
    assert all(m.weight_orig.dtype == torch.float32 for m in masked)


@pytest.mark.skipif(not no_cuda, reason="checks the refusal on a machine without CUDA")
def test_a_sweep_on_a_missing_gpu_is_one_line_and_runs_nothing(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("data: {dataset: digits}\nmodel: {model: lenet5}\ntrain: {epochs: 1}\ngrid:\n  sparsity: [0.5]\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available here" in err
    assert not (tmp_path / "out").exists()
