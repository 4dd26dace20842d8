"""Each criterion against a two-layer network whose scores are worked out on paper, and the
rule that scoring never changes the scored model."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lnpt.config import prune_settings
from lnpt.models import create_model, feature_dim
from lnpt.pruning import apply_masks, get_masks, prunable_names, prune_at_init
from lnpt.pruning.criteria import CRITERIA, ScoringInputs
from lnpt.pruning.criteria.grasp import TEMPERATURE
from lnpt.pruning.inputs import criterion_settings
from lnpt.pruning.selection import density_schedule, keep_count
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


def _inputs(batches, guidance=None, labels=None, shape=(1, 1, 2), **flat) -> ScoringInputs:
    """Scoring inputs with the LNPT score settings (criteria that declare none ignore them)."""
    cfg = prune_settings(**flat)
    return ScoringInputs(tuple(batches), None if guidance is None else tuple(guidance), labels, shape,
                         cfg.prune, torch.Generator().manual_seed(0), criterion_settings(CRITERIA.get("lnpt"), cfg.score))


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
    inputs = _inputs(batches, guidance, lambda i: guidance[i].pseudo_labels, digits.info.input_shape,
                     score_bn=score_bn)
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
            inputs = _inputs(batches, guid, None, digits.info.input_shape, score_adapter=adapter)
            scores[adapter, name] = CRITERIA.get(criterion).score(model, masks, inputs)
    def change(adapter: str, k: str) -> float:
        a, b = scores[adapter, "given"][k], scores[adapter, "permuted"][k]
        return float((a - b).norm() / a.norm())

    assert max(change("auto", k) for k in masks) > 1e-2
    assert max(change("fit", k) for k in masks) < 1e-4


def _plain_synflow(model: nn.Module, masks: dict[str, torch.Tensor], input_shape, dtype=torch.float32):
    """SynFlow written plainly on a deep copy: masks in, every state_dict entry absolute, eval
    mode, backward of the summed output for an all-ones input, |theta * grad|."""
    work = copy.deepcopy(model).to(dtype).eval()
    with torch.no_grad():
        for n, m in masks.items():
            work.get_parameter(n).mul_(m.to(dtype))
        for t in work.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    work(torch.ones((1, *input_shape), dtype=dtype)).sum().backward()
    return {n: (work.get_parameter(n).grad * work.get_parameter(n)).detach().abs() for n in masks}


def _synflow_case(seed: int = 0):
    model = create_model("resnet20", (1, 8, 8), 10, width=0.25, seed=seed)
    g = torch.Generator().manual_seed(seed)
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    masks = {n: (torch.rand(model.get_parameter(n).shape, generator=g) > 0.3).float() for n in names[1:-1]}
    return model, masks


def test_synflow_scores_equal_a_plain_implementation_bit_for_bit():
    model, masks = _synflow_case()
    inputs = ScoringInputs((), None, None, (1, 8, 8), prune_settings().prune, torch.Generator())
    scores = CRITERIA.get("synflow").score(model, masks, inputs)
    expected = _plain_synflow(model, masks, (1, 8, 8))
    assert set(scores) == set(masks)
    for n in masks:
        assert scores[n].dtype == torch.float32 and torch.equal(scores[n], expected[n]), n


def test_synflow_leaves_a_plain_model_untouched_without_copying_it():
    """No hooks, so the fast path: same Parameter objects, values, version counters (nothing
    written in place), grads, requires_grad and each module's own train/eval flag."""
    model, masks = _synflow_case(1)
    model.train()
    model.blocks[1].eval()  # mixed flags must come back as they were
    params = dict(model.named_parameters())
    before = _state(model)
    versions = {k: v._version for k, v in model.state_dict(keep_vars=True).items()}
    flags = {n: m.training for n, m in model.named_modules()}
    inputs = ScoringInputs((), None, None, (1, 8, 8), prune_settings().prune, torch.Generator())
    CRITERIA.get("synflow").score(model, masks, inputs)
    assert all(params[n] is p for n, p in model.named_parameters())
    for k, v in model.state_dict(keep_vars=True).items():
        assert torch.equal(v, before[k]) and v._version == versions[k], k
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    with pytest.raises(KeyError, match="nowhere.weight"):
        CRITERIA.get("synflow").score(model, {"nowhere.weight": torch.ones(1)}, inputs)


class _Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_synflow_puts_the_model_back_when_its_forward_fails():
    model = _Exploding()
    own = model.fc.weight
    with pytest.raises(RuntimeError, match="boom"):
        CRITERIA.get("synflow").score(model, {"fc.weight": torch.ones(2, 2)}, _inputs([]))
    assert model.fc.weight is own and model.fc._parameters["weight"] is own and model.training


