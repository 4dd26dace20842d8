"""analysis.metrics on hand-made models whose features and weights we know exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lnpt.analysis.metrics import effective_weights, learning_gap, weight_distance
from lnpt.features import FeatureAdapter
from lnpt.surgery.masks import apply_masks


class IdentityFeatures(nn.Module):
    """Penultimate features = the input itself (identity body, then a classifier)."""

    def __init__(self, dim: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.body = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.body.weight.copy_(torch.eye(dim))
        self.classifier = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def _kl_by_hand(s: np.ndarray, t: np.ndarray, tau: float) -> float:
    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v / tau - (v / tau).max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    ps, pt = softmax(s), softmax(t)
    return float((pt * (np.log(pt) - np.log(ps))).sum(1).mean() * tau * tau)


def test_learning_gap_of_known_features() -> None:
    model = IdentityFeatures()
    x = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    ft = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out = learning_gap(model, [x], [ft], tau=2.0)
    assert out["gap"] == pytest.approx(_kl_by_hand(x.numpy(), ft.numpy(), 2.0), rel=1e-5)
    # raw gap: mean over samples of ||x - ft||^2 = ((1+0+1) + (0.25+1+1)) / 2
    assert out["gap_raw"] == pytest.approx((2.0 + 2.25) / 2)


def test_learning_gap_is_zero_for_identical_features_and_weights_batches_by_size() -> None:
    model = IdentityFeatures()
    a, b = torch.randn(4, 3), torch.randn(1, 3)
    same = learning_gap(model, [a, b], [a.clone(), b.clone()])
    assert same["gap"] == pytest.approx(0.0, abs=1e-6) and same["gap_raw"] == pytest.approx(0.0, abs=1e-10)
    # Two batches of sizes 4 and 1: the mean is per sample, not per batch.
    same_a, far_b = a.clone(), b + 1.0
    mixed = learning_gap(model, [a, b], [same_a, far_b])
    assert mixed["gap_raw"] == pytest.approx(3.0 / 5, rel=1e-5)


def test_learning_gap_counts_agreement_with_the_teachers_classes_per_sample() -> None:
    model = IdentityFeatures(dim=3, classes=2)
    a, b = torch.randn(4, 3), torch.randn(3, 3)
    with torch.no_grad():
        pred = [model(a).argmax(1), model(b).argmax(1)]
    labels = [pred[0].clone(), 1 - pred[1]]  # batch a all agree, batch b none
    out = learning_gap(model, [a, b], [a, b], teacher_labels=labels)
    assert out["agreement"] == pytest.approx(4 / 7)  # per sample, not per batch
    assert "agreement" not in learning_gap(model, [a, b], [a, b])


def test_learning_gap_through_adapter_when_feature_sizes_differ() -> None:
    model = IdentityFeatures(dim=3)
    x, ft = torch.randn(5, 3), torch.randn(5, 4)
    adapter = FeatureAdapter(3, 4)
    with torch.no_grad():
        adapter.linear.weight.zero_()
        adapter.linear.bias.zero_()
    out = learning_gap(model, [x], [ft], adapter=adapter)  # the adapter maps everything to 0
    assert out["gap"] == pytest.approx(_kl_by_hand(np.zeros((5, 4)), ft.numpy(), 4.0), rel=1e-5)
    assert out["gap_raw"] == pytest.approx(ft.pow(2).sum(1).mean().item(), rel=1e-5)


def test_learning_gap_restores_training_mode() -> None:
    model = IdentityFeatures().train()
    learning_gap(model, [torch.randn(2, 3)], [torch.randn(2, 3)])
    assert model.training


def test_weight_distance_of_known_perturbation() -> None:
    model = IdentityFeatures()
    init = {k: v.clone() for k, v in effective_weights(model).items()}
    with torch.no_grad():
        model.body.weight[0, 1] += 3.0
        model.classifier.bias += torch.tensor([4.0, 0.0])
    wd = weight_distance(model, init)
    assert wd["total"] == pytest.approx(5.0)  # sqrt(3^2 + 4^2)
    assert wd["layer/body.weight"] == pytest.approx(3.0)
    assert wd["layer/classifier.bias"] == pytest.approx(4.0)
    assert wd["layer/classifier.weight"] == 0.0
    norm0 = math.sqrt(sum(v.pow(2).sum().item() for v in init.values()))
    assert wd["relative"] == pytest.approx(5.0 / norm0)


def test_weight_distance_ignores_changes_to_pruned_weights() -> None:
    model = IdentityFeatures()
    mask = torch.ones(3, 3)
    mask[0, 0] = 0.0  # prune the (1, 0, 0) diagonal entry
    apply_masks(model, {"body.weight": mask})
    eff = effective_weights(model)
    assert set(eff) >= {"body.weight", "classifier.weight"} and eff["body.weight"][0, 0] == 0.0
    init = {k: v.clone() for k, v in eff.items()}
    with torch.no_grad():
        model.body.weight_orig[0, 0] += 10.0  # invisible to the forward pass
    assert weight_distance(model, init)["total"] == pytest.approx(0.0)
    with torch.no_grad():
        model.body.weight_orig[1, 2] += 2.0  # a kept weight
    assert weight_distance(model, init)["layer/body.weight"] == pytest.approx(2.0)


def test_metrics_module_imports_first_in_a_fresh_interpreter() -> None:
    """lnpt.train imports analysis.metrics; metrics must not import lnpt.train at load time
    (the cycle broke `import lnpt.recipes.pipeline` and every sweep worker)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import lnpt.analysis.metrics, lnpt.train"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
