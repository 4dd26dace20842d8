"""Which weights are prunable: Conv and Linear weights, optionally without the first layer or
the final classifier (docs/METHOD.md, "Pruning criterion": biases and norms stay dense; the classifier stays dense by
default, as Synaptic-Flow's ``--dense-classifier``, so every criterion is compared on the
same rule)."""
from __future__ import annotations

from torch import nn

from ..models import find_classifier

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_names(model: nn.Module, prune_first: bool = True, prune_classifier: bool = False) -> list[str]:
    """Names (``"conv.0.weight"``) of the prunable weights of ``model``, in module order.

    "First" is the first Conv/Linear layer in module registration order (the one the input
    meets in every zoo model); "classifier" is the layer the feature contract calls the head.
    Masked modules (``torch.nn.utils.prune``) are listed under the plain ``weight`` name,
    which is how masks are keyed.
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    try:
        head: nn.Module | None = find_classifier(model)
    except TypeError:
        head = None
    out = []
    for i, (name, module) in enumerate(layers):
        if i == 0 and not prune_first:
            continue
        if module is head and not prune_classifier:
            continue
        out.append(f"{name}.weight" if name else "weight")
    return out
