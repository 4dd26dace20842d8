"""Physical channel removal behind our own interface (Torch-Pruning does the graph work).

Removing an output channel of one layer forces edits elsewhere: the BatchNorm that normalises
it, every layer that reads it (next conv, the classifier's input after pooling/flatten), and in
a ResNet every layer writing into the same residual stream (the additions tie their channels).
Torch-Pruning traces the model once and groups such coupled channels; this module turns its
groups into plain, picklable :class:`ChannelGroup` records (module names and index maps), removes
chosen channels group by group, and returns the pruning history that :mod:`.rebuild` replays on a
fresh model. Nothing outside this file imports ``torch_pruning``'s graph types.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import PruningError
from ..models import find_classifier

History = list[list]  # [[root module name, is_out_channel_pruning, [indices]], ...] (JSON-able)

_PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class ChannelMember:
    """One module whose output channels are (a subset of) a group's channels.

    ``channels[j]`` of this module is the group's channel ``roots[j]``; for every zoo model
    the map is the identity, but concatenations make it a real map.
    """

    module: str
    kind: str                      # "producer" (conv/linear) or "norm"
    channels: tuple[int, ...]
    roots: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be removed together (one residual stream, or one conv + its BN)."""

    root: str                      # the layer whose output channels index the group
    size: int
    outputs: tuple[ChannelMember, ...]
    readers: tuple[str, ...]       # layers whose input channels shrink with the group

    def members(self, kind: str) -> tuple[ChannelMember, ...]:
        return tuple(m for m in self.outputs if m.kind == kind)


def _tp():
    try:
        import torch_pruning
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise PruningError("structured pruning needs torch-pruning (pip install torch-pruning==1.6.1)") from exc
    return torch_pruning


def example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    p = next(model.parameters(), None)
    if p is None:
        return torch.zeros((2, *input_shape))
    return p.new_zeros((2, *input_shape))


class ChannelGraph:
    """The coupled-channel structure of ``model``: traced once, in eval mode, without gradients
    reaching any parameter (tracing must not change BatchNorm statistics or weights)."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        if any(hasattr(m, "weight_mask") for m in model.modules()):
            raise PruningError("structured pruning starts from a dense student; this one carries "
                               "unstructured masks (prune it with either, not both)")
        tp = _tp()
        self.model = model
        self.input_shape = tuple(int(v) for v in input_shape)
        flags = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.enable_grad():
                self._dg = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_input(model, self.input_shape), verbose=False)
        except Exception as exc:  # noqa: BLE001  tracing failures come as many types
            raise PruningError(f"cannot trace {type(model).__name__} for channel pruning: "
                               f"{type(exc).__name__}: {exc}") from None
        finally:
            for m, flag in flags.items():
                m.training = flag
        self._names = {mod: name for name, mod in model.named_modules()}

    def groups(self, prune_first: bool = True) -> list[ChannelGroup]:
        """Prunable groups; the classifier's outputs (the classes) are never among them, and with
        ``prune_first=False`` neither are the groups holding the first layer's outputs."""
        head = find_classifier(self.model)
        first = next((m for m in self.model.modules() if isinstance(m, _PRODUCERS)), None)
        out = []
        for group in self._dg.get_all_groups(ignored_layers=[head], root_module_types=_PRODUCERS):
            outputs, readers = [], []
            for item in group.items:
                module = item.dep.target.module
                name = self._names.get(module) if isinstance(module, nn.Module) else None
                if name is None:  # functional ops (add, relu, flatten) carry no parameters
                    continue
                if self._dg.is_out_channel_pruning_fn(item.dep.handler):
                    kind = "norm" if isinstance(module, _NORMS) else "producer" if isinstance(module, _PRODUCERS) else ""
                    if kind:
                        outputs.append(ChannelMember(name, kind, tuple(int(i) for i in item.idxs),
                                                     tuple(int(i) for i in item.root_idxs)))
                elif self._dg.is_in_channel_pruning_fn(item.dep.handler):
                    readers.append(name)
            root = group[0].dep.target.module
            if not prune_first and any(m.module == self._names[first] for m in outputs):
                continue
            out.append(ChannelGroup(self._names[root], len(group[0].idxs), tuple(outputs),
                                    tuple(dict.fromkeys(readers))))
        return out

    def remove(self, plan: dict[str, Sequence[int]]) -> History:
        """Remove ``plan[root]`` (channel indices of each group's root) from the model in place.

        Groups are independent in their output channels, so the order does not matter; each
        group is re-derived from the current (already partly pruned) model before it is cut.
        """
        modules = dict(self.model.named_modules())
        for root, idxs in plan.items():
            idxs = sorted(int(i) for i in idxs)
            if not idxs:
                continue
            module = modules[root]
            handler = self._dg.get_pruner_of_module(module).prune_out_channels
            group = self._dg.get_pruning_group(module, handler, idxs)
            if not self._dg.check_pruning_group(group):
                raise PruningError(f"removing {len(idxs)} channel(s) of {root} would empty a layer")
            group.prune()
        return [[str(n), bool(o), [int(i) for i in idx]] for n, o, idx in self._dg.pruning_history()]


def replay(model: nn.Module, input_shape: Sequence[int], history: History) -> nn.Module:
    """Apply a recorded pruning history to a freshly built model of the same architecture."""
    graph = ChannelGraph(model, input_shape)
    try:
        graph._dg.load_pruning_history([[str(n), bool(o), [int(i) for i in idx]] for n, o, idx in history])
    except (AttributeError, IndexError, KeyError, RuntimeError, ValueError) as exc:
        raise PruningError(f"the recorded channel-pruning history does not fit this model: "
                           f"{type(exc).__name__}: {exc}") from None
    return model


def channel_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{layer: (input channels, output channels)}`` of every Conv/Linear layer, for reports."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[name] = (m.in_features, m.out_features)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[name] = (m.in_channels, m.out_channels)
    return out
