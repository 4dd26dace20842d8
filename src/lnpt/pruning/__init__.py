"""Pruning before training: criteria score weights, one selection turns scores into masks."""
from __future__ import annotations

from .masks import Masks, apply_masks, get_masks, prepare_for_masks, remove_masks

__all__ = ["Masks", "apply_masks", "get_masks", "prepare_for_masks", "remove_masks"]
