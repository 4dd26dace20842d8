"""Unlabeled images streamed from disk: folders of any layout, or text files listing images.

For data that does not fit in memory. :class:`StreamedImages` has the interface of
:class:`~lnpt.data.views.UnlabeledView` (``info``, ``len``, ``batches``, ``head``,
``fingerprint``), so criteria, the teacher cache and the label-free trainer take it unchanged.

* **Sources**: a folder is searched recursively for image files (the suffixes of
  :mod:`.imagefolder`; hidden files and folders skipped); sub-folder names are never read, so
  no label can reach this path. A text file lists image paths, one a line (relative ones from
  the list's folder; blank lines and ``#`` comments skipped). Order: sources as given, each
  folder sorted by relative path, so renaming folders without changing their order changes
  nothing.
* **Decoding** runs in ``DataLoader`` worker processes with Pillow: converted to the
  channels of ``info`` (the teacher's), resized (bilinear) so the image covers the input size,
  centre-cropped to it. Normalisation and augmentation (as in memory) happen in this process,
  drawing from the caller's generator, so a seed gives the same batches with any worker count.
* **Sample ids** are positions in the image list: stable, so per-sample teacher caches work.
* **Bad files** (corrupt, empty, not an image) never crash a worker: the worker reports them,
  the batch goes on without them, and each is logged once and counted (:attr:`bad_images`);
  with ``on_bad_image="fail"`` the first one ends the run naming the file.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..distributed import Distributed
from ..errors import ConfigError, DatasetNotFoundError
from .augment import augment
from .imagefolder import IMAGE_SUFFIXES
from .info import DatasetInfo
from .views import _batch_indices

log = logging.getLogger(__name__)

_HOW = ("pass --unlabeled a folder of images (searched recursively, any sub-folders) or a text "
        "file listing image paths, one a line")


@dataclass(frozen=True)
class StreamSettings:
    """How images are read: worker processes, and what a bad file does (skip or fail)."""

    num_workers: int = 2
    on_bad_image: str = "skip"

    def __post_init__(self) -> None:
        if self.on_bad_image not in ("skip", "fail"):
            raise ConfigError(f"unknown on_bad_image {self.on_bad_image!r}; known: skip, fail")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")


def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") for p in parts)


def _walk(root: Path) -> tuple[list[Path], int]:
    """Image files under ``root`` sorted by relative path, and how many other files were ignored."""
    found, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
            else:
                ignored += 1
    return sorted(found, key=lambda p: p.relative_to(root).parts), ignored


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetNotFoundError(f"{path} is not a readable list of image paths ({exc}): {_HOW}") from None
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def scan_sources(sources: Sequence[str | Path]) -> tuple[list[Path], int]:
    """Every image of ``sources`` in order, and the number of non-image files ignored."""
    if not sources:
        raise DatasetNotFoundError(f"no unlabeled images given: {_HOW}")
    paths: list[Path] = []
    ignored = 0
    for source in map(Path, sources):
        if source.is_dir():
            found, skipped = _walk(source)
            ignored += skipped
        elif source.is_file():
            found = [source] if source.suffix.lower() in IMAGE_SUFFIXES else _read_list(source)
        else:
            raise DatasetNotFoundError(f"unlabeled source {source} does not exist: {_HOW}")
        if not found:
            raise DatasetNotFoundError(f"{source} holds no image files (suffixes read: "
                                       f"{', '.join(sorted(IMAGE_SUFFIXES))}): {_HOW}")
        paths += found
    return paths, ignored


def decode_image(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` uint8: converted, resized to cover ``size``, centre-cropped to it."""
    from PIL import Image  # Pillow, brought by matplotlib (docs/DEPENDENCIES.md); not an extra

    h, w = size
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (w, h):
            scale = max(h / im.height, w / im.width)
            rw, rh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
            im = im.resize((rw, rh), Image.BILINEAR)
            left, top = (rw - w) // 2, (rh - h) // 2
            im = im.crop((left, top, left + w, top + h))
        return np.array(im, dtype=np.uint8).reshape(h, w, channels)  # a writable copy for torch


class _Files(Dataset):
    """Decodes one file per item in a worker; a bad file comes back as zeros plus its reason."""

    def __init__(self, paths: Sequence[Path], info: DatasetInfo) -> None:
        if info.input_shape[0] not in (1, 3):
            raise ConfigError(f"images are read as 1 (grayscale) or 3 (RGB) channels, the model "
                              f"takes {info.input_shape[0]}")
        self.paths = list(paths)
        self.channels, self.size = info.input_shape[0], (info.input_shape[1], info.input_shape[2])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str]:
        try:
            pixels = decode_image(self.paths[i], self.channels, self.size)
            return i, torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), ""
        except Exception as exc:  # noqa: BLE001  Pillow raises many types; a worker must survive all
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
            return i, torch.zeros(self.channels, *self.size, dtype=torch.uint8), reason


