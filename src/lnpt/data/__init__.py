"""Datasets as in-memory uint8 tensors, splits, labeled and unlabeled views, augmentation,
and unlabeled images streamed from disk."""
from __future__ import annotations

from . import cifar, digits, imagefolder, mnist_like  # noqa: F401  (registration side effect)
from .info import DatasetInfo, RawData
from .registry import DATASETS
from .splits import DataSplits, load_data
from .streamed import StreamedImages, StreamSettings, open_unlabeled
from .views import LabeledSet, UnlabeledView

__all__ = ["DATASETS", "DataSplits", "DatasetInfo", "LabeledSet", "RawData", "StreamSettings",
           "StreamedImages", "UnlabeledView", "load_data", "open_unlabeled"]
