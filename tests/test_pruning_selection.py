"""Scores -> masks: exact counts under ties, both scopes, collapse guard, schedule, no revival."""
from __future__ import annotations

import math

import pytest
import torch

from lnpt.errors import PruningError
from lnpt.pruning.selection import density_schedule, keep_count, select_masks

SPARSITIES = [0.0, 0.3, 0.5, 0.9, 0.95, 0.99]


def _tied_scores(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three layers of very different sizes with integer scores in {0..3}: ties everywhere."""
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randint(0, 4, (6, 1, 3, 3), generator=g).float(),
            "b.weight": torch.randint(0, 4, (40, 25), generator=g).float(),
            "c.weight": torch.randint(0, 4, (7,), generator=g).float()}


def _kept(masks) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in masks.items()}


def test_keep_count_formula():
    assert keep_count(1000, 0.05) == 50
    assert keep_count(7, 0.5) == 4   # 3.5 rounds half up
    assert keep_count(10, 0.0) == 0 and keep_count(10, 1.0) == 10


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_global_count_is_exact_with_ties(sparsity):
    scores = _tied_scores()
    total = sum(s.numel() for s in scores.values())
    masks, _ = select_masks(scores, 1 - sparsity, "global", min_kept=0)
    assert sum(_kept(masks).values()) == keep_count(total, 1 - sparsity)
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} and m.shape == scores[n].shape for n, m in masks.items())


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_layerwise_count_is_exact_with_ties(sparsity):
    scores = _tied_scores(1)
    masks, _ = select_masks(scores, 1 - sparsity, "layer", min_kept=0)
    assert _kept(masks) == {n: keep_count(s.numel(), 1 - sparsity) for n, s in scores.items()}


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_all_equal_scores_keep_exact_count_and_the_first_positions(scope):
    scores = {"a.weight": torch.ones(10), "b.weight": torch.ones(10)}
    masks, _ = select_masks(scores, 0.25, scope, min_kept=0)
    if scope == "global":
        assert masks["a.weight"].tolist() == [1.0] * 5 + [0.0] * 5 and masks["b.weight"].sum() == 0
    else:
        assert masks["a.weight"].tolist() == masks["b.weight"].tolist() == [1.0] * 3 + [0.0] * 7


def test_highest_scores_are_kept():
    scores = {"a.weight": torch.tensor([0.1, 5.0, 0.3]), "b.weight": torch.tensor([[4.0, -1.0], [0.2, 3.0]])}
    masks, _ = select_masks(scores, 3 / 7, "global", min_kept=0)
    assert masks["a.weight"].tolist() == [0, 1, 0] and masks["b.weight"].tolist() == [[1, 0], [0, 1]]


def test_global_collapse_guard_reports_and_keeps_count_exact():
    scores = {"a.weight": torch.full((50,), 1e-6), "b.weight": torch.arange(1.0, 101.0)}
    masks, events = select_masks(scores, 0.1, "global", min_kept=2)
    assert _kept(masks) == {"a.weight": 2, "b.weight": 13}   # 15 in all, as without the guard
    assert [(e.layer, e.would_keep, e.kept, e.size) for e in events] == [("a.weight", 0, 2, 50)]
    assert masks["b.weight"][-13:].sum() == 13                 # the best of b fill the rest
    unguarded, none = select_masks(scores, 0.1, "global", min_kept=0)
    assert _kept(unguarded)["a.weight"] == 0 and none == []


def test_layerwise_collapse_guard():
    masks, events = select_masks({"a.weight": torch.rand(4), "b.weight": torch.rand(100)}, 0.1, "layer", min_kept=1)
    assert _kept(masks) == {"a.weight": 1, "b.weight": 10}
    assert [(e.layer, e.would_keep, e.kept) for e in events] == [("a.weight", 0, 1)]


def test_previously_pruned_weights_are_never_revived():
    scores = {"a.weight": torch.tensor([9.0, 8.0, 1.0, 2.0, 3.0, 4.0])}
    previous = {"a.weight": torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])}
    masks, _ = select_masks(scores, 0.5, "global", min_kept=0, previous=previous)
    assert masks["a.weight"].tolist() == [0, 0, 0, 1, 1, 1]


def test_density_schedule_is_exponential_and_ends_at_target():
    sched = density_schedule(0.01, 4)
    assert sched == pytest.approx([0.01 ** 0.25, 0.01 ** 0.5, 0.01 ** 0.75, 0.01])
    assert sched[-1] == 0.01 and density_schedule(0.2, 1) == [0.2]
    assert all(a > b for a, b in zip(sched, sched[1:]))
    with pytest.raises(PruningError):
        density_schedule(0.5, 0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_refused(bad):
    with pytest.raises(PruningError, match="non-finite"):
        select_masks({"a.weight": torch.tensor([1.0, bad])}, 0.5)


def test_empty_scores_and_bad_scope_are_refused():
    with pytest.raises(PruningError, match="no prunable"):
        select_masks({}, 0.5)
    with pytest.raises(PruningError, match="scope"):
        select_masks({"a.weight": torch.ones(3)}, 0.5, "channel")


def test_threshold_selection_equals_stable_sort_cut():
    """The O(n) selection keeps exactly what a stable descending sort cut at k keeps."""
    from lnpt.pruning.selection import _top

    g = torch.Generator().manual_seed(0)
    for k in (0, 1, 17, 250, 499, 500):
        v = torch.randint(0, 5, (500,), generator=g).double()
        v[::7] = -math.inf
        expected = torch.zeros(500, dtype=torch.bool)
        expected[torch.sort(v, descending=True, stable=True).indices[:k]] = True
        assert torch.equal(_top(v, k), expected), k


@pytest.mark.parametrize("kind", ["uniform", "ties", "pruned", "sorted", "constant"])
def test_top_with_alive_mask_equals_stable_sort_cut_on_large_inputs(kind):
    """On large inputs, whatever the order, ties or share of pruned weights, the selection
    (numpy partition over the alive values) keeps what a stable descending sort of the values,
    pruned ones at -inf, keeps when cut at k: pruned weights come last, by position."""
    from lnpt.pruning.selection import _top

    g = torch.Generator().manual_seed(1)
    n = 140_001
    v = {"uniform": lambda: torch.rand(n, generator=g),
         "ties": lambda: torch.randint(0, 7, (n,), generator=g).float(),
         "pruned": lambda: torch.rand(n, generator=g),
         "sorted": lambda: torch.rand(n, generator=g).sort().values,
         "constant": lambda: torch.full((n,), 2.5)}[kind]()
    alive = torch.rand(n, generator=g) > (0.7 if kind in ("pruned", "ties") else 0.0)
    ranked = torch.where(alive, v, -math.inf)
    order = torch.sort(ranked, descending=True, stable=True).indices
    for k in (0, 1, 2, 50, 4_000, n // 3, n // 2, int(alive.sum()), n - 1_000, n - 1, n):
        expected = torch.zeros(n, dtype=torch.bool)
        expected[order[:k]] = True
        assert torch.equal(_top(v, k, alive.numpy()), expected), k
        assert torch.equal(_top(ranked, k), expected), k


def test_large_selection_matches_a_stable_sort_with_exact_counts():
    """Many layers, ties, pruned weights, float32 scores: the kept set is the stable sort's cut,
    the count is keep_count's, and float64 scores of the same values select the same."""
    g = torch.Generator().manual_seed(2)
    shapes = [(64, 16, 3, 3), (128, 64, 3, 3), (64, 64, 3, 3), (10, 64)]
    scores = {f"l{i}.weight": torch.randint(0, 2000, s, generator=g).float() / 7 for i, s in enumerate(shapes)}
    previous = {n: (torch.rand(s.shape, generator=g) > 0.4).float() for n, s in scores.items()}
    total = sum(s.numel() for s in scores.values())
    masks, events = select_masks(scores, 0.35, "global", min_kept=0, previous=previous)
    flat = torch.cat([torch.where(previous[n].flatten() != 0, s.flatten().double(), -math.inf)
                      for n, s in scores.items()])
    expected = torch.zeros(total, dtype=torch.bool)
    expected[torch.sort(flat, descending=True, stable=True).indices[:keep_count(total, 0.35)]] = True
    assert torch.equal(torch.cat([m.flatten() for m in masks.values()]).bool(), expected)
    assert events == []
    doubled, _ = select_masks({n: s.double() for n, s in scores.items()}, 0.35, "global", min_kept=0,
                              previous=previous)
    assert all(torch.equal(doubled[n], masks[n]) for n in masks)


def test_large_finite_scores_whose_sum_overflows_are_accepted():
    """Finiteness is checked through a sum; a sum that overflows must not refuse finite scores."""
    from lnpt.pruning.selection import all_finite

    big = {"a.weight": torch.full((4,), 3e38), "b.weight": torch.tensor([1.0, 2e38])}
    masks, _ = select_masks(big, 0.5, "global", min_kept=0)
    assert sum(int(m.sum()) for m in masks.values()) == 3
    assert all_finite(big.values()) and all_finite([]) and all_finite([torch.arange(3)])
    assert not all_finite([torch.ones(3), torch.tensor([1.0, math.nan])])
    assert not all_finite([torch.tensor([-math.inf, 1.0])])
