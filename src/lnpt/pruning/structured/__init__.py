"""Structured (channel) pruning: channel scores, a removal plan, physical removal, rebuild.

Same split as the unstructured path: criteria only score channels (:mod:`.criteria`,
:mod:`.feature_map`), :mod:`.selection` turns scores into a plan, :mod:`.removal` cuts coupled
layers consistently (Torch-Pruning's dependency graph), :mod:`.rebuild` makes the result
loadable from a weights-only checkpoint.
"""
from __future__ import annotations

from ...surgery.channels import (
                       ChannelGraph,
                       ChannelGroup,
                       ChannelMember,
                       channel_counts,
                       replay,
)
from ...surgery.rebuild import EXTRA_KEY, is_structured, rebuild, structured_extra
from . import feature_map  # noqa: F401  (registers lnpt-fm)
from .api import CHANNELS, ChannelPruner, prune_channels, structured_needs_teacher, validate_structured_config
from .criteria import (
                       CHANNEL_CRITERIA,
                       ChannelCriterion,
                       channel_criterion,
                       channel_criterion_names,
                       register_channel_criterion,
)
from .report import ChannelStat, StructuredReport
from .selection import CHANNEL_SCOPES, kept_counts, plan_as_masks, plan_removal

__all__ = [
    "CHANNELS", "CHANNEL_CRITERIA", "CHANNEL_SCOPES", "ChannelCriterion", "ChannelGraph", "ChannelGroup",
    "ChannelMember", "ChannelPruner",
    "ChannelStat", "EXTRA_KEY", "StructuredReport", "channel_counts", "channel_criterion",
    "channel_criterion_names", "is_structured", "kept_counts", "plan_as_masks", "plan_removal",
    "prune_channels", "rebuild", "register_channel_criterion", "replay", "structured_extra",
    "structured_needs_teacher", "validate_structured_config",
]
