"""The trainer: label-free for real, masks that hold, bit-identical resume, clean failure."""
import dataclasses
import json

import pytest
import torch

from lnpt.config import TrainConfig
from lnpt.errors import TrainingError
from lnpt.models import create_model, feature_dim
from lnpt.surgery.masks import apply_masks
from lnpt.teachers import Teacher, teacher_guidance, wants_prefetch
from lnpt.train import Checkpoint, FitOptions, LossContext, OnEpochEnd, create_loss, fit
from lnpt.train.losses import PseudoLabel


def _student(digits, seed=1):
    return create_model("lenet5", digits.info.input_shape, digits.info.num_classes, seed=seed)


def _guidance(digits, teacher, augment=False, teacher_cache=True, prefetch="auto"):
    return teacher_guidance(teacher, digits.train.unlabeled(), augment=augment, cache=teacher_cache,
                            prefetch={True: "on", False: "off"}.get(prefetch, prefetch))


def _fit(digits, teacher, model, cfg, run_dir=None, fingerprint="", resume=False, on_epoch=None,
         schedule_span=None, train_set=None, **guidance):
    """The trainer as the pipeline drives it: guidance composed from the teacher settings, the
    user's epoch hook, then the resumable checkpoint."""
    loss = create_loss(cfg, LossContext(feature_dim(model), teacher.info.feature_dim))
    callbacks = ([OnEpochEnd(on_epoch)] if on_epoch else []) + ([Checkpoint(run_dir, fingerprint, resume)]
                                                                 if run_dir else [])
    return fit(model, loss, train_set or digits.train, cfg, guidance=_guidance(digits, teacher, **guidance),
               callbacks=callbacks, options=FitOptions(batch_size=64, seed=3, schedule_span=schedule_span)), loss


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_label_free_training_is_bit_identical_with_scrambled_labels(digits, digits_teacher):
    cfg = TrainConfig(loss="lnpt", epochs=2, lr=0.05)
    scrambled = digits.train.with_labels(digits.train.labels[torch.randperm(len(digits.train))].flip(0))
    assert (scrambled.labels != digits.train.labels).float().mean() > 0.5
    a, b = _student(digits), _student(digits)
    _fit(digits, digits_teacher, a, cfg)
    _fit(digits, digits_teacher, b, cfg, train_set=scrambled)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_supervised_training_does_see_the_labels(digits, digits_teacher):
    # The counterpart of the test above: it would pass vacuously if labels never mattered.
    cfg = TrainConfig(loss="supervised", epochs=1)
    scrambled = digits.train.with_labels(digits.train.labels.roll(1))
    a, b = _student(digits), _student(digits)
    _fit(digits, digits_teacher, a, cfg)
    _fit(digits, digits_teacher, b, cfg, train_set=scrambled)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_label_free_training_learns(digits, digits_teacher):
    from lnpt.train.evaluate import accuracy

    model = _student(digits)
    _fit(digits, digits_teacher, model, TrainConfig(loss="lnpt", epochs=6, lr=0.05))
    assert accuracy(model, digits.test)["acc"] > 0.8


