"""Evaluation: the only place that reads test labels."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..analysis.metrics import learning_gap, weight_distance
from ..data.views import LabeledSet, UnlabeledView
from ..device import device_of
from ..features import FeatureAdapter
from ..models import find_classifier, forward_with_features
from ..teachers.base import Teacher
from ..teachers.store import all_outputs


@torch.no_grad()
def accuracy(model: nn.Module, data: LabeledSet, batch_size: int = 1000,
             teacher_labels: torch.Tensor | None = None) -> dict[str, float]:
    """Top-1 accuracy, and agreement with the teacher's labels when those are given."""
    was_training = model.training
    model.eval()
    correct, agree, n = 0, 0, 0
    device = device_of(model)
    for index, x, y in data.batches(batch_size):
        pred = model(x.to(device)).argmax(1).to(y.device)
        correct += (pred == y).sum().item()
        if teacher_labels is not None:
            agree += (pred == teacher_labels[index].to(y.device)).sum().item()
        n += len(y)
    model.train(was_training)
    out = {"acc": correct / max(n, 1)}
    if teacher_labels is not None:
        out["teacher_agreement"] = agree / max(n, 1)
    return out


@dataclass(frozen=True)
class EvalSettings:
    """How the per-epoch metrics are taken. ``tau`` is the learning gap's temperature (runs use
    the loss's, so gaps of runs trained alike compare); ``store`` is the teacher-output store,
    so the teacher's pass over the evaluation data is paid once across runs."""

    batch_size: int = 1000
    gap_samples: int = 2000
    tau: float = 4.0
    store: str | None = None


class Evaluator:
    """Per-epoch metrics: test accuracy and teacher agreement on the test images, learning gap and
    teacher agreement on held-out unlabeled data, and weight distance to the initial student.
    Teacher outputs are computed once."""

    def __init__(self, test: LabeledSet | None, gap_data: UnlabeledView | None, teacher: Teacher | None,
                 init_weights: dict[str, torch.Tensor], settings: EvalSettings = EvalSettings(),
                 val: LabeledSet | None = None) -> None:
        batch_size, gap_samples, store = settings.batch_size, settings.gap_samples, settings.store
        self.test, self.teacher, self.init, self.batch_size = test, teacher, init_weights, batch_size
        self.tau = settings.tau
        self.val = val if val is not None and len(val) > 0 else None  # for choosing settings, not reporting
        self._teacher_test_labels = None
        self._gap_inputs: list[torch.Tensor] = []
        self._gap_teacher: list[torch.Tensor] = []
        self._gap_labels: list[torch.Tensor] = []
        if teacher is not None:
            if test is not None:  # None: no labeled test data (your own images without --eval)
                self._teacher_test_labels = all_outputs(teacher, test.unlabeled(), store).pseudo_labels
            if gap_data is not None and len(gap_data) > 0:
                n = min(len(gap_data), gap_samples)
                gap_view = gap_data.head(n)
                outputs = all_outputs(teacher, gap_view, store)
                for index, x in gap_view.batches(batch_size):
                    self._gap_inputs.append(x)
                    self._gap_teacher.append(outputs.features[index])
                    self._gap_labels.append(outputs.pseudo_labels[index])

    def __call__(self, model: nn.Module) -> dict[str, float]:
        acc = accuracy(model, self.test, self.batch_size, self._teacher_test_labels) if self.test is not None else {}
        out = {"test_acc": acc["acc"]} if acc else {}
        if self.val is not None:
            out["val_acc"] = accuracy(model, self.val, self.batch_size)["acc"]
        if "teacher_agreement" in acc:
            out["teacher_agreement"] = acc["teacher_agreement"]
        if self._gap_inputs:
            gap = learning_gap(model, self._gap_inputs, self._gap_teacher, self._adapter(model), self.tau,
                               teacher_labels=self._gap_labels)
            out["heldout_agreement"] = gap.pop("agreement")  # label-free: the teacher's classes
            out.update(gap)
        wd = weight_distance(model, self.init)
        out["weight_distance"] = wd["total"]
        out["weight_distance_rel"] = wd["relative"]
        return out

    def _adapter(self, model: nn.Module) -> FeatureAdapter | None:
        """When feature sizes differ, the gap is measured after the least-squares linear map
        from student to teacher features (the same rule for every training mode, so gaps of
        different runs compare)."""
        ds = find_classifier(model).in_features
        dt = self._gap_teacher[0].shape[1]
        if ds == dt:
            return None
        was_training = model.training
        model.eval()
        with torch.no_grad():
            fs = torch.cat([forward_with_features(model, x.to(device_of(model)))[1].cpu() for x in self._gap_inputs])
        model.train(was_training)
        adapter = FeatureAdapter(ds, dt)
        adapter.fit_least_squares(fs, torch.cat(self._gap_teacher))
        return adapter
