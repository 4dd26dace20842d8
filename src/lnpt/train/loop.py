"""The training loop for (masked) students and teachers.

Short on purpose: behaviour comes in through the loss (what is optimised, which data it may
see), the guidance source (the teacher's outputs for each batch, see
:mod:`lnpt.teachers.guidance`) and callbacks (evaluation, the metrics log and resumable
checkpoint, progress output). Shuffling and augmentation draw from a generator seeded by
``(seed, epoch)``, and the learning rate is a pure function of the step, so a run resumed from
an epoch checkpoint continues bit-identically to an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path
from ..config import TrainConfig
from ..data.views import LabeledSet
from ..errors import TrainingError
from ..models import forward_with_features
from ..run_folder import RunFolder
from ..teachers.base import Guidance
from ..teachers.guidance import GuidanceSource
from .callbacks import Callback, EpochMeter, FitState
from .losses import Batch, TrainLoss
from .schedule import lr_at, make_optimizer

STATE_FILE = RunFolder.TRAIN_STATE
LOG_FILE = RunFolder.METRICS

__all__ = ["LOG_FILE", "STATE_FILE", "Checkpoint", "FitOptions", "FitResult", "fit", "lr_at", "make_optimizer"]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


@dataclass(frozen=True)
class FitOptions:
    """How batches are drawn and where these epochs sit in the learning-rate schedule.

    ``schedule_span=(offset, total)`` places the ``cfg.epochs`` epochs at ``offset`` within one
    schedule of ``total`` epochs (training in phases that share a schedule, e.g. before and
    after pruning); None: ``(0, cfg.epochs)``.
    """

    batch_size: int = 128
    augment: bool = False
    seed: int = 0
    schedule_span: tuple[int, int] | None = None


def fit(model: nn.Module, loss: TrainLoss, train_set: LabeledSet, cfg: TrainConfig, *,
        guidance: GuidanceSource | None = None, callbacks: Sequence[Callback] = (),
        options: FitOptions | None = None) -> FitResult:
    """Train ``model`` (in place) with ``loss`` for ``cfg.epochs`` epochs.

    A label-free loss (``loss.needs_labels`` false) is given ``train_set.unlabeled()`` only;
    a loss that needs a teacher reads each batch's outputs from ``guidance``. ``callbacks`` run
    in order at the start, around each batch and after each epoch (see
    :mod:`lnpt.train.callbacks`; :class:`Checkpoint` makes the run resumable).
    """
    opts = options or FitOptions()
    offset, span_epochs = opts.schedule_span or (0, cfg.epochs)
    if not (0 <= offset and offset + cfg.epochs <= span_epochs):
        raise TrainingError(f"schedule span {opts.schedule_span} does not hold {cfg.epochs} epochs from epoch {offset}")
    guidance = _guidance_for(loss, guidance, opts.augment)
    data = train_set if loss.needs_labels else train_set.unlabeled()
    params = [p for p in list(model.parameters()) + list(loss.parameters()) if p.requires_grad]
    steps = math.ceil(len(data) / opts.batch_size)
    state = FitState(model, loss, make_optimizer(params, cfg), cfg, steps)
    rate = partial(lr_at, total=steps * span_epochs, cfg=cfg, warmup_steps=round(cfg.warmup_epochs * steps))
    for cb in callbacks:
        cb.on_fit_start(state)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(state.epoch, cfg.epochs):
        state.epoch = epoch
        g = torch.Generator().manual_seed(opts.seed * 100_003 + epoch)
        batches = data.batches(opts.batch_size, shuffle=True, augmented=opts.augment, generator=g)
        paired = guidance.along(batches) if guidance is not None else ((b, None) for b in batches)
        for cb in callbacks:
            cb.on_epoch_start(state)
        record = _train_epoch(state, paired, params, rate, (offset + epoch) * steps, callbacks)
        state.history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(state, record)
    return FitResult(state.history, time.perf_counter() - t0)


def _guidance_for(loss: TrainLoss, guidance: GuidanceSource | None, augment: bool) -> GuidanceSource | None:
    """The source the loss reads (None when it needs no teacher), refused when it cannot serve."""
    if not loss.needs_teacher:
        return None
    if guidance is None:
        raise TrainingError(f"loss {type(loss).__name__} needs a teacher's guidance")
    if augment and guidance.per_sample:
        raise TrainingError("a per-sample teacher cache cannot serve augmented inputs (they change every "
                            "epoch); build the guidance with augment=True")
    return guidance


def _train_epoch(state: FitState, paired: Iterable[tuple[tuple, Guidance | None]], params: list[nn.Parameter],
                 rate: Callable[[int], float], step: int, callbacks: Sequence[Callback]) -> dict:
    """One pass over ``paired`` batches from global ``step``; returns the epoch's record."""
    loss, optimizer, meter = state.loss, state.optimizer, EpochMeter()
    t0 = time.perf_counter()
    for item, guidance in paired:
        x = item[1]
        batch = Batch(x=x, y=item[2] if loss.needs_labels else None, guidance=guidance)
        for group in optimizer.param_groups:
            group["lr"] = rate(step)
        logits, features = forward_with_features(state.model, x)
        value, parts = loss(logits, features, batch)
        if not torch.isfinite(value):
            raise TrainingError(f"non-finite training loss ({value.item()}) at epoch {state.epoch + 1}, "
                                f"step {step}; lower the learning rate (--lr) and start the run again"
                                + state.recovery)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if state.cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, state.cfg.clip_grad_norm)
        optimizer.step()
        step += 1
        meter.add(value.item(), parts, logits.argmax(1) == loss.targets(batch))
        for cb in callbacks:
            cb.on_batch_end(state, meter)
    return {"epoch": state.epoch + 1, "lr": rate(step), "epoch_seconds": time.perf_counter() - t0,
            **meter.means()}


