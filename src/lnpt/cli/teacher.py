"""``lnpt teacher train|eval``: the supervised teacher ("in the cloud")."""
from __future__ import annotations

import argparse
import json

from ..checkpoint import load_checkpoint
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, replace_flat
from ..data import load_data
from ..recipes.teacher_training import train_teacher
from ..teachers import shipped_teacher_path
from ..train.evaluate import accuracy
from .options import add_section_args
from .output import add_output_flags, progress_setting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="train, evaluate or serve a teacher")
    tsub = p.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)

    tr = tsub.add_parser("train", help="train a supervised teacher (best.pt / last.pt / metrics.jsonl)")
    add_section_args(tr, ModelConfig)
    add_section_args(tr, DataConfig)
    add_section_args(tr, TrainConfig, skip={"loss", "early_schedule"})
    tr.add_argument("--seed", type=int, default=0, help="seed of init and data order (default: 0)")
    tr.add_argument("--out", required=True, help="output folder for checkpoints and the metrics log")
    tr.add_argument("--resume", action="store_true", help="continue a killed run from its last epoch")
    add_output_flags(tr)
    tr.set_defaults(func=_train)

    ev = tsub.add_parser("eval", help="test accuracy of a teacher checkpoint (default: the shipped one)")
    ev.add_argument("checkpoint", nargs="?", default=None, help="checkpoint path (default: shipped teacher)")
    ev.add_argument("--dataset", default="fashion-mnist", help="dataset of the shipped teacher (default: fashion-mnist)")
    ev.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    ev.add_argument("--trust-model-code", action="store_true",
                    help="rebuild a user model by running the factory its checkpoint names (only for files you trust)")
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
    result = train_teacher(cfg.model, cfg.data, cfg.train, args.out, seed=args.seed, resume=args.resume,
                           progress=progress_setting(args))
    print(json.dumps(result, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:

    path = args.checkpoint or shipped_teacher_path(args.dataset)
    ckpt = load_checkpoint(path)
    data = load_data(ckpt.dataset.name, args.data_dir)
    acc = accuracy(ckpt.build(allow_code=args.trust_model_code), data.test)["acc"]
    print(json.dumps({"checkpoint": str(path), "model": ckpt.model_name, "width": ckpt.width,
                      "dataset": ckpt.dataset.name, "test_acc": acc}, indent=2))
    return 0
