"""Checkpoints: round trip (with masks), and refusal of corrupted, foreign and malicious files."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from lnpt.checkpoint import FORMAT, Checkpoint, load_checkpoint, save_checkpoint
from lnpt.data import DatasetInfo
from lnpt.errors import CheckpointError
from lnpt.models import create_model
from lnpt.surgery.masks import apply_masks, get_masks

INFO = DatasetInfo("digits", (1, 8, 8), 10, (0.305,), (0.375,), hflip=False, crop_padding=1,
                   classes=tuple(str(i) for i in range(10)))
CIFAR_INFO = DatasetInfo("cifar10", (3, 32, 32), 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26),
                         hflip=True, crop_padding=4)


def _saved(tmp_path: Path, name: str = "lenet5", width: float = 1.0,
           info: DatasetInfo = INFO) -> tuple[nn.Module, Path]:
    model = create_model(name, info.input_shape, info.num_classes, width, seed=0)
    model.train()
    model(torch.randn(4, *info.input_shape))  # move BatchNorm running stats off their init
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, name, width, info, metrics={"test_acc": 0.5},
                    extra={"seed": 0, "note": "x"})
    return model, path


@pytest.mark.parametrize("name,width,info", [("lenet5", 1.0, INFO), ("resnet20", 0.25, CIFAR_INFO)])
def test_round_trip_gives_equal_outputs(tmp_path: Path, name: str, width: float, info: DatasetInfo) -> None:
    model, path = _saved(tmp_path, name, width, info)
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint)
    assert (ck.model_name, ck.width, ck.dataset) == (name, width, info)
    assert ck.metrics == {"test_acc": 0.5} and ck.extra == {"seed": 0, "note": "x"}
    built = ck.build().eval()
    x = torch.randn(3, *info.input_shape)
    assert torch.equal(built(x), model.eval()(x))
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]  # the atomic write left no temp file


def test_round_trip_with_masks(tmp_path: Path) -> None:
    model = create_model("lenet5", INFO.input_shape, 10, seed=0)
    g = torch.Generator().manual_seed(0)
    masks = {name: (torch.rand(p.shape, generator=g) > 0.5).float()
             for name, p in model.named_parameters() if name.endswith("weight")}
    apply_masks(model, masks)
    path = tmp_path / "masked.pt"
    save_checkpoint(path, model, "lenet5", 1.0, INFO)
    ck = load_checkpoint(path)
    assert sorted(ck.masked) == sorted(masks)
    built = ck.build().eval()
    got = get_masks(built)
    assert sorted(got) == sorted(masks)
    assert all(torch.equal(got[k], masks[k]) for k in masks)
    # weights read before any forward are the loaded, masked ones (not the fresh init)
    for module_name in ("conv.0", "features.1", "classifier"):
        built_w = dict(built.named_modules())[module_name].weight
        assert torch.equal(built_w, dict(model.named_modules())[module_name].weight)
        assert torch.all(built_w[masks[module_name + ".weight"] == 0] == 0)
    x = torch.randn(5, *INFO.input_shape)
    assert torch.equal(built(x), model.eval()(x))


def _assert_refused(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert err.value.__cause__ is None  # no torch traceback chained to the message
    assert err.value.__context__ is None or err.value.__suppress_context__
    return str(err.value)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        _assert_refused(path, "corrupted or not a checkpoint")


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    g = torch.Generator().manual_seed(0)
    for size in (1, 100, 5000):
        path.write_bytes(bytes(torch.randint(0, 256, (size,), generator=g, dtype=torch.uint8).tolist()))
        msg = _assert_refused(path, "corrupted or not a checkpoint")
        assert "weights_only" not in msg  # torch's advice to turn safety off is not passed on


def test_foreign_torch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"weight": torch.ones(3)}, path)
    _assert_refused(path, f"not an lnpt checkpoint \\(no '{FORMAT}' header\\)")
    torch.save(nn.Linear(2, 2).state_dict(), path)
    _assert_refused(path, "not an lnpt checkpoint")
    _assert_refused(tmp_path / "missing.pt", "does not exist")


def test_tampered_header_is_refused(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = [1, 2, 3]
    torch.save(payload, path)
    _assert_refused(path, "no valid 'state_dict'")

    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["model"]["name"] = "resnet21"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown model 'resnet21'; known: .*lenet5"):
        load_checkpoint(path).build()

    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["model"]["width"] = 2.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit lenet5"):
        load_checkpoint(path).build()


class _Evil:
    """Unpickling this calls ``os.mkdir(marker)``: stands in for any code a file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    # Positive control: the same payload does run code when loaded unsafely.
    control = tmp_path / "control"
    torch.save({"format": FORMAT, "x": _Evil(control / "zip")}, tmp_path / "control.pt")
    control.mkdir()
    torch.load(tmp_path / "control.pt", weights_only=False)
    pickle.loads(pickle.dumps(_Evil(control / "raw"), protocol=2))
    assert (control / "zip").is_dir() and (control / "raw").is_dir()

    marker = tmp_path / "marker"
    # torch's zip format holding a lnpt-looking header plus the payload
    _, good = _saved(tmp_path)
    payload = torch.load(good, weights_only=True)
    payload["extra"] = {"evil": _Evil(marker)}
    evil_zip = tmp_path / "evil.pt"
    torch.save(payload, evil_zip)
    msg = _assert_refused(evil_zip, "not a safe lnpt checkpoint")
    assert "mkdir" in msg and "weights_only" not in msg
    # a bare pickle (torch's legacy format path)
    evil_raw = tmp_path / "evil.pkl"
    evil_raw.write_bytes(pickle.dumps({"format": FORMAT, "x": _Evil(marker)}, protocol=2))
    _assert_refused(evil_raw, "not a safe lnpt checkpoint")
    assert not marker.exists()


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, path = _saved(tmp_path)
    before = path.read_bytes()

    def half_write(obj: object, f: str | Path) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    for target in (path, tmp_path / "new.pt"):  # over an existing checkpoint, and a new one
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(target, model, "lenet5", 1.0, INFO)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def _edit(header: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        header = header[key]
    header[last] = value


STRUCTURED = {"structured": {"format_version": 1, "history": [["conv.0", True, [0, 1]]],
                             "channels": {"conv.0": [1, 4]}}}


@pytest.mark.parametrize("dotted, value, match", [
    ("format_version", "one", "format_version is 'one', not a number"),
    ("format_version", 1.5, "format_version is 1.5"),
    ("format_version", None, "format_version is None"),
    ("model", "lenet5", "'model' is missing or not a table"),
    ("model.name", 7, "model name is 7"),
    ("model.name", "", "model name is ''"),
    ("model.width", "wide", "model width is 'wide'"),
    ("model.width", -1.0, "model width is -1.0"),
    ("model.width", float("nan"), "model width is nan"),
    ("model.args", [1, 2], "model args are not a table"),
    ("dataset", None, "'dataset' is missing"),
    ("dataset.num_classes", -3, "num_classes is -3, not a positive integer"),
    ("dataset.num_classes", "10", "num_classes is '10'"),
    ("dataset.num_classes", True, "num_classes is True"),
    ("dataset.input_shape", [1, 0, 8], r"input_shape is \[1, 0, 8\], not three positive integers"),
    ("dataset.input_shape", [1, 8], r"input_shape is \[1, 8\]"),
    ("dataset.input_shape", "1x8x8", "input_shape is '1x8x8'"),
    ("dataset.mean", ["a"], "dataset mean is"),
    ("dataset.std", [0.0], r"dataset std \[0.0\] has a value <= 0"),
    ("dataset.std", [0.1, 0.2, 0.3, 0.4], "dataset std is"),
    ("dataset.hflip", "no", "hflip is 'no'"),
    ("dataset.crop_padding", -2, "crop_padding is -2"),
    ("dataset.classes", [0, 1], r"classes is \[0, 1\], not a list of class names"),
    ("masked", "conv.0.weight", "'masked' is not a list"),
    ("metrics", [0.5], "'metrics' is not a table"),
    ("metrics.test_acc", "95%", "metric 'test_acc' is '95%', not a number"),
    ("extra", "x", "'extra' is not a table"),
    ("extra", {"structured": "yes"}, "structured-pruning record is not a table"),
    ("extra", {"structured": {**STRUCTURED["structured"], "history": "cut"}}, "history is not a list"),
    ("extra", {"structured": {**STRUCTURED["structured"], "history": [["conv.0", True, "0,1"]]}},
     "history step 0"),
    ("extra", {"structured": {**STRUCTURED["structured"], "history": [["conv.0", 1]]}}, "history step 0"),
    ("extra", {"structured": {**STRUCTURED["structured"], "channels": {"conv.0": [1]}}}, "channel counts"),
    ("extra", {"structured": {**STRUCTURED["structured"], "format_version": "2"}},
     "structured-pruning format_version is '2'"),
])
def test_header_fields_of_the_wrong_type_or_impossible_value_are_one_line(
        tmp_path: Path, dotted: str, value: object, match: str) -> None:
    _, path = _saved(tmp_path)
    header = torch.load(path, weights_only=True)
    _edit(header, dotted, value)
    torch.save(header, path)
    message = _assert_refused(path, match)
    assert "\n" not in message and str(path) in message


def test_metrics_that_trainers_write_still_load(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    header = torch.load(path, weights_only=True)
    assert load_checkpoint(path).metrics == {"test_acc": 0.5}
    header["metrics"] = {"test_acc": None, "epoch": 3, "val_acc": float("nan")}  # what trainers write
    torch.save(header, path)
    assert load_checkpoint(path).metrics["epoch"] == 3
