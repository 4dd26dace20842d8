"""Training losses against values worked out by hand."""
import math

import pytest
import torch

from lnpt.config import LossConfig, TrainConfig
from lnpt.features import FeatureAdapter
from lnpt.teachers.base import Guidance
from lnpt.train import Batch, LossContext, create_loss, feature_distance

LN = math.log


def _batch(teacher_logits, teacher_features, y=None):
    return Batch(x=torch.zeros(1, 1), y=y, guidance=Guidance(torch.tensor(teacher_logits), torch.tensor(teacher_features)))


def test_kl_feature_distance_by_hand():
    # softmax([2 ln3, 0] / 2) = [3/4, 1/4]; teacher uniform; KL(t||s) = 0.5 ln(4/3); times tau^2 = 4.
    s = torch.tensor([[2 * LN(3.0), 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    assert feature_distance(s, t, "kl", "softmax", 2.0).item() == pytest.approx(2 * LN(4 / 3), rel=1e-6)
    assert feature_distance(s, t, "mse", "softmax", 2.0).item() == pytest.approx(1 / 8, rel=1e-6)
    assert feature_distance(s, t, "mse", "none", 2.0).item() == pytest.approx((2 * LN(3.0)) ** 2, rel=1e-6)
    assert feature_distance(t, t, "kl", "softmax", 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_needs_softmax_and_unknown_distance_is_refused():
    with pytest.raises(ValueError, match="softmax"):
        feature_distance(torch.ones(1, 2), torch.ones(1, 2), "kl", "l2", 1.0)
    with pytest.raises(ValueError, match="known: kl, mse"):
        feature_distance(torch.ones(1, 2), torch.ones(1, 2), "cosine", "none", 1.0)


def test_pseudo_label_loss_uses_teacher_argmax():
    loss = create_loss(TrainConfig(loss="pseudo"), LossContext(2, 2))
    # teacher says class 1; student p(class 1) = 1/4  ->  CE = ln 4
    value, parts = loss(torch.tensor([[LN(3.0), 0.0]]), torch.zeros(1, 2), _batch([[1.0, 2.0]], [[0.0, 0.0]]))
    assert value.item() == pytest.approx(LN(4.0), rel=1e-6)
    assert not loss.needs_labels


def test_lnpt_loss_is_ce_plus_beta_times_feature_term():
    loss = create_loss(TrainConfig(loss="lnpt"), LossContext(2, 2), LossConfig(beta=0.5, tau=2.0))
    value, parts = loss(torch.tensor([[LN(3.0), 0.0]]), torch.tensor([[2 * LN(3.0), 0.0]]),
                        _batch([[1.0, 2.0]], [[0.0, 0.0]]))
    assert parts["ce"] == pytest.approx(LN(4.0), rel=1e-6)
    assert parts["fm"] == pytest.approx(2 * LN(4 / 3), rel=1e-6)
    assert value.item() == pytest.approx(LN(4.0) + 0.5 * 2 * LN(4 / 3), rel=1e-6)
    assert not loss.needs_labels and loss.needs_teacher


def test_lnpt_loss_owns_a_trainable_adapter_when_sizes_differ():
    loss = create_loss(TrainConfig(loss="lnpt"), LossContext(3, 5))
    assert sum(p.numel() for p in loss.parameters()) == 3 * 5 + 5
    value, _ = loss(torch.zeros(2, 4), torch.randn(2, 3), _batch([[1.0, 0, 0, 0]] * 2, [[0.0] * 5] * 2))
    value.backward()
    assert loss.adapter.linear.weight.grad is not None


def test_kd_loss_matches_formula():
    loss = create_loss(TrainConfig(loss="kd"), LossContext(2, 2), LossConfig(kd_tau=2.0, kd_alpha=0.7))
    zs, zt = torch.tensor([[0.3, -0.2, 1.0]]), torch.tensor([[1.0, 0.0, 2.0]])
    ps, pt = torch.softmax(zs / 2, 1), torch.softmax(zt / 2, 1)
    kd = (pt * (pt.log() - ps.log())).sum() * 4
    ce = -torch.log_softmax(zs, 1)[0, 2]
    value, _ = loss(zs, torch.zeros(1, 2), _batch(zt.tolist(), [[0.0, 0.0]]))
    assert value.item() == pytest.approx((0.7 * kd + 0.3 * ce).item(), rel=1e-5)


def test_supervised_loss_needs_labels_not_teacher():
    loss = create_loss(TrainConfig(loss="supervised"), LossContext(2, None))
    assert loss.needs_labels and not loss.needs_teacher
    value, _ = loss(torch.tensor([[0.0, 0.0]]), torch.zeros(1, 2), Batch(torch.zeros(1), y=torch.tensor([1])))
    assert value.item() == pytest.approx(LN(2.0), rel=1e-6)


def test_unknown_loss_lists_known():
    with pytest.raises(KeyError, match="known: kd, lnpt, pseudo, supervised"):
        create_loss(TrainConfig(loss="cross"), LossContext(2, 2))


def test_adapter_least_squares_recovers_a_linear_map():
    torch.manual_seed(0)
    a = torch.randn(3, 4)
    s = torch.randn(200, 3)
    adapter = FeatureAdapter(3, 4)
    adapter.fit_least_squares(s, s @ a + 0.5, ridge=1e-6)
    assert torch.allclose(adapter(s), s @ a + 0.5, atol=1e-3)
