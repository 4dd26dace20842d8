"""`lnpt plan`: the rule on gaps alone, the recipe on real digits probes (decision, atomic
record, resume, no label read), and the CLI's refusals."""
import json

import pytest

from lnpt.analysis.plan_rule import (
    Candidate,
    NothingLearned,
    agreement,
    choose,
    gap_bound,
)
from lnpt.cli import main
from lnpt.config import (
    DataConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
)
from lnpt.errors import ConfigError
from lnpt.recipes.pipeline import run_pipeline
from lnpt.recipes.plan import PlanSettings, make_plan, probe_config

LABEL_KEYS = ("test_acc", "val_acc", "teacher_agreement", "final_acc", "best_acc", "final_val_acc")


def test_the_rule_picks_the_sparsest_candidate_within_the_bound_of_the_best_densest_one():
    cands = [Candidate("a", 0.5, 0.12), Candidate("b", 0.5, 0.10), Candidate("a", 0.9, 0.124),
             Candidate("b", 0.9, 0.119), Candidate("a", 0.99, 0.2)]
    d = choose(cands, tolerance=0.25)
    assert d.reference == Candidate("b", 0.5, 0.10) and d.bound == pytest.approx(0.125)
    assert d.chosen == Candidate("b", 0.9, 0.119)  # sparsest within bound; smaller gap breaks the tie
    assert Candidate("a", 0.99, 0.2) not in d.predicted_good
    assert choose(cands, tolerance=1.0).chosen.sparsity == 0.99
    assert choose(cands, tolerance=0.0).chosen == d.reference
    assert choose(cands, tolerance=0.02, rule="additive").chosen.sparsity == 0.9
    assert gap_bound(0.1, 0.05, "additive") == pytest.approx(0.15)
    with pytest.raises(ValueError, match="known: relative, additive"):
        choose(cands, rule="log")


def test_agreement_compares_with_the_sparsest_network_within_the_accuracy_tolerance():
    gaps, accs = {0.9: 0.10, 0.95: 0.11, 0.99: 0.30}, {0.9: 0.84, 0.95: 0.83, 0.99: 0.60}
    hit = agreement(gaps, accs, tolerance=0.25, accuracy_tolerance=0.02)
    assert hit.match and hit.plan_sparsity == 0.95 and hit.shortfall == 0.0
    greedy = agreement(gaps, accs, tolerance=3.0, accuracy_tolerance=0.02)
    assert not greedy.match and greedy.plan_sparsity == 0.99
    assert greedy.shortfall == pytest.approx(0.84 - 0.02 - 0.60)
    timid = agreement(gaps, accs, tolerance=0.0, accuracy_tolerance=0.02)
    assert not timid.match and timid.shortfall == 0.0  # too dense costs sparsity, not accuracy


def test_a_stalled_probe_is_neither_the_reference_nor_recommended():
    # the full-budget grid's random pruning: the densest network had not started to learn after one
    # epoch (agreement at chance, 10 classes), so a bound around its large gap let through 99%
    random = [Candidate("random", 0.9, 0.344, 0.10), Candidate("random", 0.95, 0.387, 0.10),
              Candidate("random", 0.99, 0.387, 0.10)]
    assert choose(random, 0.25).chosen.sparsity == 0.99  # without the check: the failure
    with pytest.raises(NothingLearned, match="10.0% of held-out images"):
        choose(random, 0.25, min_agreement=0.2)
    lnpt = [Candidate("lnpt", 0.9, 0.070, 0.80), Candidate("lnpt", 0.95, 0.085, 0.75),
            Candidate("lnpt", 0.99, 0.116, 0.71)]
    d = choose(random + lnpt, 0.25, min_agreement=0.2)
    assert d.reference == lnpt[0] and d.chosen == lnpt[1] and set(d.stalled) == set(random)
    assert not set(random) & set(d.predicted_good)
    small_but_stalled = Candidate("snip", 0.9, 0.01, 0.10)  # a small gap does not make it the reference
    assert choose([small_but_stalled, *lnpt], 0.25, min_agreement=0.2).reference == lnpt[0]
    unmeasured = Candidate("lnpt", 0.9, 0.07)  # older probe folders logged no agreement: not checked
    assert choose([unmeasured], 0.25, min_agreement=0.2).chosen == unmeasured


