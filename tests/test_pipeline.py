"""`lnpt run` end to end on real data (digits) with a real teacher: the run directory, resume,
refusals, and the CLI on top."""
import json

import pytest
import torch

from lnpt.checkpoint import load_checkpoint
from lnpt.cli import main
from lnpt.config import (
    DataConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    WeightPruneConfig,
    replace_flat,
)
from lnpt.errors import ConfigError
from lnpt.recipes.pipeline import run_pipeline


def _cfg(teacher_path, **train):
    return RunConfig(
        data=DataConfig(dataset="digits", batch_size=64),
        model=ModelConfig("lenet5"),
        teacher=TeacherConfig(teacher=str(teacher_path)),
        prune=PruneConfig(criterion="lnpt", batches=2, score_batch_size=64),
        weights=WeightPruneConfig(sparsity=0.8),
        train=TrainConfig(**{"loss": "lnpt", "epochs": 3, **train}),
        seed=0,
    )


def test_run_writes_a_complete_run_directory(digits_teacher_path, tmp_path):
    out = tmp_path / "run"
    summary = run_pipeline(_cfg(digits_teacher_path, epochs=8, lr=0.1), out, progress=False)
    for name in ("config.json", "student_init.pt", "prune_report.json", "metrics.jsonl", "final.pt",
                 "summary.json", "summary.md"):
        assert (out / name).is_file(), name
    assert summary["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert summary["final_acc"] > 0.7
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 9))
    assert {"test_acc", "val_acc", "teacher_agreement", "gap", "weight_distance"} <= set(records[-1])
    # The final checkpoint is the trained, still-masked student.
    final = load_checkpoint(out / "final.pt")
    assert final.masked and final.metrics["test_acc"] == summary["final_acc"]
    init = load_checkpoint(out / "student_init.pt").build()
    trained = final.build()
    for name, mod in init.named_modules():
        if hasattr(mod, "weight_mask"):
            tm = dict(trained.named_modules())[name]
            assert torch.equal(mod.weight_mask, tm.weight_mask)
            assert torch.count_nonzero(tm.weight[mod.weight_mask == 0]) == 0


def test_resume_of_a_finished_run_returns_it_and_other_configs_are_refused(digits_teacher_path, tmp_path):
    out = tmp_path / "run"
    first = run_pipeline(_cfg(digits_teacher_path, epochs=1), out, progress=False)
    again = run_pipeline(_cfg(digits_teacher_path, epochs=1), out, resume=True, progress=False)
    assert again == first
    with pytest.raises(ConfigError, match="different configuration"):
        run_pipeline(_cfg(digits_teacher_path, epochs=2), out, resume=True, progress=False)
    with pytest.raises(ConfigError, match="already exists"):
        run_pipeline(_cfg(digits_teacher_path, epochs=1), out, progress=False)


def test_operational_settings_do_not_block_resume_and_the_token_is_never_written(digits_teacher_path, tmp_path):
    import dataclasses

    from lnpt.recipes.pipeline import fingerprint

    out = tmp_path / "run"
    cfg = _cfg(digits_teacher_path, epochs=1)
    first = run_pipeline(cfg, out, progress=False)
    moved = dataclasses.replace(cfg, teacher=dataclasses.replace(
        cfg.teacher, teacher_store=str(tmp_path / "store"), teacher_timeout=5.0, teacher_prefetch="on",
        teacher_token="s3cret-token"))
    assert fingerprint(moved) == fingerprint(cfg)
    assert run_pipeline(moved, out, resume=True, progress=False) == first
    # A run that starts with a token keeps it out of every file it writes.
    out2 = tmp_path / "run2"
    run_pipeline(moved, out2, progress=False)
    saved = json.loads((out2 / "config.json").read_text())
    assert saved["teacher"]["teacher_token"] == "<redacted>"
    for path in out2.iterdir():
        assert b"s3cret-token" not in path.read_bytes(), path.name


def test_a_config_json_without_newer_settings_still_resumes(digits_teacher_path, tmp_path):
    """Run folders written before a setting existed resume as long as it keeps its default."""
    out = tmp_path / "run"
    first = run_pipeline(_cfg(digits_teacher_path, epochs=1), out, progress=False)
    saved = json.loads((out / "config.json").read_text())
    del saved["teacher"]["teacher_prefetch"], saved["channels"]["round_to"]
    (out / "config.json").write_text(json.dumps(saved))
    assert run_pipeline(_cfg(digits_teacher_path, epochs=1), out, resume=True, progress=False) == first


