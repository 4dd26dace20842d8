"""Parameter and MAC counts, dense and mask-aware, for reports of what pruning saved.

MACs (multiply-accumulates), counted by lnpt.surgery.complexity: one forward pass of a single
input through forward hooks on every Conv and Linear layer. Dense MACs count every weight
at every output position; mask-aware MACs count only unmasked weights (the work a sparse
kernel would do). Biases, norms, activations and pooling are not counted: they are
negligible next to the weights and counting conventions for them differ between tools.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .masks import get_masks

MAC_LABEL = "MACs (multiply-accumulates), counted by lnpt.surgery.complexity"
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class Complexity:
    params: int          # all parameters (a masked weight counts once, as its dense tensor)
    params_nonzero: int  # params minus masked-out weights
    macs: int            # dense MACs per input
    macs_masked: int     # MACs of the unmasked weights per input

    def to_dict(self) -> dict:
        return asdict(self)


def count_complexity(model: nn.Module, input_shape: tuple[int, ...]) -> Complexity:
    """Count params and MACs of ``model`` for one input of shape ``input_shape`` (C, H, W).

    The model's train/eval flags and BatchNorm statistics are left as they were: the pass runs
    in eval mode under no_grad and restores each module's flag.
    """
    masks = get_masks(model)
    kept = {name: int(m.count_nonzero()) for name, m in masks.items()}
    params = sum(p.numel() for p in model.parameters())
    params_nonzero = params - sum(m.numel() - kept[n] for n, m in masks.items())
    dense, masked = [0], [0]
    handles = []
    for mod_name, module in model.named_modules():
        if isinstance(module, _LAYERS):
            wname = f"{mod_name}.weight" if mod_name else "weight"

            def hook(mod: nn.Module, inp: tuple, out: torch.Tensor, wname: str = wname) -> None:
                weight = mod.weight
                nz = kept.get(wname, weight.numel())
                if isinstance(mod, nn.Linear):
                    positions = out.numel() // out.shape[-1]           # leading dims (batch 1)
                else:
                    positions = out.numel() // out.shape[1]            # spatial positions (batch 1)
                dense[0] += positions * weight.numel()
                masked[0] += positions * nz

            handles.append(module.register_forward_hook(hook))
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros((1, *input_shape)) if p is None else p.new_zeros((1, *input_shape))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    return Complexity(params, params_nonzero, dense[0], masked[0])
