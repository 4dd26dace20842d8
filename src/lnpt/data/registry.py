"""The dataset registry: name -> reader ``(data_dir or None) -> RawData``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..registry import Registry
from .info import RawData

Reader = Callable[[Optional[Path]], RawData]
DATASETS: Registry[Reader] = Registry("dataset")
