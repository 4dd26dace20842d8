"""A run on your own images: unlabeled training images streamed from disk, an optional
labeled ``--eval`` folder, and the metrics that need no labels.

With ``--unlabeled`` the teacher decides how images are read: its input size, channels and
normalisation (its :class:`~lnpt.data.info.DatasetInfo`) size and normalise every image, and
its class names label the ``--eval`` folder. ``--val-fraction`` of the images, drawn with
``--split-seed``, are held out: the student's top-1 agreement with the teacher and its
learning gap are measured on them, so a run without any labeled data still reports how far
the student got. Nothing on this path reads a label: sub-folder names of ``--unlabeled`` are
never looked at.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import RunConfig
from ..data import DataSplits, LabeledSet, load_data
from ..data.info import DatasetInfo
from ..data.streamed import (
    StreamedImages,
    StreamSettings,
    decode_image,
    open_unlabeled,
    scan_sources,
)
from ..errors import ConfigError
from ..teachers import Teacher, TeacherOptions, load_teacher
from ..teachers.store import all_outputs
from ..train import EvalSettings, Evaluator

#: The summary's word for a run that measured no accuracy.
NOT_MEASURED = "not measured (no --eval)"


@dataclass
class WildData:
    """What a run on your own images trains, scores and measures on (the shape of
    :class:`~lnpt.data.DataSplits` the pipeline reads: ``train``, ``val``, ``test``, ``info``)."""

    train: StreamedImages
    held_out: StreamedImages
    test: LabeledSet | None
    info: DatasetInfo

    @property
    def val(self) -> None:
        return None  # no labeled validation split: settings are chosen on the held-out metrics

    @property
    def bad_images(self) -> int:
        return len(self.train.bad_images)


def load_run_teacher(cfg: RunConfig) -> Teacher:
    """The run's teacher, with the options its format reads (weights, sidecar, ONNX features)."""
    t = cfg.teacher
    options = TeacherOptions(sidecar=t.teacher_sidecar, weights=t.teacher_weights, features=t.teacher_features,
                             trust_code=t.teacher_trust_code)
    if options.given() and (t.teacher == "shipped" or t.teacher.startswith(("http://", "https://"))):
        flags = ", ".join("--teacher-" + name for name in sorted(options.given()))
        raise ConfigError(f"{flags} describe a teacher file; --teacher {t.teacher} takes none: drop them")
    return load_teacher(t.teacher, cfg.data.dataset, token=t.teacher_token, timeout=t.teacher_timeout,
                        retry_budget=t.teacher_retry_budget, options=options)


def load_run_data(cfg: RunConfig, teacher: Teacher | None) -> DataSplits | WildData:
    """The dataset's splits, or with ``--unlabeled`` your own images read as the teacher's."""
    d = cfg.data
    if not d.unlabeled:
        return load_data(d.dataset, d.data_dir, d.val_fraction, d.split_seed, d.train_subset, d.test_subset)
    if teacher is None:
        raise ConfigError("--unlabeled images are sized and normalised as the teacher's inputs: this run "
                          "needs a teacher (--teacher)")
    return load_wild_data(cfg, teacher.info.dataset)


def check_label_free(cfg: RunConfig) -> None:
    """Refuse what needs labels the images do not have."""
    if cfg.train.loss == "supervised":
        raise ConfigError("--unlabeled images have no labels: pick a label-free --loss (lnpt, kd, ...), "
                          "not supervised")
    if cfg.prune.label_source == "true":
        raise ConfigError("--unlabeled images have no labels: use --label-source teacher")


def load_wild_data(cfg: RunConfig, info: DatasetInfo) -> WildData:
    """The run's images read as ``info`` (the teacher's) says, split into training images and
    a held-out slice, plus the ``--eval`` folder when given."""
    check_label_free(cfg)
    d = cfg.data
    images = open_unlabeled(d.unlabeled, info, StreamSettings(d.loader_workers, d.on_bad_image))
    count = round(d.val_fraction * len(images))
    train, held = images.holdout(count, seed=d.split_seed)
    test = load_eval_folder(d.eval, info) if d.eval else None
    return WildData(train, held, test, info)


