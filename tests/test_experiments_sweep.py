"""`lnpt sweep` orchestration with a fake runner that writes real run-directory files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lnpt.cli import main
from lnpt.config import RunConfig, to_dict
from lnpt.experiments.grid import sweep_from_dict
from lnpt.experiments.sweep import run_sweep

LAYERS = {"conv1.weight": 150, "conv2.weight": 2400, "fc1.weight": 48000, "fc2.weight": 10080}


def fake_accuracy(cfg: RunConfig) -> float:
    bonus = {"lnpt": 0.05, "snip": 0.03, "random": 0.0}.get(cfg.prune.criterion, 0.01)
    return round(0.80 + bonus - 0.2 * (cfg.weights.sparsity - 0.9) + 0.01 * cfg.seed, 6)


def fake_runner(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
                fail: tuple[str, ...] = ("grasp",)) -> dict:
    """Writes what `lnpt.recipes.pipeline.run_pipeline` writes; fails for the criteria in ``fail``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    if cfg.prune.criterion in fail:
        raise RuntimeError("synthetic failure in grasp")
    acc = fake_accuracy(cfg)
    density = 1 - cfg.weights.sparsity
    layers = {k: {"kept": max(1, int(n * density)), "total": n, "kept_fraction": max(1, int(n * density)) / n}
              for k, n in LAYERS.items()}
    (out / "prune_report.json").write_text(json.dumps({"sparsity": cfg.weights.sparsity, "layers": layers, "seconds": 0.5}))
    with open(out / "metrics.jsonl", "w") as f:
        for e in range(cfg.train.epochs):
            a = acc - 0.1 * (cfg.train.epochs - 1 - e)
            f.write(json.dumps({"epoch": e + 1, "lr": 0.1, "epoch_seconds": 1.0, "train_loss": 1.0, "train_ce": 1.0,
                                "train_acc": a, "test_acc": a, "teacher_agreement": a, "gap": 1.0 - a,
                                "gap_raw": 2.0 - a, "weight_distance": e + 1.0, "weight_distance_rel": 0.1 * (e + 1)}) + "\n")
    (out / "final.pt").write_bytes(b"")
    summary = {"final_acc": acc, "best_acc": acc + 0.001, "sparsity": cfg.weights.sparsity, "params": 100, "macs": 1000,
               "seconds": 2.0, "criterion": cfg.prune.criterion, "loss": cfg.train.loss, "model": cfg.model.model,
               "seed": cfg.seed}
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


