"""Guidance sources: what the trainer asks for a batch's teacher outputs.

The trainer holds one :class:`GuidanceSource` and asks it ``guidance_for(index, x)``. The
source at the bottom is a teacher (in-process or remote); wrappers change where the outputs
come from, never what they are:

- :class:`TeacherCache` keeps each sample's outputs after the first time (only valid when a
  sample's input is the same every epoch, i.e. without augmentation), and can be pre-filled
  from the on-disk store (:mod:`lnpt.teachers.store`);
- :class:`Prefetched` computes the next batch's guidance in a worker thread while the
  current batch trains.

:func:`teacher_guidance` composes them from the run's settings; it is the one place that
decides when the cache applies.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..data.views import UnlabeledView
from .base import Guidance, Teacher, check_teacher
from .store import all_outputs


class GuidanceSource:
    """Teacher outputs for the batches of one training run, in the order they are drawn."""

    # True when a sample's outputs are reused across epochs: such a source must not be given
    # augmented inputs (the trainer refuses that combination).
    per_sample = False

    def guidance_for(self, index: torch.Tensor, x: torch.Tensor) -> Guidance:
        """Outputs for the samples ``index`` of the training set, whose inputs are ``x``."""
        raise NotImplementedError

    def along(self, batches: Iterable[tuple]) -> Iterator[tuple[tuple, Guidance]]:
        """Each batch ``(index, x, ...)`` paired with its guidance."""
        for item in batches:
            yield item, self.guidance_for(item[0], item[1])


class TeacherSource(GuidanceSource):
    """Asks the teacher every time (what augmented inputs need)."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = check_teacher(teacher)

    def guidance_for(self, index: torch.Tensor, x: torch.Tensor) -> Guidance:
        return self.teacher.guide(x)


class TeacherCache(GuidanceSource):
    """Per-sample cache of un-augmented inputs' outputs: without augmentation a sample's input,
    and so its teacher output, is the same every epoch, and the teacher runs once per sample
    instead of once per sample per epoch."""

    per_sample = True

    def __init__(self, source: GuidanceSource, num_samples: int) -> None:
        self.source = source
        self._logits: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        self._filled = torch.zeros(num_samples, dtype=torch.bool)
        self.teacher_calls = 0

    def prefill(self, outputs: Guidance) -> None:
        """Take precomputed outputs for every sample (e.g. from :mod:`lnpt.teachers.store`)."""
        if outputs.logits.shape[0] != self._filled.shape[0]:
            raise ValueError("precomputed teacher outputs do not cover the training set")
        self._logits, self._features = outputs.logits, outputs.features
        self._filled[:] = True

    def guidance_for(self, index: torch.Tensor, x: torch.Tensor) -> Guidance:
        """Outputs for samples ``index``, asking the source only for missing ones."""
        missing = ~self._filled[index]
        if missing.any():
            fresh = self.source.guidance_for(index[missing], x[missing])
            self.teacher_calls += 1
            if self._logits is None:  # kept where the teacher answers (its GPU, say)
                n, at = self._filled.shape[0], fresh.logits.device
                self._logits = torch.empty(n, fresh.logits.shape[1], dtype=fresh.logits.dtype, device=at)
                self._features = torch.empty(n, fresh.features.shape[1], dtype=fresh.features.dtype, device=at)
            idx = index[missing]
            self._logits[idx] = fresh.logits
            self._features[idx] = fresh.features  # type: ignore[index]
            self._filled[idx] = True
        return Guidance(self._logits[index], self._features[index])  # type: ignore[index]


class Prefetched(GuidanceSource):
    """Guidance for batch i+1 is computed in a worker thread while batch i trains. Batches are
    drawn in the same order and the teacher is deterministic, so the result does not depend
    on it. (Torch releases the GIL inside its kernels, so an in-process teacher really runs in
    parallel.)"""

    def __init__(self, source: GuidanceSource) -> None:
        self.source = source
        self.per_sample = source.per_sample

    def guidance_for(self, index: torch.Tensor, x: torch.Tensor) -> Guidance:
        return self.source.guidance_for(index, x)

    def along(self, batches: Iterable[tuple]) -> Iterator[tuple[tuple, Guidance]]:
        ask = self.source.guidance_for
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lnpt-guidance") as pool:
            it = iter(batches)
            nxt = next(it, None)
            pending = pool.submit(ask, nxt[0], nxt[1]) if nxt is not None else None
            while nxt is not None:
                current, future = nxt, pending
                nxt = next(it, None)
                pending = pool.submit(ask, nxt[0], nxt[1]) if nxt is not None else None
                yield current, future.result()  # type: ignore[union-attr]


def teacher_guidance(teacher: Teacher, view: UnlabeledView, *, augment: bool, cache: bool = True,
                     store: str | Path | None = None, prefetch: str = "auto",
                     prefill: bool = False) -> GuidanceSource:
    """The guidance source for training on ``view`` (the training set, in index order).

    teacher -> per-sample cache (``cache`` and un-augmented inputs only), pre-filled from the
    on-disk ``store`` when one is given -> prefetch (``prefetch``: "auto", "on" or "off"; see
    :func:`wants_prefetch`). None of the wrappers changes the outputs. ``prefill`` fills the
    cache up front, in fixed batches, even without a store: a teacher's outputs differ in the
    last bits with the batch they are computed in, and in a data-parallel run which samples
    are missing from a rank's cache depends on where the run started (a resumed run would
    otherwise train on slightly different guidance than an uninterrupted one).
    """
    source: GuidanceSource = TeacherSource(teacher)
    if cache and not augment:
        source = TeacherCache(source, len(view))
        if store or prefill:
            source.prefill(all_outputs(teacher, view, store))
    if wants_prefetch(prefetch, teacher):
        source = Prefetched(source)
    return source


def wants_prefetch(setting: str, teacher: Teacher | None) -> bool:
    """Whether the trainer should compute the next batch's guidance in a worker thread.

    "auto" says yes for teachers that ask for it (a remote teacher waits on the network, so the
    overlap is free) and for an in-process teacher only when torch's intra-op threads leave at
    least half the cores idle: the teacher's forward then runs on cores the student's step does
    not use. With every core busy the two would only contend, so "auto" says no there.
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"unknown teacher_prefetch {setting!r}; known: auto, on, off")
    if teacher is None or setting == "off":
        return False
    if setting == "on" or teacher.prefers_prefetch:
        return True
    return 2 * torch.get_num_threads() <= available_cores()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's share), not the
    machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
