"""Model surgery: the mechanics of changing a network's weights and shapes.

Masks attached with torch's pruning utilities, physical channel removal on Torch-Pruning's
dependency graph, the replay that rebuilds a channel-pruned network from a weights-only
checkpoint, and parameter/MAC counts that see both. Deciding *what* to cut is
:mod:`lnpt.pruning`'s job; this layer only carries it out, so checkpoints, export and
complexity reports use it without importing any criterion.
"""
from __future__ import annotations

from .complexity import Complexity, count_complexity
from .masks import Masks, apply_masks, get_masks, prepare_for_masks, remove_masks

__all__ = ["Complexity", "Masks", "apply_masks", "count_complexity", "get_masks", "prepare_for_masks",
           "remove_masks"]