class Recorder:
    """An in-process runner that counts its calls (jobs=1 runs in this process)."""

    def __init__(self, fail: tuple[str, ...] = ("grasp",)) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail = fail

    def __call__(self, cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
        self.calls.append((Path(out).name, resume))
        return fake_runner(cfg, out, resume, progress, self.fail)


def spec(criteria: list[str], seeds: list[int] = [0, 1]):  # noqa: B006 (read-only)
    return sweep_from_dict({"train": {"epochs": 2}, "grid": {"criterion": criteria, "sparsity": [0.9], "seed": seeds}})


def test_runs_every_cell_then_skips_finished_ones(tmp_path: Path) -> None:
    rec, lines = Recorder(), []
    result = run_sweep(spec(["lnpt", "snip"]), tmp_path, runner=rec, progress=False, log=lines.append)
    assert len(rec.calls) == 4 and all(resume is False for _, resume in rec.calls)
    assert result.names("done") == [c for c, _ in rec.calls]
    assert all((tmp_path / c / "summary.json").is_file() for c, _ in rec.calls)
    assert any("[4/4]" in line and "final_acc" in line for line in lines)  # one line per finished cell
    again = Recorder()
    result = run_sweep(spec(["lnpt", "snip"]), tmp_path, runner=again, progress=False, log=lambda s: None)
    assert again.calls == [] and len(result.names("skipped")) == 4
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"][0] == "criterion=lnpt,sparsity=0.9,seed=0"


def test_interrupted_cell_is_resumed_and_only_it_runs(tmp_path: Path) -> None:
    run_sweep(spec(["lnpt"]), tmp_path, runner=Recorder(), progress=False, log=lambda s: None)
    cell = tmp_path / "criterion=lnpt,sparsity=0.9,seed=1"
    (cell / "summary.json").unlink()  # killed before it finished
    rec = Recorder()
    result = run_sweep(spec(["lnpt"]), tmp_path, runner=rec, progress=False, log=lambda s: None)
    assert rec.calls == [(cell.name, True)]
    assert result.names("skipped") == ["criterion=lnpt,sparsity=0.9,seed=0"]


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    rec = Recorder()
    result = run_sweep(spec(["grasp", "lnpt"], seeds=[0]), tmp_path, runner=rec, progress=False, log=lambda s: None)
    assert len(rec.calls) == 2
    assert result.failed == ["criterion=grasp,sparsity=0.9,seed=0"]
    assert result.names("done") == ["criterion=lnpt,sparsity=0.9,seed=0"]
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert list(failures) == ["criterion=grasp,sparsity=0.9,seed=0"]
    assert "synthetic failure in grasp" in failures["criterion=grasp,sparsity=0.9,seed=0"]["error"]
    assert "Traceback" in failures["criterion=grasp,sparsity=0.9,seed=0"]["traceback"]
    # Rerun after the bug is fixed: the failed cell resumes, its failure entry goes away.
    fixed = Recorder(fail=())
    result = run_sweep(spec(["grasp", "lnpt"], seeds=[0]), tmp_path, runner=fixed, progress=False, log=lambda s: None)
    assert fixed.calls == [("criterion=grasp,sparsity=0.9,seed=0", True)]
    assert result.failed == [] and not (tmp_path / "failures.json").exists()


def test_cell_folder_of_other_settings_is_not_reused(tmp_path: Path) -> None:
    run_sweep(spec(["lnpt"], seeds=[0]), tmp_path, runner=Recorder(), progress=False, log=lambda s: None)
    edited = sweep_from_dict({"train": {"epochs": 3}, "grid": {"criterion": ["lnpt"], "sparsity": [0.9], "seed": [0]}})
    rec = Recorder()
    result = run_sweep(edited, tmp_path, runner=rec, progress=False, log=lambda s: None)
    assert rec.calls == [] and len(result.failed) == 1
    assert "train.epochs" in json.loads((tmp_path / "failures.json").read_text())[result.failed[0]]["error"]


def test_runner_that_writes_no_summary_is_a_failure(tmp_path: Path) -> None:
    result = run_sweep(spec(["lnpt"], seeds=[0]), tmp_path, runner=lambda cfg, out, **kw: {},
                       progress=False, log=lambda s: None)
    assert len(result.failed) == 1


@pytest.mark.slow
def test_parallel_jobs_in_spawned_processes(tmp_path: Path) -> None:
    result = run_sweep(spec(["lnpt", "snip", "grasp"], seeds=[0]), tmp_path, jobs=2, runner=fake_runner,
                       progress=False, log=lambda s: None)
    assert sorted(result.names("done")) == ["criterion=lnpt,sparsity=0.9,seed=0", "criterion=snip,sparsity=0.9,seed=0"]
    assert result.failed == ["criterion=grasp,sparsity=0.9,seed=0"]
    assert json.loads((tmp_path / "criterion=snip,sparsity=0.9,seed=0" / "summary.json").read_text())["final_acc"] \
        == pytest.approx(0.83)


def test_cli_dry_run_lists_cells_and_their_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    (tmp_path / "out" / "criterion=snip").mkdir(parents=True)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "new       criterion=lnpt" in out and "resume    criterion=snip" in out and "2 cell(s)" in out
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--criterion", "snip"]) == 2
    assert "--criterion is set per cell" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_killing_the_sweep_ends_its_workers_and_a_rerun_resumes_every_cell(digits_teacher_path, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    sweep = tmp_path / "kill.json"
    sweep.write_text(json.dumps({
        "data": {"dataset": "digits", "batch_size": 64, "train_subset": 320, "test_subset": 128},
        "model": {"model": "lenet5"},
        "teacher": {"teacher": str(digits_teacher_path)}, "prune": {"batches": 2, "score_batch_size": 64},
        "train": {"epochs": 3}, "grid": {"seed": [0, 1, 2, 3]}}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lnpt", "sweep", str(sweep), "--out", str(out), "--jobs", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("seed=*/config.json")):  # a cell has started
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep did not start a cell"
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "worker processes outlived the killed sweep"
    finally:
        proc.kill()
    assert not all((out / f"seed={s}" / "summary.json").is_file() for s in range(4))  # it was interrupted
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert all((out / f"seed={s}" / "summary.json").is_file() for s in range(4))
    assert not (out / "failures.json").exists()


def test_an_out_of_range_grid_value_is_refused_before_any_cell(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"grid": {"sparsity": [0.9, 1.5]}}))
    rec = Recorder()
    with pytest.raises(Exception, match=r"sweep cell sparsity=1.5 is invalid: .*sparsity"):
        run_sweep(sweep_from_dict({"grid": {"sparsity": [0.9, 1.5]}}), tmp_path / "direct", runner=rec,
                  progress=False, log=lambda s: None)
    assert rec.calls == [] and not (tmp_path / "direct").exists()
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sparsity=1.5" in err
    assert not (tmp_path / "out").exists()
