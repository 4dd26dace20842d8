"""Pruning criteria: one file each, one registry. A criterion only returns scores (higher =
keep); :mod:`lnpt.pruning.selection` turns them into masks.

Adding a criterion: write ``criteria/mine.py`` with a function decorated by
``@register_criterion("mine", needs=...)`` returning ``{param name: scores}`` (score a copy
from :func:`scoring_copy`), and add it to the import line below.
"""
from __future__ import annotations

from . import grasp, lnpt, lnpt_dynamics, magnitude, random, snip, synflow  # noqa: F401  (registration)
from .base import (
    CRITERIA,
    CriterionSpec,
    LabelFn,
    ScoringInputs,
    register_criterion,
    scoring_copy,
)

__all__ = ["CRITERIA", "CriterionSpec", "LabelFn", "ScoringInputs", "register_criterion", "scoring_copy"]
