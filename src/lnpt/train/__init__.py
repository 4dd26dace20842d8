"""Label-free (and supervised) training of masked students."""
from __future__ import annotations

from ..features import FeatureAdapter, feature_distance, smooth
from .evaluate import Evaluator, accuracy
from .loop import FitResult, fit, wants_prefetch
from .losses import LOSSES, Batch, LossContext, LossSpec, TrainLoss, create_loss, register_loss

__all__ = ["Batch", "Evaluator", "FeatureAdapter", "FitResult", "LOSSES", "LossContext", "LossSpec", "TrainLoss",
           "accuracy", "create_loss", "feature_distance", "fit", "register_loss", "smooth", "wants_prefetch"]
