"""``torchrun --nproc_per_node 2 -m lnpt run`` end to end on a gloo group (the CPU): rank 0's
masks are the one-process run's, one run folder is written, the two-process run trains what
one process trains (the ranks' shares of each global batch are weighted to its mean), and a
run killed mid-training resumes under torchrun to exactly the uninterrupted run's result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from _torchrun import child_env, torchrun, torchrun_command
from lnpt.checkpoint import load_checkpoint
from lnpt.cli import main

EPOCHS = 4


def _args(teacher: Path) -> list[str]:
    return ["--dataset", "digits", "--batch-size", "16", "--model", "lenet5", "--teacher", str(teacher),
            "--criterion", "lnpt", "--sparsity", "0.8", "--batches", "2", "--score-batch-size", "64",
            "--epochs", str(EPOCHS), "--lr", "0.05", "--no-progress"]


def _lnpt(*args: str) -> list[str]:
    return ["-m", "lnpt", "run", *args]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def _masks(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in _state(path).items() if k.endswith("_mask")}


def _kill_after_first_epoch(cmd: list[str], run: Path, cwd: Path) -> None:
    """Start ``cmd`` in its own process group and kill the whole group (torchrun and both
    ranks) as soon as the first epoch's record is written."""
    proc = subprocess.Popen(cmd, env=child_env(), cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 180
    try:
        while not (log.is_file() and log.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run / "summary.json").exists(), "killed too late: the run had finished"


@pytest.mark.slow
def test_two_process_run_masks_one_folder_and_kill_resume(digits_teacher_path, tmp_path):
    args = _args(digits_teacher_path)
    assert main(["run", *args, "--out", str(tmp_path / "single")]) == 0

    whole = tmp_path / "whole"
    whole.mkdir()
    done = torchrun(*_lnpt(*args), cwd=whole)
    assert done.returncode == 0, done.stderr[-3000:]
    folders = list((whole / "runs").iterdir())
    assert len(folders) == 1 and sorted(p.name for p in whole.iterdir()) == ["runs"]  # one folder, nothing else
    ddp = folders[0]
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports

    single = tmp_path / "single"
    masks, ddp_masks = _masks(single / "student_init.pt"), _masks(ddp / "student_init.pt")
    assert masks and masks.keys() == ddp_masks.keys()
    assert all(torch.equal(masks[k], ddp_masks[k]) for k in masks)
    one, two = _state(single / "final.pt"), _state(ddp / "final.pt")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-3  # the same training, to rounding

    killed = tmp_path / "killed"
    _kill_after_first_epoch(torchrun_command(*_lnpt(*args, "--out", str(killed))), killed, tmp_path)
    resumed = torchrun(*_lnpt(*args, "--out", str(killed), "--resume"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final, uninterrupted = _state(killed / "final.pt"), _state(ddp / "final.pt")
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    summary, reference = (json.loads((p / "summary.json").read_text()) for p in (killed, ddp))
    assert summary["final_acc"] == reference["final_acc"] and summary["gap"] == reference["gap"]
