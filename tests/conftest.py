"""Shared fixtures: real data (scikit-learn's digits, always offline) and a real teacher
trained on it in a few seconds with the project's own trainer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lnpt.config import DataConfig, ModelConfig, TrainConfig
from lnpt.data import DataSplits, load_data
from lnpt.recipes.teacher_training import train_teacher
from lnpt.teachers import LocalTeacher

torch.set_num_threads(1)  # the suite shares 2 cores with whatever else runs; keep it predictable


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    return load_data("digits", val_fraction=0.1, split_seed=0)


@pytest.fixture(scope="session")
def digits_teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 (width 2) teacher trained with true labels on digits (~95% test accuracy)."""
    out = tmp_path_factory.mktemp("teacher")
    train_teacher(ModelConfig("lenet5", 2.0), DataConfig(dataset="digits", batch_size=64),
                  TrainConfig(loss="supervised", epochs=15, lr=0.05), out, seed=0, progress=False)
    return out / "best.pt"


@pytest.fixture(scope="session")
def digits_teacher(digits_teacher_path: Path) -> LocalTeacher:
    return LocalTeacher.from_checkpoint(str(digits_teacher_path))
