"""Masks keep pruned weights exactly zero through training and survive save/load and deepcopy."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lnpt.checkpoint import load_checkpoint, save_checkpoint
from lnpt.config import prune_settings
from lnpt.models import create_model
from lnpt.pruning import get_masks, prepare_for_masks, prune_at_init, remove_masks


def _pruned(digits, criterion: str = "magnitude", model: str = "lenet5"):
    student = create_model(model, digits.info.input_shape, 10, seed=0)
    report = prune_at_init(student, prune_settings(criterion=criterion, sparsity=0.8), digits.train.unlabeled(), None)
    return student, report.masks


def _zero_where_pruned(model, masks) -> None:
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module = modules[name.rpartition(".")[0]]
        assert torch.equal(get_masks(model)[name], mask), name
        assert (module.weight_orig[mask == 0] == 0).all(), name
        assert (module.weight[mask == 0] == 0).all(), name


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2),
], ids=["sgd-momentum-wd", "sgd-nesterov", "adamw"])
def test_pruned_weights_stay_zero_through_training(digits, make_opt):
    model, masks = _pruned(digits)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_opt(model.parameters())
    batches = list(digits.train.batches(32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    for step in range(20):
        _, x, y = batches[step % len(batches)]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    _zero_where_pruned(model, masks)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, start[n])]
    assert any(n.endswith("weight_orig") for n in moved), "training did not change any kept weight"


def test_masks_survive_state_dict_round_trip_and_checkpoint(digits, tmp_path):
    model, masks = _pruned(digits)
    x = next(digits.test.batches(16))[1]
    fresh = prepare_for_masks(create_model("lenet5", digits.info.input_shape, 10, seed=5), sorted(masks))
    fresh.load_state_dict(model.state_dict())
    _zero_where_pruned(fresh, masks)
    assert torch.equal(fresh(x), model(x))

    torch.save(model.state_dict(), tmp_path / "sd.pt")
    fresh2 = prepare_for_masks(create_model("lenet5", digits.info.input_shape, 10, seed=6), sorted(masks))
    fresh2.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    assert torch.equal(fresh2(x), model(x))

    save_checkpoint(tmp_path / "s.pt", model, "lenet5", 1.0, digits.info)
    rebuilt = load_checkpoint(tmp_path / "s.pt").build()
    _zero_where_pruned(rebuilt, masks)
    assert torch.equal(rebuilt(x), model(x))


def test_masks_survive_deepcopy_after_a_training_step(digits):
    """A forward with gradients on leaves a non-leaf cached weight; the copy must still work."""
    model, masks = _pruned(digits)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    _, x, y = next(digits.train.batches(32))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    twin = copy.deepcopy(model)
    _zero_where_pruned(twin, masks)
    opt2 = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        opt2.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        opt2.step()
    _zero_where_pruned(twin, masks)
    _zero_where_pruned(model, masks)  # the original is independent of the copy


def test_remove_masks_keeps_zeros_as_plain_weights(digits):
    model, masks = _pruned(digits)
    x = next(digits.test.batches(8))[1]
    before = model(x)
    remove_masks(model)
    assert get_masks(model) == {}
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert isinstance(params[name], torch.nn.Parameter) and (params[name][mask == 0] == 0).all()
    assert torch.equal(model(x), before)
