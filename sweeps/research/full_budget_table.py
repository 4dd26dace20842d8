"""The full-budget LeNet-5 table of docs/RESULTS.md, read from the sweep's run folders.

For every cell: final test accuracy, and how much the last five epochs still moved it (the
difference between the final accuracy and the best accuracy up to five epochs before the
end), which says whether training had stopped improving. Prints markdown.

    python sweeps/research/full_budget_table.py runs/sweeps/fmnist-lenet5-full
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

CRITERIA = ["lnpt", "snip", "grasp", "synflow", "magnitude", "random"]


def cells(sweep: Path) -> list[dict]:
    out = []
    for run in sorted(p for p in sweep.iterdir() if (p / "summary.json").is_file()):
        cfg = json.loads((run / "config.json").read_text())
        accs = [json.loads(line).get("test_acc") for line in (run / "metrics.jsonl").read_text().splitlines()]
        accs = [a for a in accs if a is not None]
        out.append({"criterion": cfg["prune"]["criterion"], "sparsity": cfg["weights"]["sparsity"],
                    "loss": cfg["train"]["loss"], "seed": cfg["seed"], "final": accs[-1],
                    "late_gain": accs[-1] - max(accs[:-5]) if len(accs) > 5 else float("nan")})
    return out


def main(sweep: Path) -> None:
    runs = cells(sweep)
    table: dict[tuple[float, str], list[float]] = defaultdict(list)
    for r in runs:
        if r["loss"] == "lnpt" and r["sparsity"] > 0:
            table[(r["sparsity"], r["criterion"])].append(r["final"])
    sparsities = sorted({s for s, _ in table})
    print("| sparsity | " + " | ".join(CRITERIA) + " |\n|---:|" + "---:|" * len(CRITERIA))
    for s in sparsities:
        cols = []
        for c in CRITERIA:
            v = table.get((s, c), [])
            cols.append(" / ".join(f"{100 * a:.2f}" for a in v) if v else "—")
        print(f"| {100 * s:.0f}% | " + " | ".join(cols) + " |")
    print("\n| cell | loss | seed | final | last 5 epochs' gain over the best before them |\n|---|---|---:|---:|---:|")
    for r in runs:
        print(f"| {r['criterion']} {100 * r['sparsity']:.0f}% | {r['loss']} | {r['seed']} | {100 * r['final']:.2f} "
              f"| {100 * r['late_gain']:+.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
