"""Supervised training of a teacher: the "mature network in the cloud"."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..checkpoint import save_checkpoint
from ..config import DataConfig, ModelConfig, TrainConfig, to_dict
from ..data import load_data
from ..models import create_model
from ..run_folder import RunFolder
from ..train.callbacks import Evaluate, OnEpochEnd, Progress
from ..train.evaluate import accuracy
from ..train.loop import Checkpoint, FitOptions, fit
from ..train.losses import Supervised
from .compute import Where


def train_teacher(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig,
                  out: str | Path, seed: int = 0, resume: bool = False, progress: bool | str = True,
                  where: Where = Where()) -> dict:
    """Train with true labels; write ``last.pt`` every epoch and ``best.pt`` at the best
    validation accuracy (both atomic, self-describing). Returns the final metrics. ``where``:
    the device and precision, and under torchrun this process's rank (rank 0 alone evaluates
    and writes; every rank trains on its share of each batch)."""
    out = Path(out)
    data = load_data(data_cfg.dataset, data_cfg.data_dir, data_cfg.val_fraction, data_cfg.split_seed,
                     data_cfg.train_subset, data_cfg.test_subset)
    torch.manual_seed(seed)
    model = create_model(model_cfg.model, data.info.input_shape, data.info.num_classes, model_cfg.width, seed=seed)
    best = {"val_acc": -1.0}
    t0 = time.perf_counter()
    settings = {"model": to_dict(model_cfg), "data": to_dict(data_cfg), "train": to_dict(train_cfg), "seed": seed}

    def evaluate(m: torch.nn.Module) -> dict:
        return {"val_acc": accuracy(m, data.val)["acc"] if len(data.val) else float("nan"),
                "test_acc": accuracy(m, data.test)["acc"]}

    def on_epoch(record: dict) -> None:
        if not where.distributed.is_main:
            return
        metrics = {k: record[k] for k in ("epoch", "val_acc", "test_acc") if k in record}
        save_checkpoint(RunFolder(out).teacher_last, model, model_cfg.model, model_cfg.width, data.info,
                        metrics, {"settings": settings})
        if record.get("val_acc", -1) > best["val_acc"]:
            best.update(metrics)
            save_checkpoint(RunFolder(out).teacher_best, model, model_cfg.model, model_cfg.width, data.info,
                            metrics, {"settings": settings})

    progress = progress if where.distributed.is_main else False
    callbacks = [Evaluate(evaluate), OnEpochEnd(on_epoch), Checkpoint(out, repr(settings), resume), Progress(progress)]
    result = fit(model, Supervised(), data.train, train_cfg, callbacks=callbacks,
                 options=FitOptions(batch_size=data_cfg.batch_size, augment=data_cfg.augment, seed=seed,
                                    placement=where.placement, distributed=where.distributed))
    return {"best": best, "last": result.final, "seconds": time.perf_counter() - t0}
