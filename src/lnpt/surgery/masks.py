"""Masks as PyTorch's own pruning reparametrisation (``torch.nn.utils.prune``).

``custom_from_mask`` stores ``weight_orig`` (a parameter) and ``weight_mask`` (a buffer) and
recomputes ``weight = weight_orig * weight_mask`` before every forward. Pruned weights are
therefore exactly zero in every forward whatever the optimiser does to ``weight_orig``
(gradient, momentum, weight decay), and masks travel with ``state_dict`` and ``deepcopy``.
We additionally zero ``weight_orig`` where the mask is zero so that the stored weights and the
weight distance to init say what the network really is.

One gap in the stock mechanism is closed here: the pre-hook caches ``weight`` as a non-leaf
tensor (``weight_orig * weight_mask`` with its graph), and ``copy.deepcopy`` refuses non-leaf
tensors, so a pruned model could not be copied after any forward pass with gradients on. A
forward hook (:class:`_DetachCachedWeight`) replaces the cache by its detached value after each
forward; the graph of that forward already holds the original, so backward is unaffected.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

Masks = dict[str, torch.Tensor]  # parameter name ("conv.0.weight") -> {0,1} tensor of its shape


def _split(name: str) -> tuple[str, str]:
    module, _, param = name.rpartition(".")
    return module, param


class _DetachCachedWeight:
    """Forward hook: after a forward, keep the cached masked weight as a leaf (deepcopy-safe)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, module: nn.Module, inputs: tuple, output: object) -> None:
        _detach_cached(module, self.name)


class _RefreshCachedWeight:
    """``load_state_dict`` post-hook: recompute the cached masked weight from the loaded tensors."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, module: nn.Module, incompatible_keys: object) -> None:
        if hasattr(module, self.name + "_orig") and hasattr(module, self.name + "_mask"):
            with torch.no_grad():
                module.__dict__[self.name] = getattr(module, self.name + "_orig") * getattr(module, self.name + "_mask")


def _detach_cached(module: nn.Module, param: str) -> None:
    cached = module.__dict__.get(param)
    if isinstance(cached, torch.Tensor) and not isinstance(cached, nn.Parameter) and hasattr(module, param + "_orig"):
        module.__dict__[param] = cached.detach()


def _ensure_cache_hooks(module: nn.Module, param: str) -> None:
    if not any(isinstance(h, _DetachCachedWeight) and h.name == param for h in module._forward_hooks.values()):
        module.register_forward_hook(_DetachCachedWeight(param))
    if not any(isinstance(h, _RefreshCachedWeight) and h.name == param
               for h in module._load_state_dict_post_hooks.values()):
        module.register_load_state_dict_post_hook(_RefreshCachedWeight(param))
    _detach_cached(module, param)


def _drop_cache_hooks(module: nn.Module, param: str) -> None:
    for hooks, kind in ((module._forward_hooks, _DetachCachedWeight),
                        (module._load_state_dict_post_hooks, _RefreshCachedWeight)):
        for key, hook in list(hooks.items()):
            if isinstance(hook, kind) and hook.name == param:
                del hooks[key]


def apply_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """Attach ``masks`` to ``model`` in place (replacing masks already there) and return it."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        mod_name, param = _split(name)
        module = modules.get(mod_name)
        if module is None:
            raise KeyError(f"mask for {name!r}: the model has no module {mod_name!r}")
        current = getattr(module, param)
        if tuple(mask.shape) != tuple(current.shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, weight has {tuple(current.shape)}")
        if prune.is_pruned(module) and hasattr(module, param + "_orig"):
            getattr(module, param + "_mask").copy_(mask.to(current.device, current.dtype))
        else:
            prune.custom_from_mask(module, param, mask.to(current.device, current.dtype))
        with torch.no_grad():
            getattr(module, param + "_orig").mul_(getattr(module, param + "_mask"))
            setattr(module, param, getattr(module, param + "_orig") * getattr(module, param + "_mask"))
        _ensure_cache_hooks(module, param)
    return model


def get_masks(model: nn.Module) -> Masks:
    """The masks attached to ``model``, keyed by the parameter name they mask."""
    out: Masks = {}
    for mod_name, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                names = [hook._tensor_name] if hasattr(hook, "_tensor_name") else [
                    h._tensor_name for h in getattr(hook, "_pruning_methods", [])]
                for pname in names:
                    key = f"{mod_name}.{pname}" if mod_name else pname
                    out[key] = getattr(module, pname + "_mask").detach().clone()
    return out


def prepare_for_masks(model: nn.Module, names: list[str]) -> nn.Module:
    """Attach all-ones masks to ``names`` so that a masked ``state_dict`` can be loaded."""
    modules = dict(model.named_modules())
    for name in names:
        mod_name, param = _split(name)
        module = modules[mod_name]
        if not hasattr(module, param + "_mask"):
            prune.identity(module, param)
        _ensure_cache_hooks(module, param)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Fold masks into plain weights (for export); the zeros stay, the reparametrisation goes."""
    for name in list(get_masks(model)):
        mod_name, param = _split(name)
        module = dict(model.named_modules())[mod_name]
        prune.remove(module, param)
        _drop_cache_hooks(module, param)
    return model
