"""The main job: prune a student at initialisation with teacher guidance, train it, evaluate.

(With ``--prune-after-epochs N`` the dense student is first trained label-free for N epochs
and pruned then: early pruning, measured against pruning at initialisation in docs/. With
``--init-from CKPT`` it starts from a trained dense network: train, prune, fine-tune.)

Data flows one way: config -> data + student + teacher -> criterion scores -> masks -> masked
student -> trainer (+ teacher guidance) -> run directory. :class:`lnpt.run_folder.RunFolder`
names what a run directory holds; ``summary.json``, written last, means the run finished.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..analysis.metrics import effective_weights
from ..atomic import write_text
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import RunConfig, check_choice, fingerprint_settings, saved_settings, settings_differences
from ..data import DataSplits
from ..distributed import SINGLE, Distributed, barrier, broadcast_tensors, main_writes, run_on_main
from ..errors import ConfigError, PruningError
from ..models import feature_dim, named_by_user
from ..pruning.student import prune_student, validate
from ..run_folder import RunFolder
from ..teachers import (
    GuidanceSource,
    Teacher,
    check_compatible,
    teacher_guidance,
)
from ..train import (
    Checkpoint,
    EvalSettings,
    Evaluate,
    Evaluator,
    FitOptions,
    LossContext,
    Progress,
    TrainLoss,
    create_loss,
    fit,
)
from .compute import Where, place_teacher, run_placement
from .start import build_student, check_student, load_start, start_path
from .wild import NOT_MEASURED, WildData, WildEvaluator, load_run_data, load_run_teacher


def fingerprint(cfg: RunConfig) -> str:
    """A short stable hash of the settings that decide the result: names run folders, guards
    resumes. Operational settings (teacher store, timeouts, token, prefetch) are left out; the
    settings are hashed in their legacy layout, so folders written before it changed resume."""
    return hashlib.sha256(json.dumps(fingerprint_settings(cfg), sort_keys=True).encode()).hexdigest()[:10]


def default_run_name(cfg: RunConfig) -> str:
    amount = f"c{cfg.channels.channel_ratio:g}" if cfg.prune.structured else f"s{cfg.weights.sparsity:g}"
    return (f"{cfg.model.model}-{cfg.prune.criterion}-{amount}-{cfg.train.loss}"
            f"-seed{cfg.seed}-{fingerprint(cfg)}")


def run_pipeline(cfg: RunConfig, out: str | Path, resume: bool = False,
                 progress: bool | str = True, distributed: Distributed = SINGLE) -> dict[str, Any]:
    """Prune, train and evaluate one student as ``cfg`` says; return the summary.

    With ``resume``, a run directory written by the same configuration continues where it
    stopped (the pruned student is reloaded, not re-scored); a finished run is returned as is.
    ``progress``: see :func:`lnpt.train.callbacks.progress_mode` (False: nothing printed).
    ``distributed``: this process's place in a data-parallel run (``torchrun``): every rank
    trains on its share of the data; rank 0 alone prunes, evaluates and writes the run folder,
    and the other ranks take its pruned student.
    """
    out = Path(out)
    run = RunFolder(out)
    run.check_claimable(resume)
    saved = run.saved_config() if resume else None
    changed = settings_differences(saved, cfg) if saved is not None else []
    if changed and not run.failed_start:
        raise ConfigError(f"cannot resume {out}: it was run with a different configuration "
                          f"(settings differing: {', '.join(changed)})")
    resume = resume and not changed  # a start that failed before training, corrected: begin afresh
    finished = run.saved_summary() if resume else None
    if finished is not None:
        return finished
    t0 = time.perf_counter()
    # Everything that can be refused is checked before the run directory is created.

    validate(cfg.pruning)
    check_choice(cfg.train, "early_schedule", PruningError)
    check_student(cfg)
    where = Where(run_placement(cfg.compute, distributed), distributed)
    teacher = place_teacher(load_run_teacher(cfg), where.placement)
    data = load_run_data(cfg, teacher)
    check_compatible(teacher.info, data.info)
    pruned_before = resume and run.student_init.is_file() and run.prune_report.is_file()
    start = None if pruned_before else load_start(cfg, data.info)  # a resumed run no longer needs it
    barrier(distributed)  # every rank has read the folder before rank 0 claims it
    with run.claimed(resume) if distributed.is_main else contextlib.nullcontext():
        if distributed.is_main:  # a failure before the first checkpoint leaves the folder as it found it
            write_text(run.config, json.dumps(saved_settings(cfg), indent=2))
        return _prune_and_train(cfg, run, (data, teacher, start, pruned_before), resume, progress, t0, where)


def _prune_and_train(cfg: RunConfig, run: RunFolder, inputs: tuple, resume: bool, progress: bool | str,
                     t0: float, where: Where) -> dict[str, Any]:
    """The body of :func:`run_pipeline` once its folder is claimed: prune (or reload the pruned
    student of a resumed run), train, evaluate, write the final checkpoint and the summary.
    ``inputs``: the data, the teacher, the start checkpoint and whether the run was pruned
    before. Rank 0 alone evaluates and writes; every rank returns the summary."""
    out, d, data, teacher, distributed = run.path, cfg.data, inputs[0], inputs[1], where.distributed
    progress = progress if distributed.is_main else False
    student, report, shapes = _student(cfg, run, inputs, where, progress)
    init_weights = effective_weights(student)

    loss = create_loss(cfg.train, LossContext(feature_dim(student), teacher.info.feature_dim, cfg.seed), cfg.loss)
    evaluator = _evaluator(cfg, data, teacher, init_weights) if distributed.is_main else None
    callbacks = [Evaluate(evaluator or _on_main_only), Checkpoint(out, fingerprint(cfg), resume), Progress(progress)]
    result = fit(student, loss, data.train, cfg.train, guidance=_guidance(cfg, data, teacher, loss, where),
                 callbacks=callbacks, options=_fit_options(cfg, after_pruning=True, where=where))
    final = result.final
    accs = [r["test_acc"] for r in result.history if "test_acc" in r]
    summary = {
        "final_acc": final.get("test_acc"), "best_acc": max(accs) if accs else None,
        "final_val_acc": final.get("val_acc"),
        "teacher_agreement": final.get("teacher_agreement"), "gap": final.get("gap"),
        "heldout_agreement": final.get("heldout_agreement"), "classes": data.info.num_classes,
        "sparsity": report.get("sparsity", 0.0), "params": report.get("params_after"),
        "params_dense": report.get("params_before"), "macs": report.get("macs_after"),
        "macs_dense": report.get("macs_before"), "criterion": cfg.prune.criterion,
        "channel_ratio": cfg.channels.channel_ratio if cfg.prune.structured else None,
        "loss": cfg.train.loss, "model": cfg.model.model, "width": cfg.model.width,
        "dataset": d.dataset, "seed": cfg.seed, "epochs": cfg.train.epochs,
        "prune_after_epochs": cfg.prune.prune_after_epochs, "init_from": start_path(cfg),
        "teacher": {"model": teacher.info.model, "accuracy": teacher.info.accuracy},
        "train_seconds": sum(r.get("epoch_seconds", 0.0) for r in result.history),
        "seconds": time.perf_counter() - t0, "fingerprint": fingerprint(cfg),
    }
    if isinstance(data, WildData):
        summary.update(_wild_summary(data, final))
    with main_writes(distributed) as writer:
        if writer:
            save_checkpoint(run.final, student, cfg.model.model, cfg.model.width, data.info,
                            metrics={"test_acc": summary["final_acc"]},
                            extra={"fingerprint": fingerprint(cfg), **shapes})
            write_text(run.summary_md, summary_markdown(summary))
            write_text(run.summary, json.dumps(summary, indent=2))
    return summary


def _on_main_only(model: torch.nn.Module) -> dict:
    raise AssertionError("evaluation runs on rank 0 only")  # Evaluate calls it there alone


def _student(cfg: RunConfig, run: RunFolder, inputs: tuple, where: Where,
             progress: bool | str) -> tuple[torch.nn.Module, dict, dict]:
    """The pruned student on every rank, its pruning report and the checkpoint entries that
    rebuild it. A resumed run that was pruned before reloads ``student_init.pt``; otherwise
    every rank builds the same student (and trains it dense first with
    ``--prune-after-epochs``), rank 0 alone scores, prunes and writes it, and the other ranks
    load what it wrote, so all of them train the same masks and channel cuts."""
    data, teacher, start, pruned_before = inputs
    ctx = where.distributed
    if pruned_before:
        init_ckpt = load_checkpoint(run.student_init)
        student = init_ckpt.build(allow_code=named_by_user(init_ckpt.model_name, cfg.model.model))
        shapes = {k: v for k, v in init_ckpt.extra.items() if k != "fingerprint"}
        report = json.loads(run.prune_report.read_text())
    else:
        torch.manual_seed(cfg.seed)
        student = where.placement.module(build_student(cfg, data.info, start))  # scored where it trains
        dense_seconds = _train_before_pruning(student, cfg, data, teacher, progress, where)
        report, shapes = run_on_main(ctx, lambda: _prune_and_write(student, cfg, run, data, teacher, dense_seconds))
        if not ctx.is_main:
            init_ckpt = load_checkpoint(run.student_init)
            student = init_ckpt.build(allow_code=named_by_user(init_ckpt.model_name, cfg.model.model))
    broadcast_tensors(ctx, student.state_dict())  # rank 0's masks and weights, explicitly
    return student, report, shapes


def _prune_and_write(student: torch.nn.Module, cfg: RunConfig, run: RunFolder, data, teacher,
                     dense_seconds: float) -> tuple[dict, dict]:
    """Score and prune ``student`` (on rank 0), write it and its report to the run folder, and
    return the report and the checkpoint entries that rebuild it."""
    report, shapes, markdown = _prune(student, cfg, data, teacher)
    if cfg.prune.prune_after_epochs:
        report["trained_before_pruning"] = {"epochs": cfg.prune.prune_after_epochs, "seconds": dense_seconds}
    save_checkpoint(run.student_init, student, cfg.model.model, cfg.model.width, data.info,
                    extra={"fingerprint": fingerprint(cfg), **shapes})
    write_text(run.prune_report, json.dumps(report, indent=2))
    write_text(run.prune_report_md, markdown)
    return report, shapes


def _guidance(cfg: RunConfig, data, teacher: Teacher, loss: TrainLoss, where: Where) -> GuidanceSource | None:
    """The teacher's guidance as the teacher settings compose it (None when the loss needs
    none): stored outputs, the per-sample cache (filled up front in a data-parallel run) and
    prefetch."""
    if not loss.needs_teacher:
        return None
    t = cfg.teacher
    return teacher_guidance(teacher, data.train.unlabeled(), augment=cfg.data.augment, cache=t.teacher_cache,
                            store=t.teacher_store, prefetch=t.teacher_prefetch, prefill=where.distributed.active)


def _fit_options(cfg: RunConfig, after_pruning: bool, where: Where) -> FitOptions:
    d = cfg.data
    return FitOptions(batch_size=d.batch_size, augment=d.augment, seed=cfg.seed,
                      schedule_span=_span(cfg, after_pruning), placement=where.placement,
                      distributed=where.distributed, sync_batchnorm=cfg.compute.sync_batchnorm)


def _evaluator(cfg: RunConfig, data: DataSplits | WildData, teacher, init_weights: dict) -> Any:
    """Per-epoch metrics: test accuracy and the label-free ones on the validation split, or on
    your own images' held-out slice (accuracy only with --eval)."""
    if isinstance(data, WildData):
        return WildEvaluator(data, teacher, init_weights, tau=cfg.loss.tau, store=cfg.teacher.teacher_store)
    return Evaluator(data.test, data.val.unlabeled(), teacher, init_weights,
                     EvalSettings(tau=cfg.loss.tau, store=cfg.teacher.teacher_store), val=data.val)


