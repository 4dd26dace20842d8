"""What a dataset is, independent of where its files came from."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class DatasetInfo:
    """Shape, classes and the normalisation every model trained on this data expects."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = False  # horizontal flips keep the label (natural images), not for digits/text
    crop_padding: int = 2
    classes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "input_shape": list(self.input_shape),
            "num_classes": self.num_classes, "mean": list(self.mean), "std": list(self.std),
            "hflip": self.hflip, "crop_padding": self.crop_padding, "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetInfo":
        return cls(
            name=str(d["name"]), input_shape=tuple(int(v) for v in d["input_shape"]),  # type: ignore[arg-type]
            num_classes=int(d["num_classes"]), mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]), hflip=bool(d.get("hflip", False)),
            crop_padding=int(d.get("crop_padding", 2)),
            classes=tuple(str(c) for c in d.get("classes", ())),
        )


@dataclass(frozen=True)
class RawData:
    """Images as uint8 ``(N, C, H, W)`` tensors with int64 labels, as a reader returns them."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: DatasetInfo
