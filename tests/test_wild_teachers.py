"""Teachers from what users have: a TorchScript file, an ONNX file run by ONNX Runtime, a
Python factory plus weights (state_dict or safetensors), each with its JSON sidecar; every
one answers like the eager model it came from, and every broken input ends in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lnpt.checkpoint import save_checkpoint
from lnpt.data.info import DatasetInfo
from lnpt.errors import CheckpointError, ConfigError
from lnpt.export import export_onnx, export_torchscript
from lnpt.models import create_model, forward_with_features
from lnpt.teachers import LocalTeacher, TeacherOptions, load_teacher
from lnpt.teachers.onnx_graph import OnnxTeacher
from lnpt.teachers.scripted import TorchScriptTeacher, save_torchscript_teacher
from lnpt.teachers.sidecar import parse_sidecar

INFO = DatasetInfo("toy", (3, 12, 12), 5, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3),
                   classes=("a", "b", "c", "d", "e"))

FACTORY_SOURCE = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes, input_shape, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)

    @torch.jit.export
    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.body(x))


def build(num_classes, input_shape, hidden=8):
    return Tiny(num_classes, input_shape, hidden)
'''


@pytest.fixture()
def factory(tmp_path: Path) -> str:
    (tmp_path / "tiny_net.py").write_text(FACTORY_SOURCE)
    return f"{tmp_path / 'tiny_net.py'}:build"


def _model(factory: str, seed: int = 0) -> nn.Module:
    return create_model(factory, INFO.input_shape, INFO.num_classes, seed=seed).eval()


def _sidecar(path: Path, **changes) -> Path:
    d = {"input_shape": list(INFO.input_shape), "mean": list(INFO.mean), "std": list(INFO.std),
         "classes": list(INFO.classes), **changes}
    side = path.with_name(path.name + ".json")
    side.write_text(json.dumps({k: v for k, v in d.items() if v is not None}))
    return side


def _agrees(teacher, model: nn.Module) -> None:
    x = torch.randn(6, *INFO.input_shape, generator=torch.Generator().manual_seed(1))
    g = teacher.guide(x)
    with torch.no_grad():
        logits, features = forward_with_features(model, x)
    torch.testing.assert_close(g.logits, logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g.features, features, atol=1e-5, rtol=1e-4)
    assert teacher.info.num_classes == 5 and teacher.info.feature_dim == 8
    assert teacher.info.dataset.classes == INFO.classes and teacher.info.input_shape == (3, 12, 12)
    assert teacher.identity


def test_torchscript_teacher_returning_logits_and_features(tmp_path, factory):
    model = _model(factory)
    path = save_torchscript_teacher(model, INFO, tmp_path / "teacher.ts")
    teacher = load_teacher(str(path), "unused")
    assert isinstance(teacher, TorchScriptTeacher)
    _agrees(teacher, model)


def test_scripted_teacher_with_forward_features_and_classifier(tmp_path, factory):
    model = _model(factory)
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    _sidecar(path)
    _agrees(load_teacher(str(path), "unused"), model)


def test_torchscript_without_features_fails_naming_the_contract(tmp_path, factory):
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 8), nn.ReLU(), nn.Linear(8, 5))
    path = export_torchscript(plain, INFO.input_shape, tmp_path / "plain.pt")  # logits only
    _sidecar(path)
    with pytest.raises(CheckpointError, match="must return \\(logits, features\\)"):
        load_teacher(str(path), "unused")


def test_onnx_teacher_finds_its_features_in_the_graph(tmp_path, factory):
    model = _model(factory)
    path = export_onnx(model, INFO.input_shape, tmp_path / "teacher.onnx")
    _sidecar(path)
    teacher = load_teacher(str(path), "unused")
    assert isinstance(teacher, OnnxTeacher)
    _agrees(teacher, model)
    named = OnnxTeacher.from_file(path, features=teacher._features)
    assert named.info.feature_dim == 8
    with pytest.raises(CheckpointError, match="no tensor named 'nope'"):
        load_teacher(str(path), "unused", options=TeacherOptions(features="nope"))


def test_sidecar_that_disagrees_with_the_model_is_named(tmp_path, factory):
    path = export_onnx(_model(factory), INFO.input_shape, tmp_path / "teacher.onnx")
    side = _sidecar(path, classes=["a", "b", "c"])
    with pytest.raises(CheckpointError, match=f"{side}.*names 3 classes"):
        load_teacher(str(path), "unused")


def test_missing_or_incomplete_sidecar_names_file_and_keys(tmp_path, factory):
    path = export_onnx(_model(factory), INFO.input_shape, tmp_path / "teacher.onnx")
    with pytest.raises(CheckpointError, match=f"write {path}.json with keys input_shape"):
        load_teacher(str(path), "unused")
    side = _sidecar(path, mean=None, classes=None)
    with pytest.raises(CheckpointError, match=f"{side} lacks mean, classes"):
        load_teacher(str(path), "unused")
    _sidecar(path, std=[0.2, 0.3])
    with pytest.raises(CheckpointError, match="std must hold 3 number"):
        load_teacher(str(path), "unused")
    _sidecar(path, num_classes=4)
    with pytest.raises(CheckpointError, match="classes names 5 classes but num_classes says 4"):
        load_teacher(str(path), "unused")


def test_lnpt_export_manifest_serves_as_sidecar(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "x", "dataset": {**INFO.to_dict(), "classes": []}}))
    info = parse_sidecar(tmp_path / "manifest.json")
    assert info.input_shape == INFO.input_shape and info.num_classes == 5 and info.mean == INFO.mean


@pytest.mark.parametrize("fmt", ["state_dict", "wrapped", "safetensors"])
def test_factory_teacher_with_weights(tmp_path, factory, fmt):
    model = _model(factory, seed=3)
    state = model.state_dict()
    weights = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "safetensors":
        save_file(state, str(weights))
    else:
        torch.save({"state_dict": state} if fmt == "wrapped" else state, weights)
    _sidecar(weights)
    teacher = load_teacher(factory, "unused", options=TeacherOptions(weights=str(weights)))
    assert isinstance(teacher, LocalTeacher)
    _agrees(teacher, model)


def test_factory_teacher_refuses_missing_wrong_or_unsafe_weights(tmp_path, factory):
    with pytest.raises(CheckpointError, match="needs its trained weights"):
        load_teacher(factory, "unused")
    wrong = tmp_path / "wrong.pt"
    torch.save(_model(factory).state_dict() | {"extra.weight": torch.zeros(1)}, wrong)
    _sidecar(wrong)
    with pytest.raises(CheckpointError, match="unexpected extra.weight"):
        load_teacher(factory, "unused", options=TeacherOptions(weights=str(wrong)))
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": _model(factory)}, unsafe)  # a pickled module: code to run on load
    _sidecar(unsafe)
    with pytest.raises(CheckpointError, match="names code to run"):
        load_teacher(factory, "unused", options=TeacherOptions(weights=str(unsafe)))


def test_lnpt_checkpoint_still_loads_and_refuses_options_it_does_not_read(tmp_path, digits_teacher_path):
    teacher = load_teacher(str(digits_teacher_path), "digits")
    assert isinstance(teacher, LocalTeacher) and teacher.info.model == "lenet5"
    with pytest.raises(ConfigError, match="read as checkpoint, which takes no sidecar"):
        load_teacher(str(digits_teacher_path), "digits", options=TeacherOptions(sidecar="x.json"))


def test_factory_reference_that_is_gone_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_teacher(f"{tmp_path / 'gone.py'}:build", "unused", options=TeacherOptions(weights="w.pt"))
    with pytest.raises(ConfigError, match="not importable"):
        load_teacher("no_such_pkg_xyz.models:build", "unused", options=TeacherOptions(weights="w.pt"))


def test_checkpoint_teacher_of_a_user_model_round_trips(tmp_path, factory):
    model = _model(factory, seed=2)
    save_checkpoint(tmp_path / "t.pt", model, factory, 1.0, INFO)
    with pytest.raises(CheckpointError, match="--trust-model-code"):  # it names code: only when asked
        load_teacher(str(tmp_path / "t.pt"), "unused")
    _agrees(load_teacher(str(tmp_path / "t.pt"), "unused", options=TeacherOptions(trust_code=True)), model)