def test_cli_run_with_config_file_and_override(digits_teacher_path, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[data]\ndataset = "digits"\nbatch_size = 64\n[teacher]\nteacher = "{digits_teacher_path}"\n'
                   '[prune]\ncriterion = "magnitude"\nsparsity = 0.5\n[train]\nloss = "pseudo"\nepochs = 1\n')
    rc = main(["run", "--config", str(cfg), "--sparsity", "0.7", "--out", str(tmp_path / "r"), "--no-progress"])
    assert rc == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["weights"]["sparsity"] == 0.7 and saved["prune"]["criterion"] == "magnitude"
    assert "final test accuracy" in capsys.readouterr().out


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nepochz = 3\n")
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epochz'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_mismatched_teacher_is_refused(digits_teacher_path, tmp_path, capsys, monkeypatch):
    from lnpt.data import DATASETS
    from lnpt.data.info import DatasetInfo, RawData

    def three_classes(data_dir):
        raw = DATASETS.get("digits")(data_dir)
        keep_tr, keep_te = raw.train_y < 3, raw.test_y < 3
        info = DatasetInfo("digits3", raw.info.input_shape, 3, raw.info.mean, raw.info.std)
        return RawData(raw.train_x[keep_tr], raw.train_y[keep_tr], raw.test_x[keep_te], raw.test_y[keep_te], info)

    monkeypatch.setitem(DATASETS._entries, "digits3", three_classes)
    rc = main(["run", "--dataset", "digits3", "--teacher", str(digits_teacher_path), "--epochs", "1",
               "--out", str(tmp_path / "r"), "--no-progress"])
    assert rc == 2
    assert "10 classes vs the data's 3" in capsys.readouterr().err


def test_bad_prune_settings_are_refused_before_the_run_directory_exists(digits_teacher_path, tmp_path):

    from lnpt.errors import PruningError

    cfg = _cfg(digits_teacher_path, epochs=1)
    out = tmp_path / "run"
    bad = replace_flat(cfg, {"structured": True, "channel_ratio": 1.5})
    with pytest.raises(PruningError, match="channel-ratio"):
        run_pipeline(bad, out, progress=False)
    assert not out.exists()


def _early(cfg, epochs, early_schedule="restart", **prune):
    import dataclasses

    cfg = replace_flat(cfg, {"prune_after_epochs": epochs, **prune})
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, early_schedule=early_schedule))


def test_early_pruning_scores_the_trained_dense_student(digits_teacher_path, tmp_path):
    """--prune-after-epochs N: the masks are chosen on weights trained for N epochs, and
    student_init.pt holds those trained weights (the state training continues from)."""
    from lnpt.models import create_model
    from lnpt.surgery.masks import get_masks

    cfg = _early(_cfg(digits_teacher_path, epochs=1), 2, criterion="magnitude", scope="layer")
    out = tmp_path / "run"
    summary = run_pipeline(cfg, out, progress=False)
    assert summary["prune_after_epochs"] == 2
    report = json.loads((out / "prune_report.json").read_text())
    assert report["trained_before_pruning"]["epochs"] == 2
    assert "2 dense before it" in (out / "summary.md").read_text()
    init = load_checkpoint(out / "student_init.pt").build()
    fresh = create_model("lenet5", (1, 8, 8), 10, seed=0)
    masks = get_masks(init)
    assert masks
    for name, mask in masks.items():
        layer = name.rsplit(".", 1)[0]
        trained = init.get_submodule(layer).weight_orig.detach()
        assert not torch.equal(trained, fresh.get_submodule(layer).weight.detach()), name
        # Magnitude, layer-wise: every kept weight is at least as large as every removed one.
        kept, removed = trained[mask.bool()].abs(), trained[~mask.bool()].abs()
        assert removed.numel() and kept.min() >= removed.max(), name
    # The same settings pruned at initialisation give other masks.
    at_init = run_pipeline(_early(cfg, 0), tmp_path / "at-init", progress=False)
    other = get_masks(load_checkpoint(tmp_path / "at-init" / "student_init.pt").build())
    assert any(not torch.equal(masks[k], other[k]) for k in masks)
    assert at_init["prune_after_epochs"] == 0


def test_early_channel_pruning_resumes_after_pruning(digits_teacher_path, tmp_path, monkeypatch):
    """A run killed after pruning resumes from student_init.pt without repeating the dense phase."""
    import lnpt.recipes.pipeline

    cfg = _early(_cfg(digits_teacher_path, epochs=2), 1, criterion="lnpt-fm", structured=True,
                 channel_ratio=0.5)
    out = tmp_path / "run"
    first = run_pipeline(cfg, out, progress=False)
    assert first["macs"] < first["macs_dense"]
    (out / "summary.json").unlink()
    init_bytes = (out / "student_init.pt").read_bytes()

    def dense_phase_again(*args, **kwargs):
        raise AssertionError("the resumed run trained the dense student again")

    monkeypatch.setattr(lnpt.recipes.pipeline, "_train_before_pruning", dense_phase_again)
    again = run_pipeline(cfg, out, resume=True, progress=False)
    assert (out / "student_init.pt").read_bytes() == init_bytes
    assert again["final_acc"] == first["final_acc"]


def test_negative_prune_after_epochs_is_refused(digits_teacher_path, tmp_path, capsys):
    from lnpt.errors import PruningError

    with pytest.raises(PruningError, match="prune-after-epochs must be >= 0"):
        run_pipeline(_early(_cfg(digits_teacher_path, epochs=1), -1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    rc = main(["prune", "--dataset", "digits", "--criterion", "magnitude", "--prune-after-epochs", "2",
               "--out", str(tmp_path / "p")])
    assert rc == 2
    assert "use `lnpt run --prune-after-epochs N`" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def _from(cfg, path, **prune):
    import dataclasses

    return replace_flat(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=str(path))), prune)


