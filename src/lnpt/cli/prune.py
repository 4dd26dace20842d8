"""``lnpt prune``: prune a freshly initialised student with teacher guidance; no training.

Writes OUT/student_init.pt (an lnpt checkpoint of the pruned, untrained student: its initial
weights and masks or, with ``--structured``, its shrunk layers and the channel-removal history
it is rebuilt from), OUT/prune_report.json and OUT/prune_report.md: the names ``lnpt run``
gives the same files (:class:`lnpt.run_folder.RunFolder`). Everything is written into a hidden
sibling folder first and renamed into place, so a failed run never leaves OUT half-written.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..checkpoint import save_checkpoint
from ..config import (
    ChannelPruneConfig,
    ComputeConfig,
    DataConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    ScoreConfig,
    TeacherConfig,
    WeightPruneConfig,
    replace_flat,
    to_dict,
)
from ..errors import ConfigError
from ..pruning.student import prune_student, teacher_needed, validate
from ..recipes.compute import place_teacher, run_placement
from ..recipes.settings import check_given
from ..recipes.start import build_student, load_start
from ..recipes.wild import load_run_data, load_run_teacher
from ..run_folder import RunFolder
from .options import TITLES, add_help_all, add_section_args, overrides

OUTPUTS = (RunFolder.STUDENT_INIT, RunFolder.PRUNE_REPORT, RunFolder.PRUNE_REPORT_MD)
#: The sections ``lnpt prune`` reads, each a group of flags.
PRUNE_SECTIONS: dict[str, type] = {"prune": PruneConfig, "weights": WeightPruneConfig,
                                   "channels": ChannelPruneConfig, "score": ScoreConfig}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune", help="prune a student at initialisation (masked, untrained student + report)",
        description="Score a freshly initialised student with a pruning criterion on unlabeled scoring "
                    "batches (teacher guidance where the criterion needs it), keep the best weights and "
                    f"write OUT/{RunFolder.STUDENT_INIT} (initial weights + masks, an lnpt checkpoint), "
                    f"OUT/{RunFolder.PRUNE_REPORT} and OUT/{RunFolder.PRUNE_REPORT_MD} (per-layer kept fraction, "
                    "sparsity, parameters and MACs before/after, scoring wall time), the names `lnpt run` uses. Example: lnpt prune --teacher teacher.pt --model resnet20 "
                    "--dataset fashion-mnist --criterion lnpt --sparsity 0.95 --out runs/prune-lnpt-95")
    for name, cls in PRUNE_SECTIONS.items():
        add_section_args(p, cls, title=TITLES[name], brief=True)
    add_section_args(p, ModelConfig, title="student settings", brief=True)
    add_section_args(p, DataConfig, only={"dataset", "data_dir", "val_fraction", "split_seed", "train_subset",
                                          "unlabeled", "on_bad_image", "loader_workers"},
                     title="data settings (scoring batches come from the unlabeled training split, or "
                           "from your own images with --unlabeled)", brief=True)
    add_section_args(p, TeacherConfig, skip={"teacher_cache"},
                     title="teacher settings", brief=True)
    add_section_args(p, ComputeConfig, only={"device", "teacher_device"}, title=TITLES["compute"])
    add_help_all(p)
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                   help="seed of the student's initialisation and of the scoring batches (default: 0)")
    p.add_argument("--out", required=True, help="output folder (created; must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it already exists")
    p.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:

    given = overrides(args, *PRUNE_SECTIONS.values(), ModelConfig, DataConfig, TeacherConfig, ComputeConfig)
    cfg = replace_flat(RunConfig(), given)
    check_given(cfg, given)
    validate(cfg.pruning)  # cheap checks before loading anything
    if cfg.prune.prune_after_epochs:
        raise ConfigError("lnpt prune scores an untrained student; pruning after "
                          f"{cfg.prune.prune_after_epochs} epoch(s) of training needs the trainer: "
                          "use `lnpt run --prune-after-epochs N`")
    out = Path(args.out)
    if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder {out} already exists and is not empty; pass --overwrite or pick another --out")

    where = run_placement(cfg.compute)  # a device this machine lacks: one line, nothing written
    d = cfg.data
    teacher = load_run_teacher(cfg) if teacher_needed(cfg.pruning) or d.unlabeled else None
    if teacher is not None:
        place_teacher(teacher, where)
    data = load_run_data(cfg, teacher)
    model = where.module(build_student(cfg, data.info, load_start(cfg, data.info)))
    labeled = data.train if cfg.prune.label_source == "true" else None
    outcome = prune_student(model, cfg.pruning, data.train.unlabeled(), teacher, seed=cfg.seed, labeled=labeled)

    summary = dict(outcome.report)
    mode = "channels" if cfg.prune.structured else "weights"
    summary["config"] = {"prune": to_dict(cfg.prune), mode: to_dict(getattr(cfg, mode)),
                         "score": to_dict(cfg.score), "model": to_dict(cfg.model), "data": to_dict(d),
                         "teacher": cfg.teacher.teacher if teacher is not None else None, "seed": cfg.seed}

    def write(folder: Path) -> None:
        run = RunFolder(folder)
        save_checkpoint(run.student_init, model, cfg.model.model, cfg.model.width, data.info,
                        metrics={"sparsity": outcome.sparsity}, extra={"prune": summary, **outcome.extra})
        run.prune_report.write_text(json.dumps(summary, indent=2) + "\n")
        run.prune_report_md.write_text(outcome.markdown)

    write_folder_atomically(out, write)
    print(outcome.markdown)
    print(f"wrote {', '.join(str(out / name) for name in OUTPUTS)}")
    return 0


def write_folder_atomically(out: Path, writer: Callable[[Path], None]) -> None:
    """Fill a temporary sibling of ``out`` with ``writer`` and rename it to ``out``.

    On any failure the temporary folder is removed and ``out`` is left as it was; an existing
    ``out`` (``--overwrite``) is moved aside and deleted only after the new one is in place.
    """
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        writer(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