def test_agreement_counts_a_refusal_as_a_miss_that_costs_no_accuracy():
    gaps, accs = {0.9: 0.344, 0.95: 0.387, 0.99: 0.387}, {0.9: 0.87, 0.95: 0.10, 0.99: 0.10}
    before = agreement(gaps, accs, tolerance=0.25, accuracy_tolerance=0.03)
    assert before.plan_sparsity == 0.99 and before.shortfall == pytest.approx(0.87 - 0.03 - 0.10)
    now = agreement(gaps, accs, 0.25, 0.03, agreements={0.9: 0.1, 0.95: 0.1, 0.99: 0.1}, min_agreement=0.2)
    assert now.refused and not now.match and now.shortfall == 0.0 and now.truth_sparsity == 0.9


def _cfg(teacher_path):
    """Settings under which a probe learns within two epochs (all digits, no warm-up)."""
    return RunConfig(data=DataConfig(dataset="digits", batch_size=32),
                     model=ModelConfig("lenet5"), teacher=TeacherConfig(teacher=str(teacher_path)),
                     prune=PruneConfig(criterion="lnpt", batches=2, score_batch_size=64),
                     train=TrainConfig(loss="lnpt", epochs=6, lr=0.2, warmup_epochs=0.0), seed=0)


def _stalling_cfg(teacher_path):
    """Settings under which no probe learns in one epoch (600 images, a warm-up epoch)."""
    return RunConfig(data=DataConfig(dataset="digits", batch_size=64, train_subset=600),
                     model=ModelConfig("lenet5"), teacher=TeacherConfig(teacher=str(teacher_path)),
                     prune=PruneConfig(criterion="lnpt", batches=2, score_batch_size=64),
                     train=TrainConfig(loss="lnpt", epochs=6, lr=0.1), seed=0)


def _scramble_labels(probe_dir):
    """Overwrite every label-derived number a probe logged (higher for sparser probes)."""
    summary = json.loads((probe_dir / "summary.json").read_text())
    fake = summary["sparsity"]
    (probe_dir / "summary.json").write_text(json.dumps({**summary, **{k: fake for k in LABEL_KEYS}}))
    lines = [json.loads(x) for x in (probe_dir / "metrics.jsonl").read_text().splitlines()]
    (probe_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({**r, **{k: fake for k in LABEL_KEYS if k in r}}) + "\n" for r in lines))


def test_plan_on_digits_follows_the_rule_resumes_and_never_reads_a_label(digits_teacher_path, tmp_path):
    cfg, out = _cfg(digits_teacher_path), tmp_path / "plan"
    settings = PlanSettings(sparsities=(0.5, 0.9, 0.99), criteria=("lnpt", "random"), tolerance=0.25,
                            probe_epochs=2)
    decision = make_plan(cfg, settings, out, progress=False)
    record = json.loads((out / "plan.json").read_text())
    probes = {c["probe"]: c for c in record["candidates"]}
    assert len(probes) == 6 and (out / "plan.md").read_text().startswith("# Plan")
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # written atomically
    for name, c in probes.items():  # each gap is the probe's own, trained for one epoch
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["epochs"] == 2 and c["gap"] == summary["gap"] and summary["sparsity"] == pytest.approx(
            c["sparsity"], abs=0.01)
        assert c["agreement"] == summary["heldout_agreement"] and c["learned"] == (c["agreement"] >= 0.2)
    assert record["min_agreement"] == pytest.approx(0.2)  # twice chance, 10 classes
    assert {(c["criterion"], c["sparsity"]) for c in record["candidates"] if not c["learned"]} >= {("random", 0.99)}
    again = choose([Candidate(c["criterion"], c["sparsity"], c["gap"], c["agreement"]) for c in record["candidates"]],
                   0.25, min_agreement=0.2)
    assert decision == again and record["recommended"]["sparsity"] == decision.chosen.sparsity
    assert decision.reference.agreement >= 0.2 and decision.chosen.agreement >= 0.2
    assert record["recommended"]["gap"] <= record["reference"]["gap"] * 1.25
    stamps = {n: (out / n / "final.pt").stat().st_mtime_ns for n in probes}
    for name in probes:
        _scramble_labels(out / name)
    assert make_plan(cfg, settings, out, progress=False) == decision  # labels changed, decision did not
    assert json.loads((out / "plan.json").read_text()) == record
    assert {n: (out / n / "final.pt").stat().st_mtime_ns for n in probes} == stamps  # probes reused


