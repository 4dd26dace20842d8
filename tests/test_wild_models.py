"""Students from what users have: ``path/to/file.py:function`` and ``package.module:function``
factories (with extra keyword arguments), the feature contract checked at once, and
checkpoints that record the factory and refuse to load once it is gone."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lnpt.checkpoint import load_checkpoint, save_checkpoint
from lnpt.config import prune_settings
from lnpt.data import UnlabeledView
from lnpt.data.info import DatasetInfo
from lnpt.errors import CheckpointError, ConfigError
from lnpt.models import FACTORY_ATTR, create_model, forward_with_features
from lnpt.pruning import prune_at_init

INFO = DatasetInfo("toy", (1, 10, 10), 4, (0.5,), (0.25,))

SOURCE = '''
from dataclasses import dataclass

from torch import nn


@dataclass
class Sizes:  # a dataclass needs its module in sys.modules: user files must be importable
    hidden: int


def build(num_classes, input_shape, hidden=6):
    c, h, w = input_shape
    sizes = Sizes(hidden)
    return nn.Sequential(nn.Conv2d(c, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * h * w, sizes.hidden), nn.ReLU(), nn.Linear(sizes.hidden, num_classes))


def no_linear(num_classes, input_shape):
    return nn.Sequential(nn.Conv2d(input_shape[0], num_classes, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def wrong_classes(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes + 1))


def not_a_module(num_classes, input_shape):
    return "model"
'''


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_nets.py"
    path.write_text(SOURCE)
    return path


def test_file_factory_builds_with_arguments_and_seed(user_file):
    ref = f"{user_file}:build"
    a = create_model(ref, INFO.input_shape, 4, seed=1, model_args={"hidden": 9})
    b = create_model(ref, INFO.input_shape, 4, seed=1, model_args={"hidden": 9})
    logits, features = forward_with_features(a, torch.zeros(3, *INFO.input_shape))
    assert logits.shape == (3, 4) and features.shape == (3, 9)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert getattr(a, FACTORY_ATTR) == {"reference": f"{user_file.resolve()}:build", "args": {"hidden": 9}}


def test_module_factory_from_an_importable_package(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg_wild"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("userpkg_wild.nets:build", INFO.input_shape, 4)
    assert forward_with_features(model, torch.zeros(2, *INFO.input_shape))[1].shape == (2, 6)


@pytest.mark.parametrize("fn, message", [
    ("no_linear", "breaks the feature contract"),
    ("wrong_classes", r"logits of shape \(5,\) per sample, expected \(4,\)"),
    ("not_a_module", "returned str, not a torch.nn.Module"),
    ("missing", "has no function 'missing'"),
])
def test_a_factory_that_breaks_the_contract_fails_at_once(user_file, fn, message):
    with pytest.raises(ConfigError, match=message):
        create_model(f"{user_file}:{fn}", INFO.input_shape, 4)


def test_user_mistakes_are_one_line(user_file, tmp_path):
    with pytest.raises(ConfigError, match=r"failed when called with .*depth=3 \(TypeError"):
        create_model(f"{user_file}:build", INFO.input_shape, 4, model_args={"depth": 3})
    with pytest.raises(ConfigError, match="does not exist"):
        create_model(f"{tmp_path / 'nope.py'}:build", INFO.input_shape, 4)
    with pytest.raises(ConfigError, match="width 0.5 applies to zoo models only"):
        create_model(f"{user_file}:build", INFO.input_shape, 4, width=0.5)
    with pytest.raises(ConfigError, match="are for user models"):
        create_model("lenet5", INFO.input_shape, 4, model_args={"hidden": 3})
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        create_model(f"{broken}:build", INFO.input_shape, 4)


@pytest.mark.parametrize("package", ["timm", "torchvision"])
def test_optional_zoo_packages_name_their_extra_when_absent(package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ConfigError, match=rf"needs {package}.*pip install 'lnpt\[{package}\]'"):
        create_model(f"{package}:resnet18", (3, 32, 32), 10)


def test_checkpoint_records_the_factory_and_refuses_once_it_is_gone(user_file, tmp_path, monkeypatch):
    monkeypatch.chdir(user_file.parent)
    model = create_model("my_nets.py:build", INFO.input_shape, 4, seed=0, model_args={"hidden": 7})
    images = torch.randint(0, 256, (16, *INFO.input_shape), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    prune_at_init(model, prune_settings(criterion="magnitude", sparsity=0.5, batches=1, score_batch_size=8),
                  UnlabeledView(images, INFO), None)
    save_checkpoint(tmp_path / "s.pt", model, "my_nets.py:build", 1.0, INFO)
    monkeypatch.chdir(tmp_path.parent)  # the recorded reference is absolute
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt.model_name == f"{user_file.resolve()}:build" and ckpt.model_args == {"hidden": 7}
    rebuilt = ckpt.build(allow_code=True)
    x = torch.randn(2, *INFO.input_shape)
    torch.testing.assert_close(rebuilt(x), model(x))
    masks = sorted(n.removesuffix("_mask") for n, _ in rebuilt.named_buffers() if n.endswith("_mask"))
    assert ckpt.masked == masks == ["0.weight", "3.weight"]
    user_file.unlink()
    with pytest.raises(CheckpointError, match=f"cannot build.*{user_file.name} does not exist"):
        load_checkpoint(tmp_path / "s.pt").build(allow_code=True)
