"""Your own data end to end through the CLI: unlabeled PNG folders, a TorchScript teacher, a
student from a user's .py file; `lnpt prune` and `lnpt run` with and without --eval; no label
reaches the result (renaming the unlabeled sub-folders leaves final.pt's weights bit-identical); bad
inputs end in exit 2 with one line and no run folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from lnpt.checkpoint import load_checkpoint
from lnpt.cli import build_parser, main
from lnpt.teachers.scripted import save_torchscript_teacher

STUDENT = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes, channels):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def tiny(num_classes, input_shape, channels=4):
    return Tiny(num_classes, channels)
'''


def _write_pngs(images, root: Path, folder_of) -> None:
    for i, img in enumerate(images):
        folder = root / folder_of(i)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i:04d}.png")


@pytest.fixture(scope="module")
def wild(tmp_path_factory, digits, digits_teacher) -> dict[str, Path]:
    """Digits images as PNGs: an unlabeled folder (sub-folders by batch, no class information),
    an eval folder by class, the teacher as TorchScript, a student factory in a .py file."""
    root = tmp_path_factory.mktemp("wild")
    train = digits.train._images[:240]
    _write_pngs(train, root / "unlabeled", lambda i: f"part{i // 80}")
    test = digits.test
    classes = digits_teacher.info.dataset.classes or tuple(str(c) for c in range(10))
    for c in range(10):
        picks = (test.labels == c).nonzero().flatten()[:6]
        _write_pngs(test._images[picks], root / "eval", lambda i, c=c: classes[c].replace("/", "_"))
    teacher = save_torchscript_teacher(digits_teacher.model, digits_teacher.info.dataset, root / "teacher.pt")
    (root / "student.py").write_text(STUDENT)
    return {"root": root, "unlabeled": root / "unlabeled", "eval": root / "eval", "teacher": teacher,
            "student": root / "student.py"}


def _run_args(w: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["run", "--unlabeled", str(w["unlabeled"]), "--teacher", str(w["teacher"]),
            "--model", f"{w['student']}:tiny", "--model-args", '{"channels": 6}', "--epochs", "1",
            "--batch-size", "32", "--batches", "2", "--score-batch-size", "32", "--sparsity", "0.5",
            "--loader-workers", "0", "--val-fraction", "0.25", "--no-progress", "--out", str(out), *extra]


def test_prune_and_run_on_own_images_without_labels(wild, tmp_path, capsys):
    assert main(["prune", "--unlabeled", str(wild["unlabeled"]), "--teacher", str(wild["teacher"]),
                 "--model", f"{wild['student']}:tiny", "--batches", "2", "--score-batch-size", "32",
                 "--sparsity", "0.5", "--loader-workers", "0", "--out", str(tmp_path / "p")]) == 0
    assert load_checkpoint(tmp_path / "p" / "student_init.pt").dataset.input_shape == (1, 8, 8)
    assert main(_run_args(wild, tmp_path / "r")) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["final_acc"] is None and summary["accuracy"] == "not measured (no --eval)"
    assert summary["images"] == {"train": 180, "held_out": 60, "bad_images": 0}
    assert 0.0 <= summary["teacher_agreement"] <= 1.0 and summary["gap"] is not None
    assert "not measured (no --eval)" in (tmp_path / "r" / "summary.md").read_text()


def test_eval_folder_measures_accuracy_and_bad_images_are_counted(wild, tmp_path):
    images = tmp_path / "imgs"
    shutil.copytree(wild["unlabeled"], images)
    (images / "part0" / "broken.png").write_bytes(b"not a png")
    args = _run_args({**wild, "unlabeled": images}, tmp_path / "r", "--eval", str(wild["eval"]))
    assert main(args) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert 0.0 <= summary["final_acc"] <= 1.0 and "accuracy" not in summary
    assert summary["eval_images"] == 60 and summary["images"]["bad_images"] == 1
    # nothing held out: every image trains, and no held-out agreement is claimed
    assert main(_run_args({**wild, "unlabeled": images}, tmp_path / "r0", "--eval", str(wild["eval"]),
                          "--val-fraction", "0")) == 0
    summary = json.loads((tmp_path / "r0" / "summary.json").read_text())
    assert summary["images"]["held_out"] == 0 and summary["heldout_agreement"] is None


def test_renaming_unlabeled_folders_changes_nothing(wild, tmp_path):
    renamed = tmp_path / "imgs"
    shutil.copytree(wild["unlabeled"], renamed)
    for k in range(3):  # the same sort order, other names
        (renamed / f"part{k}").rename(renamed / f"zone{k}-{'abc'[k]}")
    assert main(_run_args(wild, tmp_path / "a")) == 0
    # the folder is passed by the same path: move the original aside and put the renamed copy there
    original = wild["unlabeled"].with_name("kept")
    wild["unlabeled"].rename(original)
    renamed.rename(wild["unlabeled"])
    try:
        assert main(_run_args(wild, tmp_path / "b")) == 0
    finally:
        wild["unlabeled"].rename(renamed)
        original.rename(wild["unlabeled"])
    a, b = (torch.load(tmp_path / name / "final.pt", weights_only=True) for name in "ab")
    assert {k: v for k, v in a.items() if k != "state_dict"} == {k: v for k, v in b.items() if k != "state_dict"}
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])  # bit for bit


@pytest.mark.parametrize("case, message", [
    ("empty", "holds no image files"),
    ("unknown-class", "are not classes of the teacher; its classes are: "),
    ("broken-factory", "student.py"),
    ("supervised", "pick a label-free --loss"),
])
def test_bad_inputs_end_in_one_line(wild, tmp_path, capsys, case, message):
    w = dict(wild)
    extra: list[str] = []
    if case == "empty":
        (tmp_path / "empty").mkdir()
        w["unlabeled"] = tmp_path / "empty"
    elif case == "unknown-class":
        shutil.copytree(wild["eval"], tmp_path / "eval")
        (tmp_path / "eval" / next(p.name for p in wild["eval"].iterdir())).rename(tmp_path / "eval" / "cats")
        (tmp_path / "eval" / "dogs").mkdir()
        extra = ["--eval", str(tmp_path / "eval")]
    elif case == "broken-factory":
        w["student"] = tmp_path / "student.py"
        w["student"].write_text("def tiny(:\n")
    else:
        extra = ["--loss", "supervised"]
    out = tmp_path / "run"
    assert main(_run_args(w, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_stream_settings_are_refused_without_unlabeled(capsys):
    assert main(["run", "--eval", "somewhere", "--out", "never"]) == 2
    assert "--eval is read with --unlabeled" in capsys.readouterr().err
    assert not Path("never").exists()


def test_teacher_eval_reads_any_format_on_an_eval_folder(wild, digits_teacher_path, capsys):
    assert main(["teacher", "eval", str(wild["teacher"]), "--eval", str(wild["eval"])]) == 0
    scripted = json.loads(capsys.readouterr().out)
    assert main(["teacher", "eval", str(digits_teacher_path), "--eval", str(wild["eval"])]) == 0
    checkpoint = json.loads(capsys.readouterr().out)
    assert scripted["eval_images"] == checkpoint["eval_images"] == 60
    assert scripted["test_acc"] == checkpoint["test_acc"] > 0.7  # the same network, exported
    # an option the format does not read is refused in one line
    assert main(["teacher", "eval", str(digits_teacher_path), "--teacher-features", "x"]) == 2
    assert "takes no features" in capsys.readouterr().err


def test_serve_passes_teacher_options_to_the_loader(wild, tmp_path, capsys):
    args = build_parser().parse_args(["teacher", "serve", "--checkpoint", str(wild["teacher"]),
                                      "--teacher-sidecar", str(tmp_path / "other.json")])
    assert args.teacher_sidecar == str(tmp_path / "other.json")
    code = main(["teacher", "serve", "--checkpoint", str(wild["teacher"]), "--no-auth", "--port", "0",
                 "--teacher-sidecar", str(tmp_path / "missing.json")])
    assert code == 2 and "missing.json" in capsys.readouterr().err


def test_teacher_file_options_are_refused_for_the_shipped_teacher(tmp_path, capsys):
    assert main(["run", "--teacher-weights", "w.pt", "--out", str(tmp_path / "r")]) == 2
    assert "--teacher-weights describe a teacher file; --teacher shipped takes none" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
