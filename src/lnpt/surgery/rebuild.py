"""Checkpoints of physically pruned models, without pickled modules.

A channel-pruned network no longer matches the class definition's default shapes, and
``lnpt.checkpoint`` refuses pickled modules (``weights_only=True``). So a checkpoint stores the
pruning history (root layer, channel indices — plain JSON) plus the resulting per-layer channel
counts in its ``extra`` dict; loading rebuilds the zoo model, replays the history on it (same
dependency graph, same cuts) and checks the shapes before the weights are loaded.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..errors import PruningError
from .channels import History, channel_counts, replay

EXTRA_KEY = "structured"
FORMAT_VERSION = 1


def structured_extra(model: nn.Module, history: History) -> dict[str, Any]:
    """The ``extra`` entry that lets :func:`rebuild` reproduce ``model``'s shapes."""
    return {EXTRA_KEY: {"format_version": FORMAT_VERSION, "history": history,
                        "channels": {k: list(v) for k, v in channel_counts(model).items()}}}


def is_structured(extra: dict[str, Any] | None) -> bool:
    return bool(extra) and isinstance(extra.get(EXTRA_KEY), dict)


def rebuild(model: nn.Module, extra: dict[str, Any], input_shape: Sequence[int]) -> nn.Module:
    """Shrink a freshly built (dense) ``model`` in place to the shapes recorded in ``extra``."""
    info = extra[EXTRA_KEY]
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise PruningError("the checkpoint's structured-pruning record is from a newer lnpt; upgrade lnpt")
    replay(model, input_shape, info.get("history", []))
    want = {k: tuple(v) for k, v in info.get("channels", {}).items()}
    have = channel_counts(model)
    wrong = sorted(k for k in want if have.get(k) != want[k])
    if wrong:
        k = wrong[0]
        raise PruningError(f"replaying the channel-pruning history gave {k} channels {have.get(k)}, "
                           f"the checkpoint recorded {want[k]} ({len(wrong)} layer(s) differ)")
    return model
