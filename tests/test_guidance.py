"""Guidance sources: composed once from the settings, never changing what the trainer sees."""
import pytest
import torch

from lnpt.config import TrainConfig
from lnpt.models import create_model, feature_dim
from lnpt.teachers import (
    Prefetched,
    Teacher,
    TeacherCache,
    TeacherSource,
    check_teacher,
    teacher_guidance,
)
from lnpt.train import FitOptions, LossContext, create_loss, fit


class Counting(Teacher):
    """The digits teacher, counting the samples it is asked about."""

    def __init__(self, teacher):
        self.teacher, self.info, self.identity, self.samples = teacher, teacher.info, teacher.identity, 0

    def guide(self, x):
        self.samples += x.shape[0]
        return self.teacher.guide(x)


def _train(digits, guidance, epochs=2):
    torch.manual_seed(0)
    model = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=1)
    cfg = TrainConfig(loss="lnpt", epochs=epochs, lr=0.05)
    loss = create_loss(cfg, LossContext(feature_dim(model), guidance_info(guidance).feature_dim))
    fit(model, loss, digits.train, cfg, guidance=guidance, options=FitOptions(batch_size=64, seed=3))
    return model.state_dict()


def guidance_info(source):
    while not isinstance(source, TeacherSource):
        source = source.source
    return source.teacher.info


def test_the_cache_applies_only_to_unaugmented_inputs_and_prefetch_wraps_last(digits, digits_teacher):
    view = digits.train.unlabeled()
    cached = teacher_guidance(digits_teacher, view, augment=False, prefetch="off")
    assert isinstance(cached, TeacherCache) and cached.per_sample
    assert isinstance(teacher_guidance(digits_teacher, view, augment=True, prefetch="off"), TeacherSource)
    assert isinstance(teacher_guidance(digits_teacher, view, augment=False, cache=False, prefetch="off"),
                      TeacherSource)
    both = teacher_guidance(digits_teacher, view, augment=False, prefetch="on")
    assert isinstance(both, Prefetched) and isinstance(both.source, TeacherCache) and both.per_sample


def test_stored_outputs_prefill_the_cache_and_train_identically(digits, digits_teacher, tmp_path):
    view = digits.train.unlabeled()
    plain = _train(digits, teacher_guidance(digits_teacher, view, augment=False, prefetch="off"))
    first = Counting(digits_teacher)
    stored = _train(digits, teacher_guidance(first, view, augment=False, store=tmp_path, prefetch="on"))
    assert first.samples == len(view)  # one pass to fill the store; training asked nothing more
    again = Counting(digits_teacher)
    restored = _train(digits, teacher_guidance(again, view, augment=False, store=tmp_path, prefetch="off"))
    assert again.samples == 0  # served from the store
    for k in plain:
        assert torch.equal(plain[k], stored[k]) and torch.equal(plain[k], restored[k]), k


def test_a_teacher_lacking_protocol_members_is_named(digits_teacher):
    class Bare:
        info = digits_teacher.info

        def guide(self, x):
            return digits_teacher.guide(x)

    with pytest.raises(TypeError, match="Bare is not a Teacher: it lacks identity, prefers_prefetch, model"):
        check_teacher(Bare())
    assert not isinstance(Bare(), Teacher) and isinstance(digits_teacher, Teacher)
    assert check_teacher(Counting(digits_teacher)).prefers_prefetch is False
