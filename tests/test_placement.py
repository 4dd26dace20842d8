"""Every loss, the teacher cache and a full training step run where the student is placed.
Each test runs on the CPU and, marked ``gpu``, on CUDA when there is one: the CPU run is the
twin that keeps the device path exercised on machines without a GPU."""
from __future__ import annotations

import pytest
import torch

from lnpt.config import TrainConfig
from lnpt.device import device_of, placement
from lnpt.distributed import epoch_generator
from lnpt.models import create_model, feature_dim
from lnpt.teachers import LocalTeacher, teacher_guidance
from lnpt.teachers.base import Guidance
from lnpt.teachers.guidance import TeacherCache, TeacherSource
from lnpt.train import FitOptions, LossContext, create_loss, fit
from lnpt.train.losses import LOSSES, Batch

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_computes_and_backpropagates_on_the_device(name, device):
    at = torch.device(device)
    torch.manual_seed(0)
    loss = create_loss(TrainConfig(loss=name), LossContext(6, 4)).to(at)
    logits = torch.randn(5, 3, device=at, requires_grad=True)
    features = torch.randn(5, 6, device=at, requires_grad=True)
    guidance = Guidance(torch.randn(5, 3, device=at), torch.randn(5, 4, device=at))
    value, parts = loss(logits, features, Batch(torch.zeros(5, 1, device=at), torch.randint(0, 3, (5,), device=at),
                                                guidance))
    value.backward()
    assert value.device.type == at.type and torch.isfinite(value)
    assert logits.grad is not None and all(isinstance(v, float) for v in parts.values())


@pytest.mark.parametrize("device", DEVICES)
def test_the_teacher_cache_keeps_outputs_where_the_teacher_answers(device, digits, digits_teacher_path):
    teacher = LocalTeacher.from_checkpoint(str(digits_teacher_path)).to(torch.device(device))
    view = digits.train.unlabeled()
    cache = TeacherCache(TeacherSource(teacher), len(view))
    index, x = next(view.batches(32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    first = cache.guidance_for(index, x)
    again = cache.guidance_for(index, x)
    assert first.logits.device.type == device and cache.teacher_calls == 1
    assert torch.equal(first.features, again.features)
    direct = LocalTeacher.from_checkpoint(str(digits_teacher_path)).guide(x)
    torch.testing.assert_close(first.logits.cpu(), direct.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_trains_the_student_on_its_device(device, precision, digits, digits_teacher_path):
    where = placement(device, precision)
    teacher = LocalTeacher.from_checkpoint(str(digits_teacher_path)).to(where.device)
    torch.manual_seed(0)
    student = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=0)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    cfg = TrainConfig(loss="lnpt", epochs=1, lr=0.05)
    loss = create_loss(cfg, LossContext(feature_dim(student), teacher.info.feature_dim))

    result = fit(student, loss, digits.train, cfg, guidance=teacher_guidance(teacher, digits.train.unlabeled(),
                                                                            augment=False, prefetch="off"),
                 options=FitOptions(batch_size=64, placement=where))
    assert device_of(student).type == device and torch.isfinite(torch.tensor(result.final["train_loss"]))
    assert any(not torch.equal(before[k], v.cpu()) for k, v in student.state_dict().items())


def test_the_default_placement_trains_exactly_the_plain_loop(digits, digits_teacher):
    """On the CPU in fp32 the placement, autocast, scaler and shard machinery add nothing: fit
    gives bit-identical weights to the textbook loop over the same batches."""
    cfg = TrainConfig(loss="pseudo", epochs=1, lr=0.05, momentum=0.9, weight_decay=0.0, schedule="constant",
                      warmup_epochs=0.0, clip_grad_norm=None)
    ours = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=0)
    fit(ours, create_loss(cfg, LossContext(feature_dim(ours), None)), digits.train, cfg,
        guidance=teacher_guidance(digits_teacher, digits.train.unlabeled(), augment=False, cache=False,
                                  prefetch="off"),
        options=FitOptions(batch_size=64, seed=3))
    plain = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=0)
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9, weight_decay=0.0)
    plain.train()
    for _, x in digits.train.unlabeled().batches(64, shuffle=True, generator=epoch_generator(3, 0)):
        loss = torch.nn.functional.cross_entropy(plain(x), digits_teacher.guide(x).pseudo_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in ours.state_dict().items())
