"""Progress output that suits where it goes: bars on a terminal, one line per epoch in a log,
nothing but the summary with --quiet."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lnpt
from lnpt.config import TrainConfig
from lnpt.experiments.grid import sweep_from_dict
from lnpt.experiments.sweep import run_sweep
from lnpt.models import create_model
from lnpt.train import Evaluate, FitOptions, Progress, accuracy, create_loss, fit
from lnpt.train.callbacks import progress_mode
from lnpt.train.losses import LossContext


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit_with(digits, progress, stream, epochs=2):
    model = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=1)
    cfg = TrainConfig(loss="supervised", epochs=epochs)
    callbacks = [Evaluate(lambda m: {"test_acc": accuracy(m, digits.test)["acc"]}), Progress(progress, stream=stream)]
    return fit(model, create_loss(cfg, LossContext(1, None)), digits.train, cfg, callbacks=callbacks,
               options=FitOptions(batch_size=64))


def test_modes_follow_the_stream():
    assert progress_mode(True, io.StringIO()) == "lines" and progress_mode("auto", Terminal()) == "bar"
    assert progress_mode(False, Terminal()) == "off" and progress_mode("lines", Terminal()) == "lines"
    with pytest.raises(ValueError, match="known: auto, bar, lines, off"):
        progress_mode("loud", io.StringIO())


def test_a_log_gets_one_line_per_epoch_with_the_records_numbers(digits):
    log = io.StringIO()
    result = _fit_with(digits, True, log)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    for line, record in zip(lines, result.history):
        assert line.startswith(f"epoch {record['epoch']}/2: train_loss {record['train_loss']:.4f}, ")
        assert f"test_acc {record['test_acc']:.4f}" in line and line.endswith(" s")


def test_a_terminal_gets_bars_that_leave_the_same_lines(digits):
    term, quiet = Terminal(), Terminal()
    _fit_with(digits, True, term)
    assert "\r" in term.getvalue()  # the bar redraws in place
    assert [ln for ln in term.getvalue().replace("\r", "\n").splitlines() if ln.startswith("epoch 2/2: ")]
    _fit_with(digits, False, quiet, epochs=1)
    assert quiet.getvalue() == ""


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(lnpt.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "lnpt", *args], capture_output=True, text=True, env=env,
                          timeout=600, check=True)


def test_cli_piped_writes_epoch_lines_and_quiet_only_the_summary(tmp_path):
    common = ["teacher", "train", "--dataset", "digits", "--epochs", "3", "--train-subset", "300"]
    piped = _cli(*common, "--out", str(tmp_path / "a"))
    epoch_lines = [ln for ln in piped.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epoch_lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "\r" not in piped.stderr + piped.stdout
    quiet = _cli(*common, "--out", str(tmp_path / "b"), "--quiet")
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["last"]["epoch"] == 3


def _finished(cfg, out, resume=False, progress=True):
    out.mkdir(parents=True, exist_ok=True)
    summary = {"final_acc": 0.5}
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def test_a_sweep_log_gets_one_line_per_finished_cell_and_no_bar(tmp_path, capsys):
    spec = sweep_from_dict({"train": {"epochs": 1}, "grid": {"criterion": ["lnpt", "snip"], "seed": [0, 1]}})
    run_sweep(spec, tmp_path, runner=_finished, progress=True)
    out, err = capsys.readouterr()
    assert len([ln for ln in out.splitlines() if "final_acc 0.5000" in ln]) == 4
    assert "\r" not in out + err and err == ""
