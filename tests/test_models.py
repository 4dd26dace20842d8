"""The model zoo and the feature contract, checked over the whole registry and on user modules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lnpt.data import DataSplits
from lnpt.models import (
    MODELS,
    classifier_name,
    create_model,
    feature_dim,
    find_classifier,
    forward_with_features,
)
from lnpt.registry import UnknownNameError

NUM_CLASSES = 7  # not 10, so a hard-coded class count shows


def _check_contract(model: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    logits, feats = forward_with_features(model, x)
    assert logits.shape == (x.shape[0], num_classes)
    assert feats.shape == (x.shape[0], feature_dim(model))
    # the features are exactly what the classifier turns into the logits
    assert torch.allclose(find_classifier(model)(feats), logits, atol=1e-5)
    assert feats.requires_grad  # the graph is kept so feature losses reach the weights
    assert not find_classifier(model)._forward_hooks  # the tap is removed afterwards
    assert torch.allclose(model(x), logits, atol=1e-5)  # same answer as a plain call
    return feats


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", MODELS.names())
def test_zoo_feature_contract(name: str, shape: tuple[int, int, int]) -> None:
    model = create_model(name, shape, NUM_CLASSES, width=0.25, seed=0).eval()
    x = torch.randn(2, *shape)
    feats = _check_contract(model, x, NUM_CLASSES)
    feats.sum().backward()
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert first.weight.shape[1] == (shape[0] if isinstance(first, nn.Conv2d) else shape[0] * shape[1] * shape[2])


def test_expected_zoo_is_registered() -> None:
    for name in ("lenet300100", "lenet5", "resnet20", "resnet32", "resnet56", "vgg11", "vgg16", "vgg19"):
        assert name in MODELS


class HeadNamedOut(nn.Module):
    """A user's model: no `classifier` attribute, conv body, an embedding Linear, a head Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten())
        self.embed = nn.Linear(4 * 6 * 6, 12)
        self.out = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(self.body(x))))


class ClassifierRegisteredFirst(nn.Module):
    """Registration order would pick `body`; the `classifier` attribute says otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(16, 3)
        self.body = nn.Linear(10, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.body(x)))


class HeadRegisteredFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 3)
        self.body = nn.Linear(10, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def test_user_defined_module_works_unchanged() -> None:
    model = HeadNamedOut()
    x = torch.randn(3, 3, 8, 8)
    feats = _check_contract(model, x, 5)
    assert classifier_name(model) == "out" and feature_dim(model) == 12
    assert torch.allclose(feats, torch.tanh(model.embed(model.body(x))))


def test_classifier_attribute_wins_over_registration_order() -> None:
    model = ClassifierRegisteredFirst()
    x = torch.randn(4, 10)
    feats = _check_contract(model, x, 3)
    assert classifier_name(model) == "classifier"
    assert torch.allclose(feats, torch.relu(model.body(x)))


def test_wrong_layer_is_reported_not_silently_used() -> None:
    with pytest.raises(RuntimeError, match="name the final nn.Linear `classifier`"):
        forward_with_features(HeadRegisteredFirst(), torch.randn(2, 10))


def test_module_without_linear_or_without_calling_it() -> None:
    with pytest.raises(TypeError, match="no nn.Linear"):
        forward_with_features(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), torch.randn(1, 1, 5, 5))

    class SkipsHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(RuntimeError, match="never called its classifier"):
        forward_with_features(SkipsHead(), torch.randn(1, 4))


@pytest.mark.parametrize("name,base", [("resnet20", 64), ("vgg11", 512), ("lenet300100", 100), ("lenet5", 84)])
def test_width_multiplier(name: str, base: int) -> None:
    shape = (3, 32, 32)
    sizes = {}
    for width in (0.25, 0.5, 1.0):
        model = create_model(name, shape, 10, width=width)
        assert feature_dim(model) == max(1, round(base * width))
        sizes[width] = sum(p.numel() for p in model.parameters())
    assert sizes[0.25] < sizes[0.5] < sizes[1.0]
    with pytest.raises(ValueError, match="width"):
        create_model(name, shape, 10, width=0)


def test_resnet_depths_and_vgg_layers() -> None:
    def convs(m: nn.Module) -> int:
        return sum(isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3) for c in m.modules())

    for depth in (20, 32, 56):
        assert convs(create_model(f"resnet{depth}", (3, 32, 32), 10, width=0.25)) == depth - 1
    for depth in (11, 16, 19):
        vgg = create_model(f"vgg{depth}", (3, 32, 32), 10, width=0.25)
        assert convs(vgg) == depth - 3  # plus 3 linear layers in the original VGG counting
        assert sum(isinstance(b, nn.BatchNorm2d) for b in vgg.modules()) == depth - 3


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        create_model("resnet21", (3, 32, 32), 10)
    msg = str(err.value)
    assert "unknown model 'resnet21'" in msg
    for name in MODELS.names():
        assert name in msg


def test_seed_makes_init_reproducible_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("lenet5", (1, 28, 28), 10, seed=1)
    after = torch.rand(1)
    b = create_model("lenet5", (1, 28, 28), 10, seed=1)
    c = create_model("lenet5", (1, 28, 28), 10, seed=2)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_lenet5_on_8x8_digits(digits: DataSplits) -> None:
    model = create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=0)
    _, x, y = next(digits.train.batches(16))
    assert x.shape == (16, 1, 8, 8)
    logits, feats = forward_with_features(model, x)
    assert logits.shape == (16, 10) and feats.shape == (16, 84)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
