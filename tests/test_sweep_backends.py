"""Where sweep cells run: ``--devices LIST --jobs-per-device K`` (worker processes pinned to
devices) and ``--backend ray`` (each cell a Ray task), both on real cells of the digits set,
writing the same resumable cell folders as a plain sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_experiments_sweep import Recorder, fake_runner, spec

from lnpt.cli import main
from lnpt.device import resolve_device
from lnpt.errors import ConfigError
from lnpt.experiments.execution import Execution
from lnpt.experiments.grid import sweep_from_dict
from lnpt.experiments.sweep import CELL_LOG, run_sweep

SRC = Path(__file__).resolve().parents[1] / "src"
SEEDS = (0, 1, 2)


def _sweep_file(tmp: Path, teacher: Path) -> Path:
    path = tmp / "tiny.json"
    path.write_text(json.dumps({
        "data": {"dataset": "digits", "batch_size": 64, "train_subset": 256, "test_subset": 128},
        "model": {"model": "lenet5"}, "teacher": {"teacher": str(teacher)},
        "prune": {"batches": 1, "score_batch_size": 64}, "train": {"epochs": 1}, "grid": {"seed": list(SEEDS)}}))
    return path


def _log(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / CELL_LOG).read_text().splitlines()]


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals that hold one instant (an end at the instant of a start does not overlap)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda ev: (ev[0], ev[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory, digits_teacher_path: Path) -> Path:
    """A real multi-process sweep: 3 cells on two CPU slots, one cell at a time on each."""
    tmp = tmp_path_factory.mktemp("devices")
    out = tmp / "out"
    argv = ["sweep", str(_sweep_file(tmp, digits_teacher_path)), "--out", str(out), "--devices", "cpu,cpu",
            "--jobs-per-device", "1", "--quiet"]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_devices_put_each_cell_on_one_listed_device_never_more_than_k_at_once(local_sweep: Path) -> None:
    log = _log(local_sweep)
    assert sorted(r["cell"] for r in log) == [f"seed={s}" for s in SEEDS]  # one attempt per cell
    assert all(r["status"] == "done" and r["device"] == "cpu" and r["backend"] == "local" for r in log)
    for r in log:  # the device is recorded in the cell's own folder too (operational: not in its name)
        assert json.loads((local_sweep / r["cell"] / "config.json").read_text())["compute"]["device"] == "cpu"
    slots = {r["slot"] for r in log}
    assert slots == {0, 1}  # the first two cells started at once, one on each slot
    for slot in slots:
        mine = [r for r in log if r["slot"] == slot]
        assert _max_overlap([(r["started"], r["ended"]) for r in mine]) <= 1  # K = 1
        assert len({r["worker"] for r in mine}) == 1  # a worker process pinned to the slot
    assert {r["worker"] for r in log if r["slot"] == 0}.isdisjoint(r["worker"] for r in log if r["slot"] == 1)
    assert _max_overlap([(r["started"], r["ended"]) for r in log]) <= 2  # len(devices) * K in all


def slow_fake_runner(cfg, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """The fake cell, held open long enough that the cells of a slot overlap if they can."""
    time.sleep(0.5)
    return fake_runner(cfg, out, resume, progress)


@pytest.mark.slow
def test_two_jobs_per_device_fill_each_slot_to_k_and_no_further(tmp_path: Path) -> None:
    result = run_sweep(spec(["lnpt", "snip"], seeds=[0, 1, 2]), tmp_path, runner=slow_fake_runner,
                       progress=False, log=lambda s: None, execution=Execution(devices=("cpu", "cpu"), jobs=2))
    assert len(result.names("done")) == 6
    log = _log(tmp_path)
    assert len(log) == 6 and {r["slot"] for r in log} == {0, 1} and {r["device"] for r in log} == {"cpu"}
    for slot in (0, 1):
        mine = [r for r in log if r["slot"] == slot]
        assert _max_overlap([(r["started"], r["ended"]) for r in mine]) <= 2
        assert len({r["worker"] for r in mine}) <= 2  # the slot's own pool of K processes
    assert len({r["worker"] for r in log}) <= 4


def test_max_overlap_counts_what_runs_at_once() -> None:
    assert _max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2 and _max_overlap([(0, 1), (1, 2)]) == 1


def test_devices_change_no_cell_folder_and_resume_what_a_plain_sweep_started(tmp_path: Path) -> None:
    """A sweep folder written without --devices is found again cell by cell: names and
    fingerprints ignore the device (it is operational), so finished cells are skipped and an
    interrupted one resumes, now on the listed device."""
    run_sweep(spec(["lnpt"]), tmp_path, runner=Recorder(), progress=False, log=lambda s: None)
    assert {r["device"] for r in _log(tmp_path)} == {str(resolve_device("auto"))}  # --device auto, as resolved
    cell = tmp_path / "criterion=lnpt,sparsity=0.9,seed=1"
    (cell / "summary.json").unlink()
    rec = Recorder()
    result = run_sweep(spec(["lnpt"]), tmp_path, runner=rec, progress=False, log=lambda s: None,
                       execution=Execution(devices=("cpu",)))
    assert rec.calls == [(cell.name, True)] and result.names("skipped") == ["criterion=lnpt,sparsity=0.9,seed=0"]
    assert json.loads((cell / "config.json").read_text())["compute"]["device"] == "cpu"
    assert [(r["cell"], r["resumed"], r["device"]) for r in _log(tmp_path)][-1] == (cell.name, True, "cpu")


def test_device_flag_on_a_sweep_is_taken(tmp_path: Path, capsys) -> None:
    """``--device`` (a setting outside the legacy layout) once crashed the sweep's check that
    every given setting is read; ``--devices D`` is its twin."""
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    for flags in (["--device", "cpu", "--precision", "bf16"], ["--devices", "cpu"]):
        assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run", *flags]) == 0
        assert "2 cell(s)" in capsys.readouterr().out


@pytest.mark.parametrize("flags, says", [
    (["--devices", "cpu", "--jobs", "2"], "with --devices use --jobs-per-device"),
    (["--devices", "cpu", "--device", "cpu"], "give --device or --devices, not both"),
    (["--jobs-per-device", "2"], "--jobs-per-device needs --devices"),
    (["--devices", "cpu,,cpu"], "has an empty entry"),
    (["--devices", "cpu", "--jobs-per-device", "0"], "must be >= 1"),
    (["--devices", "tpu:0"], "--devices entry 'tpu:0'"),
    (["--cpus-per-cell", "2"], "--cpus-per-cell needs --backend ray"),
    (["--backend", "ray", "--jobs", "2"], "--jobs is for the local backend"),
    (["--backend", "ray", "--devices", "cpu"], "--devices is for the local backend"),
    (["--backend", "ray", "--device", "cpu"], "--device is for the local backend"),
])
def test_conflicting_placement_flags_fail_in_one_line_before_any_cell(tmp_path: Path, capsys, flags, says) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_fails_before_any_cell(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--devices", "cpu,cuda:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'cuda:1'" in err and "CUDA is not available" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cell_on_a_missing_gpu_stops_the_sweep_before_any_cell_however_it_is_started(tmp_path: Path, capsys) -> None:
    """One check for every way in: the CLI's --device, its dry run, and run_sweep called directly
    on a sweep whose cells ask for CUDA (no --devices: each cell runs on its own device)."""
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--device", "cuda", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "CUDA is not available" in err
    grid = sweep_from_dict({"compute": {"device": "cuda:0"}, "grid": {"criterion": ["lnpt", "snip"]}})
    with pytest.raises(ConfigError, match="CUDA is not available"):
        run_sweep(grid, tmp_path / "lib", runner=fake_runner, progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "lib").exists()


def test_ray_backend_without_ray_names_the_extra(tmp_path: Path) -> None:
    """Ray made unimportable for real in a child process (as when it is not installed)."""
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    code = textwrap.dedent(f"""
        import sys
        sys.modules["ray"] = None
        from lnpt.cli import main
        sys.exit(main(["sweep", {str(path)!r}, "--out", {str(tmp_path / "out")!r}, "--backend", "ray"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("pip install 'lnpt[ray]'") and "--backend ray" in lines[0]
    assert not (tmp_path / "out").exists()


# --- the Ray backend on a local instance --------------------------------------------------------

@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("flags, says", [
    (["--gpus-per-cell", "1"], "--gpus-per-cell 1 (its nodes: 2 CPU / 0 GPU)"),
    (["--cpus-per-cell", "3"], "--cpus-per-cell 3 --gpus-per-cell 0"),
])
def test_a_ray_request_no_node_can_hold_fails_in_one_line_instead_of_pending_forever(
        ray_instance, tmp_path: Path, capsys, flags, says) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[grid]\ncriterion = ["lnpt", "snip"]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--backend", "ray", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]  # no cell started


def _result(cell: Path) -> tuple:
    summary = json.loads((cell / "summary.json").read_text())
    epochs = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
    return (summary["final_acc"], summary["best_acc"], summary["sparsity"],
            [(e["epoch"], e["train_loss"], e["test_acc"]) for e in epochs])


@pytest.mark.slow
def test_ray_tasks_write_the_local_backends_cell_folders_and_resume(ray_instance, local_sweep: Path,
                                                                    digits_teacher_path: Path, tmp_path: Path) -> None:
    sweep = _sweep_file(tmp_path, digits_teacher_path)
    out = tmp_path / "ray"
    assert main(["sweep", str(sweep), "--out", str(out), "--backend", "ray", "--cpus-per-cell", "1",
                 "--quiet"]) == 0
    cells = sorted(p.name for p in local_sweep.iterdir() if p.is_dir())
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == cells == [f"seed={s}" for s in SEEDS]
    for name in cells:  # same files, same numbers (same seed, one torch thread on both sides)
        assert sorted(f.name for f in (out / name).iterdir()) == sorted(f.name for f in (local_sweep / name).iterdir())
        assert _result(out / name) == _result(local_sweep / name)
    log = _log(out)
    assert {(r["cell"], r["backend"], r["device"], r["status"]) for r in log} == {
        (c, "ray", "cpu", "done") for c in cells}
    assert all(int(r["worker"].rsplit(":", 1)[1]) != os.getpid() for r in log)  # tasks ran in Ray workers
    before = _result(out / "seed=1")
    for name in ("summary.json", "summary.md", "final.pt"):  # interrupted after training, before it finished
        (out / "seed=1" / name).unlink()
    assert main(["sweep", str(sweep), "--out", str(out), "--backend", "ray", "--quiet"]) == 0
    rerun = _log(out)[len(log):]
    assert [(r["cell"], r["resumed"], r["status"]) for r in rerun] == [("seed=1", True, "done")]
    assert _result(out / "seed=1") == before
