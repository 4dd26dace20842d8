"""Label-free (and supervised) training of masked students."""
from __future__ import annotations

from ..features import FeatureAdapter, feature_distance, smooth
from .evaluate import Evaluator, accuracy
from .loop import FitResult, fit, wants_prefetch
from .losses import LOSSES, Batch, LossContext, TrainLoss, create_loss

__all__ = ["Batch", "Evaluator", "FeatureAdapter", "FitResult", "LOSSES", "LossContext", "TrainLoss",
           "accuracy", "create_loss", "feature_distance", "fit", "smooth", "wants_prefetch"]
