"""Hostile and careless input, one table: every case goes through the real CLI
(``lnpt.cli.main``) and must end in exit code 2, one line on stderr naming the problem, no
traceback, and no file or folder left behind.

Sections: the teacher server's flags and token; the remote teacher's timeouts; checkpoint
headers with wrong types or impossible values; dataset files whose content contradicts the
dataset; sweep grids with a value out of range; settings out of their declared range, from
flags and from config files; run folders that cannot be written; names that fail after the
run folder was claimed. After the table: a start that failed leaves its --out free for the
corrected rerun, and the advice after a non-finite loss works.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from lnpt.cli import main
from lnpt.data.idx import write_idx
from lnpt.run_folder import RunFolder
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


# ---------------------------------------------------------------- settings out of range: flags


def _run(tmp: Path, *flags: str) -> list[str]:
    return ["run", "--dataset", "digits", "--train-subset", "64", "--test-subset", "32", "--epochs", "1",
            "--no-progress", "--out", str(tmp / "out"), *flags]


def _range(flag: str, key: str, want: str, got: str) -> str:
    return re.escape(f"--{flag} (config key '{key}') must be {want}, got {got}; give a value in that range")


for _flags, _key, _want, _got in [
    (["--batch-size", "0"], "data.batch_size", "an integer >= 1", "0"),
    (["--batch-size", "-8"], "data.batch_size", "an integer >= 1", "-8"),
    (["--lr", "-1"], "train.lr", "a finite number > 0", "-1.0"),
    (["--lr", "0"], "train.lr", "a finite number > 0", "0.0"),
    (["--lr", "nan"], "train.lr", "a finite number > 0", "nan"),
    (["--lr", "inf"], "train.lr", "a finite number > 0", "inf"),
    (["--width", "0"], "model.width", "a finite number > 0", "0.0"),
    (["--width", "nan"], "model.width", "a finite number > 0", "nan"),
    (["--width", "-1"], "model.width", "a finite number > 0", "-1.0"),
    (["--val-fraction", "1.5"], "data.val_fraction", "a finite number in [0, 1)", "1.5"),
    (["--val-fraction", "1"], "data.val_fraction", "a finite number in [0, 1)", "1.0"),
    (["--val-fraction", "-0.1"], "data.val_fraction", "a finite number in [0, 1)", "-0.1"),
    (["--eval-every", "0"], "train.eval_every", "an integer >= 1", "0"),
    (["--test-subset", "0"], "data.test_subset", "an integer >= 1", "0"),
    (["--train-subset", "-5"], "data.train_subset", "an integer >= 1", "-5"),
    (["--train-subset", "0"], "data.train_subset", "an integer >= 1", "0"),
    (["--epochs", "0"], "train.epochs", "an integer >= 1", "0"),
    (["--epochs", "-1"], "train.epochs", "an integer >= 1", "-1"),
    (["--warmup-epochs", "-1"], "train.warmup_epochs", "a finite number >= 0", "-1.0"),
    (["--momentum", "1.5"], "train.momentum", "a finite number in [0, 1)", "1.5"),
    (["--weight-decay", "-0.1"], "train.weight_decay", "a finite number >= 0", "-0.1"),
    (["--clip-grad-norm", "0"], "train.clip_grad_norm", "a finite number > 0", "0.0"),
    (["--beta", "-1"], "loss.beta", "a finite number >= 0", "-1.0"),
    (["--tau", "0"], "loss.tau", "a finite number > 0", "0.0"),
    (["--loss", "kd", "--kd-tau", "0"], "loss.kd_tau", "a finite number > 0", "0.0"),
    (["--loss", "kd", "--kd-alpha", "2"], "loss.kd_alpha", "a finite number in [0, 1]", "2.0"),
    (["--score-tau", "-4"], "score.score_tau", "a finite number > 0", "-4.0"),
    (["--score-batch-size", "0"], "prune.score_batch_size", "an integer >= 1", "0"),
    (["--rounds", "0"], "weights.rounds", "an integer >= 1", "0"),
    (["--structured", "--min-channels", "0"], "channels.min_channels", "an integer >= 1", "0"),
    (["--structured", "--round-to", "0"], "channels.round_to", "an integer >= 1", "0"),
    (["--split-seed", "-1"], "data.split_seed", "an integer >= 0", "-1"),
]:
    case(f"run-{_flags[-2].lstrip('-')}-{_flags[-1]}", _range(_flags[-2].lstrip("-"), _key, _want, _got))(
        lambda tmp, ckpt, env, f=_flags: _run(tmp, *f))

case("teacher-train-epochs-0", _range("epochs", "train.epochs", "an integer >= 1", "0"))(
    lambda tmp, ckpt, env: ["teacher", "train", "--dataset", "digits", "--epochs", "0", "--out", str(tmp / "out")])
case("prune-width-0", _range("width", "model.width", "a finite number > 0", "0.0"))(
    lambda tmp, ckpt, env: ["prune", "--dataset", "digits", "--teacher", str(ckpt), "--width", "0",
                            "--out", str(tmp / "out")])
case("sweep-epochs-0", _range("epochs", "train.epochs", "an integer >= 1", "0"))(
    lambda tmp, ckpt, env: _sweep(tmp, {"epochs": [1, 0]}))


# ---------------------------------------------------------------- settings out of range: config files


def _run_file(tmp: Path, name: str, text: str) -> list[str]:
    (tmp / name).write_text(text)
    return _run(tmp, "--config", str(tmp / name))


for _name, _file, _text, _match in [
    ("toml-epochs-0", "c.toml", "[train]\nepochs = 0\n", _range("epochs", "train.epochs", "an integer >= 1", "0")),
    ("toml-batch-size-0", "c.toml", "[data]\nbatch_size = 0\n",
     _range("batch-size", "data.batch_size", "an integer >= 1", "0")),
    ("yaml-width-nan", "c.yaml", "model:\n  width: .nan\n", _range("width", "model.width", "a finite number > 0", "nan")),
    ("json-lr-negative", "c.json", json.dumps({"train": {"lr": -1}}),
     _range("lr", "train.lr", "a finite number > 0", "-1.0")),
    ("json-lr-overflow", "c.json", '{"train": {"lr": 1e999}}', _range("lr", "train.lr", "a finite number > 0", "inf")),
    ("toml-val-fraction-1", "c.toml", "[data]\nval_fraction = 1.0\n",
     _range("val-fraction", "data.val_fraction", "a finite number in [0, 1)", "1.0")),
    ("json-test-subset-0", "c.json", json.dumps({"data": {"test_subset": 0}}),
     _range("test-subset", "data.test_subset", "an integer >= 1", "0")),
    ("toml-legacy-beta-negative", "c.toml", "[train]\nbeta = -1.0\n",
     _range("beta", "loss.beta", "a finite number >= 0", "-1.0")),
    ("toml-legacy-min-kept-negative", "c.toml", "[prune]\nmin_kept = -1\n",
     _range("min-kept", "weights.min_kept", "an integer >= 0", "-1")),
    ("toml-lr-text", "c.toml", "[train]\nlr = \"fast\"\n", r"config key 'train.lr' must be float, got 'fast'"),
]:
    case(f"config-{_name}", _match)(lambda tmp, ckpt, env, n=_file, t=_text: _run_file(tmp, n, t))


@case("config-flag-fixes-nothing-file-still-checked", _range("eval-every", "train.eval_every", "an integer >= 1", "0"))
def _file_and_flag(tmp: Path, ckpt: Path, env: pytest.MonkeyPatch) -> list[str]:
    return [*_run_file(tmp, "c.toml", "[train]\neval_every = 0\n"), "--epochs", "2"]


# ---------------------------------------------------------------- run folders that cannot be written


def _existing(tmp: Path, name: str, folder: bool) -> Path:
    path = tmp / name
    if folder:
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    else:
        path.write_text("mine")
    return path


for _name, _out, _match in [
    ("out-is-a-file", lambda tmp: _existing(tmp, "taken", False), r"run directory .*taken is a file; choose another --out"),
    ("out-under-a-file", lambda tmp: _existing(tmp, "taken", False) / "run",
     r"run directory .*taken/run is under .*taken, which is a file; choose another --out"),
    ("out-under-proc", lambda tmp: Path("/proc/lnpt-run"), r"cannot write run directory /proc/lnpt-run: /proc is not "
                                                           r"writable .*; choose another --out"),
    ("out-not-empty", lambda tmp: _existing(tmp, "taken", True), r"already exists and is not empty; pass --resume"),
]:
    case(f"run-{_name}", _match)(lambda tmp, ckpt, env, o=_out: _run(tmp, "--teacher", str(ckpt), "--out", str(o(tmp))))


# ---------------------------------------------------------------- names that fail after the folder was claimed


for _flags, _match in [
    (["--model", "foo"], r"unknown model 'foo'; known: .*lenet5"),
    (["--loss", "foo"], r"unknown loss 'foo'; known: .*supervised"),
    (["--criterion", "foo"], r"criterion 'foo'"),
]:
    case(f"run-{_flags[0].lstrip('-')}-{_flags[1]}", _match)(
        lambda tmp, ckpt, env, f=_flags: _run(tmp, "--teacher", str(ckpt), "--out", str(tmp / "deep" / "out"), *f))


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



# ---------------------------------------------------------------- failed starts and their corrected reruns


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_a_failed_start_leaves_out_free_for_the_corrected_rerun(tmp_path: Path, digits_teacher_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    argv = _run(tmp_path, "--teacher", str(digits_teacher_path))
    code, err = _cli([*argv, "--model", "foo"], capsys)
    assert code == 2 and "unknown model 'foo'" in err
    assert not (tmp_path / "out").exists()
    code, err = _cli(argv, capsys)
    assert code == 0, err
    assert RunFolder(tmp_path / "out").finished


@pytest.mark.parametrize("resume", [False, True], ids=["rerun", "resume"])
def test_what_an_older_failed_start_left_is_taken_over(resume: bool, tmp_path: Path, digits_teacher_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Before starts cleaned up after themselves, ``--model foo`` left config.json (and a stale
    pruned student): a rerun, or --resume, with the corrected settings takes the folder over and
    prunes afresh instead of refusing it as "not empty" or "a different configuration"."""
    out = RunFolder(tmp_path / "out")
    out.path.mkdir()
    out.config.write_text(json.dumps({"model": {"model": "foo"}}))
    out.student_init.write_bytes(b"stale")
    code, err = _cli([*_run(tmp_path, "--teacher", str(digits_teacher_path)), *(["--resume"] if resume else [])], capsys)
    assert code == 0, err
    assert out.finished and json.loads(out.config.read_text())["model"]["model"] == "lenet5"
    assert out.student_init.read_bytes() != b"stale"


