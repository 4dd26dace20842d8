"""Train/validation/test splits with a fixed seed, built from any registered dataset."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .info import DatasetInfo
from .registry import DATASETS
from .views import LabeledSet


@dataclass(frozen=True)
class DataSplits:
    train: LabeledSet
    val: LabeledSet
    test: LabeledSet
    info: DatasetInfo


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> DataSplits:
    """Read a dataset and split its training part into train and validation.

    ``train_subset`` / ``test_subset`` take a fixed random subset (for CPU-sized runs); the
    subset is drawn with ``split_seed`` so every run of a sweep sees the same samples.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    raw = DATASETS.get(name)(Path(data_dir) if data_dir is not None else None)
    g = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(raw.train_x.shape[0], generator=g)
    n_val = int(round(val_fraction * len(order)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    test_x, test_y = raw.test_x, raw.test_y
    if test_subset is not None and test_subset < test_x.shape[0]:
        pick = torch.randperm(test_x.shape[0], generator=g)[:test_subset]
        test_x, test_y = test_x[pick], test_y[pick]
    info = raw.info
    return DataSplits(
        train=LabeledSet(raw.train_x[train_idx], raw.train_y[train_idx], info),
        val=LabeledSet(raw.train_x[val_idx], raw.train_y[val_idx], info),
        test=LabeledSet(test_x, test_y, info),
        info=info,
    )
