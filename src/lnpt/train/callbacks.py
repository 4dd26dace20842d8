"""What happens around the training loop: evaluation, per-epoch hooks, progress output.

The loop (:func:`lnpt.train.loop.fit`) only trains; callbacks run at its edges, in list order.
Put callbacks that add metrics to an epoch's record (:class:`Evaluate`) before those that
read or record it (the checkpoint, :class:`Progress`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..distributed import SINGLE, Distributed, all_reduce_sums, run_on_main
from .losses import TrainLoss

# Shown on an epoch's line when the record has them, in this order (besides epoch and time).
LINE_KEYS = ("train_loss", "train_acc", "val_acc", "test_acc", "teacher_agreement", "gap")


@dataclass
class FitState:
    """The run as callbacks see it; a checkpoint callback may replace ``epoch`` (where
    training starts) and ``history`` when it resumes. ``model`` is the network itself, never
    its data-parallel wrapper; ``distributed`` says whether this process is the one that
    writes and evaluates (rank 0)."""

    model: nn.Module
    loss: TrainLoss
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    steps_per_epoch: int
    epoch: int = 0  # the epoch being trained, from 0
    history: list[dict] = field(default_factory=list)
    recovery: str = ""  # added to a training error: where the last good state is kept
    scaler: torch.amp.GradScaler = field(default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False))
    distributed: Distributed = SINGLE


class EpochMeter:
    """Running sums of one epoch: per-sample means of the loss terms and the accuracy on the
    loss's targets."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.correct, self.seen = 0, 0

    def add(self, loss: float, parts: dict[str, float], hits: torch.Tensor) -> None:
        b = hits.shape[0]
        for k, v in {"loss": loss, **parts}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * b
        self.correct += hits.sum().item()
        self.seen += b

    def reduce(self, ctx: Distributed) -> None:
        """Sum the epoch's counts over the ranks of a data-parallel run (in place), so every
        rank's record describes the whole global batch; nothing changes in one process."""
        if not ctx.active:
            return
        total = all_reduce_sums(ctx, {**{f"sum/{k}": v for k, v in self.sums.items()},
                                      "correct": self.correct, "seen": self.seen})
        self.sums = {k: total[f"sum/{k}"] for k in self.sums}
        self.correct, self.seen = total["correct"], total["seen"]

    def means(self) -> dict[str, float]:
        return {**{f"train_{k}": v / max(self.seen, 1) for k, v in self.sums.items()},
                "train_acc": self.correct / max(self.seen, 1)}


class Callback:
    """Hooks of :func:`lnpt.train.loop.fit`; each does nothing unless overridden."""

    def on_fit_start(self, state: FitState) -> None:
        """Before the first epoch (after the optimiser exists): e.g. load a state to resume."""

    def on_epoch_start(self, state: FitState) -> None:
        """Before the epoch ``state.epoch`` draws its first batch."""

    def on_batch_end(self, state: FitState, meter: EpochMeter) -> None:
        """After each optimiser step."""

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        """With the epoch's record (already in ``state.history``); may add to it."""


class Evaluate(Callback):
    """Adds ``evaluate(model)``'s metrics to the record every ``cfg.eval_every`` epochs and
    after the last. In a data-parallel run rank 0 evaluates and every rank gets its metrics."""

    def __init__(self, evaluate: Callable[[nn.Module], dict]) -> None:
        self.evaluate = evaluate

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        epoch = record["epoch"]
        if epoch % state.cfg.eval_every == 0 or epoch == state.cfg.epochs:
            record.update(run_on_main(state.distributed, lambda: self.evaluate(state.model)))


class OnEpochEnd(Callback):
    """Calls ``fn(record)`` after each epoch (e.g. to keep the best checkpoint)."""

    def __init__(self, fn: Callable[[dict], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        self.fn(record)


def progress_mode(progress: bool | str, stream: TextIO) -> str:
    """"bar", "lines" or "off" for a ``progress`` setting: True or "auto" gives progress bars
    when ``stream`` is a terminal and one line per epoch otherwise (a log file or a CI pipe
    would receive every bar refresh); False or "off" gives nothing."""
    if progress is True or progress == "auto":
        return "bar" if stream.isatty() else "lines"
    if progress is False or progress == "off":
        return "off"
    if progress in ("bar", "lines"):
        return str(progress)
    raise ValueError(f"unknown progress setting {progress!r}; known: auto, bar, lines, off")


class Progress(Callback):
    """Progress output on ``stream`` (stderr by default), see :func:`progress_mode`. A bar lives
    for one epoch; in both "bar" and "lines" modes each finished epoch leaves one line with the
    same numbers. ``label`` names the phase (e.g. "dense " before pruning)."""

    def __init__(self, progress: bool | str = "auto", label: str = "", stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = progress_mode(progress, self.stream)
        self.label = label
        self._bar: tqdm | None = None

    def on_epoch_start(self, state: FitState) -> None:
        if self.mode == "bar":
            self._bar = tqdm(total=state.steps_per_epoch, desc=self._epoch(state.epoch + 1, state),
                             leave=False, file=self.stream)

    def on_batch_end(self, state: FitState, meter: EpochMeter) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{meter.sums['loss'] / meter.seen:.3f}",
                                  acc=f"{meter.correct / meter.seen:.3f}", refresh=False)
            self._bar.update(1)

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.mode != "off":
            print(epoch_line(record, self._epoch(record["epoch"], state)), file=self.stream, flush=True)

    def _epoch(self, epoch: int, state: FitState) -> str:
        return f"{self.label}epoch {epoch}/{state.cfg.epochs}"


def epoch_line(record: dict, prefix: str) -> str:
    """``prefix: train_loss 0.4123, train_acc 0.8512, test_acc 0.8400, 3.2 s``."""
    values = [f"{k} {record[k]:.4f}" for k in LINE_KEYS if isinstance(record.get(k), (int, float))]
    return f"{prefix}: {', '.join(values)}, {record.get('epoch_seconds', 0.0):.1f} s"