def _wild_summary(data: WildData, final: dict) -> dict[str, Any]:
    """What a run on your own images adds to its summary: the images used and skipped, the
    label-free metrics on the held-out slice, and plainly whether accuracy was measured."""
    out: dict[str, Any] = {
        "dataset": f"unlabeled images (teacher's input: {data.info.name})",
        "images": {"train": len(data.train), "held_out": len(data.held_out), "bad_images": data.bad_images},
        "heldout_agreement": final.get("heldout_agreement"),
    }
    if data.test is None:
        out["teacher_agreement"] = final.get("heldout_agreement")
        out["accuracy"] = NOT_MEASURED
    else:
        out["eval_images"] = len(data.test)
    return out


def _span(cfg: RunConfig, after_pruning: bool) -> tuple[int, int] | None:
    """Where a training phase sits in the learning-rate schedule: with ``--early-schedule
    continue`` the dense and the pruned phase share one schedule over both; otherwise each
    phase has its own (None)."""
    before = cfg.prune.prune_after_epochs
    if not before or cfg.train.early_schedule != "continue":
        return None
    total = before + cfg.train.epochs
    return (before, total) if after_pruning else (0, total)


def _train_before_pruning(student: torch.nn.Module, cfg: RunConfig, data, teacher: Teacher,
                          progress: bool | str, where: Where) -> float:
    """Early pruning (``--prune-after-epochs N``): train the dense student with the run's own
    loss and recipe for N epochs, so the criterion scores a partly trained network. Channel
    scores at initialisation mostly see the random init; after a short label-free phase they
    see which channels the teacher's signal has started to use. Not checkpointed: a run killed
    here repeats this phase (it is deterministic), and resumes after pruning from
    ``student_init.pt``. Returns the seconds spent."""
    epochs = cfg.prune.prune_after_epochs
    if not epochs:
        return 0.0
    start = time.perf_counter()
    train_cfg = dataclasses.replace(cfg.train, epochs=epochs)
    loss = create_loss(train_cfg, LossContext(feature_dim(student), teacher.info.feature_dim, cfg.seed), cfg.loss)
    fit(student, loss, data.train, train_cfg, guidance=_guidance(cfg, data, teacher, loss, where),
        callbacks=[Progress(progress, label="dense ")], options=_fit_options(cfg, after_pruning=False, where=where))
    return time.perf_counter() - start


