"""Each criterion against a two-layer network whose scores are worked out on paper, and the
rule that scoring never changes the scored model."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lnpt.config import PruneConfig
from lnpt.models import create_model, feature_dim
from lnpt.pruning import apply_masks, get_masks
from lnpt.pruning.criteria import CRITERIA, ScoringInputs
from lnpt.pruning.criteria.grasp import TEMPERATURE
from lnpt.teachers.base import Guidance

W1 = [[1.0, -2.0], [0.5, 3.0]]
W2 = [[2.0, -1.0], [1.0, 4.0]]


class TwoLayer(nn.Module):
    """x (2) -> hidden (2, linear, no bias) -> classifier (2): features = W1 x, logits = W2 W1 x."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(2, 2, bias=False)
        self.classifier = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor(W1))
            self.classifier.weight.copy_(torch.tensor(W2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(x.flatten(1)))


def _inputs(batches, guidance=None, labels=None, **cfg) -> ScoringInputs:
    return ScoringInputs(tuple(batches), None if guidance is None else tuple(guidance), labels, (1, 1, 2),
                         PruneConfig(**cfg), torch.Generator().manual_seed(0))


def _ones(model: nn.Module, names=("hidden.weight", "classifier.weight")) -> dict[str, torch.Tensor]:
    return {n: torch.ones(2, 2) for n in names}


def _x(*rows) -> torch.Tensor:
    return torch.tensor(rows).view(len(rows), 1, 1, 2)


def test_lnpt_mse_scores_match_hand_computation():
    # Batch 1: x=(1,2), t=(0,1): phi=(-3,6.5), grad = 2(phi-t)x^T = [[-6,-12],[11,22]].
    # Batch 2: x=(0,1), t=(-5,5): phi=(-2,3),  grad = [[0,6],[0,-4]].  Mean = [[-3,-3],[5.5,9]].
    # |W1 * mean| = [[3,6],[2.75,27]]; the classifier is not reached by L_fm: all zeros.
    guid = [Guidance(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]])),
            Guidance(torch.zeros(1, 2), torch.tensor([[-5.0, 5.0]]))]
    model = TwoLayer()
    scores = CRITERIA.get("lnpt").score(model, _ones(model), _inputs(
        [_x([1.0, 2.0]), _x([0.0, 1.0])], guid, score_distance="mse", score_smoothing="none"))
    assert torch.allclose(scores["hidden.weight"], torch.tensor([[3.0, 6.0], [2.75, 27.0]]))
    assert torch.equal(scores["classifier.weight"], torch.zeros(2, 2))


def test_lnpt_kl_scores_match_closed_form():
    # d/dphi [tau^2 KL(p_t || softmax(phi/tau))] = tau (softmax(phi/tau) - p_t)
    tau, x, t = 2.0, torch.tensor([1.0, 2.0]), torch.tensor([0.3, -1.0])
    phi = torch.tensor(W1) @ x
    dphi = tau * (torch.softmax(phi / tau, 0) - torch.softmax(t / tau, 0))
    expected = (torch.tensor(W1) * torch.outer(dphi, x)).abs()
    model = TwoLayer()
    scores = CRITERIA.get("lnpt").score(model, _ones(model), _inputs(
        [x.view(1, 1, 1, 2)], [Guidance(torch.zeros(1, 2), t.view(1, 2))], score_tau=tau))
    assert torch.allclose(scores["hidden.weight"], expected, atol=1e-6)


def test_lnpt_pseudo_label_ce_scores_the_classifier():
    # With score_ce_weight=1 the classifier's score is |W2 * (softmax(z) - onehot(argmax z_T)) h^T|.
    x = torch.tensor([1.0, 2.0])
    h = torch.tensor(W1) @ x
    z = torch.tensor(W2) @ h
    pseudo = 1  # argmax of the teacher logits below
    expected = (torch.tensor(W2) * torch.outer(torch.softmax(z, 0) - F.one_hot(torch.tensor(pseudo), 2), h)).abs()
    guid = [Guidance(torch.tensor([[0.0, 5.0]]), h.view(1, 2))]  # teacher features = student's: L_fm grad 0
    model = TwoLayer()
    scores = CRITERIA.get("lnpt").score(model, _ones(model), _inputs(
        [x.view(1, 1, 1, 2)], guid, score_distance="mse", score_smoothing="none", score_ce_weight=1.0))
    assert torch.allclose(scores["classifier.weight"], expected, atol=1e-5)
    assert scores["classifier.weight"].sum() > 0


