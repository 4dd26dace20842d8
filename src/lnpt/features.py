"""Feature smoothing, feature distances and the adapter between feature sizes (docs/METHOD.md, "Smoothing and distance").

Shared by the LNPT training loss, the LNPT pruning criterion and the learning-gap metric, so
the three measure the same thing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMOOTHINGS = ("softmax", "l2", "none")
DISTANCES = ("kl", "mse")


def smooth(v: torch.Tensor, how: str, tau: float) -> torch.Tensor:
    """``softmax(v / tau)`` (the default [choice]), L2 normalisation, or identity."""
    if how == "softmax":
        return F.softmax(v / tau, dim=1)
    if how == "l2":
        return F.normalize(v, dim=1)
    if how == "none":
        return v
    raise ValueError(f"unknown smoothing {how!r}; known: {', '.join(SMOOTHINGS)}")


def feature_distance(student: torch.Tensor, teacher: torch.Tensor, distance: str = "kl",
                     smoothing: str = "softmax", tau: float = 4.0) -> torch.Tensor:
    """Mean over the batch of D(smooth(student), smooth(teacher)).

    KL(teacher || student) on softmax-smoothed features is computed from log-softmax for
    stability, and scaled by tau^2 as in Hinton's distillation so that its gradient magnitude
    does not vanish as the temperature grows.
    """
    if distance == "kl":
        if smoothing != "softmax":
            raise ValueError("the KL distance needs softmax smoothing; use distance 'mse' otherwise")
        log_s = F.log_softmax(student / tau, dim=1)
        log_t = F.log_softmax(teacher / tau, dim=1)
        return (log_t.exp() * (log_t - log_s)).sum(1).mean() * tau * tau
    if distance == "mse":
        return (smooth(student, smoothing, tau) - smooth(teacher, smoothing, tau)).pow(2).sum(1).mean()
    raise ValueError(f"unknown feature distance {distance!r}; known: {', '.join(DISTANCES)}")


class FeatureAdapter(nn.Module):
    """Maps student features to the teacher's size when they differ (identity otherwise)."""

    def __init__(self, student_dim: int, teacher_dim: int, seed: int = 0, always: bool = False) -> None:
        super().__init__()
        self.linear: nn.Linear | None = None
        if always or student_dim != teacher_dim:
            # Its own seed: the global RNG must not decide a run's result (determinism, resume).
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.linear = nn.Linear(student_dim, teacher_dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f if self.linear is None else self.linear(f)

    @torch.no_grad()
    def fit_least_squares(self, student: torch.Tensor, teacher: torch.Tensor, ridge: float = 1e-3) -> None:
        """Set the map to the ridge least-squares fit of teacher features from student features
        (used at pruning time, where there is no training to learn the adapter)."""
        if self.linear is None:
            return
        s = torch.cat([student, student.new_ones(student.shape[0], 1)], 1)
        a = s.T @ s + ridge * torch.eye(s.shape[1], dtype=s.dtype, device=s.device)
        w = torch.linalg.solve(a, s.T @ teacher)  # (d_s + 1, d_t)
        self.linear.weight.copy_(w[:-1].T)
        self.linear.bias.copy_(w[-1])
