"""Hostile and careless input, one table: every case goes through the real CLI
(``lnpt.cli.main``) and must end in exit code 2, one line on stderr naming the problem, no
traceback, and no file or folder left behind.

Sections: the teacher server's flags and token; the remote teacher's timeouts; checkpoint
headers with wrong types or impossible values; dataset files whose content contradicts the
dataset; sweep grids with a value out of range.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from lnpt.cli import main
from lnpt.data.idx import write_idx
from lnpt.serve.background import free_port

Case = Callable[[Path, Path, pytest.MonkeyPatch], list[str]]  # (tmp, teacher ckpt, env) -> argv
CASES: list[tuple[str, Case, str]] = []


def case(name: str, match: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES.append((name, fn, match))
        return fn
    return register


# ---------------------------------------------------------------- teacher server flags, token


def _serve(ckpt: Path, *flags: str) -> list[str]:
    return ["teacher", "serve", "--checkpoint", str(ckpt), "--port", str(free_port()), *flags]


for _name, _flags, _match in [
    ("port-99999", ["--no-auth", "--port", "99999"], "--port must be between 0 and 65535, got 99999"),
    ("port-negative", ["--no-auth", "--port", "-1"], "--port must be between 0 and 65535"),
    ("token-empty", ["--token", ""], "--token is empty"),
    ("token-blank", ["--token", "   "], "--token is empty"),
    ("no-token-no-flag", [], r"no token: set \$LNPT_TEACHER_TOKEN \(or --token\), or pass --no-auth"),
    ("token-and-no-auth", ["--token", "t0k", "--no-auth"], "--no-auth contradicts the token from --token"),
    ("max-uploads-0", ["--no-auth", "--max-uploads", "0"], "max_uploads and max_uploads_per_client must be >= 1"),
    ("max-uploads-per-client-0", ["--no-auth", "--max-uploads-per-client", "0"], "max_uploads_per_client"),
    ("body-timeout-0", ["--no-auth", "--body-timeout", "0"], "body_timeout must be a positive number"),
    ("request-timeout-negative", ["--no-auth", "--request-timeout", "-1"], "request_timeout must be a positive"),
    ("threads-0", ["--no-auth", "--threads", "0"], "--threads must be >= 1"),
    ("max-body-mb-0", ["--no-auth", "--max-body-mb", "0"], "--max-body-mb must be a positive number"),
    ("graceful-timeout-negative", ["--no-auth", "--graceful-timeout", "-1"], "--graceful-timeout must be >= 0"),
    ("max-concurrency-0", ["--no-auth", "--max-concurrency", "0"], "max_concurrency"),
]:
    case(f"serve-{_name}", _match)(lambda tmp, ckpt, env, f=_flags: _serve(ckpt, *f))


@case("serve-empty-token-variable", r"\$LNPT_TEACHER_TOKEN is empty")
def _empty_env_token(tmp: Path, ckpt: Path, env: pytest.MonkeyPatch) -> list[str]:
    env.setenv("LNPT_TEACHER_TOKEN", "")
    return _serve(ckpt)


# ---------------------------------------------------------------- remote teacher timeouts


def _prune_remote(tmp: Path, *flags: str) -> list[str]:
    return ["prune", "--teacher", f"http://127.0.0.1:{free_port()}", "--model", "lenet5", "--dataset", "digits",
            "--criterion", "lnpt", "--sparsity", "0.9", "--out", str(tmp / "out"), *flags]


for _name, _flags, _match in [
    ("timeout-0", ["--teacher-timeout", "0"], "--teacher-timeout must be a number of seconds > 0"),
    ("timeout-negative", ["--teacher-timeout", "-3"], "--teacher-timeout must be a number of seconds > 0"),
    ("retry-budget-negative", ["--teacher-retry-budget", "-1"], "--teacher-retry-budget must be a number"),
]:
    case(f"remote-{_name}", _match)(lambda tmp, ckpt, env, f=_flags: _prune_remote(tmp, *f))


# ---------------------------------------------------------------- checkpoint headers


def _crafted(tmp: Path, ckpt: Path, edit: Callable[[dict], None]) -> list[str]:
    header = torch.load(ckpt, weights_only=True)
    edit(header)
    path = tmp / "crafted.pt"
    torch.save(header, path)
    return ["teacher", "eval", str(path)]


def _set(*keys_and_value: object) -> Callable[[dict], None]:
    *keys, value = keys_and_value

    def edit(header: dict) -> None:
        for k in keys[:-1]:
            header = header[k]
        header[keys[-1]] = value
    return edit


for _name, _edit, _match in [
    ("format-version-text", _set("format_version", "one"), "format_version is 'one', not a number"),
    ("negative-classes", _set("dataset", "num_classes", -3), "num_classes is -3, not a positive integer"),
    ("shape-with-zero", _set("dataset", "input_shape", [1, 0, 8]), "input_shape is \\[1, 0, 8\\]"),
    ("structured-broken-history", _set("extra", {"structured": {"history": [["conv.0", "yes"]], "channels": {}}}),
     "channel-pruning history step 0"),
    ("metric-string", _set("metrics", "test_acc", "95%"), "metric 'test_acc' is '95%', not a number"),
    ("width-negative", _set("model", "width", -2.0), "model width is -2.0"),
    ("std-zero", _set("dataset", "std", [0.0]), "has a value <= 0"),
    ("classes-not-names", _set("dataset", "classes", "0123456789"), "classes is 0123456789, not a list of class names"),
]:
    case(f"checkpoint-{_name}", _match)(lambda tmp, ckpt, env, e=_edit: _crafted(tmp, ckpt, e))


# ---------------------------------------------------------------- dataset content


def _mnist_files(root: Path, image_size: int = 28, train_labels: np.ndarray | None = None,
                 test_labels: np.ndarray | None = None, test_size: int | None = None) -> Path:
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n, size, labels in (("train", 40, image_size, train_labels), ("t10k", 20, test_size or 28, test_labels)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, size, size)))
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels if labels is not None else np.arange(n) % 10)
    return root


def _train_mnist(tmp: Path, root: Path) -> list[str]:
    return ["teacher", "train", "--dataset", "mnist", "--data-dir", str(root), "--epochs", "1",
            "--out", str(tmp / "out")]


for _name, _kw, _match in [
    ("idx-32x32-train", {"image_size": 32}, r"train-images-idx3-ubyte holds 32x32 images, but mnist images are 28x28"),
    ("idx-32x32-test", {"test_size": 32}, r"t10k-images-idx3-ubyte holds 32x32 images"),
    ("idx-label-10", {"train_labels": np.arange(40) % 11}, r"train-labels-idx1-ubyte has 3 label\(s\) outside 0..9"),
    ("idx-label-255-test", {"test_labels": np.full(20, 255)}, r"t10k-labels-idx1-ubyte has 20 label\(s\) outside"),
]:
    case(f"data-{_name}", _match)(lambda tmp, ckpt, env, kw=_kw: _train_mnist(tmp, _mnist_files(tmp / "data", **kw)))


def _image_folder(tmp: Path, size: list[int]) -> list[str]:
    from PIL import Image  # the images extra (Pillow)

    root = tmp / "images"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            Image.new("L", (8, 8), 128).save(root / split / cls / "0.png")
    (root / "lnpt-dataset.json").write_text(json.dumps({"size": size}))
    return ["teacher", "train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1",
            "--out", str(tmp / "out")]


case("data-imagefolder-size-60000", r"\"size\" 60000x60000 is larger than 4096 pixels a side")(
    lambda tmp, ckpt, env: _image_folder(tmp, [60000, 60000]))
case("data-imagefolder-size-5000x8", r"\"size\" 5000x8 is larger than 4096")(
    lambda tmp, ckpt, env: _image_folder(tmp, [5000, 8]))


# ---------------------------------------------------------------- sweep grids


def _sweep(tmp: Path, grid: dict) -> list[str]:
    path = tmp / "grid.json"
    path.write_text(json.dumps({"data": {"dataset": "digits"}, "grid": grid}))
    return ["sweep", str(path), "--out", str(tmp / "out"), "--no-progress"]


for _name, _grid, _match in [
    ("sparsity-1.5", {"sparsity": [0.9, 1.5]}, r"sweep cell sparsity=1.5 is invalid: .*sparsity"),
    ("zero-scoring-batches", {"batches": [2, 0]}, r"sweep cell batches=0 is invalid: .*zero scoring batches"),
    ("prefetch-unknown", {"teacher_prefetch": ["auto", "sometimes"]}, r"'teacher_prefetch' must be one of auto, on, off"),
]:
    case(f"sweep-{_name}", _match)(lambda tmp, ckpt, env, g=_grid: _sweep(tmp, g))


# ---------------------------------------------------------------- the one test over the table


@pytest.mark.parametrize("build, match", [(fn, m) for _, fn, m in CASES], ids=[n for n, _, _ in CASES])
def test_bad_input_is_exit_2_one_line_and_leaves_nothing(build: Case, match: str, tmp_path: Path,
                                                         digits_teacher_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("LNPT_TEACHER_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # a default output folder would land here
    argv = build(tmp_path, digits_teacher_path, monkeypatch)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before  # nothing written: no output folder, no temporary files

