"""One front door for both pruning paths: the same scoring inputs, the same checks, one protocol."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lnpt.config import prune_settings
from lnpt.data import LabeledSet
from lnpt.errors import PruningError, TeacherMismatchError
from lnpt.models import create_model
from lnpt.pruning import WEIGHTS, Pruner, ScoringSource, pruner_for
from lnpt.pruning.criteria import CRITERIA
from lnpt.pruning.inputs import draw_scoring_batches
from lnpt.pruning.structured import CHANNELS, channel_criterion
from lnpt.pruning.student import prune_student, teacher_needed
from lnpt.teachers import LocalTeacher

FAST = {"batches": 2, "score_batch_size": 32}


def _student(digits, classes: int = 10):
    return create_model("lenet5", digits.info.input_shape, classes, seed=0)


class _TrapLabels(LabeledSet):
    @property
    def labels(self) -> torch.Tensor:
        raise AssertionError("the label-free path read true labels")


def test_both_pruners_implement_the_protocol_and_the_front_door_picks_by_structured():
    assert isinstance(WEIGHTS, Pruner) and isinstance(CHANNELS, Pruner)
    assert pruner_for(prune_settings()) is WEIGHTS
    assert pruner_for(prune_settings(structured=True)) is CHANNELS
    for structured in (False, True):
        assert teacher_needed(prune_settings(criterion="lnpt", structured=structured))
        assert not teacher_needed(prune_settings(criterion="magnitude", structured=structured))
        assert teacher_needed(prune_settings(criterion="snip", structured=structured))
        assert not teacher_needed(prune_settings(criterion="snip", label_source="true", structured=structured))
    assert teacher_needed(prune_settings(criterion="lnpt-fm", structured=True))


def test_scoring_inputs_are_the_same_for_weights_and_channels(digits, digits_teacher):
    """One builder: the same batches, guidance and pseudo-labels whichever path asks."""
    source = ScoringSource(digits.train.unlabeled(), digits_teacher, None, seed=3)
    weights, _ = source.build(CRITERIA.get("snip"), prune_settings(criterion="snip", **FAST))
    channels, _ = source.build(channel_criterion("snip"), prune_settings(criterion="snip", structured=True, **FAST))
    assert len(weights.batches) == 2
    assert all(torch.equal(a, b) for a, b in zip(weights.batches, channels.batches))
    assert torch.equal(weights.labels(1), channels.labels(1))
    assert torch.equal(weights.labels(0), digits_teacher.guide(weights.batches[0]).pseudo_labels)
    # A criterion that needs nothing gets neither guidance nor labels.
    plain, _ = source.build(CRITERIA.get("magnitude"), prune_settings(criterion="magnitude", **FAST))
    assert plain.guidance is None and plain.labels is None


def test_true_labels_come_from_the_labeled_set_by_sample_index(digits):
    cfg = prune_settings(criterion="snip", label_source="true", **FAST)
    inputs, _ = ScoringSource(digits.train.unlabeled(), None, digits.train, seed=0).build(CRITERIA.get("snip"), cfg)
    indices, batches = draw_scoring_batches(digits.train.unlabeled(), cfg, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(batches, inputs.batches))
    for i, index in enumerate(indices):
        assert torch.equal(inputs.labels(i), digits.train.labels[index])


@pytest.mark.parametrize("structured", [False, True])
def test_channel_and_weight_paths_refuse_the_same_mistakes(structured, digits, digits_teacher):
    cfg = prune_settings(criterion="lnpt", structured=structured, **FAST)
    view = digits.train.unlabeled()
    with pytest.raises(PruningError, match="the student has 5 outputs but dataset digits has 10 classes"):
        prune_student(_student(digits, 5), cfg, view, digits_teacher)
    with pytest.raises(PruningError, match="criterion lnpt needs a teacher; pass one"):
        prune_student(_student(digits), cfg, view, None)
    snip = prune_settings(criterion="snip", structured=structured, **FAST)
    with pytest.raises(PruningError, match=r"criterion snip needs a teacher \(its pseudo-labels\)"):
        prune_student(_student(digits), snip, view, None)
    true = prune_settings(criterion="snip", structured=structured, label_source="true", **FAST)
    with pytest.raises(PruningError, match="label source 'true' needs the labeled set for snip"):
        prune_student(_student(digits), true, view, None)
    with pytest.raises(PruningError, match="differ in length"):
        prune_student(_student(digits), true, view, None, labeled=digits.val)
    other = dataclasses.replace(digits_teacher.info, dataset=dataclasses.replace(digits.info, num_classes=5))
    with pytest.raises(TeacherMismatchError, match="10 classes|5 classes"):
        prune_student(_student(digits), cfg, view, LocalTeacher(digits_teacher.model, other))


def test_label_free_channel_scoring_never_reads_true_labels(digits, digits_teacher):
    trap = _TrapLabels(digits.train._images, digits.train._labels, digits.info)
    cfg = prune_settings(criterion="snip", structured=True, channel_ratio=0.5, **FAST)
    outcome = prune_student(_student(digits), cfg, trap.unlabeled(), digits_teacher, labeled=trap)
    assert outcome.report["label_source"] == "teacher" and outcome.extra
    with pytest.raises(AssertionError, match="read true labels"):
        prune_student(_student(digits), prune_settings(criterion="snip", structured=True, channel_ratio=0.5,
                                                       label_source="true", **FAST), trap.unlabeled(),
                      digits_teacher, labeled=trap)