def class_folder_name(name: str) -> str:
    """The folder name of a class: its name with path separators as ``_`` (``T-shirt/top`` ->
    ``T-shirt_top``), since a folder cannot hold them."""
    return name.replace("/", "_").replace("\\", "_")


def _teacher_classes(info: DatasetInfo) -> list[str]:
    """The folder names the teacher's classes are read from (its indices when it names none)."""
    if info.classes:
        return [class_folder_name(c) for c in info.classes]
    return [str(i) for i in range(info.num_classes)]


def load_eval_folder(path: str | Path, info: DatasetInfo) -> LabeledSet:
    """A labeled folder ``<class>/<images>`` (any depth below each class) as a labeled set:
    each class folder is mapped to the teacher's class of that name, and its images are read
    as the teacher's inputs."""
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"--eval {root} is not a folder; give a folder with one sub-folder per class")
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    names = _teacher_classes(info)
    if not folders:
        raise ConfigError(f"--eval {root} has no class sub-folders; give one per class, named as the "
                          f"teacher's classes: {', '.join(names)}")
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise ConfigError(f"--eval {root}: {', '.join(unknown)} {'is not a class' if len(unknown) == 1 else 'are not classes'}"
                          f" of the teacher; its classes are: {', '.join(names)}")
    items = [(p, names.index(c)) for c, folder in folders.items() for p in scan_sources([folder])[0]]
    channels, size = info.input_shape[0], (info.input_shape[1], info.input_shape[2])
    try:
        pixels = np.stack([decode_image(p, channels, size) for p, _ in items])
    except Exception as exc:  # noqa: BLE001  Pillow raises many types
        raise ConfigError(f"--eval {root} holds an unreadable image ({type(exc).__name__}: {exc}); "
                          "remove it") from None
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return LabeledSet(images, torch.tensor([y for _, y in items], dtype=torch.int64), info)


class WildEvaluator:
    """Per-epoch metrics of a run on your own images: the student's top-1 agreement with the
    teacher on the held-out slice always; with ``--eval``, also accuracy (and agreement) on
    that folder; the learning gap and weight distance as for any run."""

    def __init__(self, data: WildData, teacher: Teacher, init_weights: dict[str, torch.Tensor],
                 tau: float, store: str | None = None, batch_size: int = 500) -> None:
        self.held, self.batch_size = data.held_out, batch_size
        self.inner = Evaluator(data.test, data.held_out, teacher, init_weights,
                               EvalSettings(batch_size=batch_size, tau=tau, store=store))
        self.labels = all_outputs(teacher, data.held_out, store).pseudo_labels if len(self.held) else None

    def __call__(self, model: nn.Module) -> dict[str, float]:
        out = self.inner(model)
        if len(self.held):  # --val-fraction 0 holds nothing out
            # The inner evaluator's agreement covers only the gap's sample (its first 2,000 images,
            # kept decoded in memory); this pass streams the whole slice, which may be far larger.
            out["heldout_agreement"] = self._agreement(model)
        return out

    def _agreement(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        same, seen = 0, 0
        with torch.no_grad():
            for ids, x in self.held.batches(self.batch_size):
                same += int((model(x).argmax(1) == self.labels[ids]).sum())
                seen += len(ids)
        model.train(was_training)
        return same / max(seen, 1)


def teacher_accuracy(teacher: Teacher, test: LabeledSet, batch_size: int = 500) -> float:
    """Top-1 accuracy of any teacher (a file of any format, or a server) on labeled images."""
    correct, seen = 0, 0
    for _, x, y in test.batches(batch_size):
        correct += int((teacher.guide(x).logits.argmax(1) == y).sum())
        seen += len(y)
    return correct / max(seen, 1)
