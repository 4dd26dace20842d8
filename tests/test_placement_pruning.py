"""Scoring and channel removal where the student is placed: every criterion scores on the
student's device (its batches, guidance and labels moved there once) and selects the masks
the CPU selects; channels are removed from a model on its device. The CPU run of each test is
the twin that keeps the device path exercised without a GPU; the CUDA run is marked ``gpu``."""
from __future__ import annotations

import pytest
import torch

from lnpt.config import prune_settings
from lnpt.device import device_of
from lnpt.models import create_model
from lnpt.pruning import CRITERIA, prune_at_init
from lnpt.pruning.structured import prune_channels
from lnpt.teachers import LocalTeacher

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]


def _masks(device: str, criterion: str, digits, teacher_path) -> dict[str, torch.Tensor]:
    at = torch.device(device)
    teacher = LocalTeacher.from_checkpoint(str(teacher_path)).to(at)
    student = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=0).to(at)
    cfg = prune_settings(criterion=criterion, sparsity=0.9, batches=1, score_batch_size=64, rounds=2)
    report = prune_at_init(student, cfg, digits.train.unlabeled(), teacher, seed=0)
    assert device_of(student) == at and all(m.device == at for m in report.masks.values())
    return {k: v.cpu() for k, v in report.masks.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_every_criterion_scores_on_the_students_device(device, criterion, digits, digits_teacher_path):
    masks = _masks(device, criterion, digits, digits_teacher_path)
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert kept == pytest.approx(0.1, abs=0.01)
    if device != "cpu":  # the same masks as on the CPU, up to the odd tie broken by float rounding
        reference = _masks("cpu", criterion, digits, digits_teacher_path)
        agree = sum(int((masks[k] == reference[k]).sum()) for k in masks) / sum(m.numel() for m in masks.values())
        assert agree > 0.99


@pytest.mark.parametrize("device", DEVICES)
def test_channels_are_removed_from_a_model_on_its_device(device, digits, digits_teacher_path):
    at = torch.device(device)
    teacher = LocalTeacher.from_checkpoint(str(digits_teacher_path)).to(at)
    student = create_model("resnet20", digits.info.input_shape, digits.info.num_classes, seed=0).to(at)
    dense = sum(p.numel() for p in student.parameters())
    cfg = prune_settings(criterion="lnpt-fm", structured=True, channel_ratio=0.5, batches=1, score_batch_size=32)
    prune_channels(student, cfg, digits.train.unlabeled(), teacher, seed=0)
    assert device_of(student) == at and sum(p.numel() for p in student.parameters()) < dense
    x = digits.test.inputs(torch.arange(4)).to(at)
    assert student(x).shape == (4, digits.info.num_classes)
