"""The run folder names every artefact once: its names, its states, claiming a folder, reading
what it saved, `lnpt prune` and `lnpt run` writing the same names, and folders written by the
older `lnpt prune` (student.pt, report.json) still read by export and bench-latency."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lnpt.checkpoint import load_checkpoint
from lnpt.cli import main
from lnpt.config import (
    DataConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    WeightPruneConfig,
)
from lnpt.errors import ConfigError
from lnpt.export.source import load_source, resolve_checkpoint
from lnpt.recipes.pipeline import run_pipeline
from lnpt.run_folder import ExportFiles, RunDirError, RunFolder


def test_every_artefact_has_its_on_disk_name(tmp_path: Path) -> None:
    """These names are a file format: folders written today must stay readable tomorrow."""
    run = RunFolder(tmp_path)
    names = {"config": "config.json", "student_init": "student_init.pt", "prune_report": "prune_report.json",
             "prune_report_md": "prune_report.md", "metrics": "metrics.jsonl", "train_state": "train_state.pt",
             "final": "final.pt", "summary": "summary.json", "summary_md": "summary.md",
             "teacher_best": "best.pt", "teacher_last": "last.pt"}
    for prop, name in names.items():
        assert getattr(run, prop) == tmp_path / name, prop
    export = run.export
    assert export.path == tmp_path / "export"
    assert [export.onnx.name, export.torchscript.name, export.safetensors.name, export.sparse_safetensors.name,
            export.manifest.name] == ["model.onnx", "model.torchscript.pt", "model.safetensors",
                                      "model.sparse.safetensors", "manifest.json"]
    assert ExportFiles(tmp_path / "elsewhere").manifest == tmp_path / "elsewhere" / "manifest.json"


def test_states_follow_the_files(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r")
    assert not (run.is_run or run.started or run.finished)
    run.claim()
    run.config.write_text("{}")
    assert run.started and not run.is_run and not run.finished
    run.metrics.write_text('{"epoch": 1}\n')
    assert run.started and run.is_run
    run.summary.write_text('{"final_acc": 0.5}')
    assert run.finished and not run.started


def test_claim_refuses_a_used_folder_unless_resuming(tmp_path: Path) -> None:
    fresh = RunFolder(tmp_path / "a" / "b")
    fresh.check_claimable()
    assert not fresh.path.exists()  # checking creates nothing
    fresh.claim()
    assert fresh.path.is_dir()
    fresh.claim()  # an empty folder may be claimed again
    (fresh.path / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists and is not empty; pass --resume"):
        fresh.claim()
    fresh.claim(resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        RunFolder(tmp_path / "file").check_claimable(resume=True)


def test_saved_json_is_read_or_refused_in_one_line(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert run.saved_config() is None and run.saved_summary() is None and run.saved_prune_report() is None
    run.config.write_text(json.dumps({"seed": 3}))
    run.summary.write_text(json.dumps({"final_acc": 0.9}))
    assert run.saved_config() == {"seed": 3} and run.saved_summary() == {"final_acc": 0.9}
    run.config.write_text("{not json")
    with pytest.raises(RunDirError, match="cannot parse .*config.json"):
        run.saved_config()
    run.summary.write_text("[1, 2]")
    with pytest.raises(RunDirError, match="summary.json must hold a JSON object"):
        run.saved_summary()


def test_old_prune_names_are_read_only_where_the_new_ones_are_absent(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert run.untrained_student == run.student_init and run.prune_report_file == run.prune_report
    (tmp_path / "report.json").write_text(json.dumps({"sparsity": 0.5}))
    assert run.prune_report_file == run.prune_report  # a report.json alone (a sweep report?) is not one
    (tmp_path / "student.pt").write_bytes(b"")
    assert run.untrained_student == tmp_path / "student.pt"
    assert run.saved_prune_report() == {"sparsity": 0.5}
    run.student_init.write_bytes(b"")
    run.prune_report.write_text(json.dumps({"sparsity": 0.9}))
    assert run.untrained_student == run.student_init and run.saved_prune_report() == {"sparsity": 0.9}


def _prune_args(teacher: Path, out: Path) -> list[str]:
    return ["prune", "--teacher", str(teacher), "--model", "lenet5", "--dataset", "digits", "--criterion", "lnpt",
            "--sparsity", "0.8", "--batches", "2", "--score-batch-size", "64", "--out", str(out)]


def test_prune_and_run_write_the_same_names_for_the_same_things(digits_teacher_path: Path, tmp_path: Path) -> None:
    pruned, ran = RunFolder(tmp_path / "pruned"), RunFolder(tmp_path / "run")
    assert main(_prune_args(digits_teacher_path, pruned.path)) == 0
    cfg = RunConfig(data=DataConfig(dataset="digits", batch_size=64), model=ModelConfig("lenet5"),
                    teacher=TeacherConfig(teacher=str(digits_teacher_path)),
                    prune=PruneConfig(criterion="lnpt", batches=2, score_batch_size=64),
                    weights=WeightPruneConfig(sparsity=0.8),
                    train=TrainConfig(loss="lnpt", epochs=1), seed=0)
    run_pipeline(cfg, ran.path, progress=False)
    written = {p.name for p in pruned.path.iterdir()}
    assert written == {RunFolder.STUDENT_INIT, RunFolder.PRUNE_REPORT, RunFolder.PRUNE_REPORT_MD}
    assert written <= {p.name for p in ran.path.iterdir()}
    assert ran.prune_report_md.read_text().startswith(pruned.prune_report_md.read_text().splitlines()[0])
    # The same seed and settings prune the same student whichever command ran.
    a, b = load_checkpoint(pruned.student_init).state_dict, load_checkpoint(ran.student_init).state_dict
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert pruned.saved_prune_report()["kept_weights"] == ran.saved_prune_report()["kept_weights"]


def test_a_folder_of_the_older_prune_still_exports_and_benches(digits_teacher_path: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """`lnpt prune` used to write student.pt, report.json and report.md: such folders still load."""
    legacy = tmp_path / "old"
    assert main(_prune_args(digits_teacher_path, legacy)) == 0
    for new, old in (("student_init.pt", "student.pt"), ("prune_report.json", "report.json"),
                     ("prune_report.md", "report.md")):
        (legacy / new).rename(legacy / old)
    assert resolve_checkpoint(legacy) == legacy / "student.pt"
    assert load_source(legacy).masks  # the masked, untrained student
    assert RunFolder(legacy).saved_prune_report()["criterion"] == "lnpt"
    assert main(["export", str(legacy), "--format", "torchscript", "safetensors"]) == 0
    manifest = json.loads(RunFolder(legacy).export.manifest.read_text())
    assert manifest["source"] == "student.pt"
    assert set(manifest["artefacts"]) == {"torchscript", "safetensors", "safetensors_sparse"}
    assert main(["bench-latency", str(legacy), "--batch-sizes", "1", "--repeats", "2", "--warmup", "0",
                 "--runtimes", "torch"]) == 0
    assert "masked layer(s)" in capsys.readouterr().out
