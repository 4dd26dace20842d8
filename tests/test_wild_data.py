"""Unlabeled images streamed from disk: any folder layout or a list file, decoded in worker
processes, batches bit-identical to the in-memory view of the same images, bad files skipped
and counted (or failing the run), and no label on the path: renaming folders changes nothing."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lnpt.config import TrainConfig
from lnpt.data import LabeledSet, UnlabeledView
from lnpt.data.info import DatasetInfo
from lnpt.data.streamed import StreamSettings, decode_image, open_unlabeled, scan_sources
from lnpt.errors import DatasetNotFoundError
from lnpt.models import create_model
from lnpt.teachers import LocalTeacher, TeacherInfo, teacher_guidance
from lnpt.teachers.store import all_outputs
from lnpt.train.evaluate import EvalSettings, Evaluator
from lnpt.train.loop import FitOptions, fit
from lnpt.train.losses import PseudoLabel

INFO = DatasetInfo("toy", (3, 8, 8), 4, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), hflip=True, crop_padding=1)
FOLDERS = ("alpha", "beta/one", "beta/two", "gamma deep/x/y")


def _write_images(root: Path, folders=FOLDERS, per_folder: int = 3, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    written = []
    for k, folder in enumerate(folders):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for j in range(per_folder):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            mode = ("RGB", "L", "RGBA")[j % 3]
            path = root / folder / f"img{j}.png"
            Image.fromarray(pixels).convert(mode).save(path)
            written.append(path)
    return written


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "unlabeled"
    _write_images(root)
    (root / "alpha" / "notes.txt").write_text("not an image")
    (root / "beta" / ".DS_Store").write_bytes(b"\x00\x01")
    return root


def _add_bad_files(root: Path) -> None:
    (root / "beta" / "one" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(50)))
    (root / "beta" / "two" / "empty.jpg").write_bytes(b"")
    (root / "gamma deep" / "text.jpg").write_text("a text file with an image suffix")


def _in_memory(paths: list[Path]) -> UnlabeledView:
    pixels = np.stack([decode_image(p, 3, (8, 8)) for p in paths])
    return UnlabeledView(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), INFO)


def _epoch(view, seed: int = 3, augmented: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(view.batches(5, shuffle=True, augmented=augmented, generator=torch.Generator().manual_seed(seed)))


def test_folder_is_searched_recursively_in_sorted_order(folder):
    paths, ignored = scan_sources([folder])
    rel = [p.relative_to(folder).as_posix() for p in paths]
    assert rel == sorted(rel, key=lambda r: tuple(r.split("/"))) and len(rel) == 12
    assert ignored == 1 and not any(".DS_Store" in r or r.endswith(".txt") for r in rel)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_in_memory_view(folder, workers):
    view = open_unlabeled([folder], INFO, StreamSettings(num_workers=workers))
    memory = _in_memory(view.paths)
    state = torch.get_rng_state()
    streamed = _epoch(view)
    assert torch.equal(torch.get_rng_state(), state)  # the loader does not draw from torch's global RNG
    expected = _epoch(memory)
    assert len(streamed) == len(expected) == 3
    for (i, x), (j, y) in zip(streamed, expected):
        assert torch.equal(i, j) and torch.equal(x, y)
    limited = list(view.batches(4, limit=2))
    assert [i.tolist() for i, _ in limited] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_renaming_folders_keeps_every_batch_and_training_result(tmp_path):
    def run(names: tuple[str, ...]) -> tuple[list, dict]:
        root = tmp_path / "-".join(n.replace("/", "_") for n in names)
        _write_images(root, names)
        view = open_unlabeled([root], INFO, StreamSettings(num_workers=0))
        teacher = LocalTeacher(create_model("lenet5", INFO.input_shape, 4, seed=1), TeacherInfo("lenet5", 1.0, 84, INFO))
        student = create_model("lenet5", INFO.input_shape, 4, width=0.5, seed=2)
        fit(student, PseudoLabel(), view, TrainConfig(loss="pseudo", epochs=2, lr=0.05),
            guidance=teacher_guidance(teacher, view, augment=False, prefetch="off"),
            options=FitOptions(batch_size=4, seed=0))
        return _epoch(view), student.state_dict()

    batches_a, weights_a = run(("cats", "dogs/big", "dogs/small", "zebras"))
    batches_b, weights_b = run(("a0", "b1/c", "b1/d", "e9"))  # same sort order, other names
    assert all(torch.equal(x, y) and torch.equal(i, j) for (i, x), (j, y) in zip(batches_a, batches_b))
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_bad_files_are_skipped_counted_and_logged_once(folder, caplog):
    _add_bad_files(folder)
    view = open_unlabeled([folder], INFO, StreamSettings(num_workers=2))
    assert len(view) == 15
    with caplog.at_level(logging.WARNING, logger="lnpt.data.streamed"):
        ids = torch.cat([i for i, _ in view.batches(4)])
        torch.cat([i for i, _ in view.batches(4)])
    assert ids.numel() == 12 and sorted(Path(p).name for p in view.bad_images) == ["corrupt.png", "empty.jpg", "text.jpg"]
    assert sum("skipped unreadable image" in r.message for r in caplog.records) == 3
    good = [p for p in view.paths if str(p) not in view.bad_images]
    assert [view.paths[i] for i in ids.tolist()] == good


def test_bad_file_fails_the_run_when_asked(folder):
    _add_bad_files(folder)
    view = open_unlabeled([folder], INFO, StreamSettings(num_workers=0, on_bad_image="fail"))
    with pytest.raises(DatasetNotFoundError, match="corrupt.png is not a readable image.*--on-bad-image skip"):
        list(view.batches(16))


def test_list_files_and_several_sources(folder, tmp_path):
    paths, _ = scan_sources([folder])
    listing = tmp_path / "lists" / "mine.txt"
    listing.parent.mkdir()
    listing.write_text("# my picks\n\n" + f"{paths[3]}\n" + f"../unlabeled/{paths[0].relative_to(folder)}\n")
    view = open_unlabeled([listing, folder], INFO, StreamSettings(num_workers=0))
    assert view.paths[:2] == [paths[3], listing.parent / ".." / "unlabeled" / paths[0].relative_to(folder)]
    assert len(view) == 14
    x = torch.cat([x for _, x in view.batches(16)])
    assert torch.equal(x[0], x[5]) and torch.equal(x[1], x[2])


def test_missing_or_empty_sources_are_one_line(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.md").write_text("no images")
    for source, message in [(tmp_path / "nope", "does not exist: pass --unlabeled a folder"),
                            (tmp_path / "empty", "holds no image files")]:
        with pytest.raises(DatasetNotFoundError, match=message) as info:
            open_unlabeled([source], INFO)
        assert "\n" not in str(info.value)


def test_images_are_converted_resized_and_centre_cropped(tmp_path):
    columns = np.tile((np.arange(16) * 10).astype(np.uint8), (8, 1))  # 8 high, 16 wide
    Image.fromarray(columns).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 3, (8, 8))
    assert out.shape == (8, 8, 3) and out[0, :, 0].tolist() == list(range(40, 120, 10))
    big = np.full((32, 64), 200, dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    assert decode_image(tmp_path / "big.png", 1, (8, 8)).shape == (8, 8, 1)


def test_holdout_is_fixed_by_its_seed_and_disjoint(folder):
    view = open_unlabeled([folder], INFO, StreamSettings(num_workers=0))
    rest, held = view.holdout(4, seed=7)
    again, held_again = view.holdout(4, seed=7)
    assert held.paths == held_again.paths and rest.paths == again.paths
    assert sorted(map(str, rest.paths + held.paths)) == sorted(map(str, view.paths)) and len(held) == 4
    assert held.fingerprint() != rest.fingerprint() and view.head(3).paths == view.paths[:3]


def test_teacher_outputs_and_gap_on_a_held_out_slice_with_bad_files(folder, tmp_path):
    _add_bad_files(folder)
    view = open_unlabeled([folder], INFO, StreamSettings(num_workers=0))
    teacher = LocalTeacher(create_model("lenet5", INFO.input_shape, 4, seed=1), TeacherInfo("lenet5", 1.0, 84, INFO),
                           identity="test-teacher")
    rest, held = view.holdout(5, seed=0)
    out = all_outputs(teacher, view, tmp_path / "store")
    assert out.logits.shape == (15, 4)
    bad = torch.tensor([str(p) in view.bad_images for p in view.paths])
    assert bad.sum() == 3 and out.logits[bad].isnan().all() and not out.logits[~bad].isnan().any()
    for index, x in view.batches(4):
        torch.testing.assert_close(out.features[index], teacher.guide(x).features)
    again = all_outputs(teacher, view, tmp_path / "store")  # from the store, same rows
    assert torch.equal(again.logits[~bad], out.logits[~bad])
    student = create_model("lenet5", INFO.input_shape, 4, width=0.5, seed=2)
    tiny_test = LabeledSet(torch.zeros(2, *INFO.input_shape, dtype=torch.uint8), torch.zeros(2), INFO)
    init = {k: v.clone() for k, v in student.state_dict().items()}
    metrics = Evaluator(tiny_test, held, teacher, init, EvalSettings(batch_size=4, store=str(tmp_path / "store")))(student)
    assert np.isfinite(metrics["gap"]) and metrics["gap"] > 0
    labels = all_outputs(teacher, held, str(tmp_path / "store")).pseudo_labels  # held-out agreement, by hand
    with torch.no_grad():  # the unreadable image in the slice is skipped, as in training
        pairs = [(student.eval()(x).argmax(1), labels[index]) for index, x in held.batches(4)]
    assert metrics["heldout_agreement"] == pytest.approx(sum(int((s == t).sum()) for s, t in pairs)
                                                         / sum(len(t) for _, t in pairs))
