"""The training loop for (masked) students and teachers.

Short on purpose: behaviour comes in through the loss (what is optimised, which data it may
see) and the evaluator. Shuffling and augmentation draw from a generator seeded by
``(seed, epoch)``, and the learning rate is a pure function of the step, so a run resumed from
an epoch checkpoint continues bit-identically to an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..config import TrainConfig
from ..data.views import LabeledSet, UnlabeledView
from ..errors import TrainingError
from ..models import forward_with_features
from ..run_folder import RunFolder
from ..teachers.base import Guidance, Teacher
from ..teachers.cache import TeacherCache
from .losses import Batch, TrainLoss

STATE_FILE = RunFolder.TRAIN_STATE
LOG_FILE = RunFolder.METRICS


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: sgd, adam")


def lr_at(step: int, total: int, cfg: TrainConfig, warmup_steps: int = 0) -> float:
    """Learning rate at ``step``: linear warm-up, then constant or cosine decay to zero.
    A pure function of the step, so resumed runs follow the same schedule."""
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(total - warmup_steps, 1)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))


def fit(
    model: nn.Module,
    loss: TrainLoss,
    train_set: LabeledSet,
    cfg: TrainConfig,
    *,
    batch_size: int = 128,
    augment: bool = False,
    seed: int = 0,
    teacher: Teacher | None = None,
    teacher_cache: bool = True,
    teacher_outputs: Guidance | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    fingerprint: str = "",
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    prefetch: bool | None = None,
    schedule_span: tuple[int, int] | None = None,
) -> FitResult:
    """Train ``model`` (in place) with ``loss`` for ``cfg.epochs`` epochs.

    A label-free loss (``loss.needs_labels`` false) is given ``train_set.unlabeled()`` only.
    With ``run_dir``, every epoch appends its metrics to ``metrics.jsonl`` and writes a
    resumable state atomically; ``resume`` continues from it (refusing a state written under a
    different ``fingerprint``, i.e. another configuration). ``teacher_outputs`` (precomputed
    outputs for every training sample, in index order) pre-fill the teacher cache.
    ``prefetch`` overlaps the teacher with the student's step (None: :func:`wants_prefetch`
    with "auto"); it never changes the result. ``schedule_span=(offset, total)`` places these
    epochs at ``offset`` within one learning-rate schedule of ``total`` epochs (training in
    phases that share a schedule, e.g. before and after pruning); default ``(0, cfg.epochs)``.
    """
    offset, span_epochs = schedule_span or (0, cfg.epochs)
    if not (0 <= offset and offset + cfg.epochs <= span_epochs):
        raise TrainingError(f"schedule span {schedule_span} does not hold {cfg.epochs} epochs from epoch {offset}")
    if loss.needs_teacher and teacher is None:
        raise TrainingError(f"loss {type(loss).__name__} needs a teacher")
    data: LabeledSet | UnlabeledView = train_set if loss.needs_labels else train_set.unlabeled()
    guide = None
    if loss.needs_teacher:
        if teacher_cache and not augment:
            cache = TeacherCache(teacher, len(data))  # type: ignore[arg-type]
            if teacher_outputs is not None:
                cache.prefill(teacher_outputs)
            guide = cache.guide
        else:
            guide = lambda index, x: teacher.guide(x)  # type: ignore[union-attr]  # noqa: E731
    if prefetch is None:
        prefetch = wants_prefetch("auto", teacher)
    prefetch = guide is not None and prefetch
    params = [p for p in list(model.parameters()) + list(loss.parameters()) if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total_steps = steps_per_epoch * span_epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    result = FitResult()
    start_epoch = 0
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        if resume and (run_path / STATE_FILE).is_file():
            start_epoch, result.history = _load_state(run_path, model, loss, optimizer, fingerprint)
        elif not resume:
            (run_path / LOG_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        sums: dict[str, float] = {}
        correct, seen = 0, 0
        step = (offset + epoch) * steps_per_epoch
        bar = tqdm(data.batches(batch_size, shuffle=True, augmented=augment, generator=g),
                   total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False)
        epoch_t0 = time.perf_counter()
        for item, guidance in _with_guidance(bar, guide, prefetch):
            index, x = item[0], item[1]
            batch = Batch(x=x, y=item[2] if loss.needs_labels else None, guidance=guidance)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg, warmup)
            logits, features = forward_with_features(model, x)
            value, parts = loss(logits, features, batch)
            if not torch.isfinite(value):
                raise TrainingError(
                    f"non-finite training loss ({value.item()}) at epoch {epoch + 1}, step {step}; "
                    "lower the learning rate (--lr)" + (". The last good epoch's state is kept in "
                    f"{run_path}; fix the setting and use --resume" if run_path else ""))
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            if cfg.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            optimizer.step()
            step += 1
            b = x.shape[0]
            for k, v in {"loss": value.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v * b
            correct += (logits.argmax(1) == loss.targets(batch)).sum().item()
            seen += b
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", acc=f"{correct / seen:.3f}")
        record = {"epoch": epoch + 1, "lr": lr_at(step, total_steps, cfg, warmup),
                  "epoch_seconds": time.perf_counter() - epoch_t0,
                  **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()},
                  "train_acc": correct / max(seen, 1)}
        if evaluate is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            record.update(evaluate(model))
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if run_path is not None:
            with open(run_path / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")
            _save_state(run_path, epoch + 1, model, loss, optimizer, result.history, fingerprint)
    result.seconds = time.perf_counter() - t0
    return result


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
    if setting == "on" or getattr(teacher, "prefers_prefetch", False):
        return True
    return 2 * torch.get_num_threads() <= available_cores()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's share), not the
    machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _with_guidance(items: Iterable[tuple], guide: Callable | None,
                   prefetch: bool) -> Iterator[tuple[tuple, Guidance | None]]:
    """Pair each batch with its teacher guidance; with ``prefetch``, guidance for batch i+1 is
    computed in a worker thread while batch i trains. Batches are drawn in the same order and
    the teacher is deterministic, so results do not depend on it. (Torch releases the GIL
    inside its kernels, so an in-process teacher really runs in parallel.)"""
    if guide is None or not prefetch:
        for item in items:
            yield item, (guide(item[0], item[1]) if guide is not None else None)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lnpt-guidance") as pool:
        it = iter(items)
        nxt = next(it, None)
        pending = pool.submit(guide, nxt[0], nxt[1]) if nxt is not None else None
        while nxt is not None:
            current, future = nxt, pending
            nxt = next(it, None)
            pending = pool.submit(guide, nxt[0], nxt[1]) if nxt is not None else None
            yield current, future.result()  # type: ignore[union-attr]


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
