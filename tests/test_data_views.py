"""The unlabeled view (no path to labels), fixed-seed splits and batch augmentation."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from lnpt.data import (
    DatasetInfo,
    DataSplits,
    LabeledSet,
    UnlabeledView,
    load_data,
    mnist_like,
)
from lnpt.data.augment import augment, random_crop, random_hflip
from lnpt.data.idx import write_idx

INFO = DatasetInfo("toy", (2, 6, 5), 3, (0.5, 0.5), (0.25, 0.25), hflip=False, crop_padding=0)


def _labeled(n: int = 10, info: DatasetInfo = INFO) -> LabeledSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *info.input_shape), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % info.num_classes + 100  # distinctive values
    return LabeledSet(images, labels, info)


def _reachable(root: object) -> list[object]:
    """Every object reachable from ``root`` through attributes and container items."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, dict):
            stack += list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        if hasattr(obj, "__dict__") and not isinstance(obj, torch.Tensor):
            stack += list(vars(obj).values())
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                stack.append(getattr(obj, slot))
    return list(seen.values())


# ----------------------------------------------------------------------------- unlabeled view


def test_unlabeled_view_has_no_path_to_labels() -> None:
    ls = _labeled()
    view = ls.unlabeled()
    assert isinstance(view, UnlabeledView) and not isinstance(view, LabeledSet)
    assert [n for n in dir(view) if "label" in n.lower()] == []
    with pytest.raises(AttributeError):
        view.labels  # noqa: B018
    objects = _reachable(view)
    assert not any(isinstance(o, LabeledSet) for o in objects)
    label_ptr = ls.labels.untyped_storage().data_ptr()
    tensors = [o for o in objects if isinstance(o, torch.Tensor)]
    assert tensors, "the walk should at least reach the image tensor"
    assert all(t.untyped_storage().data_ptr() != label_ptr for t in tensors)
    # and it cannot be built with labels in the first place
    assert list(inspect.signature(UnlabeledView).parameters) == ["images", "info"]


def test_unlabeled_batches_yield_index_and_inputs_only() -> None:
    ls = _labeled(n=7)
    view = ls.unlabeled()
    batches = list(view.batches(3))
    assert [len(b) for b in batches] == [2, 2, 2]
    assert [b[0].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    for index, x in batches:
        assert x.dtype == torch.float32 and x.shape == (len(index), *INFO.input_shape)
        assert torch.equal(x, ls.inputs(index))
    # normalised with the dataset's mean/std
    raw = ls._images[:1].float() / 255
    assert torch.allclose(view.inputs(torch.tensor([0])), (raw - 0.5) / 0.25)


def test_labeled_batches_and_limits() -> None:
    ls = _labeled(n=10)
    got = list(ls.batches(4, limit=2))
    assert len(got) == 2 and all(len(b) == 3 for b in got)
    assert torch.equal(got[1][2], ls.labels[4:8])
    with pytest.raises(ValueError, match="batch size"):
        next(ls.batches(0))
    with pytest.raises(ValueError, match="uint8"):
        LabeledSet(torch.zeros(2, 1, 4, 4), torch.zeros(2), INFO)
    with pytest.raises(ValueError, match="differ in length"):
        LabeledSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3), INFO)


