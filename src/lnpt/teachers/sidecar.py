"""The JSON sidecar: what a teacher file cannot carry itself.

A TorchScript or ONNX file, or a bare weights file, holds a network but not the input size,
normalisation and class names it was trained with; without them lnpt would feed it the wrong
inputs and silently get wrong guidance. So they come from a small JSON file beside the model::

    {"input_shape": [3, 32, 32], "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26],
     "classes": ["airplane", "automobile", ...]}

``num_classes`` may stand in for ``classes``; ``name``, ``hflip`` and ``crop_padding`` are
optional. lnpt's own ``manifest.json`` (written by ``lnpt export``) is accepted as well. The
sidecar is looked for at ``<file>.json``, then ``<file without suffix>.json``, then the
``manifest.json`` of the file's folder, unless its path is given.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..data.info import DatasetInfo
from ..errors import CheckpointError

REQUIRED = ("input_shape", "mean", "std")
OPTIONAL = ("classes", "num_classes", "name", "hflip", "crop_padding")
_KEYS = ("input_shape [C, H, W], mean and std (one value per channel), classes (names) or "
         "num_classes")


def candidates(model_path: Path) -> list[Path]:
    """Where the sidecar of ``model_path`` is looked for, in order."""
    return [model_path.with_name(model_path.name + ".json"), model_path.with_suffix(".json"),
            model_path.with_name("manifest.json")]


def find_sidecar(model_path: str | Path, explicit: str | Path | None = None) -> Path:
    """The sidecar's path; a one-line error naming where it was expected when there is none."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise CheckpointError(f"teacher sidecar {explicit} does not exist; write it with keys {_KEYS}")
        return Path(explicit)
    for path in candidates(Path(model_path)):
        if path.is_file() and path != Path(model_path):
            return path
    raise CheckpointError(
        f"{model_path} does not say its input size, normalisation or classes: write "
        f"{candidates(Path(model_path))[0]} with keys {_KEYS} (or pass its path)")


def _positive_ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                           for v in value)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           for v in value)


def _problems(d: dict) -> list[str]:
    """Every inconsistency, so the user fixes the file in one go."""
    out = []
    shape = d["input_shape"]
    if not (_positive_ints(shape) and len(shape) == 3):
        return ["input_shape must be [channels, height, width] in positive integers"]
    for key in ("mean", "std"):
        if not (_numbers(d[key]) and len(d[key]) == shape[0]):
            out.append(f"{key} must hold {shape[0]} number(s), one per channel")
    if _numbers(d["std"]) and any(v <= 0 for v in d["std"]):
        out.append("std values must be > 0")
    classes, count = d.get("classes"), d.get("num_classes")
    if classes is not None and not (isinstance(classes, list) and classes
                                    and all(isinstance(c, str) for c in classes)):
        out.append("classes must be a non-empty list of names")
    elif count is not None and (not isinstance(count, int) or count <= 0):
        out.append("num_classes must be a positive integer")
    elif classes is not None and count is not None and len(classes) != count:
        out.append(f"classes names {len(classes)} classes but num_classes says {count}")
    return out


def parse_sidecar(path: str | Path) -> DatasetInfo:
    """The :class:`DatasetInfo` a sidecar describes; an error naming the file and what is
    missing or inconsistent."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"teacher sidecar {path} is not readable JSON ({exc})") from None
    if isinstance(d, dict) and isinstance(d.get("dataset"), dict):
        d = d["dataset"]  # lnpt's export manifest, or a DatasetInfo dict
    if not isinstance(d, dict):
        raise CheckpointError(f"teacher sidecar {path} must be a JSON object with keys {_KEYS}")
    if d.get("classes") == [] and "num_classes" in d:
        d = {k: v for k, v in d.items() if k != "classes"}  # lnpt writes [] when names are unknown
    missing = [k for k in REQUIRED if k not in d]
    if "classes" not in d and "num_classes" not in d:
        missing.append("classes")
    if missing:
        raise CheckpointError(f"teacher sidecar {path} lacks {', '.join(missing)}; it needs {_KEYS}")
    unknown = sorted(set(d) - set(REQUIRED) - set(OPTIONAL))
    problems = _problems(d) + ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
    if problems:
        raise CheckpointError(f"teacher sidecar {path}: {'; '.join(problems)}")
    classes = tuple(d.get("classes") or ())
    shape = tuple(d["input_shape"])
    return DatasetInfo(
        name=str(d.get("name", path.stem)), input_shape=shape,  # type: ignore[arg-type]
        num_classes=len(classes) if classes else int(d["num_classes"]),
        mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
        hflip=bool(d.get("hflip", False)),
        crop_padding=int(d.get("crop_padding", max(1, round(min(shape[1:]) / 8)))),
        classes=classes)


def file_digest(*paths: str | Path) -> str:
    """sha256 over the contents of ``paths``: part of a teacher's identity for the store."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()
