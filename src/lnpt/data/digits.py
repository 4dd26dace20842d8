"""scikit-learn's bundled 8x8 digits: the dataset that works offline (the ``digits`` extra)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..extras import require
from .info import DatasetInfo, RawData
from .registry import DATASETS


@DATASETS.register("digits")
def digits(data_dir: Path | None) -> RawData:
    bunch = require("sklearn.datasets", "the digits dataset").load_digits()
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype("uint8")).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype("int64"))
    # A fixed, stratification-free 80/20 train/test cut (the set ships without one).
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1797))
    cut = int(0.8 * len(labels))
    tr, te = order[:cut], order[cut:]
    info = DatasetInfo("digits", (1, 8, 8), 10, (0.3050,), (0.3750,), hflip=False,
                       crop_padding=1, classes=tuple(str(i) for i in range(10)))
    return RawData(images[tr], labels[tr], images[te], labels[te], info)
