"""Labeled and unlabeled views of in-memory image tensors, and batching.

The split between them is the label-free guarantee: an :class:`UnlabeledView` holds the
images only — it is built from the image tensor and never receives the labels — so code that
is handed one (pruning criteria, the label-free trainer) cannot reach labels by construction.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

import torch

from ..distributed import Distributed, shard_batch
from .augment import augment
from .info import DatasetInfo


class _Images:
    """uint8 images plus the normalisation of their dataset; batches come out as float."""

    def __init__(self, images: torch.Tensor, info: DatasetInfo) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        self._images = images
        self.info = info
        self._mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(info.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return self._images.shape[0]

    @property
    def device(self) -> torch.device:
        """Where the images are kept (and batches are made)."""
        return self._images.device

    def _moved(self, device: torch.device) -> None:
        self._images = self._images.to(device)
        self._mean, self._std = self._mean.to(device), self._std.to(device)

    def fingerprint(self) -> str:
        """Content hash of the images and their normalisation: equal fingerprints mean equal
        inputs, so stored teacher outputs for them can be reused."""
        h = hashlib.sha256(self._images.contiguous().cpu().numpy().tobytes())
        h.update(repr((self.info.mean, self.info.std, tuple(self._images.shape))).encode())
        return h.hexdigest()

    def inputs(self, index: torch.Tensor, augmented: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised float inputs for ``index``, optionally augmented (before normalising)."""
        x = self._images[index.to(self._images.device)].float().div_(255.0)
        if augmented:
            x = augment(x, self.info.crop_padding, self.info.hflip, generator)
        return (x - self._mean) / self._std


class UnlabeledView(_Images):
    """Inputs only. Iterating yields ``(index, x)``; the index lets a teacher cache per sample."""

    def batches(self, batch_size: int, shuffle: bool = False, augmented: bool = False,
                generator: torch.Generator | None = None, limit: int | None = None,
                shard: Distributed | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(index, x)``; with ``shard``, this rank's share of each global batch."""
        for index in _batch_indices(len(self), batch_size, shuffle, generator, limit, shard):
            yield index, self.inputs(index, augmented, generator)

    def to(self, device: torch.device) -> "UnlabeledView":
        """The same images kept on ``device``: a small in-memory set lives on the GPU whole, so
        batches are made there and no copy runs per step."""
        view = UnlabeledView(self._images, self.info)
        view._moved(device)
        return view

    def head(self, n: int) -> "UnlabeledView":
        """The first ``n`` samples (a fixed held-out subset, e.g. for the learning gap)."""
        return UnlabeledView(self._images[:n], self.info)


class LabeledSet(_Images):
    """Inputs with labels: for supervised baselines and for evaluation only."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo) -> None:
        super().__init__(images, info)
        if labels.shape[0] != images.shape[0]:
            raise ValueError("images and labels differ in length")
        self._labels = labels.long()

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def unlabeled(self) -> UnlabeledView:
        """The same images without their labels."""
        return UnlabeledView(self._images, self.info)

    def with_labels(self, labels: torch.Tensor) -> "LabeledSet":
        """The same images with other labels (e.g. scrambled, to prove a path is label-free)."""
        return LabeledSet(self._images, labels, self.info)

    def subset(self, index: torch.Tensor) -> "LabeledSet":
        return LabeledSet(self._images[index], self._labels[index], self.info)

    def to(self, device: torch.device) -> "LabeledSet":
        """The same images and labels kept on ``device`` (see :meth:`UnlabeledView.to`)."""
        labeled = LabeledSet(self._images, self._labels, self.info)
        labeled._moved(device)
        labeled._labels = labeled._labels.to(device)
        return labeled

    def batches(self, batch_size: int, shuffle: bool = False, augmented: bool = False,
                generator: torch.Generator | None = None, limit: int | None = None,
                shard: Distributed | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(index, x, y)``; with ``shard``, this rank's share of each global batch."""
        for index in _batch_indices(len(self), batch_size, shuffle, generator, limit, shard):
            yield index, self.inputs(index, augmented, generator), self._labels[index.to(self._labels.device)]


def _batch_indices(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                   limit: int | None, shard: Distributed | None = None) -> Iterator[torch.Tensor]:
    """Index batches in (seeded) order; with ``shard``, each rank's share of the same global
    batches (every rank draws the same order from the same generator)."""
    if batch_size <= 0:
        raise ValueError(f"batch size must be > 0, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    count = 0
    for start in range(0, n, batch_size):
        if limit is not None and count >= limit:
            return
        yield shard_batch(order[start:start + batch_size], shard)
        count += 1
