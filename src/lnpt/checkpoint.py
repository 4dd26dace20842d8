"""Self-describing checkpoints that load without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` of a dict holding only tensors and JSON-like values, read
back with ``torch.load(weights_only=True)``: a file from an untrusted source cannot run code.
It carries what is needed to rebuild the network (architecture name, width, input shape,
classes), the dataset's normalisation, metrics and the library version. Writes are atomic.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from . import __version__
from .atomic import atomic_path
from .data.info import DatasetInfo
from .errors import CheckpointError, ConfigError, PruningError
from .models import FACTORY_ATTR, create_model, is_user_reference
from .surgery.masks import get_masks, prepare_for_masks
from .surgery.rebuild import rebuild

FORMAT = "lnpt-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model_name: str
    width: float
    dataset: DatasetInfo
    state_dict: dict[str, torch.Tensor]
    masked: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)  # a user model's factory arguments

    @property
    def runs_code(self) -> bool:
        """Whether rebuilding runs code the checkpoint names (a user model's factory): a file
        from elsewhere could name any function, so :meth:`build` needs ``allow_code``."""
        return is_user_reference(self.model_name)

    def build(self, allow_code: bool = False) -> nn.Module:
        """Rebuild the network (masks and removed channels included) and load its weights.
        A user model is rebuilt by calling its recorded factory, so only with ``allow_code``
        (the CLI's ``--trust-model-code``, or the run that named that factory itself)."""
        if self.runs_code and not allow_code:
            raise CheckpointError(
                f"this checkpoint's model is rebuilt by running {self.model_name!r}; lnpt runs code that a "
                "checkpoint names only when asked: pass --trust-model-code (a run's teacher: --teacher-trust-code) if you trust this file "
                "(library: build(allow_code=True))")
        try:
            model = create_model(self.model_name, self.dataset.input_shape, self.dataset.num_classes,
                                 self.width, model_args=self.model_args)
        except (KeyError, ValueError, ConfigError) as exc:  # unknown name, bad width, factory gone
            raise CheckpointError(f"checkpoint describes a model lnpt cannot build: {exc}") from None
        if self.extra.get("structured"):
            # Channel-pruned: replay the recorded cuts so the shapes fit (no pickled modules).
            try:
                rebuild(model, self.extra, self.dataset.input_shape)
            except PruningError as exc:
                raise CheckpointError(f"cannot rebuild the channel-pruned {self.model_name}: {exc}") from None
        try:
            prepare_for_masks(model, self.masked)
            model.load_state_dict(self.state_dict)
        except (RuntimeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint weights do not fit {self.model_name} (width {self.width}): "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        _refresh_masked_weights(model)
        return model


def _refresh_masked_weights(model: nn.Module) -> None:
    """Recompute ``weight = weight_orig * weight_mask`` now rather than at the next forward.

    torch's pruning hook sets the plain ``weight`` attribute only when a forward runs, so right
    after ``load_state_dict`` it still holds the fresh initialisation; code that reads weights
    before any forward (sparsity reports, weight distances, magnitude scores) would see those.
    """
    with torch.no_grad():  # a leaf tensor: the loaded model stays deep-copyable (export, sweeps)
        for module in model.modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    hook(module, ())


def save_checkpoint(path: str | Path, model: nn.Module, model_name: str, width: float,
                    dataset: DatasetInfo, metrics: dict | None = None, extra: dict | None = None) -> None:

    factory = getattr(model, FACTORY_ATTR, None)  # a user model records how to rebuild it
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lnpt_version": __version__,
        "model": {"name": model_name, "width": float(width)} if factory is None else
                 {"name": factory["reference"], "width": float(width), "args": factory["args"]},
        "dataset": dataset.to_dict(),
        "masked": sorted(get_masks(model)),
        "metrics": metrics or {}, "extra": extra or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message starts with advice to retry with weights_only=False; never pass that on.
        culprit = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln), None)
        if culprit is None:
            raise CheckpointError(f"{path} is corrupted or not a checkpoint (not a readable "
                                  "torch file)") from None
        raise CheckpointError(
            f"{path} is not a safe lnpt checkpoint: it names code to run while loading "
            f"({culprit}). Refusing to load it; nothing in it was executed."
        ) from None
    except Exception as exc:  # noqa: BLE001  fuzzing shows struct.error, IndexError, KeyError,
        # AssertionError, UnicodeDecodeError, … from a damaged file: all mean "unreadable".
        raise CheckpointError(f"{path} is corrupted or not a checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lnpt checkpoint (no '{FORMAT}' header); "
                              "train one with `lnpt teacher train`")
    version = payload.get("format_version", 0)
    if not _is_int(version):
        raise CheckpointError(f"{path} has a damaged header: format_version is {version!r}, not a number")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer lnpt (format {version}); upgrade lnpt")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} has no valid 'state_dict' (a dict of parameter name -> tensor)")
    problem = header_problem(payload)
    if problem:
        raise CheckpointError(f"{path} has a damaged header: {problem}; re-save it with lnpt, or use another file")
    try:
        return Checkpoint(
            model_name=str(payload["model"]["name"]), width=float(payload["model"]["width"]),
            dataset=DatasetInfo.from_dict(payload["dataset"]), state_dict=payload["state_dict"],
            masked=list(payload.get("masked", [])), metrics=dict(payload.get("metrics", {})),
            extra=dict(payload.get("extra", {})), model_args=dict(payload["model"].get("args", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an incomplete lnpt header (missing {exc})") from None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ints(v: object, n: int | None = None, least: int = 0) -> bool:
    return (isinstance(v, (list, tuple)) and (n is None or len(v) == n)
            and all(_is_int(i) and i >= least for i in v))


def header_problem(payload: dict) -> str | None:
    """What is wrong with a checkpoint header's fields (types and possible values), or None.

    ``torch.load(weights_only=True)`` guarantees plain data, not sensible data: a hand-edited or
    foreign file could say ``num_classes: -3`` or ``input_shape: [1, 0, 28]`` and fail deep
    inside model construction. Every field is checked here, so loading ends in one line.
    """
    model = payload.get("model")
    if not isinstance(model, dict):
        return "'model' is missing or not a table"
    if not isinstance(model.get("name"), str) or not model["name"]:
        return f"model name is {model.get('name')!r}, not a non-empty string"
    width = model.get("width")
    if not _is_number(width) or not math.isfinite(width) or width <= 0:
        return f"model width is {width!r}, not a positive number"
    if not isinstance(model.get("args", {}), dict):
        return "model args are not a table"
    problem = _dataset_problem(payload.get("dataset"))
    if problem:
        return problem
    masked = payload.get("masked", [])
    if not isinstance(masked, list) or not all(isinstance(m, str) for m in masked):
        return "'masked' is not a list of parameter names"
    metrics = payload.get("metrics", {})
    if not isinstance(metrics, dict):
        return "'metrics' is not a table"
    for k, v in metrics.items():
        if not (v is None or _is_number(v)):
            return f"metric {k!r} is {v!r}, not a number"
    extra = payload.get("extra", {})
    if not isinstance(extra, dict):
        return "'extra' is not a table"
    return _structured_problem(extra["structured"]) if extra.get("structured") else None


def _dataset_problem(d: object) -> str | None:
    if not isinstance(d, dict):
        return "'dataset' is missing or not a table"
    if not isinstance(d.get("name"), str):
        return f"dataset name is {d.get('name')!r}, not a string"
    shape = d.get("input_shape")
    if not _ints(shape, 3, least=1):
        return f"input_shape is {shape!r}, not three positive integers (channels, height, width)"
    n = d.get("num_classes")
    if not _is_int(n) or n < 1:
        return f"num_classes is {n!r}, not a positive integer"
    for key in ("mean", "std"):
        v = d.get(key)
        if not (isinstance(v, list) and len(v) in (1, shape[0])
                and all(_is_number(x) and math.isfinite(x) for x in v)):
            return f"dataset {key} is {str(v)[:80]}, not {shape[0]} finite number(s), one per channel"
    if any(x <= 0 for x in d["std"]):
        return f"dataset std {d['std']!r} has a value <= 0"
    if not isinstance(d.get("hflip", False), bool):
        return f"hflip is {d.get('hflip')!r}, not true or false"
    if not _is_int(d.get("crop_padding", 0)) or d.get("crop_padding", 0) < 0:
        return f"crop_padding is {d.get('crop_padding')!r}, not an integer >= 0"
    classes = d.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return f"classes is {str(classes)[:80]}, not a list of class names"
    return None


def _structured_problem(info: object) -> str | None:
    """The channel-pruning record (see :mod:`lnpt.surgery.rebuild`): history and channels."""
    if not isinstance(info, dict):
        return "the structured-pruning record is not a table"
    if not _is_int(info.get("format_version", 0)):
        return f"the structured-pruning format_version is {info.get('format_version')!r}, not a number"
    history = info.get("history", [])
    if not isinstance(history, list):
        return "the channel-pruning history is not a list"
    for i, step in enumerate(history):
        if not (isinstance(step, (list, tuple)) and len(step) == 3 and isinstance(step[0], str)
                and isinstance(step[1], bool) and _ints(step[2])):
            return f"channel-pruning history step {i} is {str(step)[:80]}, not [layer, is_output, [indices]]"
    channels = info.get("channels", {})
    if not isinstance(channels, dict) or not all(isinstance(k, str) and _ints(v, 2) for k, v in channels.items()):
        return "the structured-pruning channel counts are not a table of layer -> [in, out]"
    return None
