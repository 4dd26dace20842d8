"""How often does ``lnpt plan``'s label-free choice match the choice final test accuracies make?

Reads the per-run points of a committed ``lnpt gap`` report (each run's learning gap after
epoch 1 and its final test accuracy), groups the runs by (criterion, seed, loss) over their
sparsities, and for each accuracy tolerance X compares

* the plan: the sparsest network whose epoch-1 gap is within the gap tolerance of the densest
  network's (lnpt.analysis.plan_rule.choose; gaps only), with
* the truth: the sparsest network whose final accuracy is within X points of the densest's.

The gap tolerance is picked two ways, both reported: leave-one-seed-out (picked on two seeds'
groups, scored on the third: the honest estimate) and on all the data (the in-sample number,
which is how the default tolerance was chosen). With ``--tolerance T`` the tolerance is fixed
instead (e.g. ``lnpt plan``'s default, chosen on another grid: an out-of-sample test that needs
no second seed), next to the probe-free choices "always the densest" and the best single
sparsity in hindsight (in-sample, an upper bound for any fixed choice). Usage:

    python benchmarks/plan_agreement.py docs/results/gap/gap.json [--json out.json]
    python benchmarks/plan_agreement.py docs/results/gap-full/gap.json --tolerance 0.25
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from lnpt.analysis.plan_rule import DEFAULT_MIN_AGREEMENT, Outcome, agreement

GRIDS = {"relative": [i / 40 for i in range(41)], "additive": [i / 400 for i in range(41)]}
ACCURACY_TOLERANCES = (0.01, 0.02, 0.03, 0.05)
COLLAPSED = 0.2  # final accuracy at or below this: the network never trained (chance is 0.1)


Point = tuple[float, float, "float | None"]  # epoch-1 gap, final test accuracy, epoch-1 teacher agreement
MIN_AGREEMENT = 0.0  # set by --min-agreement: the absolute agreement below which a probe has stalled


def load_groups(report: Path) -> dict[tuple[str, int, str], dict[float, Point]]:
    """{(criterion, seed, loss): {sparsity: (epoch-1 gap, final test accuracy, epoch-1 agreement)}},
    groups of 2+. The agreement is the held-out one where the run logged it, else the one on the
    test images (label-free as well: the teacher's classes, not the labels); None in reports
    written before lnpt recorded it."""
    data = json.loads(report.read_text())
    labels = {r["run"]: dict(kv.split("=") for kv in r["label"].split(", ")) for r in data["runs"]}
    groups: dict[tuple[str, int, str], dict[float, Point]] = defaultdict(dict)
    for p in data["across_runs"]["points"]:
        lab = labels[p["run"]]
        key = (lab["criterion"], int(lab["seed"]), lab["loss"])
        agree = p.get("epoch1_heldout_agreement")
        agree = p.get("epoch1_teacher_agreement") if agree is None else agree
        groups[key][float(lab["sparsity"])] = (p["epoch1_gap"], p["final_test_acc"], agree)
    return {k: v for k, v in sorted(groups.items()) if len(v) > 1}


def score(groups: dict, tolerance: float, x: float, rule: str) -> list[Outcome]:
    return [agreement({s: g for s, (g, _, _) in runs.items()}, {s: a for s, (_, a, _) in runs.items()},
                      tolerance, x, rule, agreements={s: t for s, (_, _, t) in runs.items() if t is not None},
                      min_agreement=MIN_AGREEMENT) for runs in groups.values()]


def pick(groups: dict, x: float, rule: str) -> float:
    """The gap tolerance with the most matches (ties: least total shortfall, then smallest)."""
    def key(t: float) -> tuple[int, float, float]:
        out = score(groups, t, x, rule)
        return (-sum(o.match for o in out), sum(o.shortfall for o in out), t)
    return min(GRIDS[rule], key=key)


def summarise(outcomes: list[Outcome]) -> dict:
    miss = [o for o in outcomes if not o.match and not o.refused]
    sparser = [o for o in miss if o.plan_sparsity > o.truth_sparsity]
    denser = [o for o in miss if o.plan_sparsity < o.truth_sparsity]
    return {
        "groups": len(outcomes), "matches": sum(o.match for o in outcomes),
        "too_sparse": len(sparser), "too_dense": len(denser), "refused": sum(o.refused for o in outcomes),
        "mean_shortfall_points": 100 * sum(o.shortfall for o in miss) / len(miss) if miss else 0.0,
        "max_shortfall_points": 100 * max((o.shortfall for o in miss), default=0.0),
        "mean_acc_diff_points": (100 * sum(o.truth_acc - o.plan_acc for o in miss) / len(miss)
                                 if miss else 0.0),
    }


def fixed_baseline(groups: dict, x: float) -> dict:
    """The label-free alternative with no probe: one fixed sparsity for every group, the one
    that matched the truth most often on the other seeds (leave-one-seed-out)."""
    def truth(runs: dict) -> float:
        accs = {s: a for s, (_, a, _) in runs.items()}
        return agreement({s: 0.0 for s in runs}, accs, 0.0, x).truth_sparsity

    hits = 0
    for s in sorted({k[1] for k in groups}):
        train = [truth(v) for k, v in groups.items() if k[1] != s]
        fixed = max(set(train), key=lambda v: (train.count(v), -v))
        hits += sum(truth(v) == (fixed if fixed in v else min(v)) for k, v in groups.items() if k[1] == s)
    return {"groups": len(groups), "matches": hits}


def evaluate(groups: dict, x: float, rule: str) -> dict:
    seeds = sorted({k[1] for k in groups})
    loso, picked = [], {}
    for s in seeds:
        t = pick({k: v for k, v in groups.items() if k[1] != s}, x, rule)
        picked[s] = t
        loso += score({k: v for k, v in groups.items() if k[1] == s}, t, x, rule)
    t_all = pick(groups, x, rule)
    return {"accuracy_tolerance": x, "rule": rule, "loso_tolerances": picked,
            "loso": summarise(loso), "fixed_sparsity_loso": fixed_baseline(groups, x),
            "in_sample_tolerance": t_all,
            "in_sample": summarise(score(groups, t_all, x, rule))}


def fixed_tolerance(groups: dict, tolerance: float, rule: str) -> list[dict]:
    """Rows for one given gap tolerance: the plan against the probe-free choices."""
    rows = []
    for x in ACCURACY_TOLERANCES:
        outcomes = score(groups, tolerance, x, rule)
        truths = [o.truth_sparsity for o in outcomes]
        densest = sum(t == min(runs) for t, runs in zip(truths, groups.values()))
        hindsight = max((sum(t == s for t in truths) for s in set(truths)), default=0)
        rows.append({"accuracy_tolerance": x, "rule": rule, "tolerance": tolerance, "plan": summarise(outcomes),
                     "always_densest": densest, "best_fixed_in_hindsight": hindsight,
                     "groups_detail": [{"group": list(k), "plan": o.plan_sparsity, "truth": o.truth_sparsity}
                                       for k, o in zip(groups, outcomes)]})
        p = rows[-1]["plan"]
        print(f"X={100 * x:.0f}pt  plan {p['matches']}/{p['groups']} (too sparse {p['too_sparse']}, too dense "
              f"{p['too_dense']}, refused {p['refused']}, shortfall mean/max {p['mean_shortfall_points']:.2f}/"
              f"{p['max_shortfall_points']:.2f} pts) | always densest {densest}/{len(outcomes)} | "
              f"best single sparsity in hindsight {hindsight}/{len(outcomes)}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="gap.json written by `lnpt gap`")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--tolerance", type=float, help="fixed relative gap tolerance (no tuning on this grid)")
    ap.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                    help="as lnpt plan's: a probe below this many times chance agreement has stalled (0: off)")
    ap.add_argument("--classes", type=int, default=10, help="classes of the dataset, for chance (default: 10)")
    args = ap.parse_args()
    global MIN_AGREEMENT
    MIN_AGREEMENT = args.min_agreement / args.classes
    groups = load_groups(args.report)
    if args.tolerance is not None:
        print(f"{len(groups)} groups of 2+ sparsities; relative gap tolerance fixed at {args.tolerance}; "
              f"stalled below {MIN_AGREEMENT:.0%} agreement")
        rows = fixed_tolerance(groups, args.tolerance, "relative")
        if args.json:
            args.json.write_text(json.dumps({"report": str(args.report), "rows": rows}, indent=2))
        return
    trained = {k: v for k, v in groups.items() if v[min(v)][1] > COLLAPSED}  # final accuracy of the densest
    results = {"report": str(args.report), "groups": len(groups), "groups_densest_trained": len(trained),
               "rows": [dict(evaluate(g, x, rule), subset=name)
                        for name, g in (("all", groups), ("densest trained", trained))
                        for rule in GRIDS for x in ACCURACY_TOLERANCES]}
    print(f"{len(groups)} groups of 2+ sparsities ({len(trained)} whose densest network trained)")
    print("subset          rule      X   | LOSO: match  sparser denser short(mean/max) | fixed | in-sample: tol  match")
    for r in results["rows"]:
        lo, ins = r["loso"], r["in_sample"]
        print(f"{r['subset']:<15} {r['rule']:<9} {100 * r['accuracy_tolerance']:.0f}pt | "
              f"{lo['matches']:>3}/{lo['groups']:<3} {lo['too_sparse']:>4} {lo['too_dense']:>6}   "
              f"{lo['mean_shortfall_points']:.2f}/{lo['max_shortfall_points']:.2f}       | "
              f"{r['fixed_sparsity_loso']['matches']:>2}/{lo['groups']:<2} | "
              f"{r['in_sample_tolerance']:.4f} {ins['matches']:>3}/{ins['groups']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
