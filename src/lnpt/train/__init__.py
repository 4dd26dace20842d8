"""Label-free (and supervised) training of masked students."""
from __future__ import annotations

from ..features import FeatureAdapter, feature_distance, smooth
from .callbacks import Callback, Evaluate, FitState, OnEpochEnd, Progress
from .evaluate import EvalSettings, Evaluator, accuracy
from .loop import Checkpoint, FitOptions, FitResult, fit
from .losses import LOSSES, Batch, LossContext, LossSpec, TrainLoss, create_loss, register_loss

__all__ = ["LOSSES", "Batch", "Callback", "Checkpoint", "EvalSettings", "Evaluate", "Evaluator", "FeatureAdapter", "FitOptions",
           "FitResult", "FitState", "LossContext", "LossSpec", "OnEpochEnd", "Progress", "TrainLoss", "accuracy",
           "create_loss", "feature_distance", "fit", "register_loss", "smooth"]
