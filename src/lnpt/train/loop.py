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
from ..device import Placement, cpu_state
from ..distributed import SINGLE, Distributed, average_gradients, epoch_generator, share_weight, wrap
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
    """How batches are drawn, where these epochs sit in the learning-rate schedule, and where
    and by how many processes the student trains.

    ``schedule_span=(offset, total)`` places the ``cfg.epochs`` epochs at ``offset`` within one
    schedule of ``total`` epochs (training in phases that share a schedule, e.g. before and
    after pruning); None: ``(0, cfg.epochs)``. ``placement``: the student's device, precision
    and memory layout (the CPU in fp32 by default). ``distributed``: this process's place in a
    data-parallel run; each rank trains on its share of every global batch of ``batch_size``
    (:mod:`lnpt.distributed`), with BatchNorm statistics over the global batch when
    ``sync_batchnorm`` (CUDA only).
    """

    batch_size: int = 128
    augment: bool = False
    seed: int = 0
    schedule_span: tuple[int, int] | None = None
    placement: Placement = Placement()
    distributed: Distributed = SINGLE
    sync_batchnorm: bool = False


def fit(model: nn.Module, loss: TrainLoss, train_set: LabeledSet, cfg: TrainConfig, *,
        guidance: GuidanceSource | None = None, callbacks: Sequence[Callback] = (),
        options: FitOptions | None = None) -> FitResult:
    """Train ``model`` (in place) with ``loss`` for ``cfg.epochs`` epochs.

    A label-free loss (``loss.needs_labels`` false) is given ``train_set.unlabeled()`` only;
    a loss that needs a teacher reads each batch's outputs from ``guidance``. ``callbacks`` run
    in order at the start, around each batch and after each epoch (see
    :mod:`lnpt.train.callbacks`; :class:`Checkpoint` makes the run resumable). They see the
    model itself, never its data-parallel wrapper.
    """
    opts = options or FitOptions()
    offset, span_epochs = opts.schedule_span or (0, cfg.epochs)
    if not (0 <= offset and offset + cfg.epochs <= span_epochs):
        raise TrainingError(f"schedule span {opts.schedule_span} does not hold {cfg.epochs} epochs from epoch {offset}")
    guidance = _guidance_for(loss, guidance, opts.augment)
    data = train_set if loss.needs_labels else train_set.unlabeled()
    opts.placement.module(model)
    loss.to(opts.placement.device)
    params = [p for p in list(model.parameters()) + list(loss.parameters()) if p.requires_grad]
    steps = math.ceil(len(data) / opts.batch_size)
    state = FitState(model, loss, make_optimizer(params, cfg), cfg, steps, scaler=opts.placement.scaler(),
                     distributed=opts.distributed)
    rate = partial(lr_at, total=steps * span_epochs, cfg=cfg, warmup_steps=round(cfg.warmup_epochs * steps))
    stepper = _Stepper(state, wrap(model, opts.distributed, opts.sync_batchnorm), params, opts, len(data))
    for cb in callbacks:
        cb.on_fit_start(state)
    t0 = time.perf_counter()
    model.train()
    shard = {"shard": opts.distributed} if opts.distributed.active else {}
    for epoch in range(state.epoch, cfg.epochs):
        state.epoch = epoch
        batches = data.batches(opts.batch_size, shuffle=True, augmented=opts.augment,
                               generator=epoch_generator(opts.seed, epoch), **shard)
        paired = guidance.along(batches) if guidance is not None else ((b, None) for b in batches)
        for cb in callbacks:
            cb.on_epoch_start(state)
        record = _train_epoch(state, paired, stepper, rate, (offset + epoch) * steps, callbacks)
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


class _Stepper:
    """One optimisation step on a batch: placed on the student's device, the forward pass in
    the run's precision, the (scaled) backward, gradient averaging and clipping, the update.

    ``net`` is the model or its data-parallel wrapper. The loss's own parameters (an adapter)
    live outside the wrapper, so their gradients are averaged over the ranks here. In one fp32
    process on the CPU this is exactly the plain loop: the scaler is disabled (its calls pass
    through), autocast is a null context and no tensor is moved.
    """

    def __init__(self, state: FitState, net: nn.Module, params: list[nn.Parameter], opts: FitOptions,
                 samples: int) -> None:
        self.state, self.net, self.params, self.place = state, net, params, opts.placement
        self.ctx, self.batch_size, self.samples = opts.distributed, opts.batch_size, samples
        self.outside = [p for p in state.loss.parameters() if p.requires_grad]

    def __call__(self, item: tuple, guidance: Guidance | None, step: int, index: int) -> tuple:
        """Train on ``item`` (the ``index``-th batch of its epoch); returns the loss value,
        its parts, the batch and the logits."""
        state, place = self.state, self.place
        loss, optimizer, scaler = state.loss, state.optimizer, state.scaler
        x = place.to_device(item[1])
        y = place.to_device(item[2]) if loss.needs_labels else None
        if guidance is not None and guidance.logits.device != place.device:
            guidance = Guidance(place.to_device(guidance.logits), place.to_device(guidance.features))
        batch = Batch(x=x, y=y, guidance=guidance)
        with place.autocast():
            logits, features = forward_with_features(self.net, x)
            value, parts = loss(logits, features, batch)
        if not torch.isfinite(value):
            raise TrainingError(f"non-finite training loss ({value.item()}) at epoch {state.epoch + 1}, "
                                f"step {step}; lower the learning rate (--lr) and start the run again"
                                + state.recovery)
        weight = share_weight(min(self.batch_size, self.samples - index * self.batch_size), self.ctx)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(value if weight == 1.0 else value * weight).backward()
        if self.ctx.active:
            average_gradients(self.ctx, self.outside)
        if state.cfg.clip_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, state.cfg.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        return value, parts, batch, logits, weight