def _collate(items: list[tuple[int, torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    return (torch.tensor([i for i, _, _ in items]), torch.stack([x for _, x, _ in items]),
            [r for _, _, r in items])


class StreamedImages:
    """Unlabeled images read from disk batch by batch; iterating yields ``(ids, x)``."""

    def __init__(self, paths: Sequence[Path], info: DatasetInfo, settings: StreamSettings | None = None,
                 bad_images: dict[str, str] | None = None, ignored_files: int = 0) -> None:
        self.paths = [Path(p) for p in paths]
        self.info = info
        self.settings = settings or StreamSettings()
        # path -> reason, shared by the subsets of one source so a run counts each file once
        self.bad_images = {} if bad_images is None else bad_images
        self.ignored_files = ignored_files
        self._files = _Files(self.paths, info)
        self._mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(info.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """Hash of each file's path, size and modification time plus the input settings: equal
        fingerprints mean equal inputs (for the teacher store) without reading every file."""
        h = hashlib.sha256(repr((self.info.input_shape, self.info.mean, self.info.std)).encode())
        for path in self.paths:
            try:
                st = path.stat()
                h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|missing\n".encode())
        return h.hexdigest()

    def unlabeled(self) -> "StreamedImages":
        """Already unlabeled: lets the trainer's label-free path take it like a labeled set's view."""
        return self

    def subset(self, ids: Sequence[int] | torch.Tensor) -> "StreamedImages":
        """The samples ``ids`` (renumbered from 0 in the given order)."""
        return StreamedImages([self.paths[int(i)] for i in ids], self.info, self.settings, self.bad_images)

    def head(self, n: int) -> "StreamedImages":
        """The first ``n`` samples."""
        return self.subset(range(min(n, len(self))))

    def holdout(self, count: int, seed: int = 0) -> tuple["StreamedImages", "StreamedImages"]:
        """``(rest, held_out)``: ``count`` samples drawn with ``seed`` for the label-free metrics
        (learning gap), the rest for training; each keeps the source order."""
        if not 0 <= count < len(self):
            raise ConfigError(f"cannot hold out {count} of {len(self)} unlabeled images; hold out fewer")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        held, rest = order[:count].sort().values, order[count:].sort().values
        return self.subset(rest), self.subset(held)

    def batches(self, batch_size: int, shuffle: bool = False, augmented: bool = False,
                generator: torch.Generator | None = None, limit: int | None = None,
                shard: Distributed | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As :meth:`UnlabeledView.batches` (``shard``: this rank's share of each global batch,
        decoded by this rank only); a batch without its bad files is smaller, and a batch of bad
        files only is left out."""
        plan = [b.tolist() for b in _batch_indices(len(self), batch_size, shuffle, generator, limit, shard)]
        if not plan:
            return
        loader = DataLoader(self._files, batch_sampler=plan, num_workers=self.settings.num_workers,
                            collate_fn=_collate,
                            # the loader draws a worker seed; from its own generator, not torch's global one
                            generator=torch.Generator().manual_seed(0))
        for ids, images, reasons in loader:
            keep = torch.tensor([not r for r in reasons])
            if not keep.all():
                self._note_bad(ids, reasons)
                ids, images = ids[keep], images[keep]
            if ids.numel() == 0:
                continue
            x = images.float().div_(255.0)
            if augmented:
                x = augment(x, self.info.crop_padding, self.info.hflip, generator)
            yield ids, (x - self._mean) / self._std

    def _note_bad(self, ids: torch.Tensor, reasons: list[str]) -> None:
        for i, reason in zip(ids.tolist(), reasons):
            if not reason:
                continue
            path = str(self.paths[i])
            if self.settings.on_bad_image == "fail":
                raise DatasetNotFoundError(f"{path} is not a readable image ({reason}); remove it, or "
                                           "skip such files with --on-bad-image skip")
            if path not in self.bad_images:
                self.bad_images[path] = reason
                log.warning("skipped unreadable image %s (%s)", path, reason)


def open_unlabeled(sources: Sequence[str | Path], info: DatasetInfo,
                   settings: StreamSettings | None = None) -> StreamedImages:
    """The images of ``sources`` (folders and lists), read as ``info`` (the teacher's) says."""
    paths, ignored = scan_sources(sources)
    return StreamedImages(paths, info, settings, ignored_files=ignored)
