"""A checkpoint of a user model names code (its factory). Loading one must not run that code
unless the user asked for it: --trust-model-code, or the run that named the factory itself."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from lnpt.checkpoint import load_checkpoint, save_checkpoint
from lnpt.cli import main
from lnpt.data.info import DatasetInfo
from lnpt.errors import CheckpointError
from lnpt.models import create_model, named_by_user
from lnpt.teachers import LocalTeacher

INFO = DatasetInfo(name="toy", input_shape=(1, 8, 8), num_classes=3, mean=(0.0,), std=(1.0,),
                   classes=("a", "b", "c"))


@pytest.fixture()
def user_checkpoint(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A factory that leaves a trace file when it runs, and a checkpoint of its model."""
    trace = tmp_path / "factory-ran"
    factory = tmp_path / "mine.py"
    factory.write_text(textwrap.dedent(f'''
        from pathlib import Path
        from torch import nn

        def make(num_classes, input_shape):
            Path({str(trace)!r}).write_text("ran")
            c, h, w = input_shape
            return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), nn.Linear(16, num_classes))
    '''))
    model = create_model(f"{factory}:make", INFO.input_shape, INFO.num_classes)
    ckpt = tmp_path / "user.pt"
    save_checkpoint(ckpt, model, f"{factory}:make", 1.0, INFO)
    trace.unlink()
    return ckpt, factory, trace


def test_loading_a_user_model_checkpoint_runs_nothing_unless_asked(user_checkpoint):
    ckpt_path, _, trace = user_checkpoint
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.runs_code
    with pytest.raises(CheckpointError, match="--trust-model-code"):
        ckpt.build()
    with pytest.raises(CheckpointError, match="--trust-model-code"):
        LocalTeacher.from_checkpoint(str(ckpt_path))
    assert not trace.exists()
    model = ckpt.build(allow_code=True)
    assert trace.exists()
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_the_run_that_named_the_factory_may_rebuild_it(user_checkpoint):
    ckpt_path, factory, _ = user_checkpoint
    recorded = load_checkpoint(ckpt_path).model_name
    assert named_by_user(recorded, f"{factory}:make")
    assert not named_by_user(recorded, "lenet5") and not named_by_user(recorded, None)
    assert not named_by_user(recorded, f"{factory}:other")


def test_cli_refuses_in_one_line_and_runs_nothing(user_checkpoint, tmp_path, capsys):
    ckpt_path, _, trace = user_checkpoint
    out = tmp_path / "export"
    assert main(["export", str(ckpt_path), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-model-code" in err
    assert not trace.exists() and not out.exists()
    assert main(["export", str(ckpt_path), "--format", "torchscript", "--out", str(out), "--trust-model-code"]) == 0
    assert trace.exists() and any(out.iterdir())


def test_a_run_takes_such_a_teacher_only_with_teacher_trust_code(user_checkpoint):
    from lnpt.config import RunConfig, replace_flat
    from lnpt.recipes.wild import load_run_teacher

    ckpt_path, _, trace = user_checkpoint
    cfg = replace_flat(RunConfig(), {"teacher": str(ckpt_path)})
    with pytest.raises(CheckpointError, match="--trust-model-code"):
        load_run_teacher(cfg)
    assert not trace.exists()
    trusted = replace_flat(cfg, {"teacher_trust_code": True})
    assert load_run_teacher(trusted).info.num_classes == 3 and trace.exists()
    from lnpt.recipes.pipeline import fingerprint
    assert fingerprint(trusted) == fingerprint(cfg)  # how it is loaded, not what the run computes