def _train_epoch(state: FitState, paired: Iterable[tuple[tuple, Guidance | None]], stepper: _Stepper,
                 rate: Callable[[int], float], step: int, callbacks: Sequence[Callback]) -> dict:
    """One pass over ``paired`` batches from global ``step``; returns the epoch's record
    (its sums over every rank's share)."""
    loss, optimizer, meter = state.loss, state.optimizer, EpochMeter()
    t0 = time.perf_counter()
    for index, (item, guidance) in enumerate(paired):
        for group in optimizer.param_groups:
            group["lr"] = rate(step)
        value, parts, batch, logits, weight = stepper(item, guidance, step, index)
        step += 1
        if weight > 0:  # a rank's stand-in sample (weight 0) is not counted
            meter.add(value.item(), parts, logits.argmax(1) == loss.targets(batch))
        for cb in callbacks:
            cb.on_batch_end(state, meter)
    meter.reduce(state.distributed)
    return {"epoch": state.epoch + 1, "lr": rate(step), "epoch_seconds": time.perf_counter() - t0,
            **meter.means()}


class Checkpoint(Callback):
    """Makes a run in ``run_dir`` resumable: every epoch appends its record to ``metrics.jsonl``
    and writes the training state atomically. With ``resume``, training continues from that
    state, refusing one written under a different ``fingerprint`` (another configuration);
    without it, an old metrics log is cleared. In a data-parallel run only rank 0 writes; every
    rank reads the state to resume. Tensors are saved on the CPU, so a state written on a GPU
    resumes anywhere."""

    def __init__(self, run_dir: str | Path, fingerprint: str = "", resume: bool = False) -> None:
        self.run, self.fingerprint, self.resume = Path(run_dir), fingerprint, resume

    def on_fit_start(self, state: FitState) -> None:
        main = state.distributed.is_main
        if main:
            self.run.mkdir(parents=True, exist_ok=True)
        if self.resume and (self.run / STATE_FILE).is_file():
            _load_state(self.run, state, self.fingerprint)
        elif not self.resume and main:
            (self.run / LOG_FILE).unlink(missing_ok=True)
        state.recovery = self._restart_where()

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        if not state.distributed.is_main:
            return
        with open(self.run / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        _save_state(self.run, record["epoch"], state, self.fingerprint)
        state.recovery = self._restart_where()

    def _restart_where(self) -> str:
        """Where a run stopped by a non-finite loss can start again: a resumed run keeps its
        settings, so one that saved epochs needs a new folder; one that saved none is given up
        by the pipeline, which leaves its folder free."""
        if (self.run / STATE_FILE).is_file():
            return (f" with a new --out ({self.run} keeps the epochs trained so far under the old setting; "
                    "--resume keeps a run's settings)")
        return f" ({self.run} saved no epoch: there is nothing to resume)"


def _save_state(run: Path, epoch: int, state: FitState, fingerprint: str) -> None:
    saved = {"epoch": epoch, "model": cpu_state(state.model.state_dict()), "loss": cpu_state(state.loss.state_dict()),
             "optimizer": cpu_state(state.optimizer.state_dict()), "history": json.dumps(state.history),
             "fingerprint": fingerprint}
    if state.scaler.is_enabled():  # fp16: the loss scale reached so far, so a resume continues it
        saved["scaler"] = state.scaler.state_dict()
    with atomic_path(run / STATE_FILE) as tmp:
        torch.save(saved, tmp)


def _load_state(run: Path, state: FitState, fingerprint: str) -> None:
    """Continue from ``run``'s saved state: the model, loss, optimiser (and loss scale),
    epoch and history in ``state``."""
    saved = torch.load(run / STATE_FILE, map_location="cpu", weights_only=True)
    if saved.get("fingerprint", "") != fingerprint:
        raise TrainingError(
            f"cannot resume {run}: its state was written by a different configuration. "
            "Resume with the same settings, or start a fresh run directory")
    state.model.load_state_dict(saved["model"])
    state.loss.load_state_dict(saved["loss"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if saved.get("scaler") and state.scaler.is_enabled():
        state.scaler.load_state_dict(saved["scaler"])
    state.history = json.loads(saved["history"])
    state.epoch = int(saved["epoch"])
    if state.distributed.is_main:
        # The log is rewritten from the state so a crash between log and state cannot duplicate lines.
        with atomic_path(run / LOG_FILE) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in state.history))
