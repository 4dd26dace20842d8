"""``lnpt teacher train|eval``: the supervised teacher ("in the cloud")."""
from __future__ import annotations

import argparse
import json

from ..config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    replace_flat,
)
from ..device import resolve_device
from ..distributed import process_group
from ..data import load_data
from ..recipes.compute import Where, run_placement
from ..recipes.teacher_training import train_teacher
from ..recipes.wild import load_eval_folder, teacher_accuracy
from ..teachers import LocalTeacher, TeacherOptions, load_teacher_source, shipped_teacher_path
from .options import add_section_args
from .output import add_output_flags, progress_setting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="train, evaluate or serve a teacher")
    tsub = p.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)

    tr = tsub.add_parser("train", help="train a supervised teacher (best.pt / last.pt / metrics.jsonl)")
    add_section_args(tr, ModelConfig)
    add_section_args(tr, DataConfig)
    add_section_args(tr, TrainConfig, skip={"loss", "early_schedule"})
    add_section_args(tr, ComputeConfig, skip={"teacher_device"})
    tr.add_argument("--seed", type=int, default=0, help="seed of init and data order (default: 0)")
    tr.add_argument("--out", required=True, help="output folder for checkpoints and the metrics log")
    tr.add_argument("--resume", action="store_true", help="continue a killed run from its last epoch")
    add_output_flags(tr)
    tr.set_defaults(func=_train)

    ev = tsub.add_parser("eval", help="test accuracy of a teacher of any format (default: the shipped one)",
                         description="Top-1 accuracy of a teacher (an lnpt checkpoint, TorchScript or ONNX file, "
                                     "or a model factory with --teacher-weights) on its dataset's test split, or "
                                     "on --eval, a labeled folder <class>/<images> named by the teacher's classes.")
    ev.add_argument("checkpoint", nargs="?", default=None, help="teacher file or factory (default: shipped teacher)")
    ev.add_argument("--dataset", default="fashion-mnist", help="dataset of the shipped teacher (default: fashion-mnist)")
    ev.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    ev.add_argument("--trust-model-code", action="store_true",
                    help="rebuild a user model by running the factory its checkpoint names (only for files you trust)")
    ev.add_argument("--eval", default=None, help="labeled folder <class>/<images> to measure on instead of the test split")
    add_teacher_options(ev)
    add_section_args(ev, ComputeConfig, only={"device"})
    ev.set_defaults(func=_eval)

    import importlib

    try:
        serve = importlib.import_module(f"{__package__}.serve")
    except ModuleNotFoundError as exc:  # the server command is written separately
        if exc.name != f"{__package__}.serve":
            raise
    else:
        serve.register(tsub)


def _train(args: argparse.Namespace) -> int:

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "teacher_command", "out", "resume", "no_progress", "quiet", "seed")}
    cfg = replace_flat(RunConfig(train=TrainConfig(loss="supervised")), given)
    with process_group(resolve_device(cfg.compute.device)) as ctx:  # one rank of torchrun, or alone
        result = train_teacher(cfg.model, cfg.data, cfg.train, args.out, seed=args.seed, resume=args.resume,
                               progress=progress_setting(args), where=Where(run_placement(cfg.compute, ctx), ctx))
    if ctx.is_main:
        print(json.dumps(result, indent=2))
    return 0


def add_teacher_options(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~lnpt.teachers.TeacherOptions` (what some teacher formats read)."""
    add_section_args(p, TeacherConfig, only={"teacher_weights", "teacher_sidecar", "teacher_features"},
                     title="teacher file options")


def teacher_options(args: argparse.Namespace) -> TeacherOptions:
    return TeacherOptions(sidecar=getattr(args, "teacher_sidecar", None),
                          weights=getattr(args, "teacher_weights", None),
                          features=getattr(args, "teacher_features", None),
                          trust_code=getattr(args, "trust_model_code", False))


def _eval(args: argparse.Namespace) -> int:

    path = str(args.checkpoint or shipped_teacher_path(args.dataset))
    teacher = load_teacher_source(path, teacher_options(args))
    if isinstance(teacher, LocalTeacher):
        teacher.to(resolve_device(getattr(args, "device", "auto")))
    info = teacher.info
    test = load_eval_folder(args.eval, info.dataset) if args.eval else load_data(info.dataset.name, args.data_dir).test
    out = {"checkpoint": path, "model": info.model, "width": info.width, "dataset": info.dataset.name,
           "test_acc": teacher_accuracy(teacher, test)}
    if args.eval:
        out.update({"eval": args.eval, "eval_images": len(test)})
    print(json.dumps(out, indent=2))
    return 0