def test_init_from_prunes_and_fine_tunes_a_trained_dense_student(digits_teacher_path, tmp_path):
    """Train -> prune -> fine-tune: a dense run's final.pt is the weights that are scored and
    kept; '{seed}' in the path picks each seed's own dense run."""
    dense_cfg = _from(_cfg(digits_teacher_path, epochs=2), "", sparsity=0.0)
    dense = run_pipeline(dense_cfg, tmp_path / "dense-seed0", progress=False)
    assert dense["sparsity"] == 0.0
    trained = load_checkpoint(tmp_path / "dense-seed0" / "final.pt").build()
    cfg = _from(_cfg(digits_teacher_path, epochs=1, lr=0.01, warmup_epochs=0), tmp_path / "dense-seed{seed}",
                criterion="magnitude", structured=True, channel_ratio=0.5)
    out = tmp_path / "tuned"
    summary = run_pipeline(cfg, out, progress=False)
    assert summary["init_from"] == str(tmp_path / "dense-seed0")
    assert "started from" in (out / "summary.md").read_text()
    pruned = load_checkpoint(out / "student_init.pt").build()
    # Magnitude keeps the trained filters with the largest L1 norms, copied unchanged.
    name = "conv.0"
    w, kept = trained.get_submodule(name).weight.detach(), pruned.get_submodule(name).weight.detach()
    assert kept.shape[0] == w.shape[0] // 2
    norms = w.flatten(1).abs().sum(1)
    top = sorted(torch.argsort(norms, descending=True)[: kept.shape[0]].tolist())
    assert torch.equal(kept, w[top])
    # Killed after pruning: the resume continues from student_init.pt, even without the dense run.
    (out / "summary.json").unlink()
    (tmp_path / "dense-seed0" / "final.pt").unlink()
    assert run_pipeline(cfg, out, resume=True, progress=False)["final_acc"] == summary["final_acc"]


@pytest.mark.parametrize("make,message", [
    (lambda tmp: tmp / "missing.pt", "--init-from: checkpoint .* does not exist"),
    (lambda tmp: "vgg", "holds a vgg11 of width 1, but this run builds a lenet5 of width 1; pass --model vgg11"),
    (lambda tmp: "pruned", "is already pruned \\(masked weights\\); start from a dense checkpoint"),
])
def test_init_from_refuses_a_checkpoint_that_does_not_fit(make, message, digits, digits_teacher_path, tmp_path):
    from lnpt.checkpoint import save_checkpoint
    from lnpt.models import create_model
    from lnpt.surgery.masks import apply_masks

    path = make(tmp_path)
    if path == "vgg":
        path = tmp_path / "vgg.pt"
        save_checkpoint(path, create_model("vgg11", (1, 8, 8), 10), "vgg11", 1.0, digits.info)
    elif path == "pruned":
        path, model = tmp_path / "pruned.pt", create_model("lenet5", (1, 8, 8), 10)
        mask = torch.ones_like(model.conv[0].weight)
        mask[0] = 0
        apply_masks(model, {"conv.0.weight": mask})
        save_checkpoint(path, model, "lenet5", 1.0, digits.info)
    with pytest.raises(ConfigError, match=message):
        run_pipeline(_from(_cfg(digits_teacher_path, epochs=1), path), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_early_schedule_continue_keeps_one_learning_rate_schedule(digits_teacher_path, tmp_path):
    """--early-schedule continue: the pruned phase picks the schedule up where the dense phase
    left it (a lower rate than a restart's), and the result differs from a restart."""
    from lnpt.errors import PruningError
    from lnpt.train.loop import lr_at

    base = _early(_cfg(digits_teacher_path, epochs=2, warmup_epochs=0), 1, criterion="magnitude")
    runs = {}
    for schedule in ("restart", "continue"):
        cfg = _early(base, 1, early_schedule=schedule)
        runs[schedule] = run_pipeline(cfg, tmp_path / schedule, progress=False)
        runs[schedule + "-lr"] = [json.loads(line)["lr"]
                                  for line in (tmp_path / schedule / "metrics.jsonl").read_text().splitlines()]
    train = base.train
    # After the first epoch of the pruned phase: step 2 of 3 shared epochs vs step 1 of 2.
    assert runs["continue-lr"][0] == pytest.approx(lr_at(2, 3, train))
    assert runs["restart-lr"][0] == pytest.approx(lr_at(1, 2, train))
    assert runs["continue-lr"][0] < runs["restart-lr"][0]
    assert runs["continue"]["final_acc"] != runs["restart"]["final_acc"] or \
        runs["continue"]["teacher_agreement"] != runs["restart"]["teacher_agreement"]
    with pytest.raises(PruningError, match="unknown --early-schedule 'linear'; known: restart, continue"):
        run_pipeline(_early(base, 1, early_schedule="linear"), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()