def test_lnpt_dynamics_matches_hand_computed_hessian_gradient_product():
    # L = ||W1 x - t||^2: g = 2(W1x - t)x^T, H g = 2 (g x) x^T, score = W1 * Hg (signed).
    x, t = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    g = 2 * torch.outer(torch.tensor(W1) @ x - t, x)
    expected = torch.tensor(W1) * (2 * torch.outer(g @ x, x))
    model = TwoLayer()
    scores = CRITERIA.get("lnpt-dynamics").score(model, _ones(model, ("hidden.weight",)), _inputs(
        [x.view(1, 1, 1, 2)], [Guidance(torch.zeros(1, 2), t.view(1, 2))],
        score_distance="mse", score_smoothing="none"))
    assert torch.allclose(scores["hidden.weight"], expected)
    assert (scores["hidden.weight"] < 0).any(), "dynamics scores are signed"


def test_snip_matches_hand_computed_connection_sensitivity():
    # dCE/dz = p - y; dW2 = (p - y) h^T; dW1 = (W2^T (p - y)) x^T.
    x, y = torch.tensor([1.0, 2.0]), 0
    h = torch.tensor(W1) @ x
    p = torch.softmax(torch.tensor(W2) @ h, 0)
    d = p - F.one_hot(torch.tensor(y), 2)
    model = TwoLayer()
    scores = CRITERIA.get("snip").score(model, _ones(model), _inputs(
        [x.view(1, 1, 1, 2)], labels=lambda i: torch.tensor([y])))
    assert torch.allclose(scores["classifier.weight"], (torch.tensor(W2) * torch.outer(d, h)).abs(), atol=1e-6)
    assert torch.allclose(scores["hidden.weight"],
                          (torch.tensor(W1) * torch.outer(torch.tensor(W2).T @ d, x)).abs(), atol=1e-6)


def test_grasp_matches_hand_computed_hessian_gradient_product():
    # One linear layer z = W x / T. g = (p - y) x^T / T, J = diag(p) - p p^T,
    # H g = (J (g x)) x^T / T^2, score = W * Hg.
    T = TEMPERATURE
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(W2))
    x, y = torch.tensor([1.0, 2.0]), 1
    p = torch.softmax(torch.tensor(W2) @ x / T, 0).double()
    g = torch.outer(p - F.one_hot(torch.tensor(y), 2), x.double()) / T
    J = torch.diag(p) - torch.outer(p, p)
    expected = torch.tensor(W2).double() * torch.outer(J @ (g @ x.double()), x.double()) / T**2
    scores = CRITERIA.get("grasp").score(model, {"1.weight": torch.ones(2, 2)}, _inputs(
        [x.view(1, 1, 1, 2)], labels=lambda i: torch.tensor([y])))
    assert torch.allclose(scores["1.weight"].double(), expected, rtol=1e-3, atol=1e-12)
    assert expected.abs().max() > 0


def test_synflow_matches_path_norm_derivative():
    # R = 1^T |W2| |W1| 1: dR/d|W1_ij| = sum_k |W2_ki|, dR/d|W2_ki| = sum_j |W1_ij|.
    a1, a2 = torch.tensor(W1).abs(), torch.tensor(W2).abs()
    model = TwoLayer()
    scores = CRITERIA.get("synflow").score(model, _ones(model), _inputs([]))
    assert torch.allclose(scores["hidden.weight"].float(), a1 * a2.sum(0).view(2, 1))
    assert torch.allclose(scores["classifier.weight"].float(), a2 * a1.sum(1).view(1, 2))
    assert CRITERIA.get("synflow").default_rounds == 100


def test_magnitude_and_random():
    model = TwoLayer()
    mag = CRITERIA.get("magnitude").score(model, _ones(model), _inputs([]))
    assert torch.equal(mag["hidden.weight"], torch.tensor(W1).abs())
    r1 = CRITERIA.get("random").score(model, _ones(model), _inputs([]))
    r2 = CRITERIA.get("random").score(model, _ones(model), _inputs([]))
    assert torch.equal(r1["hidden.weight"], r2["hidden.weight"])  # seeded by the pipeline's generator
    assert r1["hidden.weight"].shape == (2, 2) and not torch.equal(r1["hidden.weight"], r1["classifier.weight"])