def test_shuffled_batches_are_deterministic_under_a_generator() -> None:
    view = _labeled(n=20).unlabeled()

    def order(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return torch.cat([i for i, _ in view.batches(6, shuffle=True, generator=g)]).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == list(range(20))


# ----------------------------------------------------------------------------- splits


@pytest.fixture
def indexed_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Fashion-MNIST-named dataset whose images carry their own index in pixel (0, 0)."""
    monkeypatch.delenv("LNPT_DATA", raising=False)
    rng = np.random.default_rng(0)
    for split, n in (("train", 100), ("t10k", 30)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = np.arange(n)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", x)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    assert mnist_like._complete(tmp_path)
    return tmp_path


def _ids(ls: LabeledSet) -> list[int]:
    return ls._images[:, 0, 0, 0].tolist()


def test_splits_are_deterministic_and_disjoint(indexed_dataset: Path) -> None:
    a = load_data("fashion-mnist", indexed_dataset, val_fraction=0.2, split_seed=3)
    b = load_data("fashion-mnist", indexed_dataset, val_fraction=0.2, split_seed=3)
    c = load_data("fashion-mnist", indexed_dataset, val_fraction=0.2, split_seed=4)
    assert isinstance(a, DataSplits) and len(a.train) == 80 and len(a.val) == 20 and len(a.test) == 30
    assert _ids(a.train) == _ids(b.train) and _ids(a.val) == _ids(b.val)
    assert torch.equal(a.train.labels, b.train.labels)
    assert set(_ids(a.val)) != set(_ids(c.val))
    assert set(_ids(a.train)).isdisjoint(_ids(a.val))
    assert sorted(_ids(a.train) + _ids(a.val)) == list(range(100))


def test_subsets_are_fixed_and_stay_out_of_validation(indexed_dataset: Path) -> None:
    full = load_data("fashion-mnist", indexed_dataset, val_fraction=0.2, split_seed=0)
    sub = load_data("fashion-mnist", indexed_dataset, val_fraction=0.2, split_seed=0,
                    train_subset=25, test_subset=10)
    again = load_data("fashion-mnist", indexed_dataset, val_fraction=0.2, split_seed=0,
                      train_subset=25, test_subset=10)
    assert len(sub.train) == 25 and len(sub.test) == 10
    assert _ids(sub.val) == _ids(full.val)  # the subset does not move the validation set
    assert set(_ids(sub.train)) <= set(_ids(full.train))
    assert _ids(sub.test) == _ids(again.test) and len(set(_ids(sub.test))) == 10
    with pytest.raises(ValueError, match="val_fraction"):
        load_data("fashion-mnist", indexed_dataset, val_fraction=1.0)


def test_unknown_dataset_lists_known_ones() -> None:
    with pytest.raises(KeyError) as err:
        load_data("fashoin-mnist")
    msg = str(err.value)
    assert "unknown dataset 'fashoin-mnist'" in msg
    for name in ("cifar10", "cifar100", "digits", "fashion-mnist", "imagefolder", "mnist"):
        assert name in msg


def test_digits_split_is_offline_and_sized(digits: DataSplits) -> None:
    assert digits.info.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.val) == 1437 and len(digits.test) == 360
    assert not digits.info.hflip


# ----------------------------------------------------------------------------- augmentation


def test_augment_keeps_shapes() -> None:
    for shape in [(5, 1, 28, 28), (3, 3, 32, 32), (2, 1, 8, 8)]:
        x = torch.rand(shape)
        assert augment(x, 4, True).shape == shape
        assert augment(x, 0, False).shape == shape


def test_random_crop_really_shifts_within_padding() -> None:
    n, p = 64, 3
    x = torch.rand(n, 2, 9, 9) + 1.0  # strictly positive, so zero padding is recognisable
    out = random_crop(x, p, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    shifts = set()
    for i in range(n):
        match = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.equal(out[i], padded[i, :, dy:dy + 9, dx:dx + 9])]
        assert len(match) == 1, "each output is exactly one window of the padded image"
        shifts.add(match[0])
    assert len(shifts) > 10  # many distinct offsets out of 49
    assert any(s != (p, p) for s in shifts)  # the image really moves
    assert random_crop(x, 0) is x


def test_flip_only_where_allowed() -> None:
    x = torch.rand(64, 1, 5, 5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, 0, hflip=False, generator=g), x)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54
    # through a view: a dataset that forbids flips and has no padding is left untouched
    ls = _labeled(n=16)
    idx = torch.arange(16)
    assert torch.equal(ls.inputs(idx, augmented=True), ls.inputs(idx))
    flip_info = DatasetInfo("toy", (2, 6, 5), 3, (0.5, 0.5), (0.25, 0.25), hflip=True, crop_padding=0)
    flip_set = LabeledSet(ls._images, ls.labels, flip_info)
    assert not torch.equal(flip_set.inputs(idx, augmented=True, generator=g), flip_set.inputs(idx))


def test_augmentation_is_deterministic_under_a_generator() -> None:
    x = torch.rand(8, 3, 12, 12)
    a = augment(x, 4, True, torch.Generator().manual_seed(5))
    b = augment(x, 4, True, torch.Generator().manual_seed(5))
    c = augment(x, 4, True, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    ls = _labeled(n=8, info=DatasetInfo("toy", (2, 6, 5), 3, (0.5, 0.5), (0.25, 0.25), True, 2))
    view = ls.unlabeled()
    b1 = [x for _, x in view.batches(4, augmented=True, generator=torch.Generator().manual_seed(1))]
    b2 = [x for _, x in view.batches(4, augmented=True, generator=torch.Generator().manual_seed(1))]
    assert all(torch.equal(u, v) for u, v in zip(b1, b2))
    assert not torch.equal(torch.cat(b1), view.inputs(torch.arange(8)))
