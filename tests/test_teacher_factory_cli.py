"""A teacher given as a Python factory plus `--teacher-weights`, end to end through the CLI.

tests/test_wild_teachers.py loads factory teachers through the API; here a user's `.py`
factory and its trained weights (a `torch.save` state dict, read with `weights_only=True`, or a
`.safetensors` file) go through `lnpt teacher eval`, `lnpt run` and `lnpt prune` as a user
types them. The teacher's outputs in a run (its per-sample outputs, kept by `--teacher-store`)
equal the module's own on the same images; a weights file that does not fit the factory's
model ends every command in one line naming the file and the fix, exit 2, nothing written.

torchvision and timm teachers (`torchvision:NAME`, `timm:NAME`) are built by the same path;
they are tested below only when the package imports (it is absent from the CPU venv: the
torchvision wheels here are CUDA builds that do not load against torch's CPU build).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from lnpt.cli import main
from lnpt.data.streamed import StreamSettings, open_unlabeled
from lnpt.models import create_model, forward_with_features
from lnpt.teachers import TeacherOptions, load_teacher

FACTORY = '''
from lnpt.models import create_model


def build(num_classes, input_shape, width=2.0):
    """The user's own factory: here lnpt's LeNet-5, the architecture of the weights given."""
    return create_model("lenet5", tuple(input_shape), num_classes, width)
'''

CLASSES = [str(c) for c in range(10)]


def _pngs(images, root: Path, folder_of) -> None:
    for i, img in enumerate(images):
        folder = root / folder_of(i)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i:04d}.png")


@pytest.fixture(scope="module")
def user(tmp_path_factory, digits, digits_teacher) -> dict:
    """Digits as a user's folders, the factory in a .py file, and the trained teacher's weights
    in both formats, each with its JSON sidecar beside it."""
    root = tmp_path_factory.mktemp("factory-cli")
    _pngs(digits.train._images[:96], root / "unlabeled", lambda i: f"part{i // 48}")
    for c in range(10):
        picks = (digits.test.labels == c).nonzero().flatten()[:5]
        _pngs(digits.test._images[picks], root / "eval", lambda i, c=c: CLASSES[c])
    (root / "my_teacher.py").write_text(FACTORY)
    state = digits_teacher.model.state_dict()
    weights = {"state_dict": root / "teacher.pt", "safetensors": root / "teacher.safetensors"}
    torch.save(state, weights["state_dict"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights["safetensors"]))
    info = digits_teacher.info.dataset
    sidecar = {"input_shape": list(info.input_shape), "mean": list(info.mean), "std": list(info.std),
               "classes": CLASSES}
    for path in weights.values():
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar))
    return {"root": root, "factory": f"{root / 'my_teacher.py'}:build", "weights": weights,
            "module": digits_teacher.model.eval(), "sidecar": sidecar}


def _eval_json(capsys, *args: str) -> dict:
    assert main(["teacher", "eval", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors"])
def test_teacher_eval_of_a_factory_equals_the_module_it_came_from(user, digits_teacher_path, capsys, fmt):
    factory = _eval_json(capsys, user["factory"], "--teacher-weights", str(user["weights"][fmt]),
                         "--eval", str(user["root"] / "eval"))
    checkpoint = _eval_json(capsys, str(digits_teacher_path), "--eval", str(user["root"] / "eval"))
    assert factory["eval_images"] == checkpoint["eval_images"] == 50
    assert factory["test_acc"] == checkpoint["test_acc"] > 0.7  # the same weights, another format
    assert factory["model"] == user["factory"]


def _stored(store: Path, rows: int) -> dict:
    """The one entry of the teacher store holding ``rows`` samples' outputs."""
    entries = [torch.load(p, weights_only=True) for p in store.glob("*.pt")]
    found = [e for e in entries if e["logits"].shape[0] == rows]
    assert len(found) == 1, [e["logits"].shape for e in entries]
    return found[0]


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors"])
def test_run_trains_on_the_factory_teachers_outputs(user, tmp_path, fmt):
    out, store = tmp_path / "run", tmp_path / "store"
    assert main(["run", "--unlabeled", str(user["root"] / "unlabeled"), "--teacher", user["factory"],
                 "--teacher-weights", str(user["weights"][fmt]), "--teacher-store", str(store),
                 "--model", "lenet5", "--epochs", "1", "--batch-size", "32", "--batches", "2",
                 "--score-batch-size", "32", "--sparsity", "0.5", "--loader-workers", "0",
                 "--val-fraction", "0", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == {"train": 96, "held_out": 0, "bad_images": 0}
    # what the run trained on: the teacher's outputs for every image, as the module gives them
    teacher = load_teacher(user["factory"], "unused", options=TeacherOptions(weights=str(user["weights"][fmt])))
    images = open_unlabeled([user["root"] / "unlabeled"], teacher.info.dataset, StreamSettings(num_workers=0))
    x = torch.cat([x for _, x in images.batches(500)])
    with torch.no_grad():
        logits, features = forward_with_features(user["module"], x)
    saved = _stored(store, 96)
    torch.testing.assert_close(saved["logits"], logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(saved["features"], features, atol=1e-5, rtol=1e-4)


def _broken(user, tmp_path: Path, case: str) -> Path:
    state = {k: v.clone() for k, v in user["module"].state_dict().items()}
    if case == "wrong-keys":
        state = {f"backbone.{k}": v for k, v in state.items()}
    elif case == "wrong-shapes":
        name = next(k for k in state if k.endswith("weight") and state[k].dim() == 2)
        state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    path = tmp_path / f"{case}.safetensors" if case == "wrong-shapes" else tmp_path / f"{case}.pt"
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    path.with_name(path.name + ".json").write_text(json.dumps(user["sidecar"]))
    return path


@pytest.mark.parametrize("case", ["wrong-keys", "wrong-shapes"])
def test_weights_that_do_not_fit_end_every_command_in_one_line(user, tmp_path, capsys, case):
    weights = _broken(user, tmp_path, case)
    teacher = ["--teacher", user["factory"], "--teacher-weights", str(weights)]
    commands = {
        "eval": ["teacher", "eval", user["factory"], "--teacher-weights", str(weights)],
        "run": ["run", "--unlabeled", str(user["root"] / "unlabeled"), *teacher, "--loader-workers", "0",
                "--epochs", "1", "--out", str(tmp_path / "run")],
        "prune": ["prune", "--dataset", "digits", *teacher, "--out", str(tmp_path / "prune")],
    }
    for name, args in commands.items():
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert str(weights) in err and "does not fit the model of" in err, err
        assert "state_dict()" in err, err  # the fix: the weights of the factory's own model
    assert not (tmp_path / "run").exists() and not (tmp_path / "prune").exists()


@pytest.mark.parametrize("package, name", [("torchvision", "resnet18"), ("timm", "resnet10t")])
def test_library_model_as_a_factory_teacher(tmp_path, package, name):
    pytest.importorskip(package)
    side = {"input_shape": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "classes": ["a", "b", "c"]}
    reference = f"{package}:{name}"
    module = create_model(reference, (3, 32, 32), 3, seed=1).eval()
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    (tmp_path / "w.safetensors.json").write_text(json.dumps(side))
    teacher = load_teacher(reference, "unused", options=TeacherOptions(weights=str(weights)))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    g = teacher.guide(x)
    with torch.no_grad():
        logits, features = forward_with_features(module, x)
    torch.testing.assert_close(g.logits, logits)
    torch.testing.assert_close(g.features, features)