def test_current_masks_zero_the_scores_of_pruned_weights():
    model = TwoLayer()
    masks = {"hidden.weight": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "classifier.weight": torch.ones(2, 2)}
    for name in ("magnitude", "synflow", "snip"):
        scores = CRITERIA.get(name).score(model, masks, _inputs([_x([1.0, 2.0])], labels=lambda i: torch.tensor([0])))
        assert scores["hidden.weight"][0, 1] == 0, name
        assert scores["hidden.weight"][1, 1] > 0, name


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("score_bn", ["train", "frozen"])
@pytest.mark.parametrize("name", CRITERIA.names())
def test_scoring_leaves_model_unchanged(name, score_bn, digits, digits_teacher):
    """Weights, BatchNorm statistics, masks, grads, requires_grad and train/eval flag are untouched."""
    model = create_model("resnet20", digits.info.input_shape, 10, width=0.25, seed=0)
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    apply_masks(model, {names[1]: (torch.rand_like(model.get_parameter(names[1])) > 0.5).float()})
    model.eval()
    before = _state(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    masks = {n: torch.ones(model.get_submodule(n.rpartition(".")[0]).weight.shape) for n in names[:-1]}
    batches = [x for _, x in digits.train.unlabeled().batches(32, limit=2)]
    guidance = [digits_teacher.guide(x) for x in batches]
    inputs = ScoringInputs(tuple(batches), tuple(guidance), lambda i: guidance[i].pseudo_labels,
                           digits.info.input_shape, PruneConfig(score_bn=score_bn), torch.Generator().manual_seed(0))
    masks_before = get_masks(model)
    scores = CRITERIA.get(name).score(model, masks, inputs)
    assert set(scores) == set(masks)
    assert all(torch.isfinite(s).all() for s in scores.values())
    after = model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    assert not model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(get_masks(model)[k], m) for k, m in masks_before.items())
    model2 = copy.deepcopy(model)
    assert torch.equal(model2(batches[0]), model(batches[0]))


def test_frozen_batchnorm_makes_the_score_see_a_filters_scale(digits):
    """In train mode BatchNorm hides a filter's scale: per filter, sum_j theta_j dL/dtheta_j = 0.
    With statistics frozen on the scoring batches it does not, and SNIP's scores change."""
    from lnpt.pruning.criteria.base import accumulated_grad, scoring_copy

    model = create_model("resnet20", digits.info.input_shape, 10, width=0.25, seed=0)
    batches = [x for _, x in digits.train.unlabeled().batches(64, limit=2)]
    labels = [torch.randint(0, 10, (x.shape[0],), generator=torch.Generator().manual_seed(i))
              for i, x in enumerate(batches)]
    conv = "blocks.1.conv1.weight"  # followed by a BatchNorm
    masks = {conv: torch.ones_like(model.get_parameter(conv))}
    sums = {}
    for mode in ("train", "frozen"):
        inputs = _inputs(batches, labels=lambda i: labels[i], score_bn=mode)
        work, params = scoring_copy(model, masks, inputs)
        assert work.training == (mode == "train")
        (g,) = accumulated_grad(params, lambda i: F.cross_entropy(work(batches[i]), labels[i]), len(batches))
        per_filter = (params[conv].detach() * g).flatten(1).sum(1).abs()
        sums[mode] = float(per_filter.max() / (params[conv].detach() * g).abs().flatten(1).sum(1).max())
    assert sums["train"] < 1e-4           # scale-invariant: the products cancel within each filter
    assert sums["frozen"] > 1e-2          # no longer
    # The statistics come from the scoring batches: the first BatchNorm's mean is theirs.
    inputs = _inputs(batches, score_bn="frozen")
    work, _ = scoring_copy(model, {}, inputs)
    with torch.no_grad():
        first = work.conv1(torch.cat(batches))
    assert torch.allclose(work.bn1.running_mean, first.mean((0, 2, 3)), atol=1e-5)


@pytest.mark.parametrize("criterion", ["lnpt", "lnpt-dynamics"])
def test_fitted_score_adapter_ignores_the_order_of_the_teachers_features(criterion, digits, digits_teacher):
    """A teacher's feature channels have no order a random student could know. With equal
    feature sizes, 'auto' compares student channel i with teacher channel i, so permuting the
    teacher's channels changes the scores; 'fit' maps one onto the other by least squares and
    gives the same scores for any order."""
    model = create_model("lenet5", digits.info.input_shape, 10, width=2.0, seed=0)  # the teacher's shape
    batches = [x for _, x in digits.train.unlabeled().batches(64, limit=2)]
    guidance = [digits_teacher.guide(x) for x in batches]
    dim = guidance[0].features.shape[1]
    assert feature_dim(model) == dim
    perm = torch.randperm(dim, generator=torch.Generator().manual_seed(1))
    permuted = [Guidance(g.logits, g.features[:, perm]) for g in guidance]
    masks = {n: torch.ones_like(p) for n, p in model.named_parameters() if p.dim() > 1}
    scores = {}
    for adapter in ("auto", "fit"):
        for name, guid in (("given", guidance), ("permuted", permuted)):
            inputs = ScoringInputs(tuple(batches), tuple(guid), None, digits.info.input_shape,
                                   PruneConfig(score_adapter=adapter), torch.Generator().manual_seed(0))
            scores[adapter, name] = CRITERIA.get(criterion).score(model, masks, inputs)
    def change(adapter: str, k: str) -> float:
        a, b = scores[adapter, "given"][k], scores[adapter, "permuted"][k]
        return float((a - b).norm() / a.norm())

    assert max(change("auto", k) for k in masks) > 1e-2
    assert max(change("fit", k) for k in masks) < 1e-4
