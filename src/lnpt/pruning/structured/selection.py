"""Channel scores -> which channels each group loses (the structured twin of ``selection.py``).

Every channel criterion goes through :func:`plan_removal`, so criteria are compared under the
same rules: a channel ratio (the fraction of channels removed) applied per group ("layer") or
ranked across groups ("global"), a floor of ``min_channels`` per group (never a zero-width
layer), and optional rounding of the kept count to a multiple of ``round_to`` (vector units and
ONNX Runtime kernels are fastest on multiples of 8). Ties go to the lower channel index.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ...errors import PruningError
from ...surgery.channels import ChannelGroup
from ...surgery.masks import Masks
from ..selection import keep_count

CHANNEL_SCOPES = ("layer", "global")


def _round_kept(kept: int, size: int, round_to: int) -> int:
    """``kept`` rounded to the nearest multiple of ``round_to`` (at least one multiple, at most
    ``size``). A layer no wider than ``round_to`` uses the largest halving of it that is
    narrower than the layer (16 -> 8 for a 16-channel layer), rather than keeping an odd count:
    a 9-channel layer is slower than an 8-channel one on every vector unit."""
    step = round_to
    while step >= size and step > 1:
        step //= 2
    if step <= 1:
        return kept
    return min(size, max(step, step * int(math.floor(kept / step + 0.5))))


def _best(scores: torch.Tensor, k: int) -> list[int]:
    order = torch.argsort(scores.to(torch.float64), descending=True, stable=True)
    return sorted(int(i) for i in order[:k])


def kept_counts(groups: Sequence[ChannelGroup], scores: Mapping[str, torch.Tensor], ratio: float,
                scope: str = "layer", min_channels: int = 1, round_to: int = 1,
                normalise: bool = True) -> dict[str, int]:
    """How many channels each group keeps.

    "layer": every group keeps ``round((1 - ratio) * size)``, so every layer shrinks alike and
    MACs fall by about ``(1 - ratio)^2``. "global" **[choice]**: scores are divided by their
    group's mean (raw sums differ in scale between layers, e.g. with filter size) and ranked
    together; a group keeps as many of the top ``(1 - ratio)`` fraction as it holds. With
    ``normalise=False`` the scores are ranked as given (the caller made them comparable, e.g.
    saliency per MAC).
    """
    if scope not in CHANNEL_SCOPES:
        raise PruningError(f"unknown channel scope {scope!r}; known: {', '.join(CHANNEL_SCOPES)}")
    if not groups:
        raise PruningError("nothing to prune: the model has no prunable channel groups")
    if scope == "layer":
        raw = {g.root: keep_count(g.size, 1.0 - ratio) for g in groups}
    else:
        norm = []
        for g in groups:
            s = scores[g.root].to(torch.float64)
            mean = float(s.mean())
            norm.append(s if not normalise else s / mean if mean > 0 else torch.ones_like(s))
        flat = torch.cat(norm)
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[torch.argsort(flat, descending=True, stable=True)[:keep_count(flat.numel(), 1.0 - ratio)]] = True
        raw = {g.root: int(k.sum()) for g, k in zip(groups, torch.split(keep, [g.size for g in groups]))}
    out = {}
    for g in groups:
        kept = _round_kept(raw[g.root], g.size, round_to)
        out[g.root] = min(g.size, max(kept, min(min_channels, g.size), 1))
    return out


def plan_removal(groups: Sequence[ChannelGroup], scores: Mapping[str, torch.Tensor], ratio: float,
                 scope: str = "layer", min_channels: int = 1, round_to: int = 1,
                 normalise: bool = True) -> dict[str, list[int]]:
    """``{group root: channel indices to remove}``; each group keeps its best-scored channels."""
    if not (math.isfinite(ratio) and 0.0 <= ratio < 1.0):
        raise PruningError(f"channel ratio must be in [0, 1) (the fraction of channels removed), got {ratio}")
    for g in groups:
        s = scores.get(g.root)
        if s is None or s.shape != (g.size,):
            raise PruningError(f"channel scores for {g.root} missing or of the wrong shape "
                               f"({None if s is None else tuple(s.shape)}, expected ({g.size},))")
        if not bool(torch.isfinite(s).all()):
            raise PruningError(f"non-finite channel scores for {g.root}")
    counts = kept_counts(groups, scores, ratio, scope, min_channels, round_to, normalise)
    plan = {}
    for g in groups:
        kept = set(_best(scores[g.root], counts[g.root]))
        plan[g.root] = [i for i in range(g.size) if i not in kept]
    return plan


def global_ratio_for_macs(groups: Sequence[ChannelGroup], scores: Mapping[str, torch.Tensor], target_macs: int,
                          macs_of: Callable[[dict[str, list[int]]], int], min_channels: int = 1,
                          round_to: int = 1, iterations: int = 14, normalise: bool = True) -> float:
    """The smallest global channel ratio whose plan costs at most ``target_macs``.

    Cutting a global ranking deeper only ever removes more channels, so a plan's MACs fall
    with the ratio and bisection finds the cut (to 1/2^iterations; 14 steps resolve one
    channel in ten thousand). ``macs_of(plan)`` prices a plan; the caller applies it to a copy.
    """
    def cost(ratio: float) -> int:
        return macs_of(plan_removal(groups, scores, ratio, "global", min_channels, round_to, normalise))

    lo, hi = 0.0, 0.999
    if cost(lo) <= target_macs:
        return lo
    if cost(hi) > target_macs:
        raise PruningError(f"no global plan reaches {target_macs:,} MACs (the floor of --min-channels "
                           f"{min_channels} / --round-to {round_to} costs more); lower the channel ratio")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if cost(mid) <= target_macs:
            hi = mid
        else:
            lo = mid
    return hi


def plan_as_masks(model: nn.Module, groups: Sequence[ChannelGroup], plan: Mapping[str, Sequence[int]]) -> Masks:
    """The plan as unstructured masks: every filter that writes a removed channel zeroed.

    For comparing structured and unstructured pruning on the same kept set. The masked model
    computes what the physically pruned one does whenever a zeroed filter's channel stays zero
    downstream: no conv bias, and BatchNorm with zero shift (true at initialisation, in train
    mode: a constant-zero channel normalises to its shift).
    """
    masks: Masks = {}
    for g in groups:
        drop = set(int(i) for i in plan.get(g.root, ()))
        for m in g.members("producer"):
            weight = model.get_submodule(m.module).weight
            mask = masks.setdefault(f"{m.module}.weight", torch.ones_like(weight.detach()))
            rows = [c for c, r in zip(m.channels, m.roots) if r in drop]
            mask[rows] = 0
    return masks