class _Deep(nn.Module):
    """Forty 4x4 layers of weight 60: R = 4 * 240^40 overflows float32 (3.4e38), not float64."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(4, 4, bias=False) for _ in range(40)])
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.fill_(-60.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


def test_synflow_redoes_an_overflowing_network_in_float64():
    model = _Deep()
    masks = {"layers.0.weight": torch.ones(4, 4), "layers.39.weight": torch.ones(4, 4)}
    inputs = ScoringInputs((), None, None, (1, 1, 4), prune_settings().prune, torch.Generator())
    scores = CRITERIA.get("synflow").score(model, masks, inputs)
    expected = _plain_synflow(model, masks, (1, 1, 4), torch.float64)
    assert not torch.isfinite(_plain_synflow(model, masks, (1, 1, 4))["layers.0.weight"]).all()
    for n in masks:
        assert scores[n].dtype == torch.float64 and torch.equal(scores[n], expected[n]), n
    assert all(float(layer.weight.detach()[0, 0]) == -60.0 for layer in model.layers)


def test_synflow_shares_one_stand_in_for_tied_weights():
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.ReLU(), nn.Linear(3, 3, bias=False))
    model[2].weight = model[0].weight  # tied: one parameter under two names
    masks = {"0.weight": torch.tensor([[1.0, 0.0, 1.0]] * 3)}
    inputs = ScoringInputs((), None, None, (1, 1, 3), prune_settings().prune, torch.Generator())
    scores = CRITERIA.get("synflow").score(model, masks, inputs)
    assert torch.equal(scores["0.weight"], _plain_synflow(model, masks, (1, 1, 3))["0.weight"])
    assert model[2].weight is model[0].weight


def _plain_iterative_synflow(model: nn.Module, names: list[str], density: float, rounds: int) -> dict:
    """Iterative SynFlow written plainly with lnpt's count rule: keep_count(n, d_r) best scores,
    ties by position, weights already pruned last; no collapse guard."""
    masks = {n: torch.ones_like(model.get_parameter(n)) for n in names}
    for d in density_schedule(density, rounds):
        scores = _plain_synflow(model, masks, (1, 8, 8))
        flat = torch.cat([torch.where(masks[n].flatten() != 0, scores[n].flatten(), -float("inf")) for n in names])
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[torch.sort(flat, descending=True, stable=True).indices[:keep_count(flat.numel(), d)]] = True
        parts = torch.split(keep, [masks[n].numel() for n in names])
        masks = {n: k.view_as(masks[n]).float() for n, k in zip(names, parts)}
    return masks


def test_iterative_synflow_masks_equal_a_plain_reference_with_exact_counts(digits):
    """prune_at_init's 30-round SynFlow keeps exactly the weights a plain implementation keeps
    (same count rule, guard off), exact counts; with the guard on, every layer keeps its floor
    and the total count is still exact."""
    view = digits.train.unlabeled()
    model = create_model("resnet20", (1, 8, 8), 10, width=0.25, seed=3)
    names = prunable_names(model)
    expected = _plain_iterative_synflow(model, names, 0.1, 30)
    report = prune_at_init(copy.deepcopy(model), prune_settings(criterion="synflow", sparsity=0.9, rounds=30,
                                                             min_kept=0), view, None)
    total = sum(m.numel() for m in expected.values())
    assert sum(int(m.sum()) for m in report.masks.values()) == keep_count(total, 0.1)
    assert all(torch.equal(report.masks[n], expected[n]) for n in names)
    guarded = prune_at_init(copy.deepcopy(model), prune_settings(criterion="synflow", sparsity=0.999, rounds=30,
                                                              min_kept=5), view, None)
    assert guarded.collapse_events
    kept = {n: int(m.sum()) for n, m in guarded.masks.items()}
    assert min(kept.values()) >= 5 and sum(kept.values()) == max(keep_count(total, 0.001), 5 * len(names))


class _OwnTrain(nn.Module):
    """A model whose class has its own ``train``: SynFlow must go through it (not set flags
    directly), and still leave every flag as it found it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
        self.calls: list[bool] = []

    def train(self, mode: bool = True) -> "_OwnTrain":
        self.calls.append(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


def test_synflow_calls_a_models_own_train_and_restores_flags():
    model = _OwnTrain()
    model.body[1].eval()  # mixed flags must come back as they were
    flags = {n: m.training for n, m in model.named_modules()}
    masks = {"body.0.weight": torch.ones(4, 4), "body.2.weight": torch.ones(2, 4)}
    inputs = ScoringInputs((), None, None, (1, 1, 4), prune_settings().prune, torch.Generator())
    scores = CRITERIA.get("synflow").score(model, masks, inputs)
    expected = _plain_synflow(model, masks, (1, 1, 4))
    assert all(torch.equal(scores[n], expected[n]) for n in masks)
    assert False in model.calls
    assert {n: m.training for n, m in model.named_modules()} == flags