def test_masks_hold_through_training_with_momentum_and_weight_decay(digits, digits_teacher):
    model = _student(digits)
    g = torch.Generator().manual_seed(0)
    masks = {n: (torch.rand(p.shape, generator=g) > 0.7).float()
             for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    apply_masks(model, masks)
    cfg = TrainConfig(loss="pseudo", epochs=1, lr=0.1, momentum=0.9, weight_decay=5e-3)
    _fit(digits, digits_teacher, model, cfg)
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        mod, param = name.rsplit(".", 1)
        w = getattr(modules[mod], param)
        assert torch.count_nonzero(w[mask == 0]) == 0, name
        assert torch.count_nonzero(w[mask == 1]) > 0.9 * mask.sum(), name


def test_resume_after_kill_matches_uninterrupted_run(digits, digits_teacher, tmp_path):
    cfg = TrainConfig(loss="lnpt", epochs=4, lr=0.05)
    full = _student(digits)
    _fit(digits, digits_teacher, full, cfg, run_dir=tmp_path / "full", fingerprint="x")

    killed = _student(digits)

    def kill_after_two(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(digits, digits_teacher, killed, cfg, run_dir=tmp_path / "resumed", fingerprint="x",
             on_epoch=kill_after_two)
    # The kill happened before epoch 2 was saved: the state holds epoch 1.
    resumed = _student(digits, seed=99)  # a fresh process would start from other weights
    result, _ = _fit(digits, digits_teacher, resumed, cfg, run_dir=tmp_path / "resumed",
                     fingerprint="x", resume=True)
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert len(result.history) == 4


def test_resume_refuses_another_configuration(digits, digits_teacher, tmp_path):
    cfg = TrainConfig(loss="pseudo", epochs=1)
    _fit(digits, digits_teacher, _student(digits), cfg, run_dir=tmp_path, fingerprint="a")
    with pytest.raises(TrainingError, match="different configuration"):
        _fit(digits, digits_teacher, _student(digits), cfg, run_dir=tmp_path, fingerprint="b", resume=True)


class _ExplodesInEpochTwo(PseudoLabel):
    def __init__(self, steps_per_epoch):
        super().__init__()
        self.calls, self.limit = 0, steps_per_epoch + 2

    def forward(self, logits, features, batch):
        value, parts = super().forward(logits, features, batch)
        self.calls += 1
        return (value * float("nan") if self.calls >= self.limit else value), parts


def test_non_finite_loss_stops_and_keeps_last_good_state(digits, digits_teacher, tmp_path):
    model = _student(digits)
    cfg = TrainConfig(loss="pseudo", epochs=3)
    loss = _ExplodesInEpochTwo(steps_per_epoch=-(-len(digits.train) // 64))
    with pytest.raises(TrainingError, match="non-finite training loss .* epoch 2.* with a new --out"):
        fit(model, loss, digits.train, cfg, guidance=_guidance(digits, digits_teacher),
            callbacks=[Checkpoint(tmp_path)], options=FitOptions(batch_size=64))
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_teacher_cache_calls_the_teacher_once_per_sample(digits, digits_teacher):
    calls = []

    class Counting(Teacher):
        info = digits_teacher.info

        def guide(self, x):
            calls.append(x.shape[0])
            return digits_teacher.guide(x)

    model = _student(digits)
    cfg = TrainConfig(loss="lnpt", epochs=3)
    loss = create_loss(cfg, LossContext(feature_dim(model), digits_teacher.info.feature_dim))
    opts = FitOptions(batch_size=64)
    fit(model, loss, digits.train, cfg, guidance=_guidance(digits, Counting(), teacher_cache=True), options=opts)
    assert sum(calls) == len(digits.train)
    calls.clear()
    augmented = FitOptions(batch_size=64, augment=True)
    fit(_student(digits), loss, digits.train, cfg, guidance=_guidance(digits, Counting(), augment=True),
        options=augmented)
    assert sum(calls) == 3 * len(digits.train)  # augmented inputs change: never cached
    with pytest.raises(TrainingError, match="cannot serve augmented inputs"):
        fit(_student(digits), loss, digits.train, cfg, guidance=_guidance(digits, Counting()), options=augmented)


def test_prefetched_guidance_gives_identical_training(digits, digits_teacher):
    import threading

    threads = set()

    class Prefetching(Teacher):
        info = digits_teacher.info
        prefers_prefetch = True

        def guide(self, x):
            threads.add(threading.current_thread().name)
            return digits_teacher.guide(x)

    cfg = TrainConfig(loss="lnpt", epochs=2)
    a, b = _student(digits), _student(digits)
    _fit(digits, digits_teacher, a, cfg, teacher_cache=False)
    loss = create_loss(cfg, LossContext(feature_dim(b), digits_teacher.info.feature_dim))
    fit(b, loss, digits.train, cfg, guidance=_guidance(digits, Prefetching(), teacher_cache=False),
        options=FitOptions(batch_size=64, seed=3))
    assert any(t.startswith("lnpt-guidance") for t in threads)
    for va, vb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(va, vb)


def test_local_teacher_prefetch_runs_in_a_worker_and_changes_nothing(digits, digits_teacher, monkeypatch):
    """An in-process teacher prefetched in a worker thread (cache off: it runs every step)."""
    import threading

    threads = set()
    real_guide = digits_teacher.guide

    def spying_guide(x):
        threads.add(threading.current_thread().name)
        return real_guide(x)

    cfg = TrainConfig(loss="lnpt", epochs=2)
    a, b = _student(digits), _student(digits)
    _fit(digits, digits_teacher, a, cfg, teacher_cache=False, prefetch=False)
    monkeypatch.setattr(digits_teacher, "guide", spying_guide)
    _fit(digits, digits_teacher, b, cfg, teacher_cache=False, prefetch=True)
    assert threads and all(t.startswith("lnpt-guidance") for t in threads)
    for va, vb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(va, vb)
    assert wants_prefetch("on", digits_teacher) and not wants_prefetch("off", digits_teacher)
    assert not wants_prefetch("on", None)
    with pytest.raises(ValueError, match="teacher_prefetch"):
        wants_prefetch("sometimes", digits_teacher)


def test_auto_prefetch_for_a_local_teacher_only_with_idle_cores(digits_teacher, monkeypatch):
    monkeypatch.setattr("lnpt.teachers.guidance.available_cores", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert not wants_prefetch("auto", digits_teacher)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert wants_prefetch("auto", digits_teacher)

    class Remote:
        prefers_prefetch = True

    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert wants_prefetch("auto", Remote())


def test_lr_schedule_warmup_then_cosine():
    from lnpt.train.loop import lr_at

    cfg = TrainConfig(lr=1.0, schedule="cosine")
    assert [round(lr_at(s, 10, cfg, 2), 4) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert lr_at(3, 10, TrainConfig(lr=0.3, schedule="constant"), 0) == 0.3
    step = TrainConfig(lr=1.0, schedule="step")
    assert [round(lr_at(s, 10, step, 2), 6) for s in (0, 1, 2, 5, 6, 7, 8, 9)] == [0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]


def test_phases_sharing_a_schedule_follow_the_single_runs_rates(digits, digits_teacher):
    """Two phases of 2 epochs placed in one 4-epoch schedule (as --early-schedule continue does
    before and after pruning) use, epoch by epoch, the rates of one 4-epoch run: the second
    phase neither warms up again nor returns to the peak rate."""
    cfg = TrainConfig(loss="pseudo", epochs=4, lr=0.05, warmup_epochs=1.0)
    single, _ = _fit(digits, digits_teacher, _student(digits), cfg)
    half = dataclasses.replace(cfg, epochs=2)
    model = _student(digits)
    first, _ = _fit(digits, digits_teacher, model, half, schedule_span=(0, 4))
    second, _ = _fit(digits, digits_teacher, model, half, schedule_span=(2, 4))
    assert [r["lr"] for r in first.history + second.history] == [r["lr"] for r in single.history]
    restarted, _ = _fit(digits, digits_teacher, _student(digits), half)
    assert restarted.history[0]["lr"] > second.history[0]["lr"]
    with pytest.raises(TrainingError, match="does not hold 2 epochs from epoch 3"):
        _fit(digits, digits_teacher, _student(digits), half, schedule_span=(3, 4))


def test_gradient_clipping_bounds_the_update(digits, digits_teacher):
    # One SGD step without momentum moves the weights by lr * clipped gradient.
    cfg = TrainConfig(loss="supervised", epochs=1, lr=1.0, momentum=0.0, weight_decay=0.0,
                      schedule="constant", clip_grad_norm=1e-3)
    model = _student(digits)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    small = digits.train.subset(torch.arange(64))
    fit(model, create_loss(cfg, LossContext(1, None)), small, cfg, options=FitOptions(batch_size=64))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)
