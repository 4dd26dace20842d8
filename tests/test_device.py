"""Devices and precision (lnpt.device): device strings resolve or fail in one line, autocast and
the gradient scaler follow the precision, masks stay exactly zero under every precision, and
batches move to the student's device. CUDA-only checks are marked ``gpu`` and skipped here."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lnpt.device import (Placement, autocast, cpu_state, device_of, grad_scaler, placement, resolve_device,
                         to_device)
from lnpt.errors import ConfigError
from lnpt.models import create_model
from lnpt.surgery import apply_masks, get_masks

no_cuda = not torch.cuda.is_available()


def test_cpu_and_auto_resolve_to_what_the_machine_has():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected


@pytest.mark.skipif(not no_cuda, reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_fails_in_one_line_naming_the_fix(spec):
    with pytest.raises(ConfigError) as err:
        resolve_device(spec)
    message = str(err.value)
    assert "\n" not in message and f"--device {spec}" in message
    assert "CUDA is not available" in message and "--device cpu" in message


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the refusal without MPS")
def test_mps_without_mps_fails_in_one_line():
    with pytest.raises(ConfigError, match="no usable MPS"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "cuda:x", ""])
def test_unknown_device_names_the_known_ones(spec):
    if spec == "":  # empty means auto, like None
        assert resolve_device(spec) == resolve_device("auto")
        return
    with pytest.raises(ConfigError, match="unknown --device .*known: auto, cpu, cuda, cuda:N, mps"):
        resolve_device(spec)


def test_placement_checks_precision_and_defaults_the_teacher_to_the_student():
    p = placement("cpu", "bf16")
    assert p.device == p.teacher == torch.device("cpu") and p.precision == "bf16"
    assert not p.pinned
    with pytest.raises(ConfigError, match="unknown --precision 'fp8'; known: fp32, bf16, fp16"):
        placement("cpu", "fp8")


def test_fp32_autocast_is_a_no_op_and_bf16_fp16_lower_matmuls():
    layer = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast(torch.device("cpu"), "fp32"):
        assert torch.equal(layer(x), layer(x)) and layer(x).dtype == torch.float32
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with Placement(precision=precision).autocast():
            assert layer(x).dtype == dtype


def test_the_scaler_is_enabled_only_for_fp16():
    cpu = torch.device("cpu")
    assert not grad_scaler(cpu, "fp32").is_enabled()
    assert not grad_scaler(cpu, "bf16").is_enabled()
    assert grad_scaler(cpu, "fp16").is_enabled()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_masked_weights_stay_exactly_zero_when_training_in_any_precision(precision):
    torch.manual_seed(0)
    model = create_model("lenet5", (1, 28, 28), 10)
    masks = {name: (torch.rand_like(w) > 0.7).float() for name, w in model.named_parameters()
             if name.endswith("weight") and w.dim() > 1}
    apply_masks(model, masks)
    where = Placement(precision=precision)
    scaler = where.scaler()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        with where.autocast():
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module, param = name.rsplit(".", 1)
        weight = getattr(modules[module], param)
        assert torch.equal(get_masks(model)[name], mask)
        assert (weight[mask == 0] == 0).all(), f"{name} has non-zero pruned weights under {precision}"
        assert (getattr(modules[module], param + "_orig")[mask == 0] == 0).all()
        assert weight.dtype == torch.float32  # the master weights stay fp32; autocast only casts copies


def test_to_device_on_the_same_device_returns_the_tensor_itself():
    x = torch.randn(2, 3, 4, 4)
    assert to_device(x, torch.device("cpu")) is x
    assert Placement().to_device(x) is x
    nhwc = Placement(channels_last=True).to_device(x)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc, x)


def test_channels_last_module_keeps_its_outputs():
    torch.manual_seed(0)
    model = create_model("resnet20", (3, 32, 32), 10).eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    Placement(channels_last=True).module(model)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    torch.testing.assert_close(model(to_device(x, torch.device("cpu"), True)), before, rtol=1e-5, atol=1e-5)


def test_device_of_and_cpu_state():
    model = nn.Sequential(nn.Linear(2, 2))
    assert device_of(model) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")
    w = torch.ones(2, requires_grad=True) * 2
    state = cpu_state({"a": w, "b": [w, 3], "c": {"d": w}, "e": "x"})
    assert not state["a"].requires_grad and state["b"][1] == 3 and state["e"] == "x"
    assert torch.equal(state["c"]["d"], w.detach())


@pytest.mark.gpu
@pytest.mark.skipif(no_cuda, reason="needs a CUDA GPU")
def test_batches_reach_the_gpu_pinned_and_without_blocking():
    where = placement("cuda", "bf16")
    x = torch.randn(4, 1, 8, 8)
    moved = where.to_device(x)
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), x)
    model = where.module(nn.Linear(8, 2))
    assert device_of(model).type == "cuda"
    with where.autocast():
        assert model(moved).dtype == torch.bfloat16
    assert all(v.device.type == "cpu" for v in cpu_state(model.state_dict()).values())


@pytest.mark.gpu
@pytest.mark.skipif(no_cuda, reason="needs a CUDA GPU")
def test_cuda_index_past_the_last_gpu_is_refused():
    with pytest.raises(ConfigError, match="there are only"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
