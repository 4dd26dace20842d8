"""Fashion-MNIST and MNIST from IDX files, found locally or downloaded.

Search order for the files: an explicit ``data_dir``, ``$LNPT_DATA`` (and its sub-folder named
after the dataset), the Debian package's folder, then a download from the official mirror
when the network allows.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, DatasetNotFoundError
from .download import data_root, download_files
from .idx import read_idx
from .info import DatasetInfo, RawData
from .registry import DATASETS

FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

MIRRORS = {
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
}

SYSTEM_DIRS = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
    "mnist": [Path("/usr/share/datasets/mnist")],
}


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _complete(folder: Path) -> bool:
    return all(_find_file(folder, stem) for stem in FILES.values())


def candidate_dirs(name: str, data_dir: Path | None) -> list[Path]:
    """Where we look, in order (the download target is the last entry)."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [data_dir / name, data_dir]
    env = os.environ.get("LNPT_DATA")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs += SYSTEM_DIRS.get(name, [])
    return dirs


def default_download_dir(name: str, data_dir: Path | None) -> Path:
    return data_root(data_dir) / name


def _not_found(name: str, looked: list[Path], why: str) -> DatasetNotFoundError:
    hint = ("apt-get install dataset-fashion-mnist" if name == "fashion-mnist"
            else f"put the four IDX files of {name} in one folder")
    return DatasetNotFoundError(
        f"{name} not found (looked in: {', '.join(str(d) for d in looked)}) and {why}. "
        f"Fix: {hint}, or pass --data-dir / set LNPT_DATA to a folder holding "
        f"{', '.join(FILES.values())} (optionally .gz)"
    )


def load_idx_dataset(name: str, data_dir: Path | None, info: DatasetInfo,
                     download: bool = True) -> RawData:
    dirs = candidate_dirs(name, data_dir)
    folder = next((d for d in dirs if _complete(d)), None)
    if folder is None:
        target = default_download_dir(name, data_dir)
        if _complete(target):
            folder = target
        elif not download:
            raise _not_found(name, dirs + [target], "downloading is switched off")
        else:
            try:
                download_files(MIRRORS[name], [s + ".gz" for s in FILES.values()], target)
                folder = target
            except OSError as exc:
                raise _not_found(name, dirs + [target], f"the download failed ({exc})") from None
    arrays, paths = {}, {}
    for key, stem in FILES.items():
        path = paths[key] = _find_file(folder, stem)
        try:
            arrays[key] = read_idx(path)  # type: ignore[arg-type]
        except (OSError, EOFError, ValueError) as exc:  # bad gzip, truncated, not IDX
            raise DatasetNotFoundError(
                f"{path} is corrupted ({exc}); delete it so that it is downloaded again, or "
                f"replace it with a good copy"
            ) from None
    for split in ("train", "test"):
        nx, ny = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if nx.ndim != 3 or ny.ndim != 1 or nx.shape[0] != ny.shape[0]:
            raise DatasetNotFoundError(
                f"{name} files in {folder} do not match: {split} images have shape {nx.shape}, "
                f"labels {ny.shape}; expected (N, H, W) images and N labels"
            )
        _check_content(arrays, paths, split, info)
    return RawData(
        train_x=torch.from_numpy(arrays["train_x"]).unsqueeze(1),
        train_y=torch.from_numpy(arrays["train_y"].astype("int64")),
        test_x=torch.from_numpy(arrays["test_x"]).unsqueeze(1),
        test_y=torch.from_numpy(arrays["test_y"].astype("int64")),
        info=info,
    )


def _check_content(arrays: dict, paths: dict, split: str, info: DatasetInfo) -> None:
    """Images of the promised size and labels within the classes, before any model sees them:
    32x32 images failed with a shape error deep in the model, and a label 10 of 10 classes
    trained to 0% accuracy with exit code 0."""
    images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
    want = tuple(info.input_shape[1:])
    if tuple(images.shape[1:]) != want:
        raise DataError(
            f"{paths[f'{split}_x']} holds {images.shape[1]}x{images.shape[2]} images, but {info.name} "
            f"images are {want[0]}x{want[1]}; replace it with the original {info.name} file, or load "
            "your own images as an image folder (--dataset imagefolder --data-dir DIR)")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{paths[f'{split}_y']} holds {labels.dtype} labels, not integers; replace it "
                        f"with the original {info.name} file")
    bad = (labels < 0) | (labels >= info.num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{paths[f'{split}_y']} has {int(bad.sum())} label(s) outside 0..{info.num_classes - 1} "
            f"(the first, at index {first}, is {int(labels[first])}); {info.name} has "
            f"{info.num_classes} classes: replace the file with the original one")


@DATASETS.register("fashion-mnist")
def fashion_mnist(data_dir: Path | None) -> RawData:
    info = DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,), hflip=True,
                       crop_padding=2, classes=FASHION_CLASSES)
    return load_idx_dataset("fashion-mnist", data_dir, info)


@DATASETS.register("mnist")
def mnist(data_dir: Path | None) -> RawData:
    info = DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), hflip=False,
                       crop_padding=2, classes=tuple(str(i) for i in range(10)))
    return load_idx_dataset("mnist", data_dir, info)