def test_a_one_epoch_probe_measures_the_full_runs_epoch_one_gap(digits_teacher_path, tmp_path):
    cfg = probe_config(_stalling_cfg(digits_teacher_path), "lnpt", 0.9, epochs=2)  # the default warm-up epoch
    run_pipeline(cfg, tmp_path / "full", progress=False)
    first = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[0])
    make_plan(cfg, PlanSettings(sparsities=(0.9,), min_agreement=0.0), tmp_path / "plan", progress=False)
    assert json.loads((tmp_path / "plan" / "plan.json").read_text())["recommended"]["gap"] == first["gap"]


def test_a_plan_where_no_probe_learned_refuses_says_what_to_do_and_keeps_the_numbers(digits_teacher_path, tmp_path):
    cfg, out = _stalling_cfg(digits_teacher_path), tmp_path / "plan"
    with pytest.raises(ConfigError, match=r"no probe started to learn.*--probe-epochs 2"):
        make_plan(cfg, PlanSettings(sparsities=(0.5, 0.9)), out, progress=False)
    record = json.loads((out / "plan.json").read_text())
    assert record["recommended"] is None and "no probe started" in record["refused"]
    assert len(record["candidates"]) == 2 and not any(c["learned"] for c in record["candidates"])
    assert "No recommendation" in (out / "plan.md").read_text()
    off = make_plan(cfg, PlanSettings(sparsities=(0.5, 0.9), min_agreement=0.0), out, progress=False)
    assert off.chosen.sparsity in (0.5, 0.9) and json.loads((out / "plan.json").read_text())["recommended"]


def test_plan_refuses_what_it_cannot_decide(digits_teacher_path, tmp_path):
    cfg = _cfg(digits_teacher_path)
    no_val = RunConfig(data=DataConfig(dataset="digits", val_fraction=0.0), teacher=cfg.teacher)
    with pytest.raises(ConfigError, match="--val-fraction"):
        make_plan(no_val, PlanSettings(sparsities=(0.9,)), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        make_plan(cfg, PlanSettings(sparsities=(0.9, 1.0)), tmp_path / "b")
    with pytest.raises(ConfigError, match="times chance"):
        make_plan(cfg, PlanSettings(sparsities=(0.9,), min_agreement=-1.0), tmp_path / "d")
    with pytest.raises(Exception, match="snp"):
        make_plan(cfg, PlanSettings(sparsities=(0.9,), criteria=("snp",)), tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before any probe trained


def test_cli_plan_writes_the_plan_and_names_user_mistakes(digits_teacher_path, tmp_path, capsys):
    out = tmp_path / "plan"
    common = ["plan", "--dataset", "digits", "--model", "lenet5", "--teacher", str(digits_teacher_path),
              "--train-subset", "300", "--batches", "1", "--no-progress", "--out", str(out)]
    assert main([*common, "--sparsities", "0.5,0.95", "--tolerance", "100", "--min-agreement", "0"]) == 0
    assert "Recommended: **lnpt at sparsity 0.95**" in capsys.readouterr().out  # everything is within 100x
    assert main([*common, "--sparsities", "0.5,0.95", "--tolerance", "100"]) == 2  # 300 images: nothing learned
    err = capsys.readouterr().err.strip()
    assert "no probe started to learn" in err and "--probe-epochs 2" in err and len(err.splitlines()) == 1
    assert main([*common, "--sparsities", "0.9", "--structured"]) == 2
    assert "drop --structured" in capsys.readouterr().err