class Checkpoint(Callback):
    """Makes a run in ``run_dir`` resumable: every epoch appends its record to ``metrics.jsonl``
    and writes the training state atomically. With ``resume``, training continues from that
    state, refusing one written under a different ``fingerprint`` (another configuration);
    without it, an old metrics log is cleared."""

    def __init__(self, run_dir: str | Path, fingerprint: str = "", resume: bool = False) -> None:
        self.run, self.fingerprint, self.resume = Path(run_dir), fingerprint, resume

    def on_fit_start(self, state: FitState) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        if self.resume and (self.run / STATE_FILE).is_file():
            state.epoch, state.history = _load_state(self.run, state.model, state.loss, state.optimizer,
                                                     self.fingerprint)
        elif not self.resume:
            (self.run / LOG_FILE).unlink(missing_ok=True)
        state.recovery = self._restart_where()

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        with open(self.run / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        _save_state(self.run, record["epoch"], state.model, state.loss, state.optimizer, state.history,
                    self.fingerprint)
        state.recovery = self._restart_where()

    def _restart_where(self) -> str:
        """Where a run stopped by a non-finite loss can start again: a resumed run keeps its
        settings, so one that saved epochs needs a new folder; one that saved none is given up
        by the pipeline, which leaves its folder free."""
        if (self.run / STATE_FILE).is_file():
            return (f" with a new --out ({self.run} keeps the epochs trained so far under the old setting; "
                    "--resume keeps a run's settings)")
        return f" ({self.run} saved no epoch: there is nothing to resume)"


def _save_state(run: Path, epoch: int, model: nn.Module, loss: TrainLoss,
                optimizer: torch.optim.Optimizer, history: list[dict], fingerprint: str) -> None:
    state = {"epoch": epoch, "model": model.state_dict(), "loss": loss.state_dict(),
             "optimizer": optimizer.state_dict(), "history": json.dumps(history),
             "fingerprint": fingerprint}
    with atomic_path(run / STATE_FILE) as tmp:
        torch.save(state, tmp)


def _load_state(run: Path, model: nn.Module, loss: TrainLoss, optimizer: torch.optim.Optimizer,
                fingerprint: str) -> tuple[int, list[dict]]:
    state = torch.load(run / STATE_FILE, map_location="cpu", weights_only=True)
    if state.get("fingerprint", "") != fingerprint:
        raise TrainingError(
            f"cannot resume {run}: its state was written by a different configuration. "
            "Resume with the same settings, or start a fresh run directory")
    model.load_state_dict(state["model"])
    loss.load_state_dict(state["loss"])
    optimizer.load_state_dict(state["optimizer"])
    history = json.loads(state["history"])
    # The log is rewritten from the state so a crash between log and state cannot duplicate lines.
    with atomic_path(run / LOG_FILE) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    return int(state["epoch"]), history
