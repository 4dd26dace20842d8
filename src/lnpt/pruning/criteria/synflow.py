"""SynFlow (Tanaka et al. 2020): data-free synaptic saliency, iterative (100 rounds) by default.

R = 1^T (prod_l |W_l|) 1, computed as the sum of the outputs of the network with every weight
and buffer replaced by its absolute value, on an all-ones input, in eval mode; score
|theta| * dR/d|theta|. Computed in float32 (as the reference code) and redone in float64
when R or its gradient overflows (products over many layers of a deep network).

The scored model is left exactly as it was without copying it every round (100 deep copies
were a third of SynFlow's time): its modules run on fresh stand-in tensors (absolute values,
masks multiplied in), which take the place of the model's own parameters and buffers for the
one forward and are swapped back out after it, as ``torch.func.functional_call`` does, minus
its per-call bookkeeping; the train/eval flags are restored too. Nothing of the model is
written, so its weights, BatchNorm state, version counters and graphs stay untouched. A model
with hooks (attached masks are a forward pre-hook that caches the masked weight on the module)
is scored on a private copy instead, so the hooks' side effects stay on the copy as before.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ...device import device_of
from ...surgery.masks import Masks
from ..selection import all_finite
from .base import ScoringInputs, register_criterion, scoring_copy

Slot = tuple[dict, str, torch.Tensor]  # (a module's _parameters or _buffers, key, stand-in)


@register_criterion("synflow", default_rounds=100)
def synflow(model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
    for dtype in (torch.float32, torch.float64):
        scores = _scores(model, masks, inputs.input_shape, dtype)
        if all_finite(scores.values()):
            break
    return scores


def _scores(model: nn.Module, masks: Masks, input_shape: tuple[int, int, int],
            dtype: torch.dtype) -> dict[str, torch.Tensor]:
    modules = list(model.named_modules())  # walked once per round, shared by the steps below
    if _has_hooks(modules):
        return _scores_on_copy(model, masks, input_shape, dtype)
    slots, chosen = _linearised(modules, masks, dtype)
    with _standing_in(model, modules, slots):
        out = model(torch.ones((1, *input_shape), dtype=dtype, device=device_of(model)))
    grads = torch.autograd.grad(out.sum(), list(chosen.values()), allow_unused=True)
    return {name: torch.zeros_like(p) if g is None else torch.mul(p.detach(), g).abs_()
            for (name, p), g in zip(chosen.items(), grads)}


def _has_hooks(modules: list[tuple[str, nn.Module]]) -> bool:
    return any(m._forward_pre_hooks or m._forward_hooks or m._backward_hooks or m._backward_pre_hooks
               for _, m in modules)


def _linearised(modules: list[tuple[str, nn.Module]], masks: Masks,
                dtype: torch.dtype) -> tuple[list[Slot], dict[str, torch.Tensor]]:
    """Stand-ins for every parameter and buffer, holding what ``model.to(dtype)`` with the masks
    multiplied in and every state_dict entry made absolute would hold; the masked weights
    require grad. A tensor shared by several modules (tied weights) gets one stand-in, named
    as ``named_parameters`` names it (first seen), as a copy would keep it shared.
    """
    made: dict[int, torch.Tensor] = {}
    params: dict[str, torch.Tensor] = {}
    slots: list[Slot] = []
    with torch.no_grad():
        for prefix, module in modules:
            for store, is_param in ((module._parameters, True), (module._buffers, False)):
                for key, t in store.items():
                    if t is None:
                        continue
                    name = f"{prefix}.{key}" if prefix else key
                    if id(t) not in made:
                        absolute = is_param or key not in module._non_persistent_buffers_set
                        made[id(t)] = _stand_in(t.detach(), masks.get(name), dtype, absolute)
                        if is_param:
                            params[name] = made[id(t)]
                    slots.append((store, key, made[id(t)]))
    missing = sorted(set(masks) - set(params))
    if missing:
        raise KeyError(f"masks name parameters the model does not have: {', '.join(missing)}")
    return slots, {name: params[name].requires_grad_(True) for name in masks}


def _stand_in(t: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype, absolute: bool) -> torch.Tensor:
    """A fresh tensor (the model's own is never written): ``|t * mask|`` in ``dtype``, in as few
    operations as the case allows (SynFlow builds about a hundred of these every round)."""
    if not t.is_floating_point():
        return t.clone()
    if t.dtype != dtype:
        t = t.to(dtype)  # a copy already
        if mask is not None:
            t.mul_(mask.to(dtype))
        return t.abs_() if absolute else t
    if mask is not None:
        t = t * mask.to(dtype)
        return t.abs_() if absolute else t
    return t.abs() if absolute else t.clone()


@contextmanager
def _standing_in(model: nn.Module, modules: list[tuple[str, nn.Module]], slots: list[Slot]) -> Iterator[None]:
    """``model`` in eval mode with the stand-ins in place of its tensors; afterwards its own
    tensors and every module's own train/eval flag are back, whatever happened. Flags are
    written straight into the modules (as ``nn.Module.train`` does, without its recursion and
    ``__setattr__`` checks) unless a module class has its own ``train``, which is then called."""
    saved = [(store, key, store[key]) for store, key, _ in slots]
    flags = [(m, m.training) for _, m in modules]
    plain = all(type(m).train is nn.Module.train for m, _ in flags)
    try:
        for store, key, new in slots:
            store[key] = new
        if plain:
            for m, _ in flags:
                object.__setattr__(m, "training", False)
        else:
            model.eval()
        yield
    finally:
        for store, key, own in reversed(saved):
            store[key] = own
        for m, training in flags:
            object.__setattr__(m, "training", training)


def _scores_on_copy(model: nn.Module, masks: Masks, input_shape: tuple[int, int, int],
                    dtype: torch.dtype) -> dict[str, torch.Tensor]:
    work, params = scoring_copy(model, masks)
    work.to(dtype).eval()
    with torch.no_grad():
        for t in work.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    x = torch.ones((1, *input_shape), dtype=dtype, device=device_of(work))
    plist = list(params.values())
    grads = torch.autograd.grad(work(x).sum(), plist, allow_unused=True)
    return {name: (p.detach() * (torch.zeros_like(p) if g is None else g)).abs()
            for (name, p), g in zip(params.items(), grads)}
