"""Channel criteria: the registry lookup, what each score is, and prune_channels end to end."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lnpt.config import prune_settings
from lnpt.data import DataSplits
from lnpt.errors import ConfigError, PruningError
from lnpt.models import create_model, feature_dim
from lnpt.pruning.criteria import CRITERIA
from lnpt.pruning.inputs import ScoringSource
from lnpt.pruning.structured import (
    ChannelGraph,
    channel_criterion,
    channel_criterion_names,
    prune_channels,
)
from lnpt.teachers import LocalTeacher
from lnpt.teachers.base import TeacherInfo


@pytest.fixture(scope="module")
def teacher(digits: DataSplits) -> LocalTeacher:
    """An untrained but fixed teacher: enough to exercise guidance, cheap to build."""
    model = create_model("lenet5", digits.info.input_shape, 10, 2.0, seed=1).eval()
    return LocalTeacher(model, TeacherInfo("lenet5", 2.0, feature_dim(model), digits.info))


def scores_for(name: str, model, digits: DataSplits, teacher, **cfg):
    crit = channel_criterion(name)
    prune_cfg = prune_settings(criterion=name, structured=True, batches=2, score_batch_size=32, **cfg)
    inputs, _ = ScoringSource(digits.train.unlabeled(), teacher, None, 0).build(crit, prune_cfg)
    groups = ChannelGraph(model, digits.info.input_shape).groups()
    return groups, crit.score(model, groups, inputs), inputs


def test_registry_has_channel_forms_of_the_weight_criteria() -> None:
    names = channel_criterion_names()
    assert {"lnpt", "lnpt-fm", "snip", "magnitude", "random"} <= set(names)
    assert set(CRITERIA.names()) <= set(names)
    assert channel_criterion("lnpt").form == "filter-sum of lnpt"
    assert channel_criterion("random").form == "native"
    with pytest.raises(PruningError, match="unknown channel criterion 'lnp'; known: .*lnpt-fm"):
        channel_criterion("lnp")


def test_magnitude_is_the_filter_l1_norm_summed_over_writers(digits: DataSplits) -> None:
    model = create_model("resnet20", digits.info.input_shape, 10, 0.25, seed=0)
    groups, scores, _ = scores_for("magnitude", model, digits, None)
    stem = next(g for g in groups if g.root == "conv1")
    expected = sum(model.get_submodule(m.module).weight.abs().sum((1, 2, 3)) for m in stem.members("producer"))
    torch.testing.assert_close(scores["conv1"], expected.double())
    assert len(stem.members("producer")) == 4  # stem + three block outputs share the stream


def test_lnpt_channel_score_is_the_filter_sum_of_lnpt_weight_scores(digits: DataSplits, teacher) -> None:
    model = create_model("vgg11", digits.info.input_shape, 10, 0.125, seed=0)
    groups, scores, inputs = scores_for("lnpt", model, digits, teacher)
    masks = {"features.4.weight": torch.ones_like(model.features[4].weight)}
    weight_scores = CRITERIA.get("lnpt").score(model, masks, inputs)["features.4.weight"]
    torch.testing.assert_close(scores["features.4"], weight_scores.sum((1, 2, 3)).double())
    assert all(bool((s > 0).any()) for s in scores.values())


def test_lnpt_feature_map_saliency_is_zero_for_a_dead_channel(digits: DataSplits, teacher) -> None:
    model = create_model("vgg11", digits.info.input_shape, 10, 0.125, seed=0)
    with torch.no_grad():  # channel 0 of the first BN outputs exactly zero: removing it changes nothing
        model.features[1].weight[0] = 0
        model.features[1].bias[0] = 0
    groups, scores, _ = scores_for("lnpt-fm", model, digits, teacher)
    first = scores["features.0"]
    assert first[0] == 0 and bool((first[1:] > 0).all())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # scored a copy


def test_random_channel_scores_follow_the_seed(digits: DataSplits) -> None:
    model = create_model("lenet5", digits.info.input_shape, 10, 1.0, seed=0)
    _, a, _ = scores_for("random", model, digits, None)
    _, b, _ = scores_for("random", model, digits, None)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("criterion", ["lnpt", "lnpt-fm", "snip", "magnitude", "random"])
def test_prune_channels_every_criterion(digits: DataSplits, teacher, criterion: str) -> None:
    model = create_model("resnet20", digits.info.input_shape, 10, 0.5, seed=0)
    cfg = prune_settings(criterion=criterion, structured=True, channel_ratio=0.5, batches=2, score_batch_size=32)
    report = prune_channels(model, cfg, digits.train.unlabeled(), teacher, seed=0)
    assert report.after.params < 0.3 * report.before.params and report.after.macs < 0.3 * report.before.macs
    assert model.classifier.in_features == 16 and model.classifier.out_features == 10
    d = report.to_dict()
    assert d["macs_label"].startswith("MACs") and "FLOP" not in report.to_markdown()
    assert {x["name"]: (x["out_before"], x["out_after"]) for x in d["layers"]}["conv1"] == (8, 4)
    assert report.history and 0.5 < report.sparsity < 1.0
    assert model(digits.test.inputs(torch.arange(3))).shape == (3, 10)


def test_magnitude_keeps_the_largest_filters(digits: DataSplits) -> None:
    model = create_model("vgg11", digits.info.input_shape, 10, 0.25, seed=0)
    original = model.features[0].weight.detach().clone()
    cfg = prune_settings(criterion="magnitude", structured=True, channel_ratio=0.5, batches=1, score_batch_size=8)
    prune_channels(model, cfg, digits.train.unlabeled(), None)
    top = original.abs().sum((1, 2, 3)).argsort(descending=True)[:8].sort().values
    torch.testing.assert_close(model.features[0].weight, original[top])


def test_teacher_criteria_need_a_teacher(digits: DataSplits) -> None:
    model = create_model("lenet5", digits.info.input_shape, 10, seed=0)
    with pytest.raises(PruningError, match="needs a teacher"):
        prune_channels(model, prune_settings(criterion="lnpt-fm", structured=True), digits.train.unlabeled(), None)
    with pytest.raises(ConfigError, match="min-channels"):  # the settings refuse it ...
        prune_settings(criterion="random", structured=True, min_channels=0)
    settings = prune_settings(criterion="random", structured=True)
    past_the_check = dataclasses.replace(settings, channels=dataclasses.replace(settings.channels, min_channels=0))
    with pytest.raises(PruningError, match="min-channels"):  # ... and so does the library, set past them
        prune_channels(model, past_the_check, digits.train.unlabeled(), None)


def test_lnpt_feature_map_sum_abs_lets_positions_cancel(digits: DataSplits, teacher) -> None:
    """|sum over positions of a*g| <= sum of |a*g| per channel (triangle inequality), strictly
    somewhere: the Taylor form (sum-abs) is a different score, not a rescaling."""
    model = create_model("vgg11", digits.info.input_shape, 10, 0.125, seed=0)
    _, abs_sum, _ = scores_for("lnpt-fm", model, digits, teacher)
    _, sum_abs, _ = scores_for("lnpt-fm", model, digits, teacher, fm_saliency="sum-abs")
    assert abs_sum.keys() == sum_abs.keys()
    for k in abs_sum:
        assert bool((sum_abs[k] <= abs_sum[k] * (1 + 1e-5)).all()), k  # float32 summation order
    first = "features.0"
    assert bool((sum_abs[first] < abs_sum[first]).any())
    ratio = sum_abs[first] / abs_sum[first]
    assert float(ratio.max() - ratio.min()) > 1e-3  # not a common factor: the ranking can change
    with pytest.raises(PruningError, match="unknown --fm-saliency 'taylor'"):
        cfg = prune_settings(criterion="lnpt-fm", structured=True)
        prune_channels(model, dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, fm_saliency="taylor")),
                       digits.train.unlabeled(), teacher)


def test_mac_budget_spends_the_layer_wise_macs_on_a_global_allocation(digits: DataSplits) -> None:
    """--channel-budget macs: the global plan costs at most the layer-wise plan's MACs, and
    nearly all of them (the cut is the shallowest that fits), with different layer widths."""
    def pruned(**cfg):
        model = create_model("vgg11", digits.info.input_shape, 10, 0.25, seed=0)
        base = dict(criterion="magnitude", structured=True, channel_ratio=0.5, batches=1, score_batch_size=8)
        return prune_channels(model, prune_settings(**{**base, **cfg}), digits.train.unlabeled(), None, seed=0)

    layer = pruned().to_dict()
    macs = pruned(channel_scope="global", channel_budget="macs").to_dict()
    count = pruned(channel_scope="global").to_dict()
    assert macs["channel_budget"] == "macs" and layer["global_ratio"] is None
    assert 0.97 * layer["macs_after"] <= macs["macs_after"] <= layer["macs_after"]
    assert macs["global_ratio"] != pytest.approx(0.5) and count["global_ratio"] == 0.5
    widths = lambda d: [x["out_after"] for x in d["layers"]]  # noqa: E731
    assert widths(macs) != widths(layer)
    with pytest.raises(PruningError, match="channel-scope global"):
        pruned(channel_budget="macs")
    # Scores per MAC: the same budget, spent differently (a channel's score is divided by
    # what it costs, so expensive layers give up more channels).
    per_mac = pruned(channel_scope="global", channel_budget="macs", channel_norm="per-mac").to_dict()
    assert per_mac["channel_norm"] == "per-mac" and macs["channel_norm"] == "mean"
    assert per_mac["macs_after"] <= layer["macs_after"] and widths(per_mac) != widths(macs)
    assert "(scores per MAC)" in pruned(channel_scope="global", channel_norm="per-mac").to_markdown()
    with pytest.raises(PruningError, match="channel-norm per-mac"):
        pruned(channel_norm="per-mac")
