"""Channel scores -> removal plan: exact counts, floors, rounding, global ranking, ties."""
from __future__ import annotations

import pytest
import torch

from lnpt.errors import PruningError
from lnpt.pruning.structured import (
    ChannelGroup,
    ChannelMember,
    kept_counts,
    plan_removal,
)


def group(root: str, size: int) -> ChannelGroup:
    return ChannelGroup(root, size, (ChannelMember(root, "producer", tuple(range(size)), tuple(range(size))),), ())


def test_layer_scope_keeps_the_best_channels_of_each_group() -> None:
    groups = [group("a", 10), group("b", 4)]
    scores = {"a": torch.arange(10.0), "b": torch.tensor([4.0, 1.0, 3.0, 2.0])}
    plan = plan_removal(groups, scores, 0.5)
    assert plan == {"a": [0, 1, 2, 3, 4], "b": [1, 3]}


def test_min_channels_floor_and_round_to() -> None:
    groups = [group("a", 24), group("b", 3)]
    scores = {"a": torch.rand(24), "b": torch.rand(3)}
    assert kept_counts(groups, scores, 0.3, round_to=8) == {"a": 16, "b": 2}  # 16.8 -> 16; b: multiple of 2
    # A layer no wider than round_to rounds to a halving of it, never to an odd count.
    narrow = [group("c", 16), group("d", 16)]
    assert kept_counts(narrow, {"c": torch.rand(16), "d": torch.rand(16)}, 0.45, round_to=16) == {"c": 8, "d": 8}
    assert kept_counts(narrow, {"c": torch.rand(16), "d": torch.rand(16)}, 0.2, round_to=16) == {"c": 16, "d": 16}
    assert kept_counts(groups, scores, 0.9, min_channels=3) == {"a": 3, "b": 3}
    assert kept_counts(groups, scores, 0.99) == {"a": 1, "b": 1}  # never a zero-width layer


def test_global_scope_moves_channels_to_the_group_with_the_stronger_spread() -> None:
    groups = [group("flat", 8), group("skewed", 8)]
    scores = {"flat": torch.ones(8), "skewed": torch.tensor([10.0, 10, 10, 10, 0, 0, 0, 0])}
    counts = kept_counts(groups, scores, 0.5, scope="global")
    assert counts["skewed"] == 4 and counts["flat"] == 4
    scores["skewed"] = torch.tensor([20.0, 20, 20, 20, 20, 20, 1, 1])
    counts = kept_counts(groups, scores, 0.5, scope="global")
    assert counts["skewed"] == 6 and counts["flat"] == 2  # normalised by mean: 1.5 vs 1.0
    assert sum(counts.values()) == 8


def test_ties_go_to_the_lower_index_and_count_is_exact() -> None:
    plan = plan_removal([group("a", 6)], {"a": torch.zeros(6)}, 0.5)
    assert plan == {"a": [3, 4, 5]}


@pytest.mark.parametrize("ratio", [-0.1, 1.0, float("nan")])
def test_bad_ratio_is_refused(ratio: float) -> None:
    with pytest.raises(PruningError, match="channel ratio"):
        plan_removal([group("a", 4)], {"a": torch.ones(4)}, ratio)


def test_bad_scores_are_refused() -> None:
    with pytest.raises(PruningError, match="wrong shape"):
        plan_removal([group("a", 4)], {"a": torch.ones(3)}, 0.5)
    with pytest.raises(PruningError, match="non-finite"):
        plan_removal([group("a", 4)], {"a": torch.tensor([1.0, float("nan"), 1, 1])}, 0.5)
    with pytest.raises(PruningError, match="unknown channel scope"):
        kept_counts([group("a", 4)], {"a": torch.ones(4)}, 0.5, scope="row")


def test_global_ratio_for_macs_finds_the_shallowest_cut_that_fits() -> None:
    from lnpt.pruning.structured.selection import global_ratio_for_macs

    groups = [group("a", 16), group("b", 32)]
    scores = {"a": torch.arange(16.0), "b": torch.rand(32, generator=torch.Generator().manual_seed(0))}
    cost = {"a": 10, "b": 1}  # MACs per kept channel

    def price(plan):
        return sum(cost[g.root] * (g.size - len(plan[g.root])) for g in groups)

    ratio = global_ratio_for_macs(groups, scores, 120, price)
    assert price(plan_removal(groups, scores, ratio, "global")) <= 120
    assert price(plan_removal(groups, scores, ratio - 0.01, "global")) > 120
    assert global_ratio_for_macs(groups, scores, 10_000, price) == 0.0  # the dense model already fits
    with pytest.raises(PruningError, match="no global plan reaches"):
        global_ratio_for_macs(groups, scores, 5, price)
