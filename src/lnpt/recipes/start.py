"""The student a run starts from: a fresh initialisation, or a trained dense network.

Pruning at initialisation (the paper) starts from ``create_model``. ``--init-from CKPT`` starts
from the weights of a dense lnpt checkpoint instead (e.g. the ``final.pt`` of
``lnpt run --sparsity 0``), which gives the train -> prune -> fine-tune workflow of
Torch-Pruning users: the criterion scores a trained network and ``--epochs`` / ``--lr``
become the fine-tuning recipe. Everything is checked before a run writes anything.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..config import RunConfig
from ..data.info import DatasetInfo
from ..errors import CheckpointError, ConfigError
from ..models import create_model, is_user_reference, named_by_user
from ..models.user import resolve_factory
from ..run_folder import RunFolder
from ..surgery.masks import get_masks, remove_masks

SEED_FIELD = "{seed}"


def start_path(cfg: RunConfig) -> str | None:
    """``--init-from`` with ``{seed}`` replaced by the run's seed (one sweep line starts every
    seed from its own dense run), or None for a fresh initialisation."""
    path = cfg.model.init_from
    return None if not path else path.replace(SEED_FIELD, str(cfg.seed))


def load_start(cfg: RunConfig, info: DatasetInfo) -> Checkpoint | None:
    """The checkpoint ``--init-from`` names (a run directory stands for its ``final.pt``),
    checked against the run's student and data."""
    path = start_path(cfg)
    if path is None:
        return None
    if Path(path).is_dir():  # a run directory: its trained student
        path = str(RunFolder(path).final)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise ConfigError(f"--init-from: {exc}") from None
    m = cfg.model
    same_model = ckpt.model_name == m.model or named_by_user(ckpt.model_name, m.model)
    if not same_model or ckpt.width != m.width:
        raise ConfigError(f"--init-from {path} holds a {ckpt.model_name} of width {ckpt.width:g}, but this run "
                          f"builds a {m.model} of width {m.width:g}; pass --model {ckpt.model_name} "
                          f"--width {ckpt.width:g}")
    if (ckpt.dataset.name, tuple(ckpt.dataset.input_shape), ckpt.dataset.num_classes) != (
            info.name, tuple(info.input_shape), info.num_classes):
        raise ConfigError(f"--init-from {path} was trained on {ckpt.dataset.name}, this run uses {info.name}; "
                          f"pass --dataset {ckpt.dataset.name} or a checkpoint trained on {info.name}")
    pruned = "channels removed" if ckpt.extra.get("structured") else None
    if pruned is None and ckpt.masked:
        # `lnpt run --sparsity 0` keeps all-ones masks: dense, fold them away.
        model = ckpt.build(allow_code=named_by_user(ckpt.model_name, cfg.model.model))
        if any(bool((mask == 0).any()) for mask in get_masks(model).values()):
            pruned = "masked weights"
        else:
            ckpt = dataclasses.replace(ckpt, masked=[], state_dict=remove_masks(model).state_dict())
    if pruned:
        raise ConfigError(f"--init-from {path} is already pruned ({pruned}); start from a dense checkpoint, "
                          "e.g. the final.pt of `lnpt run --sparsity 0`")
    return ckpt


def model_args(cfg: RunConfig) -> dict | None:
    """``--model-args`` parsed: the keyword arguments of a user model's factory."""
    text = cfg.model.model_args
    if not text:
        return None
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-args {text!r} is not JSON ({exc.msg}); give an object such as "
                          "'{\"channels\": 32}'") from None
    if not isinstance(args, dict):
        raise ConfigError(f"--model-args {text!r} must be a JSON object of keyword arguments")
    return args


def check_student(cfg: RunConfig) -> None:
    """Refuse a user model whose factory cannot be found or whose --model-args are not JSON,
    before a run writes anything (the model itself is built after the run folder is claimed)."""
    args = model_args(cfg)
    if is_user_reference(cfg.model.model):
        resolve_factory(cfg.model.model)
    elif args:
        raise ConfigError(f"--model-args are for user models (--model package.module:function or "
                          f"file.py:function); zoo model {cfg.model.model!r} takes its size from --width")


def build_student(cfg: RunConfig, info: DatasetInfo, start: Checkpoint | None = None) -> nn.Module:
    """The run's student before pruning: ``start``'s weights if given, else seeded fresh ones."""
    model = create_model(cfg.model.model, info.input_shape, info.num_classes, cfg.model.width, seed=cfg.seed,
                         model_args=model_args(cfg))
    if start is not None:
        model.load_state_dict(start.state_dict)
    return model
