"""Where does LNPT's channel deficit on ResNet-20 come from: the residual stream or the blocks?

docs/BENCHMARKS.md (issue 7): layer-wise at ratio 0.5, the LNPT channel score (filter-sum)
trains significantly worse than random channels over 8 seeds. A ResNet has two kinds of
channel groups: the residual stream of each stage (stem or shortcut + every block's second
conv, coupled by the additions) and each block's inner channels (its first conv alone). This
registers two mixed criteria, LNPT scores on one kind and random scores on the other, and
runs them over the same 8 seeds and settings as sweeps/structured-c50.yaml:

    OMP_NUM_THREADS=1 python sweeps/research/channel_split.py lnpt-stream &
    OMP_NUM_THREADS=1 python sweeps/research/channel_split.py lnpt-inner
    lnpt report runs/sweeps/structured-c50 runs/sweeps/structured-c50-seeds \\
        runs/sweeps/channel-split-lnpt-stream runs/sweeps/channel-split-lnpt-inner \\
        --against random --out docs/results/structured-split

(in-process, one job each: the criteria exist only in this script.)
"""
from __future__ import annotations

import sys

import torch

from lnpt.experiments.grid import sweep_from_dict
from lnpt.experiments.sweep import run_sweep
from lnpt.pruning.structured.criteria import channel_criterion, register_channel_criterion


def _inner(group) -> bool:
    names = [m.module for m in group.members("producer")]
    return all(n.startswith("blocks") and n.endswith(".conv1") for n in names)


def _mixed(lnpt_on_inner: bool):
    lnpt = channel_criterion("lnpt")

    def score(model, groups, inputs):
        scores = lnpt.score(model, groups, inputs)
        for g in groups:  # the same draw order as the random criterion
            drawn = torch.rand(g.size, generator=inputs.generator, dtype=torch.float64)
            if _inner(g) != lnpt_on_inner:
                scores[g.root] = drawn
        return scores

    return score


register_channel_criterion("lnpt-stream", needs="teacher")(_mixed(lnpt_on_inner=False))
register_channel_criterion("lnpt-inner", needs="teacher")(_mixed(lnpt_on_inner=True))

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "lnpt-stream"
    if name not in ("lnpt-stream", "lnpt-inner"):
        raise SystemExit("usage: channel_split.py lnpt-stream|lnpt-inner")
    spec = sweep_from_dict({
        "seed": 0,
        "data": {"dataset": "fashion-mnist", "train_subset": 5000, "test_subset": 2000, "val_fraction": 0.05},
        "model": {"model": "resnet20", "width": 1.0},
        "teacher": {"teacher": "shipped", "teacher_store": "runs/teacher-store"},
        "prune": {"criterion": name, "structured": True, "channel_ratio": 0.5, "round_to": 8, "score_tau": 4.0},
        "train": {"epochs": 5, "loss": "lnpt"},
        "grid": {"seed": list(range(8))},
    })
    run_sweep(spec, f"runs/sweeps/channel-split-{name}", jobs=1, progress=False, log=print)