def _prune(student: torch.nn.Module, cfg: RunConfig, data, teacher) -> tuple[dict, dict, str]:
    """Apply the configured criterion; sparsity 0 keeps the student dense.

    Returns the report, the checkpoint ``extra`` entries the pruned student needs to be
    rebuilt (for structured pruning: the channel-removal history; else nothing) and the
    report as markdown.
    """

    labeled = data.train if cfg.prune.label_source == "true" else None
    outcome = prune_student(student, cfg.pruning, data.train.unlabeled(), teacher, seed=cfg.seed, labeled=labeled)
    return outcome.report, outcome.extra, outcome.markdown


def summary_markdown(s: dict) -> str:
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    rows = [
        ("student", f"{s['model']} (width {s['width']:g}) on {s['dataset']}"
                    + (f", started from `{s['init_from']}`" if s.get("init_from") else "")),
        ("pruning", f"{s['criterion']} at {pct(s['sparsity'])} sparsity" if s.get("channel_ratio") is None
         else f"{s['criterion']} channels, ratio {s['channel_ratio']:g} ({pct(s['sparsity'])} of weights removed)"),
        ("training", f"loss `{s['loss']}`, {s['epochs']} epochs"
                     + (f" after pruning, {s['prune_after_epochs']} dense before it" if s.get("prune_after_epochs")
                        else "")),
        ("final test accuracy", s.get("accuracy") or pct(s["final_acc"])), ("best test accuracy", pct(s["best_acc"])),
        ("teacher agreement", pct(s["teacher_agreement"])),
        ("parameters (kept / dense)", f"{s['params']} / {s['params_dense']}"),
        ("MACs (kept / dense)", f"{s['macs']} / {s['macs_dense']}"),
        ("wall time", f"{s['seconds']:.1f} s"),
    ]
    return "# Run summary\n\n| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
