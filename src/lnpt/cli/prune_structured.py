"""``lnpt prune --structured``: remove whole channels of a fresh student; no training.

Writes the same three files as unstructured ``lnpt prune`` (OUT/student.pt, OUT/report.json,
OUT/report.md); the checkpoint records the channel-removal history so that it rebuilds from a
weights-only load. Example: ``lnpt prune --structured --channel-ratio 0.5 --model resnet20
--dataset fashion-mnist --criterion lnpt --out runs/prune-c50``.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import RunConfig, to_dict
from ..errors import ConfigError
from .prune import OUTPUTS, write_folder_atomically


def prune_structured(cfg: RunConfig, out: Path, overwrite: bool) -> int:
    from ..checkpoint import save_checkpoint
    from ..data import load_data
    from ..models import create_model
    from ..pruning.structured import (prune_channels, structured_extra, structured_needs_teacher,
                                      validate_structured_config)
    from ..teachers import load_teacher

    validate_structured_config(cfg.prune)  # cheap checks before loading anything
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder {out} already exists and is not empty; pass --overwrite or pick another --out")
    d = cfg.data
    data = load_data(d.dataset, d.data_dir, d.val_fraction, d.split_seed, d.train_subset)
    model = create_model(cfg.model.model, data.info.input_shape, data.info.num_classes, cfg.model.width,
                         seed=cfg.seed)
    teacher = None
    if structured_needs_teacher(cfg.prune):
        t = cfg.teacher
        teacher = load_teacher(t.teacher, d.dataset, token=t.teacher_token, timeout=t.teacher_timeout,
                               retry_budget=t.teacher_retry_budget)
    labeled = data.train if cfg.prune.label_source == "true" else None
    report = prune_channels(model, cfg.prune, data.train.unlabeled(), teacher, seed=cfg.seed, labeled=labeled)
    summary = report.to_dict()
    summary["config"] = {"prune": to_dict(cfg.prune), "model": to_dict(cfg.model), "data": to_dict(cfg.data),
                         "teacher": cfg.teacher.teacher if teacher is not None else None, "seed": cfg.seed}

    def write(folder: Path) -> None:
        save_checkpoint(folder / "student.pt", model, cfg.model.model, cfg.model.width, data.info,
                        metrics={"sparsity": report.sparsity},
                        extra={"prune": summary, **structured_extra(model, report.history)})
        (folder / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        (folder / "report.md").write_text(report.to_markdown())

    write_folder_atomically(out, write)
    print(report.to_markdown())
    print(f"wrote {', '.join(str(out / name) for name in OUTPUTS)}")
    return 0