def test_a_folder_that_trained_is_still_refused(tmp_path: Path, digits_teacher_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    argv = _run(tmp_path, "--teacher", str(digits_teacher_path))
    assert _cli(argv, capsys)[0] == 0
    code, err = _cli([*argv, "--resume", "--lr", "0.05"], capsys)
    assert code == 2 and "cannot resume" in err and "train.lr" in err
    code, err = _cli([*argv, "--lr", "0.05"], capsys)
    assert code == 2 and "already exists and is not empty" in err


def test_the_advice_after_a_non_finite_loss_works(tmp_path: Path, digits_teacher_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    argv = _run(tmp_path, "--teacher", str(digits_teacher_path), "--loss", "supervised", "--clip-grad-norm", "none",
                "--batch-size", "16", "--warmup-epochs", "0")
    code, err = _cli([*argv, "--lr", "1e30"], capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "non-finite training loss" in err and "lower the learning rate (--lr) and start the run again" in err
    assert not (tmp_path / "out").exists()  # nothing trained: the same --out is free
    code, err = _cli([*argv, "--lr", "0.05"], capsys)
    assert code == 0, err


def test_claim_creates_folders_one_mkdir_each_and_abandon_removes_them(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "a" / "b" / "run")
    created = run.claim()
    assert created == tmp_path / "a" and run.path.is_dir()
    run.config.write_text("{}")
    RunFolder(run.path).check_claimable()  # a start's settings alone: still claimable
    run.abandon(created)
    assert list(tmp_path.iterdir()) == []


def test_abandon_keeps_a_folder_where_training_saved_state(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    created = run.claim()
    run.config.write_text("{}")
    run.train_state.write_bytes(b"state")
    run.abandon(created)
    assert run.config.is_file() and run.train_state.is_file()
    with pytest.raises(Exception, match="already exists and is not empty"):
        RunFolder(run.path).claim()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_anything(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = _cli(_run(tmp_path, "--out", str(locked / "run")), capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and re.search(r"cannot write run directory .*locked/run: .*locked is not writable", err), err
    assert list(locked.iterdir()) == []
