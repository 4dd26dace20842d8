"""Physical channel removal: every zoo model (residual coupling included) and a user module with
a depthwise conv shrink consistently, keep their forward shapes, and compute exactly what the
same network computes with the removed channels zeroed (the "channel-masked" model)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lnpt.errors import PruningError
from lnpt.models import MODELS, create_model, find_classifier, forward_with_features
from lnpt.pruning import apply_masks
from lnpt.pruning.structured import (
    ChannelGraph,
    channel_counts,
    plan_as_masks,
    plan_removal,
)

SHAPE = (1, 8, 8)


def channel_masked(model: nn.Module, groups, plan) -> nn.Module:
    """The reference: same shapes, removed channels zeroed in every layer that writes them."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for g in groups:
            drop = set(plan[g.root])
            for member in g.outputs:
                module = ref.get_submodule(member.module)
                idx = [c for c, r in zip(member.channels, member.roots) if r in drop]
                for p in (module.weight, getattr(module, "bias", None)):
                    if p is not None:
                        p[idx] = 0
    return ref


def random_plan(model: nn.Module, ratio: float = 0.5, seed: int = 0):
    graph = ChannelGraph(model, SHAPE)
    groups = graph.groups()
    gen = torch.Generator().manual_seed(seed)
    scores = {g.root: torch.rand(g.size, generator=gen) for g in groups}
    return graph, groups, plan_removal(groups, scores, ratio)


@pytest.mark.parametrize("name", MODELS.names())
def test_zoo_model_shrinks_and_matches_channel_masked_model(name: str) -> None:
    model = create_model(name, SHAPE, 10, width=0.5, seed=0).eval()
    # Non-trivial BatchNorm statistics, so a wrong BN slice would change the outputs.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    graph, groups, plan = random_plan(model)
    reference = channel_masked(model, groups, plan)
    before = channel_counts(model)
    params = sum(p.numel() for p in model.parameters())
    graph.remove(plan)
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, ref = model(x), reference(x)
    assert out.shape == (4, 10)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in model.parameters()) < 0.5 * params
    after = channel_counts(model)
    head = find_classifier(model)
    assert head.out_features == 10 and head.in_features < before["classifier"][0]  # classifier kept, input cut
    for g in groups:  # every group lost exactly what the plan says, in every member
        assert after[g.root][1] == before[g.root][1] - len(plan[g.root])
    for m in model.modules():  # BatchNorm follows its conv
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean.numel() == m.num_features == m.weight.numel()


def test_resnet_residual_stream_is_cut_once_for_all_its_writers() -> None:
    model = create_model("resnet20", SHAPE, 10, width=1.0, seed=0)
    graph, groups, plan = random_plan(model, 0.25)
    stem = next(g for g in groups if g.root == "conv1")
    writers = {m.module for m in stem.members("producer")}
    assert {"conv1", "blocks.0.conv2", "blocks.1.conv2", "blocks.2.conv2"} <= writers
    graph.remove(plan)
    widths = {model.get_submodule(w).out_channels for w in writers}
    assert widths == {12}  # 16 * (1 - 0.25), identical across the addition
    model.eval()(torch.zeros(2, *SHAPE))


class DepthwiseNet(nn.Module):
    """A user-defined module (not in the zoo) with a depthwise-separable block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.pw(self.dw(self.stem(x)))).flatten(1))


def test_user_module_with_depthwise_conv() -> None:
    torch.manual_seed(0)
    model = DepthwiseNet().eval()
    graph, groups, plan = random_plan(model, 0.5)
    stem = next(g for g in groups if any(m.module == "stem.0" for m in g.outputs))
    assert {m.module for m in stem.outputs} >= {"stem.0", "stem.1", "dw.0", "dw.1"}  # depthwise ties in/out
    reference = channel_masked(model, groups, plan)
    graph.remove(plan)
    dw = model.dw[0]
    assert dw.in_channels == dw.out_channels == dw.groups == 4
    assert model.pw[0].out_channels == 8 and model.classifier.in_features == 8
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-4)
    logits, feats = forward_with_features(model, x)
    assert feats.shape == (3, 8)  # the feature contract holds on the shrunk model


def test_prune_first_false_keeps_the_first_layer() -> None:
    model = create_model("vgg11", SHAPE, 10, width=0.25, seed=0)
    groups = ChannelGraph(model, SHAPE).groups(prune_first=False)
    assert all(m.module != "features.0" for g in groups for m in g.outputs)
    assert len(groups) == len(ChannelGraph(model, SHAPE).groups()) - 1


def test_masked_student_is_refused() -> None:
    model = create_model("lenet5", SHAPE, 10, seed=0)
    apply_masks(model, {"conv.0.weight": torch.ones_like(model.conv[0].weight)})
    with pytest.raises(PruningError, match="unstructured masks"):
        ChannelGraph(model, SHAPE)


def test_tracing_leaves_batchnorm_statistics_and_mode_alone() -> None:
    model = create_model("resnet20", SHAPE, 10, width=0.25, seed=0).train()
    stats = copy.deepcopy(model.bn1.state_dict())
    ChannelGraph(model, SHAPE)
    assert model.training
    for k, v in stats.items():
        assert torch.equal(model.bn1.state_dict()[k], v)


@pytest.mark.parametrize("name", ["resnet20", "vgg11"])
def test_pruned_model_equals_weight_masked_model_at_init(name: str) -> None:
    """Before training (BatchNorm shifts zero, batch statistics), masking the filters of the
    removed channels with the unstructured machinery computes exactly what removal computes."""
    model = create_model(name, SHAPE, 10, width=0.5, seed=0).train()
    graph, groups, plan = random_plan(model, 0.5)
    masked = apply_masks(copy.deepcopy(model), plan_as_masks(model, groups, plan))
    graph.remove(plan)
    x = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked(x), atol=1e-5, rtol=1e-4)
