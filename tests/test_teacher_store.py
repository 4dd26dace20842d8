"""Stored teacher outputs: computed once per content, reused, never trusted when damaged."""
import torch

from lnpt.teachers import Teacher
from lnpt.teachers.store import all_outputs


class Counting(Teacher):
    def __init__(self, teacher):
        self.teacher, self.info, self.identity, self.samples = teacher, teacher.info, teacher.identity, 0

    def guide(self, x):
        self.samples += x.shape[0]
        return self.teacher.guide(x)


def test_outputs_are_computed_once_and_equal_direct_ones(digits, digits_teacher, tmp_path):
    view = digits.test.unlabeled()
    t = Counting(digits_teacher)
    first = all_outputs(t, view, tmp_path)
    assert t.samples == len(view)
    second = all_outputs(t, view, tmp_path)
    assert t.samples == len(view)  # served from the store
    direct = digits_teacher.guide(next(view.batches(len(view)))[1])
    assert torch.allclose(first.logits, direct.logits, atol=1e-5)
    assert torch.equal(first.features, second.features)
    # other images -> another entry
    all_outputs(t, digits.val.unlabeled(), tmp_path)
    assert t.samples == len(view) + len(digits.val)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_damaged_entry_is_recomputed_and_anonymous_teacher_not_stored(digits, digits_teacher, tmp_path):
    view = digits.val.unlabeled()
    t = Counting(digits_teacher)
    all_outputs(t, view, tmp_path)
    entry = next(tmp_path.glob("*.pt"))
    entry.write_bytes(b"garbage")
    out = all_outputs(t, view, tmp_path)
    assert t.samples == 2 * len(view) and out.logits.shape[0] == len(view)
    anonymous = Counting(digits_teacher)
    anonymous.identity = None
    all_outputs(anonymous, view, tmp_path / "other")
    assert not (tmp_path / "other").exists()
