"""Bring your own images: ``<data_dir>/train/<class>/*`` and ``<data_dir>/test/<class>/*``.

Rules (also in docs/DATA.md):

* **Classes** are the sub-folder names of ``train/``, sorted; label ``i`` is the i-th name.
  ``test/`` may hold a subset of them; a test class unknown to ``train/`` is an error.
* **Files** with an image suffix (``.png .jpg .jpeg .bmp .gif .tif .tiff .webp .ppm .pgm``)
  are read with Pillow; other files and hidden files are ignored.
* **Colour**: one channel when every image (train and test) is 8-bit grayscale (Pillow modes
  ``1``, ``L``, ``LA``); otherwise every image is converted to RGB (alpha dropped).
* **Size**: when all images share one size it is kept. Otherwise every image is resized
  (bilinear) to the most common size among the *training* images, ties going to the larger
  area. An optional ``lnpt-dataset.json`` in ``<data_dir>`` overrides it with ``"size": [H, W]``.
  Sides above ``MAX_SIDE`` and datasets larger than the free memory are refused up front.
* **Normalisation** is the per-channel mean/std of the training images.
* **Augmentation**: random crop with ``round(min(H, W) / 8)`` pixels of padding; no horizontal
  flips unless ``lnpt-dataset.json`` says ``"hflip": true`` (flips change the meaning of text,
  digits and many symbols, so we do not assume they keep the label).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, DatasetNotFoundError
from .info import DatasetInfo, RawData
from .registry import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GRAY_MODES = {"1", "L", "LA"}
OPTIONS_FILE = "lnpt-dataset.json"
#: Largest image side accepted: far beyond what a CNN trained here needs, small enough that a
#: typo (60000 for 600) is caught before the pixels are allocated.
MAX_SIDE = 4096
#: Memory per decoded pixel and channel: the uint8 images plus the float copy for the statistics.
BYTES_PER_PIXEL = 5
_OPTION_KEYS = {"size", "hflip", "crop_padding"}

_HOW = ("an image folder needs --data-dir pointing at a folder with train/<class>/<images> and "
        "test/<class>/<images> (one sub-folder per class)")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(split: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(split.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _read_options(root: Path) -> dict[str, Any]:
    path = root / OPTIONS_FILE
    if not path.is_file():
        return {}
    try:
        opts = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetNotFoundError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(opts, dict) or set(opts) - _OPTION_KEYS:
        raise DatasetNotFoundError(
            f"{path} must be a JSON object with keys among {', '.join(sorted(_OPTION_KEYS))}")
    size = opts.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise DatasetNotFoundError(f"{path}: \"size\" must be [height, width] in pixels")
    if size is not None and max(size) > MAX_SIDE:
        raise DataError(f"{path}: \"size\" {size[0]}x{size[1]} is larger than {MAX_SIDE} pixels a side; "
                        "give the size to train at (e.g. [64, 64]), or remove it to keep the images' own")
    return opts


def _check_fits(root: Path, n_images: int, channels: int, size: tuple[int, int]) -> None:
    """Refuse a decoded dataset that cannot fit in memory, before allocating it (a MemoryError
    with a traceback otherwise, or a machine brought to swapping)."""
    need = n_images * channels * size[0] * size[1] * BYTES_PER_PIXEL
    have = _available_memory()
    if have is not None and need > have:
        raise DataError(
            f"{root}: {n_images} images at {size[0]}x{size[1]} need about {need / 2**30:.1f} GiB of memory, "
            f"{have / 2**30:.1f} GiB are free; set a smaller \"size\" in {root / OPTIONS_FILE} (e.g. [64, 64])")


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: no check
        return None


def _scan(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]], list[tuple[Path, int]]]:
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetNotFoundError(f"{root / split} does not exist: {_HOW}")
    train_dirs, test_dirs = _class_dirs(root / "train"), _class_dirs(root / "test")
    if not train_dirs:
        raise DatasetNotFoundError(f"{root / 'train'} has no class sub-folders: {_HOW}")
    unknown = sorted(set(test_dirs) - set(train_dirs))
    if unknown:
        raise DatasetNotFoundError(
            f"{root / 'test'} has classes missing from train/: {', '.join(unknown)}")
    classes = tuple(train_dirs)
    train = [(p, i) for i, c in enumerate(classes) for p in _images_in(train_dirs[c])]
    test = [(p, classes.index(c)) for c in test_dirs for p in _images_in(test_dirs[c])]
    empty = [c for c in classes if not _images_in(train_dirs[c])]
    if empty:
        raise DatasetNotFoundError(
            f"class folder(s) {', '.join(empty)} in {root / 'train'} hold no images "
            f"(suffixes read: {', '.join(sorted(IMAGE_SUFFIXES))})")
    if not test:
        raise DatasetNotFoundError(f"{root / 'test'} holds no images: {_HOW}")
    return classes, train, test


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (height, width) from the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode, (im.height, im.width)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetNotFoundError(f"{path} is not a readable image ({exc})") from None


def _common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s))


def _decode(items: list[tuple[Path, int]], mode: str, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    h, w = size
    channels = 1 if mode == "L" else 3
    out = np.empty((len(items), h, w, channels), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(h, w, channels)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetNotFoundError(f"{path} is not a readable image ({exc})") from None
    labels = torch.tensor([y for _, y in items], dtype=torch.int64)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels


def load_image_folder(data_dir: Path | None) -> RawData:
    if data_dir is None:
        raise DatasetNotFoundError(f"no --data-dir given: {_HOW}")
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root} does not exist: {_HOW}")
    opts = _read_options(root)
    classes, train, test = _scan(root)
    probes = {p: _probe(p) for p, _ in train + test}
    mode = "L" if all(m in GRAY_MODES for m, _ in probes.values()) else "RGB"
    size = tuple(opts["size"]) if "size" in opts else _common_size([probes[p][1] for p, _ in train])
    if max(size) > MAX_SIDE:
        raise DataError(f"{root}: the training images are {size[0]}x{size[1]}, larger than {MAX_SIDE} pixels "
                        f"a side; set \"size\" in {root / OPTIONS_FILE} to the size to train at (e.g. [64, 64])")
    _check_fits(root, len(train) + len(test), 1 if mode == "L" else 3, size)  # type: ignore[arg-type]
    train_x, train_y = _decode(train, mode, size)  # type: ignore[arg-type]
    test_x, test_y = _decode(test, mode, size)  # type: ignore[arg-type]
    pixels = train_x.float().div(255.0)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)  # constant images must not divide by zero
    h, w = size
    info = DatasetInfo(
        "imagefolder", (train_x.shape[1], h, w), len(classes),
        tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std),
        hflip=bool(opts.get("hflip", False)),
        crop_padding=int(opts.get("crop_padding", max(1, round(min(h, w) / 8)))),
        classes=classes,
    )
    return RawData(train_x, train_y, test_x, test_y, info)


@DATASETS.register("imagefolder")
def imagefolder(data_dir: Path | None) -> RawData:
    return load_image_folder(data_dir)
